//! [`Fanout`]: the registered peers and the frames on their way to them.
//!
//! It owns the peer list and the broadcasts staged for it. A broadcast is
//! encoded once and *staged*; staged broadcasts are pushed together once per
//! burst of commands, each recipient's outbox locked once for all of them.
//! The ordering rule — every staged broadcast reaches the peers registered
//! when it was accepted, before anything that comes later — is held here:
//! inserting, removing or relinking a peer, and every delivery that is not
//! a broadcast, pushes the staged ones first. No caller has to remember.
//!
//! A delivery to one peer or to a room's members costs work for those
//! recipients only, never for every peer on the server.
//!
//! Pushing never waits: a peer whose send queue is full is *clogged* (its
//! outbox refuses every later frame too, so none overtakes another), and the
//! registry cuts it off once the command is handled
//! ([`Fanout::take_clogged`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use slab::Slab;
use tsockm_proto::Text;

use super::ConnId;
use super::peer::{Delivery, Kept, KeptBounds, Link, Peer, PeerInfo};
use crate::outbox::Backlog;
use crate::stats::Stats;

/// A peer's place in the fan-out; stable while the peer is registered.
pub(crate) type PeerKey = usize;

/// Who receives a frame.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Audience<'a> {
    /// Every registered peer but `except` (a broadcast skips its author).
    Everyone {
        /// The peer to skip, if any.
        except: Option<PeerKey>,
    },
    /// One peer.
    One(PeerKey),
    /// Some peers (a room's members) but `except`.
    Some {
        /// The recipients.
        members: &'a [PeerKey],
        /// The one to skip, if any.
        except: Option<PeerKey>,
    },
}

/// What the fan-out handed out during one burst of the registry's commands,
/// for the burst's bounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BurstLoad {
    /// Pushes: each frame once per peer of its audience.
    pub pushes: usize,
    /// Bytes of pushes: each frame's length times its audience.
    pub push_bytes: usize,
    /// Bytes of the frames, each counted once: the most any one recipient
    /// can have been given.
    pub frame_bytes: usize,
}

impl BurstLoad {
    /// Counts a frame of `len` bytes for `recipients` peers.
    fn add(&mut self, len: usize, recipients: usize) {
        self.add_pushes(len, recipients);
        self.frame_bytes = self.frame_bytes.saturating_add(len);
    }

    /// Counts the pushes of a frame of `len` bytes to `recipients` peers,
    /// not the frame itself (a push past the send queue's bound).
    fn add_pushes(&mut self, len: usize, recipients: usize) {
        self.pushes = self.pushes.saturating_add(recipients);
        self.push_bytes = self
            .push_bytes
            .saturating_add(len.saturating_mul(recipients));
    }
}

/// The registered peers and the frames staged for them.
#[derive(Debug)]
pub(crate) struct Fanout {
    peers: Slab<Peer>,
    by_id: HashMap<Text, PeerKey>,
    /// Broadcasts handled but not yet pushed, with the peer to skip and
    /// their place in a cluster's order (`u64::MAX` on a single server).
    staged: Vec<(Option<PeerKey>, u64, Bytes)>,
    /// What was handed out since the registry's burst began.
    burst: BurstLoad,
    /// What is kept for an away peer at most.
    kept_bounds: KeptBounds,
    stats: Arc<Stats>,
    backlog: Arc<Backlog>,
    /// Connections whose send queue filled up, with the frames that did not
    /// fit, in order; the registry cuts them off.
    clogged: Vec<(ConnId, Vec<Bytes>)>,
}

impl Fanout {
    /// An empty fan-out keeping at most `kept_bounds` for an away peer,
    /// counting kept bytes in `backlog`.
    pub fn new(kept_bounds: KeptBounds, stats: Arc<Stats>, backlog: Arc<Backlog>) -> Self {
        Fanout {
            peers: Slab::new(),
            by_id: HashMap::new(),
            staged: Vec::new(),
            burst: BurstLoad::default(),
            kept_bounds,
            stats,
            backlog,
            clogged: Vec::new(),
        }
    }

