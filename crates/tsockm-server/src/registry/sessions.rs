//! Sessions: registration, resume (and takeover), a peer going away when its
//! connection ends, and a peer's removal.

use std::collections::VecDeque;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use tsockm_proto::reason::RESUMED_ELSEWHERE;
use tsockm_proto::{Action, Frame, Status, Text};

use super::console::{PeerSummary, summarize};
use super::fanout::{Audience, PeerKey};
use super::peer::{Away, Link, PeerInfo};
use super::timers::Timer;
use super::{ConnId, Registry};
use crate::identity::{hash_token, new_token, token_matches, unix_ms};
use crate::logging::Direction;
use crate::stats::Stats;
use crate::wire;

/// Whether a connection's queue is being written out as it closes.
#[derive(Debug, Clone, Copy)]
enum QueuedMode {
    Write,
    Keep,
}

/// What becomes of the frames still queued for a connection that ends.
#[derive(Debug)]
pub(super) enum Queued {
    /// Taken back and kept for the peer's resume, followed by these frames
    /// that did not fit in the queue.
    Keep(Vec<Bytes>),
    /// Written to the connection before it closes: the peer only stopped
    /// sending (EOF) and may still be reading.
    Write,
}

impl Registry {
    /// Registers a new peer with a username admission already checked.
    pub(super) fn register(&mut self, conn_id: ConnId, username: Text) {
        if self.fanout.len() >= self.limits.max_peers {
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            let reason = format!("server full: {} peers", self.fanout.len());
            let answer =
                self.wire
                    .error(Action::Comm, Status::ServiceUnavailable, &conn.dst, reason);
            self.log.frame(Direction::Out, &conn.dst, &answer);
            self.disconnect(conn_id, wire::encode(&answer), Queued::Keep(Vec::new()));
            return;
        }
        let (id, token) = match self
            .ids
            .next_peer_id()
            .and_then(|id| Ok((id, new_token()?)))
        {
            Ok(identity) => identity,
            Err(error) => {
                tracing::error!(%error, "cannot make a peer identity");
                self.refuse_internal(
                    conn_id,
                    Action::Comm,
                    "internal error: cannot make a peer id",
                );
                return;
            }
        };
        let id = Text::from(id);
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let addr = conn.dst.clone();
        let outbox = conn.outbox.clone();
        let in_cluster = self.in_cluster();
        // In a cluster, the roster comes when the registration comes back.
        let roster = if in_cluster {
            None
        } else {
            self.roster_for(&id)
        };
        let key = self.fanout.insert(
            PeerInfo {
                id: id.clone(),
                username: username.clone(),
                token_hash: hash_token(&token),
                addr: addr.clone(),
                since_ms: unix_ms(SystemTime::now()),
                rooms: Vec::new(),
            },
            Link::Online {
                conn: conn_id,
                outbox,
            },
            if in_cluster { u64::MAX } else { 0 },
        );
        self.bind_peer(conn_id, key, id.clone());
        if in_cluster {
            tracing::info!(peer = %id, username = %username, "peer registered");
            self.cluster_registered(key, token);
            return;
        }
        let welcome = self.wire.welcome(&addr, &id, &token);
        self.send_to_conn(conn_id, &welcome);
        if let Some(roster) = roster {
            self.fanout.deliver_unbounded(key, [roster]);
        }
        tracing::info!(peer = %id, username = %username, "peer registered");
        let announcement = self.wire.announce(Action::NtfyJoin, &id, &username);
        self.broadcast(&announcement, Some(key));
    }

    /// The roster a newcomer gets: one NTFY_JOIN per peer already
    /// registered, written as one buffer so that it takes one queue slot.
    fn roster_for(&self, newcomer: &Text) -> Option<Bytes> {
        if self.fanout.is_empty() {
            return None;
        }
        // Sized up front: growing it by doubling leaves freed blocks of
        // every size behind, which the allocator keeps as resident memory.
        let roster_len: usize = self
            .fanout
            .iter()
            .map(|(_, other)| {
                self.wire
                    .roster_line_len(&other.info.id, &other.info.username, newcomer)
            })
            .sum();
        let mut roster = BytesMut::with_capacity(roster_len);
        let log_frames = self.log.enabled();
        for (_, other) in self.fanout.iter() {
            if log_frames {
                let join = self.wire.about_peer(
                    Action::NtfyJoin,
                    &other.info.id,
                    newcomer,
                    &other.info.username,
                );
                self.log.frame(Direction::Out, newcomer, &join);
            }
            self.wire
                .roster_line(&mut roster, &other.info.id, &other.info.username, newcomer);
        }
        Some(roster.freeze())
    }

