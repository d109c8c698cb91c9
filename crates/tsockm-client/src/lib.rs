//! The TsockM client: a session library other programs can use, and the
//! pieces of the `tsockm-client` terminal program.
//!
//! ```text
//! Session::connect ──► Session (handle: send, end, state)
//!                  └─► Events  (typed events, ends with Event::Closed)
//! ```
//!
//! - [`Session`] (`session.rs`): the network side. Connects, registers,
//!   answers health checks, keeps the roster, reconnects with backoff and
//!   resumes. The only module that does I/O.
//! - [`Event`], [`Closed`] (`event.rs`): what a session reports.
//! - [`Roster`], [`PeerId`] (`roster.rs`): who is on the server; pure state.
//! - [`ConnectError`], [`SessionError`] (`error.rs`).
//! - `backoff.rs`: delays between reconnection attempts; pure arithmetic.
//! - [`command`]: parsing of what the user types (`:dm`, `:list`, ...); pure.
//! - [`app`]: the terminal program's state (counters, resolving `:dm`
//!   targets, `:info`); pure.
//! - [`ui`]: how events and answers are written for a person or a script.
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
//!     if let Event::Message { username, text, .. } = event {
//!         println!("{}: {text}", username.as_deref().unwrap_or("?"));
//!     }
//! }
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod app;
mod backoff;
pub mod command;
mod error;
mod event;
mod roster;
mod session;
pub mod ui;

pub use backoff::Backoff;
pub use error::{ConnectError, SessionError};
pub use event::{Closed, Event};
pub use roster::{PeerId, Roster};
pub use session::{Config, Events, MAX_FRAME_FROM_SERVER_BYTES, Session, State};
