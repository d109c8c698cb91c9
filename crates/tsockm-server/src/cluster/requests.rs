//! What the registry asks of the cluster's link ([`LinkRequest`]) and what
//! the link hands back ([`ClusterInput`]).

use tsockm_proto::{Action, Status, Text};

use super::event::{Entry, Target};
use crate::store::{Conversation, HistoryError, Page, Query};

/// What the registry asks the writer to do.
#[derive(Debug)]
pub enum LinkRequest {
    /// A peer registered here.
    Register {
        /// Its id.
        id: Text,
        /// Its username.
        name: Text,
        /// When, Unix ms.
        since_ms: i64,
        /// Its address.
        addr: Text,
        /// Its token's hash, in hex.
        hash: String,
    },
    /// Remove a peer (COMM_END, `:kill`, the end of its removal delay).
    Remove {
        /// The peer.
        id: Text,
        /// Only if it is still away on this node (a removal delay ended).
        only_if_away_on: Option<Text>,
    },
    /// A message accepted here.
    Msg {
        /// The connection of the author (for a refusal).
        conn: u64,
        /// Its audience.
        target: Target,
        /// The author.
        author: Text,
        /// The author's username.
        name: Text,
        /// The text.
        text: Text,
        /// When, Unix ms.
        at_ms: i64,
        /// Its conversation, for history.
        conversation: Conversation,
    },
    /// A peer joins a room.
    Join {
        /// The room.
        room: Text,
        /// The peer.
        id: Text,
        /// Its username.
        name: Text,
    },
    /// A peer leaves a room.
    Part {
        /// The room.
        room: Text,
        /// The peer.
        id: Text,
        /// Its username.
        name: Text,
    },
    /// A peer's connection here ended.
    Away {
        /// The peer.
        id: Text,
        /// The last number of the cluster's order whose frames its
        /// connection wrote (a node that takes the session over replays
        /// what came after).
        through: u64,
    },
    /// A peer resumed here, where it was.
    Online {
        /// The peer.
        id: Text,
        /// Its new token's hash, in hex.
        hash: String,
    },
    /// A peer of another node resumes here.
    Claim(ClaimRequest),
    /// HISTORY, answered through `answer`.
    History {
        /// The conversation.
        conversation: Conversation,
        /// What to answer.
        query: Query,
        /// Called with the page.
        answer: HistoryAnswerFn,
    },
    /// ROOMS from a connection.
    Rooms {
        /// The connection.
        conn: u64,
    },
    /// The operator asks for a peer of another node to be removed.
    KillRequest {
        /// The peer.
        id: Text,
    },
    /// Put back this node's peers (Redis lost its data).
    Restore {
        /// The last sequence number this node saw.
        last_seq: u64,
        /// Its peers.
        peers: Vec<RestorePeer>,
    },
    /// This node stops: its peers are removed everywhere.
    NodeDown,
}

/// Where a HISTORY page goes (called on the link's task).
pub struct HistoryAnswerFn(pub Box<dyn FnOnce(Result<Page, HistoryError>) + Send + Sync>);

impl std::fmt::Debug for HistoryAnswerFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryAnswerFn")
    }
}

impl LinkRequest {
    /// What the request counts against the link queue's byte bound
    /// ([`LINK_QUEUE_BYTES`](super::link::LINK_QUEUE_BYTES)): its fixed
    /// size and the text it carries.
    pub fn queued_bytes(&self) -> usize {
        let carried = match self {
            LinkRequest::Register {
                id,
                name,
                addr,
                hash,
                ..
            } => id.len() + name.len() + addr.len() + hash.len(),
            LinkRequest::Remove {
                id,
                only_if_away_on,
            } => id.len() + only_if_away_on.as_ref().map_or(0, |node| node.len()),
            LinkRequest::Msg {
                target,
                author,
                name,
                text,
                conversation,
                ..
            } => {
                target.heap_bytes()
                    + author.len()
                    + name.len()
                    + text.len()
                    + conversation.heap_bytes()
            }
            LinkRequest::Join { room, id, name } | LinkRequest::Part { room, id, name } => {
                room.len() + id.len() + name.len()
            }
            LinkRequest::Away { id, .. } | LinkRequest::KillRequest { id } => id.len(),
            LinkRequest::Online { id, hash } => id.len() + hash.len(),
            LinkRequest::Claim(claim) => {
                claim.id.len() + claim.given.len() + claim.new.len() + claim.addr.len()
            }
            LinkRequest::History { conversation, .. } => conversation.heap_bytes(),
            LinkRequest::Rooms { .. } | LinkRequest::NodeDown => 0,
            LinkRequest::Restore { peers, .. } => peers
                .iter()
                .map(|peer| {
                    std::mem::size_of::<RestorePeer>()
                        + peer.id.len()
                        + peer.name.len()
                        + peer.addr.len()
                        + peer.hash.len()
                        + peer.rooms.iter().map(|room| room.len()).sum::<usize>()
                })
                .sum(),
        };
        std::mem::size_of::<LinkRequest>() + carried
    }

