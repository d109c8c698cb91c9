//! [`Event`]: what a session reports to its user, one typed value per thing
//! that happened, and [`Closed`]: why a session ended.
//!
//! Events carry resolved usernames (from the roster) so that a user interface
//! can show `alice: hi` without asking the server. This file holds data only.

use std::time::Duration;

use tsockm_proto::{Action, Status, Text};

use crate::PeerId;

/// Something that happened in a session.
///
/// [`Event::Closed`] is always the last event of a session; after it the
/// event stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A broadcast message from another peer.
    Message {
        /// The author.
        from: PeerId,
        /// The author's username, if the roster knows it.
        username: Option<Text>,
        /// The message (may contain newlines).
        text: Text,
    },
    /// A direct message to this client (possibly from itself).
    Direct {
        /// The author.
        from: PeerId,
        /// The author's username, if the roster knows it.
        username: Option<Text>,
        /// The message (may contain newlines).
        text: Text,
    },
    /// A peer registered.
    Joined {
        /// The new peer.
        id: PeerId,
        /// Its username.
        username: Text,
    },
    /// A peer left or was removed.
    Left {
        /// The peer that left.
        id: PeerId,
        /// Its username.
        username: Text,
    },
    /// The answer to [`Session::get_peer`](crate::Session::get_peer).
    PeerFound {
        /// The peer looked up.
        id: PeerId,
        /// Its username.
        username: Text,
    },
    /// The server refused a request of this client.
    Error {
        /// The action of the refused request (`NONE` if unreadable).
        action: Action,
        /// Why, as a status.
        status: Status,
        /// Why, in words.
        reason: Text,
    },
    /// The connection dropped without `COMM_END`; a new attempt to connect
    /// and resume starts after `delay`.
    Reconnecting {
        /// Attempts since the connection dropped, from 1.
        attempt: u32,
        /// The wait before this attempt.
        delay: Duration,
        /// Why the connection, or the previous attempt, failed.
        reason: String,
    },
    /// The session resumed on a new connection; the frames the server kept
    /// while this client was away have been delivered as events before this one.
    Reconnected {
        /// How many kept frames (messages, joins, leaves) were delivered.
        kept_frames: usize,
    },
    /// The server no longer knew this client's session, so the client
    /// registered anew under a new id. Messages sent meanwhile are lost.
    Reregistered {
        /// The id of the lost session.
        old_id: PeerId,
        /// The new id.
        new_id: PeerId,
        /// The server's reason for refusing the resume.
        reason: Text,
    },
    /// Requests made while disconnected could not be kept for sending later,
    /// because too many were waiting already; they were dropped.
    Unsent {
        /// How many requests were dropped.
        n_frames: usize,
    },
    /// The session is over. Always the last event.
    Closed(Closed),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// This client ended it (`COMM_END`, or the session handle was dropped).
    Ended,
    /// The server removed this client.
    Kicked {
        /// The server's reason.
        reason: Text,
    },
    /// The server is shutting down.
    ShutDown {
        /// The server's reason (it starts with `server shutting down`).
        reason: Text,
    },
    /// The connection dropped and could not be restored in time.
    Lost {
        /// Why the last attempt failed.
        reason: String,
    },
}

impl Closed {
    /// Whether the session ended because this client asked for it.
    pub fn is_by_client(&self) -> bool {
        matches!(self, Closed::Ended)
    }
}
