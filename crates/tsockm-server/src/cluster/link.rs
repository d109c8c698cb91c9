//! The tasks that talk to the cluster's Redis for this node.
//!
//! - The *writer* runs the registry's [`LinkRequest`]s one at a time, in
//!   the order given (so this node's messages keep their order, and a
//!   HISTORY asked after a message sees it). A request that fails because
//!   Redis is unreachable is tried again until Redis is back: what the
//!   registry accepted is not lost to an outage.
//! - The *reader* reads this node's inbox and hands the events to the
//!   registry, in order.
//! - The *heartbeat* keeps this node alive in Redis, declares dead the nodes
//!   that stopped theirs, and notices a Redis that lost its data (then the
//!   registry puts back what this node knows).
//!
//! The registry never waits on any of them: it queues requests with
//! `try_send` and reads `up` to answer 503 while Redis is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tsockm_proto::{Action, Status, Text};

use super::event::{Entry, Event, Target};
use super::scripts;
use super::{ClusterConfig, ClusterError, INBOX_MAX};
use crate::store::{Conversation, HistoryError, Page, Query, StoreError, StoredMessage};

/// Requests queued from the registry to the writer.
pub const LINK_QUEUE: usize = 8192;

/// Most events the reader takes from the inbox at once.
const READ_BATCH: usize = 1024;

/// How long one blocking read of the inbox waits for events.
const READ_BLOCK_MS: u64 = 1000;

/// Waits between two attempts while Redis is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// How long a command may take before Redis counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stopping node keeps trying an unreachable Redis.
const STOP_GIVE_UP: Duration = Duration::from_secs(3);

/// Entries read per page when looking through an inbox for a resume.
const REPLAY_PAGE: usize = 1000;

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
pub struct HistoryAnswerFn(pub Box<dyn FnOnce(Result<Page, HistoryError>) + Send>);

impl std::fmt::Debug for HistoryAnswerFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryAnswerFn")
    }
}

impl LinkRequest {
    /// The request's kind, for logs (no content: a request may carry a
    /// token's hash or a message's text).
    fn kind(&self) -> &'static str {
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

/// The registry's end of the link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    tx: mpsc::Sender<LinkRequest>,
    up: Arc<AtomicBool>,
    /// This node's name.
    pub node: Text,
}

impl LinkHandle {
    /// Whether Redis is reachable (as far as the last command knew).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Queues a request; `false` if the queue is full (or the link ended).
    pub fn request(&self, request: LinkRequest) -> bool {
        self.tx.try_send(request).is_ok()
    }
}

/// What joining the cluster gave.
pub struct Started {
    /// The registry's end.
    pub link: LinkHandle,
    /// The alphabet ids are written with.
    pub alphabet: String,
    /// The cluster's sequence number at the join: this node's inbox
    /// carries what comes after.
    pub seq: u64,
    /// Every peer of the cluster then: id, node, online, name, since, addr.
    pub peers: Vec<(Text, Text, bool, Text, i64, Text)>,
    runner: Runner,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("node", &self.link.node)
            .field("seq", &self.seq)
            .field("n_peers", &self.peers.len())
            .finish()
    }
}

impl Started {
    /// Starts the writer, the reader and the heartbeat; they end when the
    /// registry drops its handle (the writer, after its queue) or
    /// `stopped` is cancelled.
    pub fn spawn(
        self,
        tracker: &tokio_util::task::TaskTracker,
        inputs: mpsc::Sender<ClusterInput>,
        stopped: CancellationToken,
    ) {
        let Runner {
            config,
            history_max,
            client,
            writer,
            rx,
            up,
            epoch,
            alphabet,
        } = self.runner;
        let shared = Arc::new(Shared {
            config,
            history_max,
            up,
            epoch,
            alphabet,
        });
        tracker.spawn(write_loop(
            shared.clone(),
            writer.clone(),
            rx,
            inputs.clone(),
        ));
        tracker.spawn(read_loop(
            shared.clone(),
            client,
            self.seq,
            inputs.clone(),
            stopped.clone(),
        ));
        tracker.spawn(heartbeat_loop(shared, writer, inputs, stopped));
    }
}

