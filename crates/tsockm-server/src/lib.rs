//! The TsockM chat server, as a library the binary and the tests share.
//!
//! Map of the crate:
//! - `server.rs`: [`Server`] binds, accepts, and spawns every task on one
//!   tracker; `run(shutdown)` ends when the token is cancelled.
//! - `connection.rs`: one task per connection: decode frames into registry
//!   commands, write the connection's outbox to the socket.
//! - `outbox.rs`: the bounded per-connection send queue.
//! - `registry.rs`: the actor owning every peer and connection; checks each
//!   frame in the contract's order, fans messages out, runs every timer.
//! - `peer.rs`: a peer online or away, and the frames kept for it.
//! - `wire.rs`: the frames the server sends. `addr.rs`: addresses on the wire.
//! - `identity.rs`: peer ids and resume tokens. `username.rs`: name rules.
//! - `rate.rs`: the token bucket. `stats.rs`: counters for `:info`.
//! - `console.rs`: operator commands. `shutdown.rs`: signals.
//! - `config.rs`: settings and flags. `logging.rs`: subscriber and frame dump.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use tokio_util::sync::CancellationToken;
//! let config = tsockm_server::Config { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
//! let server = tsockm_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! let shutdown = CancellationToken::new();
//! server.run(shutdown).await
//! # }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod addr;
pub mod config;
mod connection;
pub mod console;
mod identity;
pub mod logging;
mod outbox;
mod rate;
mod registry;
mod room;
mod server;
pub mod shutdown;
mod stats;
pub mod store;
mod transport;
mod username;
mod wire;

pub use config::{Cli, Config, LogMode};
pub use registry::{
    AcceptedMessage, ChannelHook, ConsoleReply, ConsoleRequest, Conversation, Hook, InfoReport,
    PeerSummary, PingReport, RegistryClosed, Target,
};
pub use server::{Console, Server};
pub use tokio_util::sync::CancellationToken;
