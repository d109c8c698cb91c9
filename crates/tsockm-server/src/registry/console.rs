//! The operator's requests to the registry and the reports that answer
//! them (`:list`, `:kill`, `:ping`, `:info`). Parsing and rendering console
//! lines is the console task's job (`crate::console`).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::time::Instant;
use tsockm_proto::Text;

use super::Registry;
use super::fanout::PeerKey;
use super::peer::Peer;
use super::timers::{PendingPing, Timer};
use crate::stats::Stats;
use crate::store::StoreStats;

/// Longest a `:ping` waits for answers (it waits half the health timeout,
/// up to this).
pub const PING_WINDOW_MAX: Duration = Duration::from_secs(5);

/// Whom a console command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One peer, by id.
    Peer(String),
    /// Every peer.
    All,
}

/// Console commands the registry answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleRequest {
    /// `:list`.
    List,
    /// `:kill`.
    Kill(Target),
    /// `:ping`.
    Ping(Target),
    /// `:info`.
    Info,
    /// `:rooms`.
    Rooms,
}

/// One peer as `:list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Peer id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Last known address.
    pub addr: String,
    /// Online or away.
    pub online: bool,
    /// When it registered.
    pub since: SystemTime,
    /// The rooms it is in.
    pub rooms: Vec<String>,
    /// In a cluster, the node it is on (empty on a single server).
    pub node: String,
}

/// One room as `:rooms` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// Its name, `#` included.
    pub name: String,
    /// Its members' ids, in the order they joined.
    pub members: Vec<String>,
}

/// Counters for `:info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoReport {
    /// The listening address.
    pub addr: String,
    /// Time since the server started.
    pub uptime: Duration,
    /// Peers online.
    pub n_online: usize,
    /// Peers away.
    pub n_away: usize,
    /// Connections not registered yet.
    pub n_unregistered: usize,
    /// Connections whose task has not ended (registered or not, including
    /// those being turned away or closing).
    pub n_connections: usize,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Kept frames dropped for away peers.
    pub frames_dropped: u64,
    /// Frames refused with 429 (or dropped as junk over the rate).
    pub frames_rate_limited: u64,
    /// Peers cut off for a full send queue.
    pub peers_cut_off: u64,
    /// Peers cut off (or trimmed) because the server held too many bytes.
    pub peers_over_budget: u64,
    /// Bytes queued for connections and kept for away peers now.
    pub queued_bytes: usize,
    /// The most bytes the server queues and keeps (`--max-queued-bytes`).
    pub max_queued_bytes: usize,
    /// Rooms with members.
    pub n_rooms: usize,
    /// The store, e.g. `sqlite:/path/tsockm.db`.
    pub store: String,
    /// Messages written to the store.
    pub store_written: u64,
    /// Messages the store failed to write.
    pub store_failed: u64,
    /// Messages not stored because the store's queue was full.
    pub store_dropped: u64,
    /// Whether the store's last write failed (it is failing now).
    pub store_failing: bool,
    /// In a cluster: this node's name, the nodes and whether each is
    /// alive, the peers online and away on all nodes, and whether Redis
    /// is reachable.
    pub cluster: Option<ClusterInfo>,
}

/// The cluster's figures for `:info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// This node.
    pub node: String,
    /// Every node and whether it is alive.
    pub nodes: Vec<(String, bool)>,
    /// Peers online on all nodes.
    pub n_online: usize,
    /// Peers away on all nodes.
    pub n_away: usize,
    /// Whether the cluster's Redis is reachable.
    pub redis_up: bool,
}

/// Who answered a `:ping`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReport {
    /// Peers that answered, with how long they took.
    pub answered: Vec<(PeerSummary, Duration)>,
    /// Online peers that did not answer within the window.
    pub silent: Vec<PeerSummary>,
    /// Away peers (nothing to send a check to).
    pub away: Vec<PeerSummary>,
    /// How long the registry waited.
    pub window: Duration,
}

/// The registry's answer to a console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleReply {
    /// For `:list`.
    List(Vec<PeerSummary>),
    /// For `:kill`: the peers removed.
    Killed(Vec<PeerSummary>),
    /// For `:ping`.
    Pinged(PingReport),
    /// For `:info`.
    Info(InfoReport),
    /// For `:rooms`.
    Rooms(Vec<RoomSummary>),
    /// `:kill` / `:ping` named an id no peer has.
    UnknownPeer(String),
}

