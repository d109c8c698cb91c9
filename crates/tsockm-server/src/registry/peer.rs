//! A registered peer as the registry holds it: who it is ([`PeerInfo`]) and
//! where its frames go ([`Link`]): to a connection, or kept for a resume.
//!
//! Only [`Fanout`](super::fanout::Fanout) changes a peer's link, so that
//! staged broadcasts are always pushed before a peer's destination changes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tsockm_proto::Text;

use super::ConnId;
use crate::identity::TokenHash;
use crate::outbox::Outbox;
use crate::room::RoomName;

/// Everything about a registered peer except where its frames go.
#[derive(Debug)]
pub(crate) struct PeerInfo {
    /// The peer id (sqids).
    pub id: Text,
    /// The username it registered with.
    pub username: Text,
    /// A hash of the current resume token; the token itself is known only
    /// to this peer's client.
    pub token_hash: TokenHash,
    /// The last known client address, as written on the wire.
    pub addr: Text,
    /// When it registered (wall clock, for `:list`).
    pub since: SystemTime,
    /// The rooms it is a member of, in the order it joined them.
    pub rooms: Vec<RoomName>,
}

/// A registered peer.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Who it is.
    pub info: PeerInfo,
    /// Where its frames go now (changed only by the fan-out).
    pub(super) link: Link,
}

/// Where a peer's frames go.
#[derive(Debug)]
pub(crate) enum Link {
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
        /// The last messages written to its last connection, oldest first.
        written: VecDeque<Bytes>,
        /// Tells this absence's removal timer from an older one's.
        generation: u64,
    },
}

/// What happened to frames handed to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued for its connection: how many.
    Queued(u64),
    /// Kept for its resume; `dropped` older kept frames made room.
    Kept {
        /// How many kept frames were dropped.
        dropped: u64,
    },
    /// Its send queue is full: it must be cut off, and these frames (the
    /// ones that did not fit) kept for it.
    Overflow(Vec<Bytes>),
}

impl Peer {
    /// Whether the peer is online.
    pub fn is_online(&self) -> bool {
        matches!(self.link, Link::Online { .. })
    }

    /// Where its frames go.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The connection it is online on, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match &self.link {
            Link::Online { conn, .. } => Some(*conn),
            Link::Away { .. } => None,
        }
    }

    /// Hands frames to the peer, in order, without ever waiting.
    pub(super) fn deliver_all<'a>(
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
pub(crate) fn keep(kept: &mut VecDeque<Bytes>, frame: Bytes, bound: usize) -> u64 {
    kept.push_back(frame);
    trim(kept, bound)
}

/// Drops the oldest frames past `bound`; returns how many.
pub(crate) fn trim(kept: &mut VecDeque<Bytes>, bound: usize) -> u64 {
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
