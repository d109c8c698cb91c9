//! The TsockM chat server, as a library the binary and the tests share.
//!
//! Map of the crate:
//! - `server.rs`: [`Server`] binds, accepts, and spawns every task on one
//!   tracker; `run(shutdown)` ends when the token is cancelled.
//! - `doorman.rs`: the limits on connections checked at accept (not
//!   registered yet, in all and per address; all of one address's), and
//!   the slot each connection's task holds until it ends.
//! - `start.rs`: what is opened before listening (the store, ids, saved
//!   sessions), and [`StartError`].
//! - `connection.rs`: one task per connection: decode frames into registry
//!   commands, write the connection's outbox to the socket, over a
//!   `transport.rs` `Transport` (TCP, TLS).
//! - `tls.rs`: the certificate and key, and each TLS connection's
//!   handshake; `tls_transport.rs`: the `Transport` over a TLS session.
//! - `outbox.rs`: the bounded per-connection send queue.
//! - `registry/`: the actor owning every peer, connection and room, one
//!   job per file (see its `mod.rs`): admission in the contract's order,
//!   fan-out, sessions, messages, rooms, history, timers, the console.
//! - [`store`]: where history and saved sessions are kept (memory, SQLite)
//!   and the thread that writes them.
//! - `cluster/`: several servers acting as one through a shared Redis: the
//!   Lua scripts, the inbox events, and the tasks that talk to Redis.
//! - `wire.rs`: the frames the server sends. `addr.rs`: addresses on the wire.
//! - `identity.rs`: peer ids, message ids and resume tokens; `sqid.rs`:
//!   a message id's sqid without allocating.
//!   `username.rs`, `room.rs`: name rules.
//! - `rate.rs`: the token bucket. `stats.rs`: counters for `:info`.
//! - `console.rs`: operator commands. `shutdown.rs`: signals.
//! - `config.rs`: settings and flags. `logging.rs`: subscriber and frame dump.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio_util::sync::CancellationToken;
//! let config = tsockm_server::Config {
//!     addr: "127.0.0.1:0".parse()?,
//!     store: Some(tsockm_server::StoreSpec::Memory),
//!     ..Default::default()
//! };
//! let server = tsockm_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! let shutdown = CancellationToken::new();
//! server.run(shutdown).await?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod addr;
mod cluster;
pub mod config;
mod connection;
pub mod console;
mod doorman;
mod identity;
pub mod logging;
mod outbox;
mod rate;
mod registry;
mod room;
mod server;
pub mod shutdown;
mod sqid;
mod start;
mod stats;
pub mod store;
mod tls;
mod tls_transport;
mod transport;
mod username;
mod wire;

pub use cluster::ClusterConfig;
pub use config::{Cli, Config, LogMode, TlsFiles};
pub use registry::{
    AcceptedMessage, ChannelHook, ClusterInfo, ConsoleReply, ConsoleRequest, Hook, InfoReport,
    PeerSummary, PingReport, RegistryClosed, RoomSummary, Target,
};
pub use server::{Console, Server};
pub use start::StartError;
pub use store::{Conversation, StoreSpec};
pub use tls::{PemFile, TlsError};
pub use tokio_util::sync::CancellationToken;
