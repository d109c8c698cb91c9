//! The registry in a cluster: what it asks of the other nodes (through the
//! link to Redis) when its own clients act, and the view it keeps of the
//! whole cluster's peers.
//!
//! In a cluster the registry does not deliver what its clients send: it
//! asks the link, which gives every message and every change its place in
//! the cluster's one order and puts it in the inbox of every node that
//! must see it, this one included; the registry delivers what it reads
//! back (`cluster_events.rs`), in that order, like everyone else.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tsockm_proto::{Action, Status, Text};

use super::admission::Refusal;
use super::fanout::PeerKey;
use super::peer::{Link, PeerInfo};
use super::{ConnId, Registry};
use crate::cluster::{ClaimRequest, Entry, LinkHandle, LinkRequest, RestorePeer, Target};
use crate::identity::{TokenHash, hash_token, unix_ms};
use crate::store::Conversation;

/// Events kept after they were read, for a resume whose claim was under
/// way when they came.
pub(super) const RECENT_EVENTS: usize = 4096;

/// Bytes those events may hold (see `Entry::kept_bytes`): 64 MiB, about
/// what 4,096 messages of the default `--max-frame` (16 KiB) hold, so that
/// at the default the count is what binds, and a larger `--max-frame`
/// keeps fewer events rather than more bytes. (A resume whose claim is
/// under way replays these; fewer kept could lose it some.)
pub(super) const RECENT_EVENTS_BYTES: usize = 64 * 1024 * 1024;

/// A peer of the cluster, on any node, as this node knows it.
#[derive(Debug, Clone)]
pub(super) struct Remote {
    /// Its username.
    pub name: Text,
    /// Its node.
    pub node: Text,
    /// Whether it is online.
    pub online: bool,
    /// When it registered, Unix ms.
    pub since_ms: i64,
    /// Its last known address.
    pub addr: Text,
}

/// A resume token held until it can be given: its `Debug` does not show
/// it, so no dump of the registry prints a secret.
pub(super) struct HeldToken(pub String);

impl std::fmt::Debug for HeldToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldToken(***)")
    }
}

/// A resume waiting for the cluster to hand the session over.
#[derive(Debug)]
pub(super) struct PendingClaim {
    /// The new token, given once the claim succeeds.
    pub token: HeldToken,
    /// The last message the client received, if it named one.
    pub last_msg: Option<u64>,
}

/// What the registry keeps in a cluster.
#[derive(Debug)]
pub(super) struct ClusterState {
    /// The way to Redis.
    pub link: LinkHandle,
    /// Every peer of the cluster (this node's too, once its registration
    /// came back), by id.
    pub mirror: HashMap<Text, Remote>,
    /// The nodes and whether each is alive.
    pub nodes: Vec<(String, bool)>,
    /// The last events read.
    pub recent: VecDeque<Arc<Entry>>,
    /// Their bytes.
    pub recent_bytes: usize,
    /// Resumes waiting for their claim, by connection.
    pub claims: HashMap<ConnId, PendingClaim>,
    /// Tokens of peers registered here whose registration has not come
    /// back yet: the welcome waits for it, so that a token in a client's
    /// hands is one every node can resume.
    pub welcomes: HashMap<Text, HeldToken>,
    /// The last place in the cluster's order read.
    pub last_seq: u64,
}