    /// How many peers are registered (online and away).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peer at `key`.
    pub fn get(&self, key: PeerKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// The peer at `key`, to change who it is (never where its frames go).
    pub fn info_mut(&mut self, key: PeerKey) -> Option<&mut PeerInfo> {
        self.peers.get_mut(key).map(|peer| &mut *peer.info)
    }

    /// From now on, the peer at `key` gets the events after `seq`, the
    /// broadcasts staged now included (they are judged when flushed).
    pub fn set_since_seq(&mut self, key: PeerKey, seq: u64) {
        if let Some(peer) = self.peers.get_mut(key) {
            peer.since_seq = seq;
        }
    }

    /// The key of the peer with this id.
    pub fn key_of(&self, id: &str) -> Option<PeerKey> {
        self.by_id.get(id).copied()
    }

    /// The peer with this id, and its key.
    pub fn find(&self, id: &str) -> Option<(PeerKey, &Peer)> {
        let key = self.key_of(id)?;
        Some((key, self.peers.get(key)?))
    }

    /// Every peer with its key.
    pub fn iter(&self) -> impl Iterator<Item = (PeerKey, &Peer)> {
        self.peers.iter()
    }

    /// Frames to keep for an away peer, within the bounds; the oldest are
    /// dropped (and counted) past them.
    pub fn keep(&self, frames: impl IntoIterator<Item = Bytes>) -> Kept {
        let (kept, dropped) = Kept::new(frames, self.kept_bounds, self.backlog.clone());
        Stats::add(&self.stats.frames_dropped, dropped);
        kept
    }

    /// Drops the oldest frame kept for the away peer at `key`; gives its
    /// size, or `None` if there is none (or the peer is online).
    pub fn drop_oldest_kept(&mut self, key: PeerKey) -> Option<usize> {
        match &mut self.peers.get_mut(key)?.link {
            Link::Away(away) => {
                let size = away.kept.drop_oldest()?;
                Stats::add(&self.stats.frames_dropped, 1);
                Some(size)
            }
            Link::Online { .. } => None,
        }
    }

    /// Registers a peer, to get the events after `since_seq` (see
    /// [`Peer::since_seq`]).
    pub fn insert(&mut self, info: PeerInfo, link: Link, since_seq: u64) -> PeerKey {
        self.flush();
        let id = info.id.clone();
        let key = self.peers.insert(Peer {
            info: Box::new(info),
            link,
            since_seq,
        });
        self.by_id.insert(id, key);
        key
    }

    /// Removes a peer.
    pub fn remove(&mut self, key: PeerKey) -> Option<Peer> {
        self.flush();
        let peer = self.peers.try_remove(key)?;
        self.by_id.remove(&peer.info.id);
        Some(peer)
    }

    /// Removes every peer (shutdown).
    pub fn clear(&mut self) -> Vec<Peer> {
        self.flush();
        self.by_id.clear();
        self.peers.drain().collect()
    }

    /// Changes where a peer's frames go; returns where they went before.
    pub fn relink(&mut self, key: PeerKey, link: Link) -> Option<Link> {
        self.flush();
        let peer = self.peers.get_mut(key)?;
        Some(std::mem::replace(&mut peer.link, link))
    }

    /// Hands `frame` to `audience`. A broadcast is staged; anything else
    /// is pushed now, after the staged broadcasts.
    pub fn deliver(&mut self, audience: Audience<'_>, frame: &Bytes) {
        self.deliver_at(audience, frame, u64::MAX);
    }

    /// [`Fanout::deliver`] for an event at `seq` in a cluster's order: only
    /// peers whose `since_seq` is before it get it.
    pub fn deliver_at(&mut self, audience: Audience<'_>, frame: &Bytes, seq: u64) {
        match audience {
            Audience::Everyone { except } => {
                self.burst.add(frame.len(), self.peers.len());
                self.staged.push((except, seq, frame.clone()));
            }
            Audience::One(key) => {
                self.burst.add(frame.len(), 1);
                self.flush();
                self.push(key, seq, std::iter::once(frame));
            }
            Audience::Some { members, except } => {
                self.burst.add(frame.len(), members.len());
                self.flush();
                for &key in members {
                    if Some(key) != except {
                        self.push(key, seq, std::iter::once(frame));
                    }
                }
            }
        }
    }

    /// Queues frames for one online peer past its send-queue bound (the
    /// roster a newcomer gets, the frames replayed on a resume: bounded by
    /// the peer count and by the queue they replace), after the staged
    /// broadcasts. Returns how many were queued (none if it is away).
    pub fn deliver_unbounded(
        &mut self,
        key: PeerKey,
        frames: impl IntoIterator<Item = Bytes>,
    ) -> u64 {
        self.flush();
        let Some(Peer {
            link: Link::Online { outbox, .. },
            ..
        }) = self.peers.get(key)
        else {
            return 0;
        };
        let mut n = 0;
        for frame in frames {
            // Past the queue's bound on purpose: only the pushes count.
            self.burst.add_pushes(frame.len(), 1);
            outbox.push_unbounded(frame);
            n += 1;
        }
        Stats::add(&self.stats.frames_out, n);
        n
    }

    /// Whether a peer is online and keeps up with its queue (see
    /// [`crate::outbox::Outbox::keeps_up`]).
    pub fn keeps_up(&self, key: PeerKey) -> bool {
        matches!(
            self.peers.get(key),
            Some(Peer {
                link: Link::Online { outbox, .. },
                ..
            }) if outbox.keeps_up()
        )
    }

    /// Starts counting a new burst's load.
    pub fn begin_burst(&mut self) {
        self.burst = BurstLoad::default();
    }

    /// What was handed out since [`Fanout::begin_burst`], staged broadcasts
    /// included.
    pub fn burst_load(&self) -> BurstLoad {
        self.burst
    }

    /// Pushes the staged broadcasts: per recipient, one lock for all of them.
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let mut staged = std::mem::take(&mut self.staged);
        let mut n_queued = 0;
        let mut n_dropped = 0;
        for (key, peer) in &mut self.peers {
            let since = peer.since_seq;
            let frames = staged
                .iter()
                .filter(|(skip, seq, _)| *skip != Some(key) && since < *seq)
                .map(|(_, _, bytes)| bytes);
            match peer.deliver_all(frames) {
                Delivery::Queued(n) => n_queued += n,
                Delivery::Kept { dropped } => n_dropped += dropped,
                Delivery::Overflow(undelivered) => {
                    if let Some(conn) = peer.conn() {
                        clog(&mut self.clogged, conn, undelivered);
                    }
                }
            }
        }
        Stats::add(&self.stats.frames_out, n_queued);
        Stats::add(&self.stats.frames_dropped, n_dropped);
        // Keep the allocation for the next burst.
        staged.clear();
        self.staged = staged;
    }