    /// Resumes a session on a new connection: a new token; then, if the
    /// client named the last message it received, every message written to
    /// its earlier connection after that one; then every frame kept for the
    /// peer (or, if it was still online, every frame its old connection had
    /// not written, and that connection is closed).
    pub(super) fn resume(
        &mut self,
        conn_id: ConnId,
        peer_id: &Text,
        token: &Text,
        last_msg_id: &Text,
    ) {
        if self.fanout.key_of(peer_id).is_none()
            && self.in_cluster()
            && self.cluster_resume(conn_id, peer_id, token, last_msg_id)
        {
            return; // The cluster answers (a claim).
        }
        let found = self
            .fanout
            .find(peer_id)
            .filter(|(_, peer)| token_matches(&peer.info.token_hash, token))
            .map(|(key, _)| key);
        let Some(key) = found else {
            self.refuse_with(
                conn_id,
                Action::Comm,
                Status::NotFound,
                "cannot resume: unknown or removed peer id, or wrong resume token",
            );
            return;
        };
        let new_token = match new_token() {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot make a resume token");
                self.refuse_internal(conn_id, Action::Comm, "internal error: cannot make a token");
                return;
            }
        };
        // Its address, before binding makes `dst` its id.
        let Some(addr) = self.conns.get(&conn_id).map(|conn| conn.dst.clone()) else {
            return;
        };
        let Some(conn) = self.bind_peer(conn_id, key, peer_id.clone()) else {
            return;
        };
        let outbox = conn.outbox.clone();
        if let Some(info) = self.fanout.info_mut(key) {
            info.token_hash = hash_token(&new_token);
            info.addr = addr.clone();
        }
        if self.in_cluster() {
            let request = crate::cluster::LinkRequest::Online {
                id: peer_id.clone(),
                hash: super::cluster::hex(&hash_token(&new_token)),
            };
            self.ask(None, Action::Comm, request);
        }
        // Staged broadcasts go where the peer's frames went so far.
        self.fanout.flush();
        let previous = self.fanout.relink(
            key,
            Link::Online {
                conn: conn_id,
                outbox,
            },
        );
        let (written, pending) = match previous {
            Some(Link::Away(away)) => {
                let Away {
                    mut kept,
                    mut written,
                    draining,
                    ..
                } = *away;
                // What the old connection had not written when it closed
                // comes first, then what was kept since.
                let mut pending = VecDeque::new();
                if let Some(old) = draining {
                    written.extend(old.take_written());
                    pending = old.take_pending();
                }
                pending.extend(kept.take());
                (written, pending)
            }
            Some(Link::Online {
                conn: old_conn,
                outbox: old_outbox,
            }) => {
                // Takeover: what the old connection has not written yet
                // follows the peer; the old connection is told and closed.
                let written = old_outbox.take_written();
                let mut pending = old_outbox.take_pending();
                pending.extend(self.fanout.unclog(old_conn));
                let end = self.wire.comm_end(peer_id, RESUMED_ELSEWHERE);
                self.log.frame(Direction::Out, peer_id, &end);
                old_outbox.close(wire::encode(&end));
                self.conns.remove(&old_conn);
                (written, pending)
            }
            None => (VecDeque::new(), VecDeque::new()),
        };
        let again = if last_msg_id.is_empty() {
            VecDeque::new()
        } else {
            written_after(written, last_msg_id)
        };
        tracing::info!(
            peer = %peer_id,
            n_again = again.len(),
            n_kept = pending.len(),
            "peer resumed"
        );
        let welcome = self.wire.welcome(&addr, peer_id, &new_token);
        self.send_to_conn(conn_id, &welcome);
        self.fanout
            .deliver_unbounded(key, again.into_iter().chain(pending));
    }

    /// A connection whose send queue is full: disconnect it; `undelivered`
    /// is kept for the peer with what was still queued.
    pub(super) fn cut_off(&mut self, conn_id: ConnId, undelivered: Vec<Bytes>) {
        Stats::add(&self.stats.peers_cut_off, 1);
        if let Some(conn) = self.conns.get(&conn_id) {
            tracing::warn!(who = %conn.dst, "send queue full: disconnecting a peer that does not read");
        }
        self.disconnect(conn_id, None, Queued::Keep(undelivered));
    }

    /// Ends a connection the registry knows, writing `last` before closing.
    /// If a registered peer was online on it, the peer goes away and its
    /// removal timer starts; what was still queued for the connection is
    /// written or kept for the resume, as `queued` says.
    pub(super) fn disconnect(&mut self, conn_id: ConnId, last: Option<Bytes>, queued: Queued) {
        self.fanout.flush();
        let Some(conn) = self.conns.remove(&conn_id) else {
            return; // Already closed by the registry.
        };
        let Some((key, peer_id)) = conn.peer_and_id().map(|(key, id)| (key, id.clone())) else {
            conn.outbox.close(last);
            return;
        };
        let refused = self.fanout.unclog(conn_id);
        let queued_mode = match (&queued, refused.is_empty()) {
            (Queued::Write, true) => QueuedMode::Write,
            _ => QueuedMode::Keep,
        };
        let pending = match queued {
            Queued::Write if refused.is_empty() => VecDeque::new(),
            // A queue that overflowed cannot be written out: keep it all.
            Queued::Write => {
                let mut pending = conn.outbox.take_pending();
                pending.extend(refused);
                pending
            }
            Queued::Keep(undelivered) => {
                let mut pending = conn.outbox.take_pending();
                pending.extend(refused);
                pending.extend(undelivered);
                pending
            }
        };
        let written = conn.outbox.take_written();
        conn.outbox.close(last);
        if self.fanout.get(key).and_then(|peer| peer.conn()) != Some(conn_id) {
            return;
        }
        // Written to a peer that only stopped sending: what it still writes
        // is remembered there, for a resume naming the last message read.
        let draining = matches!(queued_mode, QueuedMode::Write).then(|| conn.outbox.clone());
        let through = self.written_through(&pending);
        let kept = self.fanout.keep(pending);
        self.next_generation += 1;
        let generation = self.next_generation;
        self.fanout
            .relink(key, Link::away(kept, written, draining, generation));
        self.timers.insert(
            Timer::Removal {
                peer: key,
                generation,
            },
            self.limits.removal_delay,
        );
        if self.in_cluster() {
            let request = crate::cluster::LinkRequest::Away {
                id: peer_id.clone(),
                through,
            };
            self.ask(None, Action::None, request);
        }
        tracing::info!(peer = %peer_id, "peer away: connection lost");
    }

    /// Removes a peer at once (COMM_END, `:kill`, the end of its removal
    /// delay): `last` goes to its connection after what is queued, then
    /// every other peer gets NTFY_KILL.
    pub(super) fn remove_peer(
        &mut self,
        key: PeerKey,
        last: Option<&Frame>,
    ) -> Option<PeerSummary> {
        let peer = self.fanout.remove(key)?;
        // It leaves all its rooms, told to no one: the members learn it
        // from the NTFY_KILL below. Its key may be given to the next peer.
        for room in &peer.info.rooms {
            self.rooms.remove(room, key);
        }
        let summary = summarize(&peer);
        if let Link::Online { conn, outbox } = peer.link() {
            self.conns.remove(conn);
            if let Some(frame) = last {
                self.log.frame(Direction::Out, &peer.info.id, frame);
                Stats::add(&self.stats.frames_out, 1);
            }
            outbox.close(last.and_then(wire::encode));
        }
        tracing::info!(peer = %peer.info.id, "peer removed");
        if self.in_cluster() {
            // The cluster removes it and tells every node, this one too.
            let request = crate::cluster::LinkRequest::Remove {
                id: peer.info.id.clone(),
                only_if_away_on: None,
            };
            self.ask(None, Action::None, request);
        } else {
            let kill = self
                .wire
                .announce(Action::NtfyKill, &peer.info.id, &peer.info.username);
            self.broadcast(&kill, None);
        }
        Some(summary)
    }

    /// Stages a frame for every peer but `except`.
    pub(super) fn broadcast(&mut self, frame: &Frame, except: Option<PeerKey>) {
        self.log
            .frame(Direction::Out, tsockm_proto::BROADCAST, frame);
        if let Some(bytes) = wire::encode(frame) {
            self.fanout.deliver(Audience::Everyone { except }, &bytes);
        }
    }

    /// In a cluster, the last number of the cluster's order whose frames
    /// a connection that ended wrote, given the frames it did not write:
    /// just before the first message among them, or everything read so
    /// far if there is none. (A notice among them carries no number: a
    /// node that takes the session over cannot give it back.)
    fn written_through(&self, unwritten: &VecDeque<Bytes>) -> u64 {
        let Some(cluster) = &self.cluster else {
            return 0;
        };
        unwritten
            .iter()
            .filter_map(|frame| message_id(frame))
            .filter_map(|id| std::str::from_utf8(id).ok())
            .find_map(|id| self.ids.msg_seq(id))
            .map_or(cluster.last_seq, |seq| seq.saturating_sub(1))
    }
}

