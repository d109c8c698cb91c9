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

    /// [`Hook::accepted`] for the last hook, which gets the message itself
    /// and may keep it without a copy.
    fn accepted_owned(&mut self, message: AcceptedMessage) {
        self.accepted(&message);
    }

    /// Called once the registry has handled a burst of commands: a hook
    /// that gathers messages hands them on now. Never blocks.
    fn flush(&mut self) {}
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

/// Hands accepted messages to the store, once per burst of commands: one
/// request (and one wake-up of the store thread) for all of them. A message
/// the store cannot queue is counted in its stats; it was still relayed.
#[derive(Debug)]
pub struct StoreHook {
    store: StoreHandle,
    gathered: Vec<StoredMessage>,
}

impl StoreHook {
    /// A hook feeding `store`.
    pub fn new(store: StoreHandle) -> StoreHook {
        StoreHook {
            store,
            gathered: Vec::new(),
        }
    }
}

impl Hook for StoreHook {
    fn accepted(&mut self, message: &AcceptedMessage) {
        self.gathered.push(message.clone());
    }

    fn accepted_owned(&mut self, message: AcceptedMessage) {
        self.gathered.push(message);
    }

    fn flush(&mut self) {
        if !self.gathered.is_empty() {
            let _ = self.store.append_all(std::mem::take(&mut self.gathered));
        }
    }
}
