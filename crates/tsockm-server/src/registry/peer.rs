//! A registered peer as the registry holds it: who it is ([`PeerInfo`]) and
//! where its frames go ([`Link`]): to a connection, or kept for a resume.
//!
//! Only [`Fanout`](super::fanout::Fanout) changes a peer's link, so that
//! staged broadcasts are always pushed before a peer's destination changes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tsockm_proto::Text;

use super::ConnId;
use crate::identity::TokenHash;
use crate::outbox::{Backlog, Outbox};
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
    /// When it registered, in Unix milliseconds (wall clock, for `:list`).
    pub since_ms: i64,
    /// The rooms it is a member of, in the order it joined them.
    pub rooms: Vec<RoomName>,
}

/// A registered peer.
///
/// What every broadcast reads (where frames go, and since when) is in the
/// fan-out's slab itself; who the peer is sits in a box of its own, so a
/// slot is small, and the slab's spare capacity costs little per peer.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Who it is.
    pub info: Box<PeerInfo>,
    /// Where its frames go now (changed only by the fan-out).
    pub(super) link: Link,
    /// In a cluster, the place in the cluster's order after which events
    /// are for it (before, they are not: it had not joined yet, or its
    /// session was on another node); `u64::MAX` until its own registration
    /// comes back. 0 on a single server: everything is for it.
    pub(super) since_seq: u64,
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
    /// Boxed: most peers are online, and every peer's slot in the fan-out
    /// is as large as the largest variant.
    Away(Box<Away>),
}

/// What the registry holds for a peer whose connection is lost.
#[derive(Debug)]
pub(crate) struct Away {
    /// Frames addressed to it since, oldest first, within the kept bounds.
    pub kept: Kept,
    /// The last messages written to its last connection, oldest first.
    pub written: VecDeque<Bytes>,
    /// That connection's outbox if it is still being written out (the peer
    /// stopped sending but may be reading): on a resume, what it wrote since
    /// is remembered too, and what it has not written yet follows the peer.
    pub draining: Option<Arc<Outbox>>,
    /// Tells this absence's removal timer from an older one's.
    pub generation: u64,
}

impl Link {
    /// A lost connection's link.
    pub fn away(
        kept: Kept,
        written: VecDeque<Bytes>,
        draining: Option<Arc<Outbox>>,
        generation: u64,
    ) -> Link {
        Link::Away(Box::new(Away {
            kept,
            written,
            draining,
            generation,
        }))
    }
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
            Link::Away(_) => None,
        }
    }

    /// The bytes waiting for it: queued for its connection, or kept.
    pub fn held_bytes(&self) -> usize {
        match &self.link {
            Link::Online { outbox, .. } => outbox.queued_bytes(),
            Link::Away(away) => away.kept.bytes(),
        }
    }

    /// Hands frames to the peer, in order, without ever waiting.
    pub(super) fn deliver_all<'a>(&mut self, frames: impl Iterator<Item = &'a Bytes>) -> Delivery {
        match &mut self.link {
            Link::Online { outbox, .. } => match outbox.push_all(frames) {
                Ok(n) => Delivery::Queued(n as u64),
                Err(undelivered) => Delivery::Overflow(undelivered),
            },
            Link::Away(away) => {
                let mut dropped = 0;
                for frame in frames {
                    dropped += away.kept.push(frame.clone());
                }
                Delivery::Kept { dropped }
            }
        }
    }
}

/// How much is kept for one away peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeptBounds {
    /// Most frames.
    pub frames: usize,
    /// Most bytes.
    pub bytes: usize,
}

/// The frames kept for an away peer, oldest first, within its bounds; the
/// bytes are counted in the server's backlog for as long as they are kept.
#[derive(Debug)]
pub(crate) struct Kept {
    frames: VecDeque<Bytes>,
    bytes: usize,
    bounds: KeptBounds,
    backlog: Arc<Backlog>,
}

impl Kept {
    /// Keeps `frames` (the oldest dropped past the bounds).
    pub fn new(
        frames: impl IntoIterator<Item = Bytes>,
        bounds: KeptBounds,
        backlog: Arc<Backlog>,
    ) -> (Kept, u64) {
        let mut kept = Kept {
            frames: VecDeque::new(),
            bytes: 0,
            bounds,
            backlog,
        };
        let dropped = frames.into_iter().map(|frame| kept.push(frame)).sum();
        (kept, dropped)
    }

    /// Appends a frame, dropping the oldest past the bounds; returns how
    /// many were dropped.
    pub fn push(&mut self, frame: Bytes) -> u64 {
        self.bytes += frame.len();
        self.backlog.add_kept(frame.len());
        self.frames.push_back(frame);
        let mut dropped = 0;
        while self.frames.len() > self.bounds.frames || self.bytes > self.bounds.bytes {
            if self.drop_oldest().is_none() {
                break;
            }
            dropped += 1;
        }
        dropped
    }

    /// Drops the oldest frame; gives its size.
    pub fn drop_oldest(&mut self) -> Option<usize> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        self.backlog.sub_kept(frame.len());
        Some(frame.len())
    }

    /// How many frames are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// How many bytes are kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Copies of the kept frames, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.frames.iter()
    }

    /// Takes every kept frame out, oldest first.
    pub fn take(&mut self) -> VecDeque<Bytes> {
        self.backlog.sub_kept(self.bytes);
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.backlog.sub_kept(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn kept_frames_are_bounded_in_frames_and_bytes_and_counted() {
        let backlog = Arc::new(Backlog::default());
        let bounds = KeptBounds {
            frames: 3,
            bytes: 10,
        };
        let (mut kept, dropped) = Kept::new([frame(1), frame(2)], bounds, backlog.clone());
        assert_eq!((dropped, kept.len(), kept.bytes()), (0, 2, 3));
        assert_eq!(kept.push(frame(3)), 0);
        // A fourth frame: over the frame bound, the oldest goes.
        assert_eq!(kept.push(frame(4)), 1);
        assert_eq!((kept.len(), kept.bytes()), (3, 9));
        // Over the byte bound: as many of the oldest as it takes.
        assert_eq!(kept.push(frame(8)), 3);
        assert_eq!((kept.len(), kept.bytes()), (1, 8));
        assert_eq!(backlog.bytes(), 8);
        let taken = kept.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(backlog.bytes(), 0);
        kept.push(frame(5));
        drop(kept);
        assert_eq!(backlog.bytes(), 0);
    }
}
