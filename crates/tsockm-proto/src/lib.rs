//! The TsockM wire format.
//!
//! A TsockM frame is one line of UTF-8 text with seven fields:
//!
//! ```text
//! TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY\n
//! ```
//!
//! This crate is the single place that knows how such a line looks. It does no
//! I/O and starts no runtime; it only turns bytes into [`Frame`]s and back.
//!
//! - [`Frame`] (`frame.rs`): the seven fields, constructors for the common
//!   frames, parsing from a line and encoding to one. TYPE, ACTION and
//!   STATUS are public fields; SENDER_ID, SRC, DST and BODY are read with
//!   methods and set with builders, because they share one buffer: a
//!   decoded frame holds the part of its line after STATUS, copied if short
//!   and shared (one reference count) if long.
//! - [`Kind`], [`Action`] (`vocabulary.rs`) and [`Status`] (`status.rs`): the
//!   closed vocabularies of the first three fields.
//! - [`Text`] (`text.rs`): a cheap-to-clone UTF-8 string, kept inline when
//!   short and sharing a buffer when long (a frame's fields, a long BODY
//!   kept with [`Frame::body_text`]).
//! - `scan.rs`, `scan_sse2.rs` and `escape.rs` (internal): finding a line's
//!   end and one pass over it (separators, ASCII, backslashes), with SSE2 on
//!   x86-64 and a word at a time elsewhere; and BODY escaping.
//! - [`FrameCodec`] (`codec.rs`): a tokio-util `Decoder`/`Encoder` with a
//!   bounded line length. A bad line is an *item* (`Err(FrameError)`), never a
//!   stream error, so one bad frame does not end a connection.
//! - [`FrameError`] (`error.rs`): what exactly was wrong with a line, fit to be
//!   sent back to the peer as a reason, and the [`Status`] to answer it with.
//!
//! ```
//! use tsockm_proto::{Action, Frame, Kind, Status};
//!
//! let frame: Frame = "REQ::MSG::200::::::*::hello :: world".parse()?;
//! assert_eq!(frame.kind, Kind::Req);
//! assert_eq!(frame.action, Action::Msg);
//! assert_eq!(frame.status, Status::Ok);
//! assert_eq!(frame.body(), "hello :: world");
//! assert_eq!(frame.to_string(), "REQ::MSG::200::::::*::hello :: world");
//! # Ok::<(), tsockm_proto::FrameError>(())
//! ```
//!
//! Over a socket, [`FrameCodec`] turns a byte stream into frames and back
//! (here an in-memory pipe stands in for the TCP connection):
//!
//! ```
//! use futures::{SinkExt, StreamExt};
//! use tokio_util::codec::Framed;
//! use tsockm_proto::{Action, Frame, FrameCodec};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, server) = tokio::io::duplex(1024);
//! let mut client = Framed::new(client, FrameCodec::new());
//! let mut server = Framed::new(server, FrameCodec::new());
//!
//! client.send(Frame::join("#rust")).await?;
//! let frame = server.next().await.expect("a frame")??;
//! assert_eq!(frame.action, Action::Join);
//! assert_eq!(frame.dst(), "#rust");
//! assert_eq!(frame.to_string(), "REQ::JOIN::200::::::#rust::");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs)]

mod codec;
mod error;
mod escape;
mod frame;
mod scan;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod scan_sse2;
mod status;
mod text;
mod vocabulary;

pub use codec::{CodecError, FrameCodec};
pub use error::{Field, FrameError};
pub use escape::escape_body;
pub use frame::Frame;
pub use status::Status;
pub use text::Text;
pub use vocabulary::{Action, Kind};

/// The separator between two fields of a frame.
pub const SEPARATOR: &str = "::";

/// The SENDER_ID the server uses when it speaks for itself.
pub const SERVER_ID: &str = "server";

/// The DST of a frame fanned out to every peer (and of a broadcast request).
pub const BROADCAST: &str = "*";

/// Default maximum length of one frame in bytes, not counting its terminator.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024;

/// The literal texts the contract fixes, so that a client can tell why a
/// session ended without guessing at words.
pub mod reason {
    /// The start of the COMM_END reason (and of the 503 reason) every peer
    /// gets when the server shuts down.
    pub const SHUTTING_DOWN: &str = "server shutting down";
    /// The COMM_END reason of a connection whose session was resumed on
    /// another connection.
    pub const RESUMED_ELSEWHERE: &str = "resumed elsewhere";
    /// The reason of the 408 a peer gets when it stopped answering health
    /// checks.
    pub const HEALTH_TIMED_OUT: &str = "health check timed out";
}
