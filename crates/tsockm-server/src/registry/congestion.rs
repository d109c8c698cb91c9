//! Congestion: how much the registry takes in between two yields (a
//! burst); when the writers as a whole are behind, it stops taking frames
//! until they drain; past the global byte budget, the peers holding the
//! most lose what they hold.

use tokio::time::Instant;

use super::fanout::{BurstLoad, PeerKey};
use super::{BURST_BYTES, BURST_PUSHES, COMMAND_BURST, Registry, STALL_SCAN_EVERY, STALLED_AFTER};
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
    /// How many commands a burst may take at most: [`COMMAND_BURST`], and
    /// half a send queue, at least one.
    pub(super) fn burst_commands(&self) -> usize {
        burst_commands(self.limits.send_queue_frames)
    }

    /// Whether this burst has handed out enough to end before its command
    /// count (many peers, large frames): its pushes reach [`BURST_PUSHES`]
    /// or [`BURST_BYTES`], or its frames reach half a send queue's bytes
    /// (what one recipient may have been given). Checked between commands,
    /// so one command's frames may go past it.
    pub(super) fn burst_full(&self) -> bool {
        burst_full(self.fanout.burst_load(), self.limits.send_queue_bytes)
    }

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

/// [`Registry::burst_commands`] with send queues of `send_queue_frames`.
fn burst_commands(send_queue_frames: usize) -> usize {
    COMMAND_BURST.min(send_queue_frames / 2).max(1)
}

/// [`Registry::burst_full`] with `load` handed out so far and send queues
/// of `send_queue_bytes`.
fn burst_full(load: BurstLoad, send_queue_bytes: usize) -> bool {
    load.pushes >= BURST_PUSHES
        || load.push_bytes >= BURST_BYTES
        || load.frame_bytes >= send_queue_bytes / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_SEND_QUEUE_BYTES, DEFAULT_SEND_QUEUE_FRAMES};

    /// `n` frames of `len` bytes, each for `peers` peers.
    fn sent(n: usize, len: usize, peers: usize) -> BurstLoad {
        BurstLoad {
            pushes: n * peers,
            push_bytes: n * len * peers,
            frame_bytes: n * len,
        }
    }

    #[test]
    fn a_burst_takes_at_most_its_commands_and_half_a_queue() {
        assert_eq!(burst_commands(DEFAULT_SEND_QUEUE_FRAMES), COMMAND_BURST);
        assert_eq!(burst_commands(16), 8);
        assert_eq!(burst_commands(1), 1);
    }

    #[test]
    fn a_burst_for_many_peers_ends_at_its_pushes() {
        let queue = DEFAULT_SEND_QUEUE_BYTES;
        // 500 peers: the command count binds first.
        assert!(!burst_full(sent(COMMAND_BURST, 100, 500), queue));
        // 1,000 peers: 65 broadcasts, not 66; 10,000 peers: 6, not 7.
        assert!(!burst_full(sent(65, 100, 1_000), queue));
        assert!(burst_full(sent(66, 100, 1_000), queue));
        assert!(!burst_full(sent(6, 100, 10_000), queue));
        assert!(burst_full(sent(7, 100, 10_000), queue));
        // Room messages to 10 members each do not end it early.
        assert!(!burst_full(sent(COMMAND_BURST, 100, 10), queue));
    }

    #[test]
    fn a_burst_of_large_frames_ends_at_its_byte_bounds() {
        let queue = DEFAULT_SEND_QUEUE_BYTES;
        let max_frame = tsockm_proto::DEFAULT_MAX_FRAME_BYTES;
        // 500 peers: 16 broadcasts of the default largest frame fit in
        // 128 MiB of pushes, 17 do not.
        assert!(!burst_full(sent(16, max_frame, 500), queue));
        assert!(burst_full(sent(17, max_frame, 500), queue));
        // Frames of 100 bytes: the command count binds first.
        assert!(!burst_full(sent(COMMAND_BURST, 100, 500), queue));
        // A small send queue in bytes ends the burst at half of it, even
        // for one recipient.
        let small = 64 * 1024;
        assert!(!burst_full(sent(1, small / 2 - 1, 1), small));
        assert!(burst_full(sent(1, small / 2, 1), small));
    }
}
