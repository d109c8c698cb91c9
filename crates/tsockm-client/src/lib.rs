//! The TsockM client: a session library other programs can use, and the
//! pieces of the `tsockm-client` terminal program.
//!
//! ```text
//! Session::connect ──► Session (handle: send, join, history, end, state)
//!                  └─► Events  (typed events, ends with Event::Closed)
//! ```
//!
//! The library, from the network up:
//!
//! - [`Session`] (`session.rs`): the network side and, with `tls.rs`, the
//!   only module doing I/O. Connects (over TLS when asked), registers,
//!   answers health checks, keeps the roster and the rooms, paces what it
//!   sends, sends again a message refused with 429, reconnects (round robin
//!   over its addresses) and resumes.
//! - `server_event.rs`: every frame from the server turned into one typed
//!   `ServerEvent`, in one place; `pacing.rs`: the client's token bucket;
//!   `backoff.rs`: delays between reconnection attempts. Pure.
//! - [`Event`], [`Message`], [`Closed`] (`event.rs`): what a session reports.
//! - [`Conversation`], [`RoomName`], [`MsgId`] (`conversation.rs`),
//!   [`Roster`], [`PeerId`] (`roster.rs`): pure data.
//! - [`ConnectError`], [`SessionError`], [`TlsError`] (`error.rs`);
//!   [`Secret`] (`secret.rs`): the server password, never shown.
//! - [`Tls`] (`tls.rs`): what a session trusts when it speaks TLS (the
//!   platform's roots or a private CA), and the stream under the frames,
//!   plain TCP or TLS.
//!
//! The terminal program's pieces, all pure (no I/O, no clock of their own):
//!
//! - [`command`]: what the user types (`:join`, `:dm`, ...), parsed.
//! - [`input`]: the line being typed: editing, history, Tab completion.
//! - [`app`]: the program's state: conversations, their logs and unread
//!   counts, scrollback, connection status; what each key and line does.
//! - [`text`]: how untrusted text is made safe to show (control and format
//!   characters escaped) and local times of day.
//! - [`lines`]: the line modes' rendering (`--plain` and script mode).
//! - [`tui`]: the full-screen rendering with ratatui.
//! - [`chat`]: the loop body every mode shares: a line, a key or an event
//!   in, the app updated and its requests made of the session.
//!
//! The wire format itself lives in `tsockm_proto`; this crate never frames
//! bytes by hand.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tsockm_client::{Config, Event, Session};
//!
//! let (session, mut events) = Session::connect(Config::new("127.0.0.1:6969", "alice")).await?;
//! session.broadcast("hello").await?;
//! session.end().await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(message) = event {
//!         println!("{}: {}", message.username.as_deref().unwrap_or("?"), message.text);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod app;
mod backoff;
pub mod chat;
pub mod command;
mod conversation;
mod error;
mod event;
pub mod input;
pub mod lines;
mod pacing;
mod roster;
mod secret;
mod server_event;
mod session;
pub mod text;
mod tls;
pub mod tui;

pub use backoff::Backoff;
pub use conversation::{Conversation, MAX_ROOM_NAME_CHARS, MsgId, RoomName, RoomNameError};
pub use error::{ConnectError, SessionError, TlsError};
pub use event::{Closed, Event, Message};
pub use roster::{PeerId, Roster};
pub use secret::Secret;
pub use session::{
    Config, DEFAULT_MAX_RATE, DEFAULT_RATE_BURST, Events, MAX_FRAME_FROM_SERVER_BYTES, MAX_HISTORY,
    Permit, Session, State,
};
pub use tls::Tls;
