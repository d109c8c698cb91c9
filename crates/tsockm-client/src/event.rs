//! [`Event`]: what a session reports to its user, one typed value per thing
//! that happened; [`Message`]: a chat message, live or from history; and
//! [`Closed`]: why a session ended.
//!
//! Events carry resolved usernames (from the roster) so that a user interface
//! can show `alice: hi` without asking the server. This file holds data only.

use std::time::{Duration, SystemTime};

use tsockm_proto::{Action, Status, Text};

use crate::{Conversation, MsgId, PeerId, RoomName};

/// A chat message, as received live or from the server's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The server's id for it (`None` from a server without message ids).
    pub id: Option<MsgId>,
    /// Where it was said: the lobby, a room, or the direct messages with
    /// a peer (for a direct message received, that peer is the author).
    pub conversation: Conversation,
    /// The author.
    pub from: PeerId,
    /// The author's username, if known.
    pub username: Option<Text>,
    /// The message (may contain newlines).
    pub text: Text,
    /// When the server accepted it (history) or this client received it (live).
    pub time: SystemTime,
}

/// Something that happened in a session.
///
/// [`Event::Closed`] is always the last event of a session; after it the
/// event stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message from another peer (or a direct message to oneself). A
    /// message id already delivered (a resume sends some again) is dropped.
    Message(Message),
    /// The answer to [`Session::history`](crate::Session::history): stored
    /// messages, oldest first.
    History {
        /// The conversation asked for.
        conversation: Conversation,
        /// The messages, oldest first.
        messages: Vec<Message>,
        /// Whether older (or newer, as asked) messages exist beyond these.
        more: bool,
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
    /// This client is in a room now (after [`Session::join`](crate::Session::join)).
    RoomJoined {
        /// The room.
        room: RoomName,
        /// Its members, this client included.
        members: Vec<(PeerId, Text)>,
    },
    /// Another peer joined a room this client is in.
    RoomJoin {
        /// The room.
        room: RoomName,
        /// The peer.
        id: PeerId,
        /// Its username.
        username: Text,
    },
    /// A peer (this client included) left a room this client was in.
    RoomPart {
        /// The room.
        room: RoomName,
        /// The peer.
        id: PeerId,
        /// Its username.
        username: Text,
    },
    /// The answer to [`Session::rooms`](crate::Session::rooms): every
    /// room with its number of members, sorted by name.
    Rooms(Vec<(RoomName, usize)>),
    /// The server refused a request of this client.
    Error {
        /// The action of the refused request (`NONE` if unreadable).
        action: Action,
        /// Why, as a status.
        status: Status,
        /// Why, in the server's words.
        reason: Text,
    },
    /// The connection dropped (or the server shut down); a new attempt to
    /// connect and resume starts after `delay`. One per attempt.
    Reconnecting {
        /// Attempts since the connection dropped, from 1.
        attempt: u32,
        /// The wait before this attempt.
        delay: Duration,
        /// The server this attempt goes to.
        server: String,
        /// Why the connection, or the previous attempt, failed.
        reason: String,
    },
    /// The session resumed on a new connection; the frames the server kept
    /// while this client was away have been delivered as events before this one.
    Reconnected {
        /// How many kept frames (messages, joins, leaves) were delivered.
        kept_frames: usize,
        /// The server resumed on.
        server: String,
    },
    /// The server no longer knew this client's session, so the client
    /// registered anew under a new id (and joins its rooms again). Messages
    /// sent to it meanwhile are lost.
    Reregistered {
        /// The id of the lost session.
        old_id: PeerId,
        /// The new id.
        new_id: PeerId,
        /// The server registered on.
        server: String,
    },
    /// Requests that were still waiting to be sent when the session closed.
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
    /// Another connection (another copy of this client) took the session over.
    ResumedElsewhere,
    /// The server shut down and did not come back in time.
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
