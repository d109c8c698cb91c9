//! The seam for what leaves the actor: every message the registry accepts
//! is handed, once and in the order accepted, to each [`Hook`] (the store,
//! and in a cluster the link to the other nodes).
//!
//! A hook must never make the registry wait: it takes a bounded place with
//! `try_send` or drops the message and counts it. The hot path never awaits.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tsockm_proto::Text;

/// The conversation a message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// The lobby, `*`: every peer.
    Lobby,
    /// A room, by its folded name (`#` included).
    Room(Text),
    /// The direct messages between two peers, by their ids, in sorted order.
    Direct(Text, Text),
}

impl Conversation {
    /// The direct conversation of `a` and `b`, whichever wrote.
    pub fn direct(a: &Text, b: &Text) -> Conversation {
        if a <= b {
            Conversation::Direct(a.clone(), b.clone())
        } else {
            Conversation::Direct(b.clone(), a.clone())
        }
    }
}

/// A message the registry accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedMessage {
    /// Its place in the order of acceptance; its message id is made of it.
    pub seq: u64,
    /// When it was accepted, in Unix milliseconds (UTC).
    pub at_ms: i64,
    /// Where it was sent.
    pub conversation: Conversation,
    /// Its author's peer id.
    pub author_id: Text,
    /// Its author's username when it was sent.
    pub author_name: Text,
    /// The text.
    pub text: Text,
}

/// Receives every accepted message once. Must not block.
pub trait Hook: Send + fmt::Debug {
    /// Called once per accepted message, in the order accepted.
    fn accepted(&mut self, message: &AcceptedMessage);
}

/// A hook that forwards accepted messages into a bounded channel; when the
/// channel is full the message is dropped and counted.
#[derive(Debug, Clone)]
pub struct ChannelHook {
    tx: mpsc::Sender<AcceptedMessage>,
    dropped: Arc<AtomicU64>,
}

impl ChannelHook {
    /// A hook and the receiving end of its channel of `capacity` messages.
    pub fn new(capacity: usize) -> (ChannelHook, mpsc::Receiver<AcceptedMessage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let hook = ChannelHook {
            tx,
            dropped: Arc::default(),
        };
        (hook, rx)
    }

    /// Messages dropped because the channel was full (or closed).
    pub fn n_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Hook for ChannelHook {
    fn accepted(&mut self, message: &AcceptedMessage) {
        if self.tx.try_send(message.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