/// A peer as `:list` shows it.
pub(super) fn summarize(peer: &Peer) -> PeerSummary {
    PeerSummary {
        id: peer.info.id.to_string(),
        username: peer.info.username.to_string(),
        addr: peer.info.addr.to_string(),
        online: peer.is_online(),
        since: super::cluster::from_unix_ms(peer.info.since_ms),
        rooms: peer.info.rooms.iter().map(ToString::to_string).collect(),
        node: String::new(),
    }
}

impl Registry {
    pub(super) fn on_console(
        &mut self,
        request: ConsoleRequest,
        reply: oneshot::Sender<ConsoleReply>,
    ) {
        let answer = match request {
            ConsoleRequest::List => ConsoleReply::List(self.list()),
            ConsoleRequest::Info => ConsoleReply::Info(self.info()),
            ConsoleRequest::Rooms => ConsoleReply::Rooms(self.room_list()),
            ConsoleRequest::Kill(target) => self.kill(&target),
            ConsoleRequest::Ping(target) => {
                self.ping(&target, reply);
                return;
            }
        };
        // The console may have given up waiting; nothing to do then.
        let _ = reply.send(answer);
    }

    /// Every peer, oldest registration first.
    fn list(&self) -> Vec<PeerSummary> {
        let mut peers: Vec<PeerSummary> = self.fanout.iter().map(|(_, p)| summarize(p)).collect();
        if let Some(cluster) = &self.cluster {
            // Every peer of the cluster, with its node.
            let here = cluster.node().to_string();
            for peer in &mut peers {
                peer.node.clone_from(&here);
            }
            for (id, remote) in &cluster.mirror {
                if self.fanout.key_of(id).is_none() {
                    peers.push(PeerSummary {
                        id: id.to_string(),
                        username: remote.name.to_string(),
                        addr: remote.addr.to_string(),
                        online: remote.online,
                        since: super::cluster::from_unix_ms(remote.since_ms),
                        rooms: Vec::new(),
                        node: remote.node.to_string(),
                    });
                }
            }
        }
        peers.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
        peers
    }

    /// Every room, sorted by name, with its members' ids.
    fn room_list(&self) -> Vec<RoomSummary> {
        self.rooms
            .sorted()
            .into_iter()
            .map(|(name, members)| RoomSummary {
                name: name.to_string(),
                members: members
                    .iter()
                    .filter_map(|&key| self.fanout.get(key))
                    .map(|peer| peer.info.id.to_string())
                    .collect(),
            })
            .collect()
    }

    /// The peers a target names, or the id no peer has.
    fn targets(&self, target: &Target) -> Result<Vec<PeerKey>, String> {
        match target {
            Target::All => Ok(self.fanout.iter().map(|(key, _)| key).collect()),
            Target::Peer(id) => self
                .fanout
                .key_of(id)
                .map(|key| vec![key])
                .ok_or_else(|| id.clone()),
        }
    }

    fn kill(&mut self, target: &Target) -> ConsoleReply {
        let keys = match self.targets(target) {
            Ok(keys) => keys,
            Err(id) => {
                // A peer of another node: its node removes it.
                let remote = self.cluster.as_ref().and_then(|c| {
                    c.mirror.get(id.as_str()).map(|r| PeerSummary {
                        id: id.clone(),
                        username: r.name.to_string(),
                        addr: r.addr.to_string(),
                        online: r.online,
                        since: super::cluster::from_unix_ms(r.since_ms),
                        rooms: Vec::new(),
                        node: r.node.to_string(),
                    })
                });
                let Some(summary) = remote else {
                    return ConsoleReply::UnknownPeer(id);
                };
                let request = crate::cluster::LinkRequest::KillRequest {
                    id: Text::from(id.as_str()),
                };
                self.ask(None, tsockm_proto::Action::None, request);
                return ConsoleReply::Killed(vec![summary]);
            }
        };
        let mut removed = Vec::new();
        for key in keys {
            let Some(peer) = self.fanout.get(key) else {
                continue;
            };
            let end = self
                .wire
                .comm_end(&peer.info.id, "removed by the server operator");
            removed.extend(self.remove_peer(key, Some(&end)));
        }
        ConsoleReply::Killed(removed)
    }

