//! The errors of the session library: [`ConnectError`] when a session cannot
//! start, [`SessionError`] when a request cannot be made, [`TlsError`] when
//! the TLS settings cannot be made (a CA file that cannot be used, no roots
//! on the platform).
//!
//! Each variant is something a caller can act on (ask for another username,
//! give up, shorten the message); the messages are one line in plain words,
//! fit to show a user, and never hold a resume token.

use std::io;
use std::path::PathBuf;
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
    /// The server's TLS certificate does not verify against the roots the
    /// session trusts (see [`Tls`](crate::Tls)).
    #[error("the certificate of the server at {addr} does not verify: {reason}")]
    Certificate {
        /// The address as given.
        addr: String,
        /// What is wrong with the certificate, in plain words.
        reason: String,
    },
    /// The TLS handshake failed for another reason: the server does not
    /// speak TLS, refused the handshake, or closed the connection.
    #[error("the TLS handshake with the server at {addr} failed: {reason}")]
    Tls {
        /// The address as given.
        addr: String,
        /// What happened.
        reason: String,
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

/// Why the TLS settings of a [`Tls`](crate::Tls) cannot be made. Each is
/// one line that names the file, and never quotes a line of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file cannot be opened or read.
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaUnreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The CA file is not PEM, or its PEM is broken.
    #[error("the CA file {} is not valid PEM: {problem}", path.display())]
    CaNotPem {
        /// The file.
        path: PathBuf,
        /// What is wrong, in a few words.
        problem: &'static str,
    },
    /// The CA file holds no certificate.
    #[error(
        "the CA file {} holds no certificate (a PEM CERTIFICATE section)",
        path.display()
    )]
    CaEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot be used as a root.
    #[error("the CA file {} holds a certificate that cannot be trusted as a CA: {reason}", path.display())]
    CaRefused {
        /// The file.
        path: PathBuf,
        /// Why, in plain words.
        reason: String,
    },
    /// The platform's certificate store holds no usable root.
    #[error(
        "found no trusted root certificates on this system ({reason}); give the server's CA \
         with --ca, or point SSL_CERT_FILE at a bundle of them"
    )]
    NoPlatformRoots {
        /// What the store's reader said.
        reason: String,
    },
    /// rustls refused the settings (it should not happen with its own
    /// provider and versions).
    #[error("cannot set up TLS: {reason}")]
    Setup {
        /// rustls's reason.
        reason: String,
    },
}
