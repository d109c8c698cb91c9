//! Congestion: when the writers as a whole are behind, the registry stops
//! taking frames until they drain; past the global byte budget, the peers
//! holding the most lose what they hold.

use tokio::time::Instant;

use super::fanout::PeerKey;
use super::{Registry, STALL_SCAN_EVERY, STALLED_AFTER};
use crate::stats::Stats;

/// The last look at which writers are stalled.
#[derive(Debug, Clone, Copy)]
pub(super) struct StallScan {
    /// When it was made.
    pub at: Instant,
    /// Frames waiting in the outboxes of writers that were not stalled.
    pub active: usize,
}

impl Registry {
    /// Whether the writers as a whole are behind: the frames waiting in the
    /// outboxes of writers that make progress average more than 1/64 of a
    /// send queue (64 frames by default), on top of half a queue. (With
    /// a whole queue on top, one reader slower than a flood on a server of
    /// few peers could fill its queue and be cut off before the pause.)
    ///
    /// A writer that has made no progress for [`STALLED_AFTER`] (its peer
    /// stopped reading) does not count: stalled peers cannot pause intake
    /// for everyone; the send-queue bounds cut them off instead. Which
    /// writers are stalled is looked at only when the total is over the
    /// limit, and then at most every [`STALL_SCAN_EVERY`].
    pub(super) fn congested(&mut self) -> bool {
        let send_queue = self.limits.send_queue_frames;
        let limit = self
            .conns
            .len()
            .saturating_mul(send_queue / 64)
            .saturating_add(send_queue / 2);
        if self.backlog.frames() <= limit {
            return false;
        }
        let now = Instant::now();
        if now >= self.stall_scan.at + STALL_SCAN_EVERY {
            let active: usize = self
                .conns
                .values()
                .filter(|conn| !conn.outbox.stalled(STALLED_AFTER))
                .map(|conn| conn.outbox.len())
                .sum();
            self.stall_scan = StallScan { at: now, active };
        }
        self.stall_scan.active > limit
    }

    /// Past the global byte budget, the peers holding the most lose what
    /// they hold until the total is back under 7/8 of it: an online one is
    /// cut off (its queue is kept, within the kept bounds), an away one
    /// loses its oldest kept frames. A peer that reads what it is sent
    /// holds next to nothing and is the last to be touched.
    pub(super) fn enforce_budget(&mut self) {
        let budget = self.limits.max_queued_bytes;
        if self.backlog.bytes() <= budget {
            return;
        }
        let target = budget - budget / 8;
        let mut holders: Vec<(usize, PeerKey)> = self
            .fanout
            .iter()
            .map(|(key, peer)| (peer.held_bytes(), key))
            .filter(|(held, _)| *held > 0)
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        tracing::warn!(
            queued_bytes = self.backlog.bytes(),
            budget,
            "over the byte budget: the peers holding the most lose it"
        );
        for (_, key) in holders {
            if self.backlog.bytes() <= target {
                break;
            }
            if let Some(conn) = self.fanout.get(key).and_then(|peer| peer.conn()) {
                Stats::add(&self.stats.peers_over_budget, 1);
                self.cut_off(conn, Vec::new());
                self.settle();
            }
            while self.backlog.bytes() > target && self.fanout.drop_oldest_kept(key).is_some() {}
        }
    }
}
