//! The reader: reads this node's inbox stream, in order, and hands the
//! events to the registry.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::Entry;
use super::link::*;

/// Reads this node's inbox, from after `seq`, and hands the events on.
pub(super) async fn read_loop(
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