    /// The request's kind, for logs (no content: a request may carry a
    /// token's hash or a message's text).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            LinkRequest::Register { .. } => "register",
            LinkRequest::Remove { .. } => "remove",
            LinkRequest::Msg { .. } => "message",
            LinkRequest::Join { .. } => "join",
            LinkRequest::Part { .. } => "part",
            LinkRequest::Away { .. } => "away",
            LinkRequest::Online { .. } => "online",
            LinkRequest::Claim(_) => "claim",
            LinkRequest::History { .. } => "history",
            LinkRequest::Rooms { .. } => "rooms",
            LinkRequest::KillRequest { .. } => "kill request",
            LinkRequest::Restore { .. } => "restore",
            LinkRequest::NodeDown => "node down",
        }
    }
}

/// A resume, here, of a peer of another node.
#[derive(Debug)]
pub struct ClaimRequest {
    /// The connection resuming.
    pub conn: u64,
    /// The peer.
    pub id: Text,
    /// The hash of the token given, in hex.
    pub given: String,
    /// The hash of the new token, in hex.
    pub new: String,
    /// The connection's address.
    pub addr: Text,
    /// The last message the client received, if it said and it is one.
    pub last_msg: Option<u64>,
    /// The most events to replay.
    pub max_replay: usize,
}

/// A resume that took the session here.
#[derive(Debug)]
pub struct Claimed {
    /// Its place in the cluster's order: events after it come to this
    /// node; before it, they are in `replay`.
    pub seq: u64,
    /// The peer's username.
    pub name: Text,
    /// When it registered, Unix ms.
    pub since_ms: i64,
    /// Its rooms.
    pub rooms: Vec<Text>,
    /// What it missed, oldest first: messages after its last one, other
    /// events after it went away.
    pub replay: Vec<Entry>,
}

/// A peer of this node, as put back after Redis lost its data.
#[derive(Debug, Clone)]
pub struct RestorePeer {
    /// Its id.
    pub id: Text,
    /// Online or away.
    pub online: bool,
    /// Its username.
    pub name: Text,
    /// When it registered, Unix ms.
    pub since_ms: i64,
    /// Its address.
    pub addr: Text,
    /// Its token's hash, in hex.
    pub hash: String,
    /// Its rooms.
    pub rooms: Vec<Text>,
}

/// What the link hands the registry.
#[derive(Debug)]
pub enum ClusterInput {
    /// Events read from this node's inbox, in order.
    Events(Vec<Entry>),
    /// The answer to a claim: `None` if the session is unknown or the
    /// token wrong.
    Claimed {
        /// The connection resuming.
        conn: u64,
        /// The peer.
        id: Text,
        /// The outcome.
        outcome: Option<Claimed>,
    },
    /// The answer to ROOMS: every room and its member count.
    Rooms {
        /// The connection.
        conn: u64,
        /// Rooms and counts.
        rooms: Vec<(String, u64)>,
    },
    /// A request of a connection was refused by the cluster's state.
    Refused {
        /// The connection.
        conn: u64,
        /// The action.
        action: Action,
        /// The status.
        status: Status,
        /// Why.
        reason: String,
    },
    /// Redis lost its data (or this node was declared dead): put back
    /// what this node knows with [`LinkRequest::Restore`].
    Reset,
    /// The nodes of the cluster and whether each is alive.
    Nodes(Vec<(String, bool)>),
}
