//! The errors of the session library: [`ConnectError`] when a session cannot
//! start, [`SessionError`] when a request cannot be made.
//!
//! Each variant is something a caller can act on (ask for another username,
//! give up, shorten the message); the messages are one line in plain words,
//! fit to show a user, and never hold a resume token.

use std::io;
use std::time::Duration;

use tsockm_proto::{Status, Text};

/// Why [`Session::connect`](crate::Session::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No address to connect to was given.
    #[error("no server address given")]
    NoAddress,
    /// No TCP connection could be made.
    #[error("cannot reach the server at {addr}: {source}")]
    Unreachable {
        /// The address as given.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("the server at {addr} did not answer within {} s", timeout.as_secs_f32())]
    Timeout {
        /// The address as given.
        addr: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The server refused the username (`ERR::COMM::400`); the caller may
    /// try again with another one.
    #[error("the server refused the username: {reason}")]
    UsernameRefused {
        /// The server's reason.
        reason: Text,
    },
    /// The server needs a password and none was given (401 to COMM).
    #[error("the server at {addr} needs a password (give it with --password-file)")]
    PasswordNeeded {
        /// The address as given.
        addr: String,
    },
    /// The server refused the password (401 to AUTH).
    #[error("the server at {addr} refused the password")]
    WrongPassword {
        /// The address as given.
        addr: String,
    },
    /// The server is full (503).
    #[error("the server at {addr} is full: {reason}")]
    Full {
        /// The address as given.
        addr: String,
        /// The server's reason.
        reason: Text,
    },
    /// The server refused the registration for another reason.
    #[error("the server at {addr} refused to register you (status {}): {reason}", status.code())]
    Refused {
        /// The address as given.
        addr: String,
        /// The status of the error frame.
        status: Status,
        /// The server's reason.
        reason: Text,
    },
    /// The connection failed or closed before registration was complete.
    #[error("the connection to {addr} closed before you were registered: {reason}")]
    Closed {
        /// The address as given.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The server's answer does not follow the protocol.
    #[error("the server at {addr} gave an answer this client does not understand")]
    Protocol {
        /// The address as given.
        addr: String,
    },
}

/// Why a request could not be handed to the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is over (see [`Event::Closed`](crate::Event::Closed)).
    #[error("the session is closed")]
    Closed,
    /// A peer id that can never be valid.
    #[error("`{id}` is not a valid peer id")]
    InvalidPeerId {
        /// The id as given.
        id: String,
    },
    /// The message is longer than the server takes; it was not sent (the
    /// client does not split messages: parts could interleave with others').
    #[error(
        "message not sent: it is {n_bytes} bytes long and the server takes at most \
         {max_bytes} here; send it in shorter parts"
    )]
    TooLong {
        /// The message's length as it would be sent (escapes included).
        n_bytes: usize,
        /// The longest message the server takes in this conversation.
        max_bytes: usize,
    },
}
