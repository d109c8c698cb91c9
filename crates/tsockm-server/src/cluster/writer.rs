//! The writer: runs the registry's requests against Redis one at a time,
//! in order, trying again while Redis is unreachable.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{ErrorKind, RedisError, Script, ScriptInvocation, ServerErrorKind, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tsockm_proto::{Action, Status, Text};

use super::INBOX_MAX;
use super::event::{Entry, Event, Target};
use super::link::*;
use super::scripts;
use crate::store::{Conversation, HistoryError, Page, Query, StoreError, StoredMessage};

/// Requests sent to Redis as one pipeline at most.
const PIPELINE_MAX: usize = 512;

/// Runs the registry's requests in order until it drops its handle.
///
/// The requests that are one script each (messages, registrations, joins,
/// ...) go to Redis as one pipeline of all that are queued, so a busy node
/// pays one round trip for many; the others (claims, history, rooms,
/// restores) run on their own, in their place in the order.
pub(super) async fn write_loop(
    shared: Arc<Shared>,
    mut con: ConnectionManager,
    mut rx: mpsc::Receiver<LinkRequest>,
    inputs: mpsc::Sender<ClusterInput>,
) {
    let mut retry = Retry::default();
    let mut held: Option<LinkRequest> = None;
    let mut batch: Vec<LinkRequest> = Vec::new();
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => match rx.recv().await {
                Some(request) => {
                    shared.queued.taken(&request);
                    request
                }
                None => return,
            },
        };
        if !pipelines(&first) {
            let mut request = Some(first);
            while let Some(current) = request.take() {
                match perform(&shared, &mut con, current, &inputs).await {
                    Ok(()) => retry.reached(&shared),
                    Err((again, error)) => {
                        if !retry.pause(&shared, &rx, &error).await {
                            return;
                        }
                        request = again;
                    }
                }
            }
            continue;
        }
        batch.push(first);
        while batch.len() < PIPELINE_MAX {
            match rx.try_recv() {
                Ok(request) => {
                    shared.queued.taken(&request);
                    if !pipelines(&request) {
                        held = Some(request);
                        break;
                    }
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        loop {
            match perform_batch(&shared, &mut con, &batch, &inputs).await {
                Ok(()) => {
                    retry.reached(&shared);
                    break;
                }
                Err(error) if is_unreachable(&error) => {
                    if !retry.pause(&shared, &rx, &error).await {
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, n_requests = batch.len(), "the cluster's Redis refused a pipeline of requests; they are dropped");
                    break;
                }
            }
        }
        batch.clear();
        if batch.capacity() > PIPELINE_MAX {
            batch = Vec::new();
        }
    }
}

/// The writer's pauses while Redis is unreachable.
#[derive(Default)]
struct Retry {
    /// The next pause.
    wait: Option<Duration>,
    /// Once the registry is gone (the server stops), an unreachable Redis
    /// holds the shutdown until then at most.
    give_up_at: Option<tokio::time::Instant>,
}

impl Retry {
    fn reached(&mut self, shared: &Shared) {
        shared.reached();
        self.wait = None;
    }

    /// Waits before trying again; `false` when the writer should give up.
    async fn pause(
        &mut self,
        shared: &Shared,
        rx: &mpsc::Receiver<LinkRequest>,
        error: &RedisError,
    ) -> bool {
        shared.unreachable(error);
        if rx.is_closed() {
            let at = *self
                .give_up_at
                .get_or_insert_with(|| tokio::time::Instant::now() + STOP_GIVE_UP);
            if tokio::time::Instant::now() >= at {
                tracing::error!(
                    "stopping without the cluster's Redis: this node's peers stay in it until their removal delay runs out"
                );
                return false;
            }
        }
        let wait = self.wait.unwrap_or(RETRY_MIN);
        tokio::time::sleep(wait).await;
        self.wait = Some((wait * 2).min(RETRY_MAX));
        true
    }
}

/// The script of a request that is one script, and so may go in a
/// pipeline; `None` for the requests that run on their own.
fn script(request: &LinkRequest) -> Option<&'static Script> {
    let script: &'static Script = match request {
        LinkRequest::Register { .. } => &scripts::REGISTER,
        LinkRequest::Remove { .. } => &scripts::REMOVE,
        LinkRequest::Msg { .. } => &scripts::MSG,
        LinkRequest::Join { .. } => &scripts::ROOM_JOIN,
        LinkRequest::Part { .. } => &scripts::ROOM_PART,
        LinkRequest::Away { .. } => &scripts::AWAY,
        LinkRequest::Online { .. } => &scripts::ONLINE,
        LinkRequest::KillRequest { .. } => &scripts::KILL_REQUEST,
        LinkRequest::NodeDown => &scripts::NODE_DOWN,
        LinkRequest::Claim(_)
        | LinkRequest::History { .. }
        | LinkRequest::Rooms { .. }
        | LinkRequest::Restore { .. } => return None,
    };
    Some(script)
}

/// Whether a request is one script (see [`script`]).
fn pipelines(request: &LinkRequest) -> bool {
    script(request).is_some()
}

