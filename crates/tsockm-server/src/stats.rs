//! Counters for `:info`, shared by the registry and the connections.
//!
//! Plain relaxed atomics: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

/// Server-wide traffic counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames decoded from clients (good or bad).
    pub frames_in: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Frames dropped: kept frames over the bound for away peers.
    pub frames_dropped: AtomicU64,
    /// Frames refused with 429.
    pub frames_rate_limited: AtomicU64,
    /// Peers cut off because their send queue was full.
    pub peers_cut_off: AtomicU64,
    /// Peers cut off (or trimmed) because the server held too many bytes.
    pub peers_over_budget: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