/// What the tasks need, before they are started.
struct Runner {
    config: ClusterConfig,
    history_max: usize,
    client: Client,
    writer: ConnectionManager,
    rx: mpsc::Receiver<LinkRequest>,
    up: Arc<AtomicBool>,
    epoch: String,
    alphabet: String,
}

/// What the three tasks share.
struct Shared {
    config: ClusterConfig,
    /// Messages kept per conversation (`--history-max`).
    history_max: usize,
    up: Arc<AtomicBool>,
    epoch: String,
    alphabet: String,
}

impl Shared {
    fn prefix(&self) -> String {
        format!("{}:", self.config.name)
    }

    fn heartbeat_ms(&self) -> u64 {
        u64::try_from(self.config.node_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Redis answered: log the end of an outage.
    fn reached(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::warn!("the cluster's Redis is reachable again");
        }
    }

    /// Redis did not answer: log the start of an outage, once.
    fn unreachable(&self, error: &RedisError) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, "the cluster's Redis is unreachable: MSG, JOIN, PART and HISTORY get 503 until it is back");
        }
    }
}

/// Whether an error means Redis could not be reached (retry), rather than
/// that it refused the command (do not).
fn is_unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

/// Connects to Redis, joins the cluster and reads what this node needs to
/// start: the alphabet, the current order, every peer.
pub async fn start(
    config: &ClusterConfig,
    fresh_alphabet: &str,
    history_max: usize,
) -> Result<Started, ClusterError> {
    let unreachable = |source| ClusterError::Unreachable {
        url: config.url.clone(),
        source,
    };
    let client = Client::open(config.url.as_str()).map_err(unreachable)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(RETRY_MAX);
    let mut writer = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(unreachable)?;
    let prefix = format!("{}:", config.name);
    let taken: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}alive:{}", config.node))
        .query_async(&mut writer)
        .await
        .map_err(unreachable)?;
    if taken {
        return Err(ClusterError::NameTaken(config.node.clone()));
    }
    let epoch = format!("{:016x}", fastrand::u64(..));
    let heartbeat_ms = u64::try_from(config.node_timeout.as_millis()).unwrap_or(u64::MAX);
    let reply: Vec<Value> = scripts::NODE_UP
        .arg(&prefix)
        .arg(INBOX_MAX)
        .arg(&config.node)
        .arg(heartbeat_ms)
        .arg(fresh_alphabet)
        .arg(&epoch)
        .invoke_async(&mut writer)
        .await
        .map_err(unreachable)?;
    let unexpected = |what: &str| ClusterError::Unexpected {
        url: config.url.clone(),
        what: what.to_owned(),
    };
    let strings: Vec<String> = reply.iter().map(value_string).collect();
    let [alphabet, epoch, seq, rest @ ..] = strings.as_slice() else {
        return Err(unexpected("a short answer to joining"));
    };
    let seq = seq
        .parse::<u64>()
        .map_err(|_| unexpected("a sequence number that is not a number"))?;
    let mut peers = Vec::new();
    for chunk in rest.chunks(6) {
        let [id, node, state, name, since, addr] = chunk else {
            return Err(unexpected("a peer record of the wrong length"));
        };
        peers.push((
            Text::from(id.as_str()),
            Text::from(node.as_str()),
            state == "on",
            Text::from(name.as_str()),
            since.parse::<i64>().unwrap_or(0),
            Text::from(addr.as_str()),
        ));
    }
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let up = Arc::new(AtomicBool::new(true));
    Ok(Started {
        link: LinkHandle {
            tx,
            up: up.clone(),
            node: Text::from(config.node.as_str()),
        },
        alphabet: alphabet.clone(),
        seq,
        peers,
        runner: Runner {
            config: config.clone(),
            history_max,
            client,
            writer,
            rx,
            up,
            epoch: epoch.clone(),
            alphabet: alphabet.clone(),
        },
    })
}

/// A reply value as a string (bulk, simple or integer).
fn value_string(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Okay => "OK".to_owned(),
        _ => String::new(),
    }
}