/// The messages of `written` after the one whose id is `last_msg_id`; all
/// of them if it is not among them (the client drops ids it has seen).
fn written_after(mut written: VecDeque<Bytes>, last_msg_id: &str) -> VecDeque<Bytes> {
    match written
        .iter()
        .rposition(|frame| message_id(frame) == Some(last_msg_id.as_bytes()))
    {
        Some(at) => written.split_off(at + 1),
        None => written,
    }
}

/// The message id (SRC) of an encoded relayed message:
/// `RES::MSG::200::<author>::<msg_id>::...`.
fn message_id(frame: &[u8]) -> Option<&[u8]> {
    let separator = |s: &[u8]| memchr::memmem::find(s, b"::");
    let mut rest = frame;
    // Past TYPE, ACTION, STATUS and SENDER_ID (none holds `::`).
    for _ in 0..4 {
        rest = &rest[separator(rest)? + 2..];
    }
    Some(&rest[..separator(rest)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_written_after_the_last_one_received() {
        let frame =
            |id: &str| Bytes::from(format!("RES::MSG::200::author1234::{id}::*::text {id}\n"));
        let written: VecDeque<Bytes> = ["m1", "m2", "m3"].into_iter().map(frame).collect();
        assert_eq!(message_id(&frame("m2")), Some(&b"m2"[..]));
        assert_eq!(
            written_after(written.clone(), "m1"),
            [frame("m2"), frame("m3")]
        );
        assert!(written_after(written.clone(), "m3").is_empty());
        // Not remembered: all of them.
        assert_eq!(written_after(written, "m0").len(), 3);
    }
}
