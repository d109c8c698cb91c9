//! The writer: runs the registry's requests against Redis one at a time,
//! in order, trying again while Redis is unreachable.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::{RedisError, Value};
use tokio::sync::mpsc;
use tsockm_proto::{Action, Status, Text};

use super::INBOX_MAX;
use super::event::{Entry, Event, Target};
use super::link::*;
use super::scripts;
use crate::store::{Conversation, HistoryError, Page, Query, StoreError, StoredMessage};

/// Runs the registry's requests in order until it drops its handle.
pub(super) async fn write_loop(
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