    /// The connections that filled up since the last call, with the frames
    /// that did not fit, in order.
    pub fn take_clogged(&mut self) -> Vec<(ConnId, Vec<Bytes>)> {
        std::mem::take(&mut self.clogged)
    }

    /// Records frames a full queue refused outside the fan-out (an answer to
    /// the connection itself), after any refused before.
    pub fn clog(&mut self, conn: ConnId, frames: Vec<Bytes>) {
        clog(&mut self.clogged, conn, frames);
    }

    /// Takes back the frames refused to one connection (it is ending: they
    /// follow what its outbox still holds).
    pub fn unclog(&mut self, conn: ConnId) -> Vec<Bytes> {
        match self.clogged.iter().position(|(c, _)| *c == conn) {
            Some(i) => self.clogged.swap_remove(i).1,
            None => Vec::new(),
        }
    }

    fn push<'a>(&mut self, key: PeerKey, seq: u64, frames: impl Iterator<Item = &'a Bytes>) {
        let Some(peer) = self.peers.get_mut(key).filter(|p| p.since_seq < seq) else {
            return;
        };
        match peer.deliver_all(frames) {
            Delivery::Queued(n) => Stats::add(&self.stats.frames_out, n),
            Delivery::Kept { dropped } => Stats::add(&self.stats.frames_dropped, dropped),
            Delivery::Overflow(undelivered) => {
                if let Some(conn) = peer.conn() {
                    clog(&mut self.clogged, conn, undelivered);
                }
            }
        }
    }
}