    fn ping(&mut self, target: &Target, reply: oneshot::Sender<ConsoleReply>) {
        let keys = match self.targets(target) {
            Ok(keys) => keys,
            Err(id) => {
                let _ = reply.send(ConsoleReply::UnknownPeer(id));
                return;
            }
        };
        let mut waiting = HashSet::new();
        let mut away = Vec::new();
        for key in keys {
            let Some(id) = self.fanout.get(key).map(|peer| peer.info.id.clone()) else {
                continue;
            };
            if self.check_health(key, true) {
                waiting.insert(id);
            } else {
                away.push(id);
            }
        }
        let key = self.pings.next;
        self.pings.next += 1;
        let window = (self.limits.health_timeout / 2).min(PING_WINDOW_MAX);
        let nobody = waiting.is_empty();
        self.pings.pending.insert(
            key,
            PendingPing {
                started: Instant::now(),
                waiting,
                answered: Vec::new(),
                away,
                reply,
            },
        );
        if nobody {
            self.finish_ping(key);
        } else {
            self.timers.insert(Timer::PingWindow(key), window);
        }
    }

    /// A health-check answer: it may complete a `:ping`.
    pub(super) fn on_health_answer(&mut self, peer_id: &Text) {
        let now = Instant::now();
        let mut done = Vec::new();
        for (key, ping) in &mut self.pings.pending {
            if ping.waiting.remove(peer_id) {
                ping.answered.push((peer_id.clone(), now - ping.started));
                if ping.waiting.is_empty() {
                    done.push(*key);
                }
            }
        }
        for key in done {
            self.finish_ping(key);
        }
    }

    pub(super) fn finish_ping(&mut self, key: u64) {
        let Some(ping) = self.pings.pending.remove(&key) else {
            return;
        };
        let summary_of = |id: &Text| self.fanout.find(id).map(|(_, peer)| summarize(peer));
        let report = PingReport {
            answered: ping
                .answered
                .iter()
                .filter_map(|(id, rtt)| Some((summary_of(id)?, *rtt)))
                .collect(),
            silent: ping.waiting.iter().filter_map(summary_of).collect(),
            away: ping.away.iter().filter_map(summary_of).collect(),
            window: ping.started.elapsed(),
        };
        let _ = ping.reply.send(ConsoleReply::Pinged(report));
    }

    fn info(&self) -> InfoReport {
        let store = self.store.stats();
        let n_online = self.fanout.iter().filter(|(_, p)| p.is_online()).count();
        InfoReport {
            addr: self.wire.srv.to_string(),
            uptime: self.started.elapsed(),
            n_online,
            n_away: self.fanout.len() - n_online,
            n_unregistered: self.conns.values().filter(|c| c.peer.is_none()).count(),
            n_connections: self.slots.taken(),
            frames_in: Stats::get(&self.stats.frames_in),
            frames_out: Stats::get(&self.stats.frames_out),
            bytes_in: Stats::get(&self.stats.bytes_in),
            bytes_out: Stats::get(&self.stats.bytes_out),
            frames_dropped: Stats::get(&self.stats.frames_dropped),
            frames_rate_limited: Stats::get(&self.stats.frames_rate_limited),
            peers_cut_off: Stats::get(&self.stats.peers_cut_off),
            peers_over_budget: Stats::get(&self.stats.peers_over_budget),
            queued_bytes: self.backlog.bytes(),
            max_queued_bytes: self.limits.max_queued_bytes,
            n_rooms: self.rooms.sorted().len(),
            store: self.store.describe().to_owned(),
            store_written: StoreStats::get(&store.messages_written),
            store_failed: StoreStats::get(&store.messages_failed),
            store_dropped: StoreStats::get(&store.messages_dropped),
            store_failing: store.failing(),
            cluster: self.cluster.as_ref().map(|c| {
                let n_online = c.mirror.values().filter(|r| r.online).count();
                ClusterInfo {
                    node: c.node().to_string(),
                    nodes: c.nodes.clone(),
                    n_online,
                    n_away: c.mirror.len() - n_online,
                    redis_up: c.link.is_up(),
                }
            }),
        }
    }
}