/// The invocation of a request that is one script (see [`script`]).
fn script_of(shared: &Shared, request: &LinkRequest) -> Option<ScriptInvocation<'static>> {
    let script = script(request)?;
    let node = shared.config.node.as_str();
    let mut invocation = script.prepare_invoke();
    invocation.arg(shared.prefix()).arg(INBOX_MAX);
    match request {
        LinkRequest::Register {
            id,
            name,
            since_ms,
            addr,
            hash,
        } => invocation
            .arg(id.as_str())
            .arg(node)
            .arg(name.as_str())
            .arg(*since_ms)
            .arg(addr.as_str())
            .arg(hash.as_str()),
        LinkRequest::Remove {
            id,
            only_if_away_on,
        } => invocation
            .arg(id.as_str())
            .arg(only_if_away_on.as_ref().map_or("any", |n| n.as_str())),
        LinkRequest::Msg {
            target,
            author,
            name,
            text,
            at_ms,
            conversation,
            ..
        } => {
            let (kind, dst) = match target {
                Target::Lobby => ("lobby", ""),
                Target::Room(room) => ("room", room.as_str()),
                Target::Direct(to) => ("direct", to.as_str()),
            };
            invocation
                .arg(kind)
                .arg(author.as_str())
                .arg(name.as_str())
                .arg(text.as_str())
                .arg(*at_ms)
                .arg(dst)
                .arg(shared.history_max)
                .arg(conversation.key())
        }
        LinkRequest::Join { room, id, name } | LinkRequest::Part { room, id, name } => invocation
            .arg(room.as_str())
            .arg(id.as_str())
            .arg(name.as_str())
            .arg(node),
        LinkRequest::Away { id, through } => invocation.arg(id.as_str()).arg(node).arg(*through),
        LinkRequest::Online { id, hash } => {
            invocation.arg(id.as_str()).arg(node).arg(hash.as_str())
        }
        LinkRequest::KillRequest { id } => invocation.arg(id.as_str()),
        LinkRequest::NodeDown => invocation.arg(node),
        _ => return None,
    };
    Some(invocation)
}

/// Runs a pipeline of one-script requests. A script Redis does not have
/// (it restarted) is loaded and its requests run again, in order.
async fn perform_batch(
    shared: &Shared,
    con: &mut ConnectionManager,
    batch: &[LinkRequest],
    inputs: &mpsc::Sender<ClusterInput>,
) -> Result<(), RedisError> {
    let invocations: Vec<ScriptInvocation<'static>> =
        batch.iter().filter_map(|r| script_of(shared, r)).collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for invocation in &invocations {
        pipe.invoke_script(invocation);
    }
    let results: Vec<Result<Value, RedisError>> = pipe.query_async(con).await?;
    for ((request, invocation), result) in batch.iter().zip(&invocations).zip(results) {
        let result = match result {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                invocation.invoke_async(con).await
            }
            other => other,
        };
        match result {
            Ok(value) => answered(inputs, request, &value).await,
            Err(error) if is_unreachable(&error) => return Err(error),
            Err(error) => {
                tracing::error!(%error, request = request.kind(), "the cluster's Redis refused a request; it is dropped");
            }
        }
    }
    Ok(())
}

/// What a one-script request's answer means for its client: a message to
/// a room it is not in, or to a peer that is gone, is refused.
async fn answered(inputs: &mpsc::Sender<ClusterInput>, request: &LinkRequest, value: &Value) {
    let LinkRequest::Msg { conn, target, .. } = request else {
        return;
    };
    let dst = match target {
        Target::Lobby => "",
        Target::Room(room) | Target::Direct(room) => room.as_str(),
    };
    let refusal = match value {
        Value::Int(-403) => (
            Status::Forbidden,
            format!("you are not in {dst}: JOIN it first"),
        ),
        Value::Int(-404) => (Status::NotFound, format!("no peer with id `{dst}`")),
        _ => return,
    };
    let _ = inputs
        .send(ClusterInput::Refused {
            conn: *conn,
            action: Action::Msg,
            status: refusal.0,
            reason: refusal.1,
        })
        .await;
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
    if let Some(invocation) = script_of(shared, &request) {
        let result: Result<Value, RedisError> = invocation.invoke_async(con).await;
        return match result {
            Ok(value) => {
                answered(inputs, &request, &value).await;
                Ok(())
            }
            Err(error) if is_unreachable(&error) => Err((Some(request), error)),
            Err(error) => {
                tracing::error!(%error, request = request.kind(), "the cluster's Redis refused a request; it is dropped");
                Ok(())
            }
        };
    }
    // A request whose command failed for another reason than an
    // unreachable Redis is logged and dropped.
    let outcome: Result<(), RedisError> = match &request {
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
        // One script each (`script` lists them): run above.
        LinkRequest::Register { .. }
        | LinkRequest::Remove { .. }
        | LinkRequest::Msg { .. }
        | LinkRequest::Join { .. }
        | LinkRequest::Part { .. }
        | LinkRequest::Away { .. }
        | LinkRequest::Online { .. }
        | LinkRequest::KillRequest { .. }
        | LinkRequest::NodeDown => Ok(()),
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