/// Runs the registry's requests in order until it drops its handle.
async fn write_loop(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    mut rx: mpsc::Receiver<LinkRequest>,
    inputs: mpsc::Sender<ClusterInput>,
) {
    // Once the registry is gone (the server stops), an unreachable Redis
    // holds the shutdown for this long at most.
    let mut give_up_at: Option<tokio::time::Instant> = None;
    while let Some(request) = rx.recv().await {
        let mut request = Some(request);
        let mut wait = RETRY_MIN;
        while let Some(current) = request.take() {
            match perform(&shared, &mut con, current, &inputs).await {
                Ok(()) => shared.reached(),
                Err((again, error)) => {
                    shared.unreachable(&error);
                    if rx.is_closed() {
                        let at = *give_up_at
                            .get_or_insert_with(|| tokio::time::Instant::now() + STOP_GIVE_UP);
                        if tokio::time::Instant::now() >= at {
                            tracing::error!(
                                "stopping without the cluster's Redis: this node's peers stay in it until their removal delay runs out"
                            );
                            return;
                        }
                    }
                    request = again;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

/// Runs one request. On an unreachable Redis, gives it back to be tried
/// again (or `None` if it cannot be: its answer was already given).
async fn perform(
    shared: &Shared,
    con: &mut ConnectionManager,
    request: LinkRequest,
    inputs: &mpsc::Sender<ClusterInput>,
) -> Result<(), (Option<LinkRequest>, RedisError)> {
    let prefix = shared.prefix();
    let node = shared.config.node.as_str();
    macro_rules! invoke {
        ($script:expr, $($arg:expr),* ; $ty:ty) => {{
            let mut invocation = $script.prepare_invoke();
            invocation.arg(&prefix).arg(INBOX_MAX);
            $( invocation.arg($arg); )*
            let result: Result<$ty, RedisError> = invocation.invoke_async(con).await;
            result
        }};
    }
    // A request whose command failed for another reason than an
    // unreachable Redis is logged and dropped.
    let outcome: Result<(), RedisError> = match &request {
        LinkRequest::Register {
            id,
            name,
            since_ms,
            addr,
            hash,
        } => invoke!(scripts::REGISTER, id.as_str(), node, name.as_str(), *since_ms, addr.as_str(), hash.as_str(); i64)
            .map(drop),
        LinkRequest::Remove {
            id,
            only_if_away_on,
        } => {
            let condition = only_if_away_on.as_ref().map_or("any", |n| n.as_str());
            invoke!(scripts::REMOVE, id.as_str(), condition; i64).map(drop)
        }
        LinkRequest::Msg {
            conn,
            target,
            author,
            name,
            text,
            at_ms,
            conversation,
        } => {
            let (kind, dst) = match target {
                Target::Lobby => ("lobby", ""),
                Target::Room(room) => ("room", room.as_str()),
                Target::Direct(to) => ("direct", to.as_str()),
            };
            let history_max = shared.history_max;
            match invoke!(scripts::MSG, kind, author.as_str(), name.as_str(), text.as_str(), *at_ms, dst, history_max, conversation.key(); i64) {
                Ok(-403) => refuse(inputs, *conn, Status::Forbidden, format!("you are not in {dst}: JOIN it first")).await,
                Ok(-404) => refuse(inputs, *conn, Status::NotFound, format!("no peer with id `{dst}`")).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
        LinkRequest::Join { room, id, name } => {
            invoke!(scripts::ROOM_JOIN, room.as_str(), id.as_str(), name.as_str(), node; i64).map(drop)
        }
        LinkRequest::Part { room, id, name } => {
            invoke!(scripts::ROOM_PART, room.as_str(), id.as_str(), name.as_str(), node; i64).map(drop)
        }
        LinkRequest::Away { id } => invoke!(scripts::AWAY, id.as_str(), node; i64).map(drop),
        LinkRequest::Online { id, hash } => {
            invoke!(scripts::ONLINE, id.as_str(), node, hash.as_str(); i64).map(drop)
        }
        LinkRequest::Claim(claim) => match self::claim(shared, con, claim).await {
            Ok(outcome) => {
                let _ = inputs
                    .send(ClusterInput::Claimed {
                        conn: claim.conn,
                        id: claim.id.clone(),
                        outcome,
                    })
                    .await;
                Ok(())
            }
            Err(e) => Err(e),
        },
        LinkRequest::History { .. } => Ok(()), // below: it owns its answer
        LinkRequest::Rooms { conn } => {
            let rooms: Result<Vec<(String, u64)>, RedisError> = redis::cmd("HGETALL")
                .arg(format!("{prefix}rooms"))
                .query_async(con)
                .await;
            match rooms {
                Ok(mut rooms) => {
                    rooms.sort();
                    let _ = inputs
                        .send(ClusterInput::Rooms { conn: *conn, rooms })
                        .await;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        LinkRequest::KillRequest { id } => {
            invoke!(scripts::KILL_REQUEST, id.as_str(); Value).map(drop)
        }
        LinkRequest::Restore { last_seq, peers } => {
            let mut invocation = scripts::RESTORE.prepare_invoke();
            invocation
                .arg(&prefix)
                .arg(INBOX_MAX)
                .arg(node)
                .arg(shared.heartbeat_ms())
                .arg(&shared.alphabet)
                .arg(&shared.epoch)
                .arg(*last_seq);
            for peer in peers {
                let rooms: Vec<&str> = peer.rooms.iter().map(Text::as_str).collect();
                invocation
                    .arg(peer.id.as_str())
                    .arg(if peer.online { "on" } else { "away" })
                    .arg(peer.name.as_str())
                    .arg(peer.since_ms)
                    .arg(peer.addr.as_str())
                    .arg(peer.hash.as_str())
                    .arg(rooms.join("\n"))
                    .arg(*last_seq);
            }
            let result: Result<i64, RedisError> = invocation.invoke_async(con).await;
            if result.is_ok() {
                tracing::warn!(
                    n_peers = peers.len(),
                    "this node's peers and rooms are back in the cluster's Redis; the history from before is lost"
                );
            }
            result.map(drop)
        }
        LinkRequest::NodeDown => invoke!(scripts::NODE_DOWN, node; i64).map(drop),
    };
    if let LinkRequest::History {
        conversation,
        query,
        answer,
    } = request
    {
        let result = history(&prefix, con, &conversation, &query).await;
        let answer = answer.0;
        return match result {
            Ok(page) => {
                answer(Ok(page));
                Ok(())
            }
            Err(HistoryFailure::UnknownId) => {
                answer(Err(HistoryError::UnknownId));
                Ok(())
            }
            Err(HistoryFailure::Redis(error)) => {
                answer(Err(HistoryError::Store(StoreError::Busy { queued: 0 })));
                Err((None, error))
            }
        };
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if is_unreachable(&error) => Err((Some(request), error)),
        Err(error) => {
            tracing::error!(%error, request = request.kind(), "the cluster's Redis refused a request; it is dropped");
            Ok(())
        }
    }
}

async fn refuse(
    inputs: &mpsc::Sender<ClusterInput>,
    conn: u64,
    status: Status,
    reason: String,
) -> Result<(), RedisError> {
    let _ = inputs
        .send(ClusterInput::Refused {
            conn,
            action: Action::Msg,
            status,
            reason,
        })
        .await;
    Ok(())
}

/// Takes a session here, and reads what the peer missed from its old
/// node's inbox.
async fn claim(
    shared: &Shared,
    con: &mut ConnectionManager,
    claim: &ClaimRequest,
) -> Result<Option<Claimed>, RedisError> {
    let prefix = shared.prefix();
    let reply: Vec<Value> = scripts::CLAIM
        .prepare_invoke()
        .arg(&prefix)
        .arg(INBOX_MAX)
        .arg(claim.id.as_str())
        .arg(&claim.given)
        .arg(&claim.new)
        .arg(shared.config.node.as_str())
        .arg(claim.addr.as_str())
        .invoke_async(con)
        .await?;
    let fields: Vec<String> = reply.iter().map(value_string).collect();
    let [seq, from, _state, away, rooms, name, since] = fields.as_slice() else {
        return Ok(None);
    };
    let (Ok(seq), Ok(away)) = (seq.parse::<u64>(), away.parse::<u64>()) else {
        return Ok(None);
    };
    let rooms: Vec<Text> = rooms.lines().map(Text::from).collect();
    // Messages after the last one the client got; other events after it
    // went away (before that, its old connection had them).
    let from_seq = claim.last_msg.map_or(away, |last| last.min(away));
    let mut replay = Vec::new();
    if from != &shared.config.node {
        let key = format!("{prefix}inbox:{from}");
        let mut start = format!("({from_seq}-0");
        loop {
            let page: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg(format!("{seq}-0"))
                .arg("COUNT")
                .arg(REPLAY_PAGE)
                .query_async(con)
                .await?;
            let n = page.ids.len();
            for stream_id in page.ids {
                start = format!("({}", stream_id.id);
                let Ok(entry) = Entry::decode(&stream_id.id, &stream_id.map) else {
                    continue;
                };
                let is_msg = matches!(entry.event, Event::Msg { .. });
                let after = if is_msg {
                    claim.last_msg.map_or(away, |last| last.min(away))
                } else {
                    away
                };
                if entry.seq > after && entry.concerns(&claim.id, &rooms) {
                    replay.push(entry);
                }
            }
            if n < REPLAY_PAGE {
                break;
            }
        }
    }
    if replay.len() > claim.max_replay {
        replay.drain(..replay.len() - claim.max_replay);
    }
    Ok(Some(Claimed {
        seq,
        name: Text::from(name.as_str()),
        since_ms: since.parse().unwrap_or(0),
        rooms,
        replay,
    }))
}

/// Why a HISTORY has no page.
enum HistoryFailure {
    UnknownId,
    Redis(RedisError),
}

impl From<RedisError> for HistoryFailure {
    fn from(error: RedisError) -> Self {
        HistoryFailure::Redis(error)
    }
}

/// Answers HISTORY from the conversation's history stream.
async fn history(
    prefix: &str,
    con: &mut ConnectionManager,
    conversation: &Conversation,
    query: &Query,
) -> Result<Page, HistoryFailure> {
    let key = format!("{prefix}hist:{}", conversation.key());
    let n = query.n();
    let (ids, older_first) = match *query {
        Query::Latest { .. } => (
            xrange(con, "XREVRANGE", &key, "+", "-", n + 1).await?,
            false,
        ),
        Query::Before { seq, .. } | Query::After { seq, .. } => {
            let anchor = xrange(
                con,
                "XRANGE",
                &key,
                &format!("{seq}-0"),
                &format!("{seq}-0"),
                1,
            )
            .await?;
            if anchor.is_empty() {
                return Err(HistoryFailure::UnknownId);
            }
            if matches!(query, Query::Before { .. }) {
                (
                    xrange(con, "XREVRANGE", &key, &format!("({seq}-0"), "-", n + 1).await?,
                    false,
                )
            } else {
                (
                    xrange(con, "XRANGE", &key, &format!("({seq}-0"), "+", n + 1).await?,
                    true,
                )
            }
        }
    };
    let more = ids.len() > n;
    let mut items: Vec<StoredMessage> = ids
        .into_iter()
        .take(n)
        .filter_map(|stream_id| {
            let seq = stream_id.id.split_once('-')?.0.parse::<u64>().ok()?;
            let field = |k: &str| stream_id.map.get(k).map(value_string).unwrap_or_default();
            Some(StoredMessage {
                seq,
                at_ms: field("t").parse().unwrap_or(0),
                conversation: conversation.clone(),
                author_id: field("a"),
                author_name: field("n"),
                text: field("x"),
            })
        })
        .collect();
    if !older_first {
        items.reverse();
    }
    Ok(Page { items, more })
}

async fn xrange(
    con: &mut ConnectionManager,
    command: &str,
    key: &str,
    from: &str,
    to: &str,
    count: usize,
) -> Result<Vec<redis::streams::StreamId>, RedisError> {
    let reply: StreamRangeReply = redis::cmd(command)
        .arg(key)
        .arg(from)
        .arg(to)
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await?;
    Ok(reply.ids)
}

/// Reads this node's inbox, from after `seq`, and hands the events on.
async fn read_loop(
    shared: Arc<Shared>,
    client: Client,
    mut seq: u64,
    inputs: mpsc::Sender<ClusterInput>,
    stopped: CancellationToken,
) {
    let key = format!("{}inbox:{}", shared.prefix(), shared.config.node);
    let mut con: Option<MultiplexedConnection> = None;
    let mut wait = RETRY_MIN;
    while !stopped.is_cancelled() {
        if con.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(Some(
                    RESPONSE_TIMEOUT + Duration::from_millis(READ_BLOCK_MS),
                ))
                .set_connection_timeout(Some(RESPONSE_TIMEOUT));
            let connected = tokio::select! {
                () = stopped.cancelled() => return,
                connected = client.get_multiplexed_async_connection_with_config(&config) => connected,
            };
            match connected {
                Ok(c) => con = Some(c),
                Err(error) => {
                    shared.unreachable(&error);
                    tokio::select! {
                        () = stopped.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        let Some(c) = con.as_mut() else { continue };
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(READ_BATCH)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(format!("{seq}-0"));
        let read = command.query_async::<Option<StreamReadReply>>(c);
        let reply = tokio::select! {
            () = stopped.cancelled() => return,
            reply = read => reply,
        };
        match reply {
            Ok(reply) => {
                wait = RETRY_MIN;
                shared.reached();
                let mut entries = Vec::new();
                for stream in reply.map(|r| r.keys).unwrap_or_default() {
                    for stream_id in stream.ids {
                        match Entry::decode(&stream_id.id, &stream_id.map) {
                            Ok(entry) => {
                                seq = seq.max(entry.seq);
                                entries.push(entry);
                            }
                            Err(error) => tracing::warn!(%error, "cluster event skipped"),
                        }
                    }
                }
                if !entries.is_empty() && inputs.send(ClusterInput::Events(entries)).await.is_err()
                {
                    return;
                }
            }
            Err(error) => {
                shared.unreachable(&error);
                con = None;
                tokio::select! {
                    () = stopped.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Keeps this node alive in Redis, declares dead the nodes that stopped
/// theirs, and notices a Redis that lost its data.
async fn heartbeat_loop(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    inputs: mpsc::Sender<ClusterInput>,
    stopped: CancellationToken,
) {
    let period = (shared.config.node_timeout / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prefix = shared.prefix();
    let mut known: Vec<(String, bool)> = Vec::new();
    let mut asked_reset = false;
    loop {
        tokio::select! {
            () = stopped.cancelled() => return,
            _ = tick.tick() => {}
        }
        let beat: Result<String, RedisError> = scripts::HEARTBEAT
            .prepare_invoke()
            .arg(&prefix)
            .arg(INBOX_MAX)
            .arg(&shared.config.node)
            .arg(shared.heartbeat_ms())
            .arg(&shared.epoch)
            .invoke_async(&mut con)
            .await;
        match beat.as_deref() {
            Ok("ok") => {
                shared.reached();
                asked_reset = false;
            }
            Ok(_) => {
                shared.reached();
                if !asked_reset {
                    tracing::warn!(
                        "the cluster's Redis lost this node (emptied, or declared it dead): putting it back"
                    );
                    asked_reset = true;
                    if inputs.send(ClusterInput::Reset).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(error) => {
                shared.unreachable(error);
                continue;
            }
        }
        // Which nodes are alive; the ones that stopped their heartbeat are
        // declared dead (one node does it, the script sees to that).
        let nodes: Result<Vec<(String, String)>, RedisError> = redis::cmd("HGETALL")
            .arg(format!("{prefix}nodes"))
            .query_async(&mut con)
            .await;
        let Ok(nodes) = nodes else { continue };
        let mut now = Vec::new();
        for (node, state) in nodes {
            let mut alive = state == "alive";
            if alive && node != shared.config.node {
                let beating: Result<bool, RedisError> = redis::cmd("EXISTS")
                    .arg(format!("{prefix}alive:{node}"))
                    .query_async(&mut con)
                    .await;
                if matches!(beating, Ok(false)) {
                    let _: Result<i64, RedisError> = scripts::NODE_DEAD
                        .prepare_invoke()
                        .arg(&prefix)
                        .arg(INBOX_MAX)
                        .arg(&node)
                        .invoke_async(&mut con)
                        .await;
                    tracing::warn!(%node, "a node of the cluster stopped its heartbeat: declared dead");
                    alive = false;
                }
            }
            now.push((node, alive));
        }
        now.sort();
        if now != known {
            known = now.clone();
            if inputs.send(ClusterInput::Nodes(now)).await.is_err() {
                return;
            }
        }
    }
}
