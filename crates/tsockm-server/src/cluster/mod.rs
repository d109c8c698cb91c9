//! Several nodes acting as one server through a shared Redis (the cluster
//! contract, `cluster.md`).
//!
//! Redis is the only thing nodes share; there is no node-to-node protocol.
//! Each node has an *inbox*, a Redis stream: every event a node must see
//! (a peer registered or left, a message for one of its peers, a room
//! change in a room it has members in) is appended to its inbox by a Lua
//! script (`scripts.rs`) that also gives the event its place in one global
//! order. A node reads only its own inbox, in order, and applies each event
//! to its registry exactly as it would a local one. Streams, not pub/sub:
//! a node that loses Redis for a while reads on from where it was, and a
//! node that takes over a peer from a dead node reads what the peer missed
//! from the dead node's inbox.
//!
//! - `scripts.rs`: the Lua scripts, one per change of cluster state.
//! - `event.rs`: the events an inbox carries.
//! - `link.rs`: joining the cluster, and the handle the registry holds;
//!   `requests.rs`: what the registry asks and what it is handed back;
//!   `writer.rs`, `reader.rs`, `heartbeat.rs`: the tasks that talk to
//!   Redis (running the registry's requests in order; reading the inbox;
//!   keeping this node alive, finding dead nodes, noticing a Redis that
//!   lost its data).
//!
//! What the registry does with events is in `registry/cluster*.rs`.

mod event;
mod heartbeat;
mod link;
mod reader;
mod requests;
mod scripts;
mod writer;

use std::time::Duration;

pub use event::{Entry, Event, Target};
pub(crate) use link::{
    ClaimRequest, Claimed, ClusterInput, HistoryAnswerFn, LinkHandle, LinkRequest, RestorePeer,
    Started, start,
};

/// Default for [`ClusterConfig::name`].
pub const DEFAULT_CLUSTER_NAME: &str = "tsockm";
/// Most events a node's inbox keeps (Redis trims the oldest).
pub const INBOX_MAX: usize = 100_000;

/// How this node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis URL, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The prefix of every key, so that clusters can share one Redis.
    pub name: String,
    /// This node's name, in logs, `:list` and `:info`.
    pub node: String,
    /// How long a node may miss its heartbeat before it is declared dead.
    pub node_timeout: Duration,
}

impl ClusterConfig {
    /// The default node name: `<hostname>-<pid>`.
    pub fn default_node_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "node".to_owned());
        format!("{host}-{}", std::process::id())
    }
}

/// Why the cluster could not be joined at start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis cannot be reached (or refused a command).
    #[error("cannot reach the cluster's Redis at {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// Redis answered something this node cannot read.
    #[error("the cluster's Redis at {url} answered something unexpected: {what}")]
    Unexpected {
        /// The URL.
        url: String,
        /// What.
        what: String,
    },
    /// Another node of the cluster uses this name.
    #[error("a node named {0} is already alive in the cluster: give this one another --node-name")]
    NameTaken(String),
}