impl ClusterState {
    /// The state for a node that joined with this view of the cluster.
    pub fn new(
        link: LinkHandle,
        seq: u64,
        peers: Vec<(Text, Text, bool, Text, i64, Text)>,
    ) -> ClusterState {
        let mirror = peers
            .into_iter()
            .map(|(id, node, online, name, since_ms, addr)| {
                (
                    id,
                    Remote {
                        name,
                        node,
                        online,
                        since_ms,
                        addr,
                    },
                )
            })
            .collect();
        ClusterState {
            link,
            mirror,
            nodes: Vec::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
            claims: HashMap::new(),
            welcomes: HashMap::new(),
            last_seq: seq,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &Text {
        &self.link.node
    }

    /// Keeps `entry` among the recent events, forgetting the oldest beyond
    /// [`RECENT_EVENTS`] events or [`RECENT_EVENTS_BYTES`] bytes (the
    /// newest is always kept).
    pub fn keep_recent(&mut self, entry: Arc<Entry>) {
        self.recent_bytes += entry.kept_bytes();
        self.recent.push_back(entry);
        while self.recent.len() > 1
            && (self.recent.len() > RECENT_EVENTS || self.recent_bytes > RECENT_EVENTS_BYTES)
        {
            if let Some(old) = self.recent.pop_front() {
                self.recent_bytes -= old.kept_bytes();
            }
        }
    }
}

/// A token hash in hex, as Redis keeps it.
pub(super) fn hex(hash: &TokenHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix ms to a point in time.
pub(super) fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Registry {
    /// Whether this server is a node of a cluster.
    pub(super) fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// In a cluster whose Redis is unreachable: answers 503 and says so.
    pub(super) fn cluster_down(&mut self, conn_id: ConnId, action: Action) -> bool {
        let down = self.cluster.as_ref().is_some_and(|c| !c.link.is_up());
        if down {
            self.refuse(
                conn_id,
                Refusal::new(
                    action,
                    Status::ServiceUnavailable,
                    "the cluster is unavailable right now (its Redis cannot be reached); try again soon",
                ),
            );
        }
        down
    }

    /// Asks the link; a full queue answers 503 to `conn_id`.
    pub(super) fn ask(&mut self, conn_id: Option<ConnId>, action: Action, request: LinkRequest) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if !cluster.link.request(request) {
            tracing::warn!("the cluster link's queue is full: a request was refused");
            if let Some(conn_id) = conn_id {
                self.refuse(
                    conn_id,
                    Refusal::new(
                        action,
                        Status::ServiceUnavailable,
                        "the cluster is too busy right now; try again soon",
                    ),
                );
            }
        }
    }

    /// A peer registered here: the cluster is told; its welcome (with
    /// `token`) and its roster come when its registration comes back.
    ///
    /// While Redis is unreachable the welcome comes at once (the contract
    /// refuses only MSG, JOIN, PART and HISTORY then): the registration
    /// reaches Redis, and the roster the peer, when Redis is back; until
    /// then the session can be resumed on this node only.
    pub(super) fn cluster_registered(&mut self, key: PeerKey, token: String) {
        let Some(peer) = self.fanout.get(key) else {
            return;
        };
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if cluster.link.is_up() {
            cluster
                .welcomes
                .insert(peer.info.id.clone(), HeldToken(token));
        } else if let Link::Online { conn, .. } = &peer.link {
            let welcome = self.wire.welcome(&peer.info.addr, &peer.info.id, &token);
            let conn = *conn;
            self.send_to_conn(conn, &welcome);
        }
        let Some(peer) = self.fanout.get(key) else {
            return;
        };
        let request = LinkRequest::Register {
            id: peer.info.id.clone(),
            name: peer.info.username.clone(),
            since_ms: peer.info.since_ms,
            addr: peer.info.addr.clone(),
            hash: hex(&peer.info.token_hash),
        };
        self.ask(None, Action::Comm, request);
    }

    /// A message of a local peer, checked: the cluster delivers it.
    pub(super) fn cluster_msg(
        &mut self,
        conn_id: ConnId,
        author_id: &Text,
        author_name: &Text,
        target: Target,
        conversation: Conversation,
        text: Text,
    ) {
        if self.cluster_down(conn_id, Action::Msg) {
            return;
        }
        let request = LinkRequest::Msg {
            conn: conn_id,
            target,
            author: author_id.clone(),
            name: author_name.clone(),
            text,
            at_ms: unix_ms(SystemTime::now()),
            conversation,
        };
        self.ask(Some(conn_id), Action::Msg, request);
    }

    /// A resume of a peer this node does not hold: ask the cluster for its
    /// session (the answer comes back as a claim; Redis, not this node's
    /// view, says whether the session exists: a registration on another
    /// node may not have reached this one yet). Returns `false` outside a
    /// cluster.
    pub(super) fn cluster_resume(
        &mut self,
        conn_id: ConnId,
        peer_id: &Text,
        token: &Text,
        last_msg_id: &Text,
    ) -> bool {
        if !self.in_cluster() {
            return false;
        }
        if self.cluster_down(conn_id, Action::Comm) {
            return true;
        }
        let new_token = match crate::identity::new_token() {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot make a resume token");
                self.refuse_with(
                    conn_id,
                    Action::Comm,
                    Status::BadGateway,
                    "internal error: cannot make a token",
                );
                return true;
            }
        };
        let Some(conn) = self.conns.get(&conn_id) else {
            return true;
        };
        let last_msg = self.ids.msg_seq(last_msg_id);
        let request = LinkRequest::Claim(ClaimRequest {
            conn: conn_id,
            id: peer_id.clone(),
            given: hex(&hash_token(token)),
            new: hex(&hash_token(&new_token)),
            addr: conn.dst.clone(),
            last_msg,
            max_replay: self.limits.kept_frames,
        });
        if let Some(cluster) = &mut self.cluster {
            cluster.claims.insert(
                conn_id,
                PendingClaim {
                    token: HeldToken(new_token),
                    last_msg,
                },
            );
        }
        self.ask(Some(conn_id), Action::Comm, request);
        true
    }

    /// Puts back this node's peers in a Redis that lost them.
    pub(super) fn cluster_restore(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let peers: Vec<RestorePeer> = self
            .fanout
            .iter()
            .map(|(_, peer)| RestorePeer {
                id: peer.info.id.clone(),
                online: peer.is_online(),
                name: peer.info.username.clone(),
                since_ms: peer.info.since_ms,
                addr: peer.info.addr.clone(),
                hash: hex(&peer.info.token_hash),
                rooms: peer
                    .info
                    .rooms
                    .iter()
                    .map(|r| r.as_text().clone())
                    .collect(),
            })
            .collect();
        let last_seq = cluster.last_seq;
        self.ask(None, Action::None, LinkRequest::Restore { last_seq, peers });
        // A registration that reached the emptied Redis never comes back
        // to this node (its place in the order is from before the reset):
        // the restore puts those peers back too, so they are welcome now.
        self.welcome_waiting(last_seq);
    }

    /// A new local peer for a session that moved here.
    pub(super) fn claimed_peer(
        &self,
        id: &Text,
        token: &str,
        addr: &Text,
        claimed: &crate::cluster::Claimed,
    ) -> (PeerInfo, u64) {
        let info = PeerInfo {
            id: id.clone(),
            username: claimed.name.clone(),
            token_hash: hash_token(token),
            addr: addr.clone(),
            since_ms: claimed.since_ms,
            rooms: claimed
                .rooms
                .iter()
                .filter_map(|r| crate::room::RoomName::parse(r).ok())
                .collect(),
        };
        (info, claimed.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, n: usize) -> Arc<Entry> {
        Arc::new(Entry {
            seq,
            event: crate::cluster::Event::Msg {
                target: crate::cluster::Target::Lobby,
                author: Text::from("a1"),
                name: Text::from("ann"),
                text: Text::from("x".repeat(n).as_str()),
                at_ms: 0,
            },
        })
    }

    #[test]
    fn recent_events_are_bounded_in_count_and_bytes() {
        let (link, _rx, _queued) = LinkHandle::detached("n1");
        let mut cluster = ClusterState::new(link, 0, Vec::new());
        for seq in 1..=(RECENT_EVENTS as u64 + 10) {
            cluster.keep_recent(message(seq, 10));
        }
        assert_eq!(cluster.recent.len(), RECENT_EVENTS);
        assert_eq!(cluster.recent.front().map(|e| e.seq), Some(11));

        let big = RECENT_EVENTS_BYTES / 4;
        for seq in 10_000..10_010 {
            cluster.keep_recent(message(seq, big));
        }
        assert!(cluster.recent_bytes <= RECENT_EVENTS_BYTES);
        assert_eq!(
            cluster.recent.len(),
            3,
            "three of a quarter each, with their fixed sizes"
        );
        assert_eq!(cluster.recent.back().map(|e| e.seq), Some(10_009));
        let counted: usize = cluster.recent.iter().map(|e| e.kept_bytes()).sum();
        assert_eq!(counted, cluster.recent_bytes);

        // One event over the whole bound is still kept, alone.
        cluster.keep_recent(message(20_000, RECENT_EVENTS_BYTES + 1));
        assert_eq!(cluster.recent.len(), 1);
    }

    #[test]
    fn a_held_token_is_not_shown() {
        let held = HeldToken("s3cr3t-token".to_owned());
        assert_eq!(format!("{held:?}"), "HeldToken(***)");
    }
}
