//! The heartbeat: keeps this node alive in Redis, declares dead the nodes
//! that stopped theirs, and notices a Redis that lost its data.

use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::INBOX_MAX;
use super::link::*;
use super::scripts;

/// Keeps this node alive in Redis, declares dead the nodes that stopped
/// theirs, and notices a Redis that lost its data.
pub(super) async fn heartbeat_loop(
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
