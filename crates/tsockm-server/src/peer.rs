//! A registered peer as the registry holds it: online on a connection, or
//! away with the frames kept for its resume.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tsockm_proto::Text;

use crate::outbox::Outbox;
use crate::registry::ConnId;

/// A registered peer.
#[derive(Debug)]
pub struct Peer {
    /// The peer id (sqids).
    pub id: Text,
    /// The username it registered with.
    pub username: Text,
    /// The current resume token; only this peer's client knows it.
    pub token: String,
    /// The last known client address, as written on the wire.
    pub addr: Text,
    /// When it registered (wall clock, for `:list`).
    pub since: SystemTime,
    /// Where its frames go now.
    pub link: Link,
}

/// Where a peer's frames go.
#[derive(Debug)]
pub enum Link {
    /// Connected: frames go to the connection's outbox.
    Online {
        /// The connection.
        conn: ConnId,
        /// That connection's outbox.
        outbox: Arc<Outbox>,
    },
    /// Connection lost: frames are kept until it resumes or is removed.
    Away {
        /// Frames addressed to it since, oldest first, at most the kept bound.
        kept: VecDeque<Bytes>,
        /// Tells this absence's removal timer from an older one's.
        generation: u64,
    },
}

/// What happened to frames handed to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for its connection: how many.
    Queued(u64),
    /// Kept for its resume; `dropped` older kept frames made room.
    Kept {
        /// How many kept frames were dropped.
        dropped: u64,
    },
    /// Its send queue filled up: it must be cut off, and these frames (the
    /// ones that did not fit) kept for it.
    Overflow(Vec<Bytes>),
}

impl Peer {
    /// Whether the peer is online.
    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online { .. })
    }

    /// Hands frames to the peer, in order, without ever waiting.
    pub fn deliver_all<'a>(
        &mut self,
        frames: impl Iterator<Item = &'a Bytes>,
        kept_frames: usize,
    ) -> Delivery {
        match &mut self.link {
            Link::Online { outbox, .. } => match outbox.push_all(frames) {
                Ok(n) => Delivery::Queued(n as u64),
                Err(undelivered) => Delivery::Overflow(undelivered),
            },
            Link::Away { kept, .. } => {
                let mut dropped = 0;
                for frame in frames {
                    dropped += keep(kept, frame.clone(), kept_frames);
                }
                Delivery::Kept { dropped }
            }
        }
    }
}

/// Appends `frame` to `kept`, dropping the oldest past `bound`; returns how
/// many were dropped.
pub fn keep(kept: &mut VecDeque<Bytes>, frame: Bytes, bound: usize) -> u64 {
    kept.push_back(frame);
    trim(kept, bound)
}

/// Drops the oldest frames past `bound`; returns how many.
pub fn trim(kept: &mut VecDeque<Bytes>, bound: usize) -> u64 {
    let excess = kept.len().saturating_sub(bound);
    kept.drain(..excess);
    excess as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_drops_the_oldest_past_the_bound() {
        let mut kept = VecDeque::new();
        for i in 0..5u8 {
            let dropped = keep(&mut kept, Bytes::from(vec![i]), 3);
            assert_eq!(dropped, u64::from(i >= 3));
        }
        assert_eq!(kept, [vec![2u8], vec![3], vec![4]]);
        assert_eq!(trim(&mut kept, 1), 2);
        assert_eq!(kept, [vec![4u8]]);
    }
}
