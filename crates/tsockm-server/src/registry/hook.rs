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

use crate::store::{StoreHandle, StoredMessage};

/// A message the registry accepted, as the store keeps it.
pub type AcceptedMessage = StoredMessage;

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

/// The store takes every accepted message, when its queue has room (a
/// message it drops is counted in its stats; it was still relayed).
impl Hook for StoreHandle {
    fn accepted(&mut self, message: &AcceptedMessage) {
        let _ = self.append(message.clone());
    }
}
