//! A restart nobody notices: a graceful shutdown ends every session and,
//! with a persistent store, saves them; a server started on that store
//! restores them as away for the removal delay.

use std::time::SystemTime;

use bytes::Bytes;
use tsockm_proto::reason::SHUTTING_DOWN;
use tsockm_proto::{Action, Status, Text};

use super::Registry;
use super::peer::{Link, PeerInfo};
use super::timers::Timer;
use crate::identity::unix_ms;
use crate::logging::Direction;
use crate::room::RoomName;
use crate::store::{SavedPeer, SavedSessions};
use crate::wire;

impl Registry {
    /// COMM_END to every online peer, 503 to unregistered connections; no
    /// NTFY_KILL. With a persistent store, the sessions are saved first, so
    /// that a server started on it soon after restores them.
    pub(super) fn shut_down(&mut self) {
        self.fanout.flush();
        self.flush_hooks();
        if self.in_cluster() {
            // The other nodes announce this node's peers' removal at once.
            self.ask(None, Action::None, crate::cluster::LinkRequest::NodeDown);
        } else if self.store.is_persistent() {
            let saved = self.saved_sessions();
            let n_peers = saved.peers.len();
            self.store.save_sessions(
                saved,
                Box::new(move |result| match result {
                    Ok(()) => tracing::info!(n_peers, "sessions saved for the next start"),
                    Err(error) => tracing::error!(
                        %error,
                        "cannot save the sessions: their clients will register anew"
                    ),
                }),
            );
        }
        tracing::info!(
            n_peers = self.fanout.len(),
            "shutting down: ending every session"
        );
        for (_, conn) in self.conns.drain() {
            let last = match conn.peer_and_id() {
                Some((_, peer_id)) => self.wire.comm_end(peer_id, SHUTTING_DOWN),
                None => self.wire.error(
                    Action::None,
                    Status::ServiceUnavailable,
                    &conn.dst,
                    SHUTTING_DOWN,
                ),
            };
            self.log.frame(Direction::Out, &conn.dst, &last);
            conn.outbox.close(wire::encode(&last));
        }
        self.fanout.clear();
        // Pings never finish: dropping their reply channels tells the
        // console the server is shutting down.
        self.pings.pending.clear();
    }

    /// Every peer as the store saves it: away peers with their kept frames,
    /// online ones (whose queues are written before they are told the
    /// server is going) with none.
    fn saved_sessions(&self) -> SavedSessions {
        let mut peers: Vec<(i64, SavedPeer)> = self
            .fanout
            .iter()
            .map(|(_, peer)| {
                // Online peers' queues are written before they are told the
                // server is going; a client that did not read them (a
                // half-open connection) gets them again by naming the last
                // message it read, from `written`.
                let (kept, written) = match peer.link() {
                    Link::Away(away) => {
                        let mut remembered: Vec<Bytes> = away.written.iter().cloned().collect();
                        if let Some(old) = &away.draining {
                            remembered.extend(old.remembered_and_queued());
                        }
                        (away.kept.iter().cloned().collect(), remembered)
                    }
                    Link::Online { outbox, .. } => (Vec::new(), outbox.remembered_and_queued()),
                };
                let info = &peer.info;
                let saved = SavedPeer {
                    id: info.id.to_string(),
                    username: info.username.to_string(),
                    token_hash: info.token_hash,
                    addr: info.addr.to_string(),
                    since_ms: info.since_ms,
                    rooms: info.rooms.iter().map(ToString::to_string).collect(),
                    kept,
                    written,
                };
                (info.since_ms, saved)
            })
            .collect();
        peers.sort_by_key(|(since, _)| *since);
        SavedSessions {
            saved_at_ms: unix_ms(SystemTime::now()),
            next_peer_seq: self.ids.last_peer() + 1,
            peers: peers.into_iter().map(|(_, peer)| peer).collect(),
        }
    }

    /// Restores the sessions a server saved at its graceful shutdown, if it
    /// was within the removal delay: every peer away, in its rooms, with its
    /// kept frames, removed as usual unless it resumes within the removal
    /// delay from now.
    pub fn restore(&mut self, saved: SavedSessions) {
        let age_ms = unix_ms(SystemTime::now()).saturating_sub(saved.saved_at_ms);
        let delay_ms = i64::try_from(self.limits.removal_delay.as_millis()).unwrap_or(i64::MAX);
        if age_ms > delay_ms {
            tracing::info!(
                n_peers = saved.peers.len(),
                "saved sessions are older than the removal delay: not restored"
            );
            return;
        }
        let n_peers = saved.peers.len();
        for peer in saved.peers {
            if self.fanout.key_of(&peer.id).is_some() || peer.id.is_empty() {
                continue;
            }
            let rooms: Vec<RoomName> = peer
                .rooms
                .iter()
                .filter_map(|room| RoomName::parse(room).ok())
                .collect();
            self.next_generation += 1;
            let generation = self.next_generation;
            let key = self.fanout.insert(
                PeerInfo {
                    id: Text::from(peer.id),
                    username: Text::from(peer.username),
                    token_hash: peer.token_hash,
                    addr: Text::from(peer.addr),
                    since_ms: peer.since_ms,
                    rooms: rooms.clone(),
                },
                Link::away(
                    self.fanout.keep(peer.kept),
                    peer.written.into(),
                    None,
                    generation,
                ),
                0,
            );
            for room in &rooms {
                self.rooms.add(room, key);
            }
            self.timers.insert(
                Timer::Removal {
                    peer: key,
                    generation,
                },
                self.limits.removal_delay,
            );
        }
        self.ids
            .continue_peers_after(saved.next_peer_seq.saturating_sub(1));
        tracing::info!(
            n_peers,
            "sessions restored: waiting for their clients to resume"
        );
    }
}