/// Records frames refused by a full queue, after any refused before.
fn clog(clogged: &mut Vec<(ConnId, Vec<Bytes>)>, conn: ConnId, frames: Vec<Bytes>) {
    match clogged.iter_mut().find(|(c, _)| *c == conn) {
        Some((_, earlier)) => earlier.extend(frames),
        None => clogged.push((conn, frames)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use crate::identity::hash_token;
    use crate::outbox::Outbox;

    fn info(id: &str) -> PeerInfo {
        PeerInfo {
            id: Text::from(id),
            username: Text::from(id),
            token_hash: hash_token("t"),
            addr: Text::from("127.0.0.1:1"),
            since_ms: 0,
            rooms: Vec::new(),
        }
    }

    fn online(conn: ConnId, capacity: usize) -> (Link, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(capacity));
        (
            Link::Online {
                conn,
                outbox: outbox.clone(),
            },
            outbox,
        )
    }

    fn bounds(frames: usize) -> KeptBounds {
        KeptBounds {
            frames,
            bytes: 1 << 20,
        }
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn staged_broadcasts_reach_those_registered_when_they_were_accepted() {
        let mut fanout = Fanout::new(bounds(8), Arc::default(), Arc::default());
        let (link, a_out) = online(1, 8);
        let a = fanout.insert(info("a"), link, 0);
        fanout.deliver(Audience::Everyone { except: Some(a) }, &b("from a"));
        fanout.deliver(Audience::Everyone { except: None }, &b("to all"));
        // A newcomer registered after the broadcasts does not get them.
        let (link, c_out) = online(2, 8);
        fanout.insert(info("c"), link, 0);
        fanout.flush();
        assert_eq!(a_out.take_pending(), [b("to all")]);
        assert!(c_out.take_pending().is_empty());
    }

    #[test]
    fn a_burst_counts_every_delivery_across_flushes() {
        let mut fanout = Fanout::new(bounds(8), Arc::default(), Arc::default());
        let (link, a_out) = online(1, 8);
        let a = fanout.insert(info("a"), link, 0);
        let (link, _c_out) = online(2, 8);
        let c = fanout.insert(info("c"), link, 0);
        let load = |pushes, push_bytes, frame_bytes| BurstLoad {
            pushes,
            push_bytes,
            frame_bytes,
        };
        fanout.begin_burst();
        assert_eq!(fanout.burst_load(), load(0, 0, 0));
        // A broadcast counts for every peer, staged or not.
        fanout.deliver(Audience::Everyone { except: None }, &b("12345"));
        assert_eq!(fanout.burst_load(), load(2, 10, 5));
        // A frame for one peer flushes the staged ones; nothing is forgotten.
        fanout.deliver(Audience::One(a), &b("direct"));
        assert_eq!(fanout.burst_load(), load(3, 16, 11));
        assert_eq!(a_out.take_pending(), [b("12345"), b("direct")]);
        let members = [a, c];
        let room = Audience::Some {
            members: &members,
            except: Some(a),
        };
        fanout.deliver(room, &b("xy"));
        assert_eq!(fanout.burst_load(), load(5, 20, 13));
        // The roster and replays count as pushes only.
        fanout.deliver_unbounded(a, [b("abc")]);
        assert_eq!(fanout.burst_load(), load(6, 23, 13));
        fanout.begin_burst();
        assert_eq!(fanout.burst_load(), load(0, 0, 0));
    }

    #[test]
    fn a_direct_frame_follows_the_staged_broadcasts() {
        let mut fanout = Fanout::new(bounds(8), Arc::default(), Arc::default());
        let (link, a_out) = online(1, 8);
        let a = fanout.insert(info("a"), link, 0);
        fanout.deliver(Audience::Everyone { except: None }, &b("1"));
        fanout.deliver(Audience::One(a), &b("2"));
        fanout.deliver(
            Audience::Some {
                members: &[a],
                except: None,
            },
            &b("3"),
        );
        fanout.deliver(
            Audience::Some {
                members: &[a],
                except: Some(a),
            },
            &b("not me"),
        );
        fanout.flush();
        assert_eq!(a_out.take_pending(), [b("1"), b("2"), b("3")]);
    }

    #[test]
    fn an_away_peer_keeps_frames_and_a_relink_flushes_first() {
        let mut fanout = Fanout::new(bounds(2), Arc::default(), Arc::default());
        let (link, _) = online(1, 8);
        let a = fanout.insert(info("a"), link, 0);
        fanout.deliver(Audience::Everyone { except: None }, &b("before"));
        let before = fanout.relink(
            a,
            Link::away(
                Kept::new([], bounds(2), Arc::default()).0,
                VecDeque::new(),
                None,
                1,
            ),
        );
        // The staged broadcast went to the old link, not the new one.
        let Some(Link::Online { outbox, .. }) = before else {
            panic!("was online");
        };
        assert_eq!(outbox.take_pending(), [b("before")]);
        for frame in ["1", "2", "3"] {
            fanout.deliver(Audience::One(a), &b(frame));
        }
        let Some(Link::Away(away)) = fanout.get(a).map(Peer::link) else {
            panic!("away");
        };
        let kept: Vec<&Bytes> = away.kept.iter().collect();
        assert_eq!(kept, [&b("2"), &b("3")]);
    }

    #[test]
    fn a_full_queue_clogs_and_keeps_what_did_not_fit_in_order() {
        let mut fanout = Fanout::new(bounds(8), Arc::default(), Arc::default());
        let (link, a_out) = online(7, 1);
        let a = fanout.insert(info("a"), link, 0);
        fanout.deliver(Audience::One(a), &b("1"));
        fanout.deliver(Audience::One(a), &b("2"));
        fanout.deliver(Audience::Everyone { except: None }, &b("3"));
        fanout.flush();
        assert_eq!(fanout.take_clogged(), [(7, vec![b("2"), b("3")])]);
        assert_eq!(a_out.take_pending(), [b("1")]);
        assert!(fanout.take_clogged().is_empty());
    }

    #[test]
    fn lookups_by_id_and_removal() {
        let mut fanout = Fanout::new(bounds(8), Arc::default(), Arc::default());
        let (link, _) = online(1, 8);
        let a = fanout.insert(info("a"), link, 0);
        assert_eq!(fanout.key_of("a"), Some(a));
        assert_eq!(
            fanout.find("a").map(|(k, p)| (k, p.info.id.to_string())),
            Some((a, "a".into()))
        );
        assert!(fanout.remove(a).is_some());
        assert_eq!(fanout.key_of("a"), None);
        assert!(fanout.is_empty());
    }
}
