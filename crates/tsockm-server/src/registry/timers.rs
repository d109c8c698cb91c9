//! The registry's timers: handshake deadlines, removal delays, `:ping`
//! windows (one `DelayQueue`), health checks and liveness sweeps (two
//! intervals). Timers are never cancelled: each carries enough to recognise
//! that it is stale, and a stale timer does nothing when it fires.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tsockm_proto::reason::HEALTH_TIMED_OUT;
use tsockm_proto::{Action, Status, Text};

use super::console::ConsoleReply;
use super::fanout::{Audience, PeerKey};
use super::peer::Link;
use super::sessions::Queued;
use super::{ConnId, Limits, Registry};
use crate::logging::Direction;
use crate::wire;

/// How many liveness sweeps run per health timeout: a silent peer is found
/// dead at most this fraction of the timeout late (1 s at the default 20 s).
pub(super) const SWEEPS_PER_TIMEOUT: u32 = 20;

/// A registry timer.
#[derive(Debug)]
pub(super) enum Timer {
    /// The connection must have registered by now.
    Handshake(ConnId),
    /// The peer's removal delay is over, if it is still away in that same
    /// absence.
    Removal {
        /// The peer.
        peer: PeerKey,
        /// The absence the timer belongs to.
        generation: u64,
    },
    /// A `:ping`'s window is over.
    PingWindow(u64),
    /// In a cluster: a peer of a dead node may be removed now, if it is
    /// still away there (each node asks; the cluster removes it once).
    ClusterRemoval {
        /// The peer.
        peer: Text,
        /// The dead node.
        node: Text,
    },
}

/// A `:ping` waiting for answers.
#[derive(Debug)]
pub(super) struct PendingPing {
    pub started: Instant,
    pub waiting: HashSet<Text>,
    pub answered: Vec<(Text, Duration)>,
    pub away: Vec<Text>,
    pub reply: oneshot::Sender<ConsoleReply>,
}

/// The `:ping`s waiting for answers.
#[derive(Debug, Default)]
pub(super) struct Pings {
    pub pending: HashMap<u64, PendingPing>,
    pub next: u64,
}

/// How often the liveness sweep runs.
pub(super) fn sweep_period(limits: &Limits) -> Duration {
    (limits.health_timeout / SWEEPS_PER_TIMEOUT)
        .clamp(Duration::from_millis(10), limits.health_interval)
}

impl Registry {
    pub(super) fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Handshake(conn_id) => {
                let Some(conn) = self.conns.get(&conn_id) else {
                    return;
                };
                if conn.peer.is_some() {
                    return;
                }
                let reason = format!(
                    "not registered within {} ms: closing",
                    self.limits.handshake_timeout.as_millis()
                );
                let answer =
                    self.wire
                        .error(Action::Comm, Status::RequestTimeout, &conn.dst, reason);
                self.log.frame(Direction::Out, &conn.dst, &answer);
                self.disconnect(conn_id, wire::encode(&answer), Queued::Keep(Vec::new()));
            }
            Timer::Removal { peer, generation } => {
                let due = self.fanout.get(peer).is_some_and(
                    |p| matches!(p.link(), Link::Away(away) if away.generation == generation),
                );
                if due && self.in_cluster() {
                    // Removed by the cluster, once, unless it resumed on
                    // another node meanwhile; told to every node then.
                    if let Some(id) = self.fanout.get(peer).map(|p| p.info.id.clone()) {
                        let node = self.cluster.as_ref().map(|c| c.node().clone());
                        let request = crate::cluster::LinkRequest::Remove {
                            id,
                            only_if_away_on: node,
                        };
                        self.ask(None, Action::None, request);
                    }
                    self.drop_local(peer);
                } else if due {
                    self.remove_peer(peer, None);
                }
            }
            Timer::PingWindow(key) => self.finish_ping(key),
            Timer::ClusterRemoval { peer, node } => {
                let request = crate::cluster::LinkRequest::Remove {
                    id: peer,
                    only_if_away_on: Some(node),
                };
                self.ask(None, Action::None, request);
            }
        }
        self.settle();
    }

    /// Sends a health check to every online peer.
    pub(super) fn send_health_checks(&mut self) {
        let online: Vec<PeerKey> = self
            .fanout
            .iter()
            .filter(|(_, peer)| peer.is_online())
            .map(|(key, _)| key)
            .collect();
        for key in online {
            self.check_health(key, false);
        }
        self.settle();
    }

    /// Sends one health check to the peer at `key` if it is online; says
    /// whether it did.
    pub(super) fn check_health(&mut self, key: PeerKey, log: bool) -> bool {
        let Some(peer) = self.fanout.get(key) else {
            return false;
        };
        let Some(conn_id) = peer.conn() else {
            return false;
        };
        let check = self.wire.health_check(&peer.info.id);
        if log {
            self.log.frame(Direction::Out, &peer.info.id, &check);
        }
        let Some(bytes) = wire::encode(&check) else {
            return false;
        };
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.solicited = conn.solicited.saturating_add(1);
        }
        self.fanout.deliver(Audience::One(key), &bytes);
        true
    }

    /// Disconnects every registered connection silent for a health timeout.
    pub(super) fn sweep_dead(&mut self) {
        let now = Instant::now();
        let timeout = self.limits.health_timeout;
        let dead: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.peer.is_some() && now >= conn.outbox.last_sign() + timeout)
            .map(|(id, _)| *id)
            .collect();
        for conn_id in dead {
            let Some(conn) = self.conns.get(&conn_id) else {
                continue;
            };
            let answer = self.wire.error(
                Action::Comm,
                Status::RequestTimeout,
                &conn.dst,
                HEALTH_TIMED_OUT,
            );
            self.log.frame(Direction::Out, &conn.dst, &answer);
            tracing::info!(who = %conn.dst, "health check timed out");
            self.disconnect(conn_id, wire::encode(&answer), Queued::Keep(Vec::new()));
        }
        self.settle();
    }
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
