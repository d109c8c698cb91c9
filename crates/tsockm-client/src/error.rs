//! The errors of the session library: [`ConnectError`] when a session cannot
//! start, [`SessionError`] when a request cannot be made.
//!
//! Each variant is something a caller can act on (ask for another username,
//! give up, fix the peer id); the messages are one line, fit to show a user.

use std::io;
use std::time::Duration;

use tsockm_proto::{Action, Status, Text};

/// Why [`Session::connect`](crate::Session::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No TCP connection could be made.
    #[error("cannot reach the server at {addr}: {source}")]
    Unreachable {
        /// The address as given.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("the server at {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The address as given.
        addr: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The server refused the username (`ERR::COMM::400`); the caller may
    /// try again with another one.
    #[error("username refused: {reason}")]
    UsernameRefused {
        /// The server's reason.
        reason: Text,
    },
    /// The server refused the registration for another reason (full,
    /// shutting down, ...).
    #[error("the server refused the registration ({status} {}): {reason}", status.name())]
    Refused {
        /// The action of the error frame.
        action: Action,
        /// The status of the error frame.
        status: Status,
        /// The server's reason.
        reason: Text,
    },
    /// The connection failed or closed before registration was complete.
    #[error("the connection to {addr} closed during registration: {reason}")]
    Closed {
        /// The address as given.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The server's answer does not follow the protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// Why a request could not be handed to the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is over (see [`Event::Closed`](crate::Event::Closed)).
    #[error("the session is closed")]
    Closed,
    /// A peer id that can never be valid (it would break the frame).
    #[error("`{id}` is not a valid peer id: {problem}")]
    InvalidPeerId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        problem: String,
    },
}
