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
                        .error(Action::Comm, Status::RequestTimeout, conn.dst(), reason);
                self.log.frame(Direction::Out, &conn.addr_text, &answer);
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
            .filter(|(_, conn)| conn.peer.is_some() && now >= conn.activity.last() + timeout)
            .map(|(id, _)| *id)
            .collect();
        for conn_id in dead {
            let Some(conn) = self.conns.get(&conn_id) else {
                continue;
            };
            let answer = self.wire.error(
                Action::Comm,
                Status::RequestTimeout,
                conn.dst(),
                HEALTH_TIMED_OUT,
            );
            self.log.frame(Direction::Out, conn.dst(), &answer);
            tracing::info!(who = %conn.dst(), "health check timed out");
            self.disconnect(conn_id, wire::encode(&answer), Queued::Keep(Vec::new()));
        }
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    //! The registry's timing logic under Tokio's paused clock: exact and fast;
    //! and the hook seam.

    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::BytesMut;
    use tokio_util::codec::Decoder;
    use tokio_util::sync::CancellationToken;
    use tsockm_proto::{Frame, FrameCodec, Kind};

    use crate::config::{Config, LogMode};
    use crate::doorman::{DoorLimits, Doorman};
    use crate::identity::IdentityMaker;
    use crate::logging::FrameLog;
    use crate::outbox::{Backlog, Outbox};
    use crate::registry::hook::{AcceptedMessage, ChannelHook, Hook};
    use crate::registry::{
        Activity, Command, ConsoleRequest, NewConnection, RegistryHandle, Shared,
    };
    use crate::stats::Stats;
    use crate::store::{Conversation, MemoryStore, StoreWorker, WorkerLimits};

    const INTERVAL: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_secs(20);
    const DELAY: Duration = Duration::from_secs(13);
    const HANDSHAKE: Duration = Duration::from_secs(10);

    struct Harness {
        handle: RegistryHandle,
        shutdown: CancellationToken,
        next_conn: ConnId,
    }

    struct TestConn {
        conn: ConnId,
        outbox: Arc<Outbox>,
        activity: Arc<Activity>,
        id: String,
        token: String,
    }

    fn start() -> Harness {
        start_with_hooks(Vec::new())
    }

    fn start_with_hooks(hooks: Vec<Box<dyn Hook>>) -> Harness {
        let config = Config {
            health_interval: INTERVAL,
            health_timeout: TIMEOUT,
            removal_delay: DELAY,
            handshake_timeout: HANDSHAKE,
            log_mode: LogMode::Silent,
            ..Config::default()
        };
        let addr: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        let shared = Shared {
            log: FrameLog::new(LogMode::Silent),
            stats: Arc::new(Stats::default()),
            backlog: Arc::new(Backlog::default()),
        };
        // The store thread outlives the test's paused clock harmlessly: it
        // ends when its handles are dropped.
        let (store, _thread) =
            StoreWorker::spawn(Box::new(MemoryStore::new(100)), WorkerLimits::default()).unwrap();
        let (mut registry, handle) = Registry::new(
            &config,
            addr,
            shared,
            IdentityMaker::fresh().unwrap(),
            store,
        );
        for hook in hooks {
            registry.add_hook(hook);
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(registry.run(shutdown.clone()));
        Harness {
            handle,
            shutdown,
            next_conn: 0,
        }
    }

    /// Decodes everything queued for a connection.
    fn drain(outbox: &Outbox) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        for bytes in outbox.take_pending() {
            buf.extend_from_slice(&bytes);
        }
        let mut codec = FrameCodec::new();
        let mut frames = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            frames.push(item.unwrap());
        }
        frames
    }

    impl Harness {
        /// Waits until every command sent so far has been handled.
        async fn settle(&self) {
            self.handle.console(ConsoleRequest::Info).await.unwrap();
        }

        async fn connect(&mut self) -> TestConn {
            self.next_conn += 1;
            let conn = TestConn {
                conn: self.next_conn,
                outbox: Arc::new(Outbox::new(4096)),
                activity: Arc::new(Activity::new()),
                id: String::new(),
                token: String::new(),
            };
            let doorman = Doorman::new(DoorLimits {
                unregistered: 1000,
                unregistered_per_ip: 1000,
                conns_per_ip: 0,
            });
            let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
            let new = NewConnection {
                ticket: Arc::new(doorman.admit(addr).unwrap()),
                conn: conn.conn,
                addr: "127.0.0.1:40000".parse().unwrap(),
                outbox: conn.outbox.clone(),
                activity: conn.activity.clone(),
                accepted_at: Instant::now(),
            };
            self.handle.send(Command::Connect(new)).await.unwrap();
            conn
        }

        async fn send(&self, conn: &TestConn, frame: Frame) {
            conn.activity.touch();
            let command = Command::Frame {
                conn: conn.conn,
                item: Ok(frame),
            };
            self.handle.send(command).await.unwrap();
            self.settle().await;
        }

        async fn join(&mut self, name: &str) -> TestConn {
            let mut conn = self.connect().await;
            self.send(&conn, Frame::register(name)).await;
            let welcome = drain(&conn.outbox).remove(0);
            let (id, token) = welcome.body.split_once(' ').unwrap();
            conn.id = id.to_owned();
            conn.token = token.to_owned();
            conn
        }

        async fn lose(&self, conn: &TestConn) {
            let command = Command::Disconnected {
                conn: conn.conn,
                input_ended: false,
            };
            self.handle.send(command).await.unwrap();
            self.settle().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn removal_happens_exactly_after_the_delay() {
        let mut h = start();
        let alice = h.join("alice").await;
        let bob = h.join("bob").await;
        drain(&alice.outbox);
        h.lose(&bob).await;
        tokio::time::sleep(DELAY - Duration::from_millis(1)).await;
        h.settle().await;
        // Alice kept answering the checks meanwhile.
        alice.activity.touch();
        assert!(
            drain(&alice.outbox)
                .iter()
                .all(|f| f.action != Action::NtfyKill)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        h.settle().await;
        let kills: Vec<Frame> = drain(&alice.outbox)
            .into_iter()
            .filter(|f| f.action == Action::NtfyKill)
            .collect();
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].sender_id, bob.id.as_str());
        h.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_resume_inside_the_delay_cancels_the_removal() {
        let mut h = start();
        let alice = h.join("alice").await;
        let bob = h.join("bob").await;
        drain(&alice.outbox);
        h.lose(&bob).await;
        tokio::time::sleep(DELAY / 2).await;
        let back = h.connect().await;
        h.send(&back, Frame::resume(bob.id.clone(), bob.token.clone()))
            .await;
        let welcome = drain(&back.outbox);
        assert_eq!(welcome[0].kind, Kind::Res);
        assert!(welcome[0].body.starts_with(&bob.id));
        // Past the original deadline: nobody is removed.
        tokio::time::sleep(DELAY).await;
        alice.activity.touch();
        back.activity.touch();
        h.settle().await;
        assert!(
            drain(&alice.outbox)
                .iter()
                .all(|f| f.action != Action::NtfyKill)
        );
        h.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_every_interval_and_408_after_the_timeout() {
        let mut h = start();
        let alice = h.join("alice").await;
        drain(&alice.outbox);
        tokio::time::sleep(INTERVAL + Duration::from_millis(1)).await;
        h.settle().await;
        let checks = drain(&alice.outbox);
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].to_string(),
            format!(
                "REQ::COMM::200::server::127.0.0.1:6969::{}::check?",
                alice.id
            )
        );
        // No sign of life since registering (t = 0): dead once TIMEOUT has
        // passed, found by the next sweep (every TIMEOUT / SWEEPS_PER_TIMEOUT).
        tokio::time::sleep(TIMEOUT - INTERVAL - Duration::from_millis(2)).await;
        h.settle().await;
        assert!(!alice.outbox.is_closed(), "dead too early");
        tokio::time::sleep(TIMEOUT / SWEEPS_PER_TIMEOUT + Duration::from_millis(2)).await;
        h.settle().await;
        assert!(alice.outbox.is_closed(), "not found dead in time");
        let frames = drain(&alice.outbox);
        let last = frames.last().unwrap();
        assert_eq!(
            (last.kind, last.status),
            (Kind::Err, Status::RequestTimeout)
        );
        assert_eq!(last.body, "health check timed out");
        h.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_timeout_counts_from_accept() {
        let mut h = start();
        let lazy = h.connect().await;
        tokio::time::sleep(HANDSHAKE / 2).await;
        h.send(&lazy, Frame::register("")).await;
        assert_eq!(drain(&lazy.outbox)[0].status, Status::BadRequest);
        tokio::time::sleep(HANDSHAKE / 2 - Duration::from_millis(1)).await;
        h.settle().await;
        assert!(!lazy.outbox.is_closed());
        tokio::time::sleep(Duration::from_millis(2)).await;
        h.settle().await;
        assert!(lazy.outbox.is_closed());
        let frames = drain(&lazy.outbox);
        assert_eq!(frames[0].status, Status::RequestTimeout);
        assert_eq!(frames[0].action, Action::Comm);
        h.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_refills_over_time() {
        let config_rate = Config::default().max_rate;
        let mut h = start();
        let alice = h.join("alice").await;
        // Registering took one token of the full bucket; use up the rest.
        for _ in 1..config_rate {
            h.handle
                .send(Command::Frame {
                    conn: alice.conn,
                    item: Ok(Frame::get_peer(alice.id.clone())),
                })
                .await
                .unwrap();
        }
        h.settle().await;
        let answers = drain(&alice.outbox);
        assert_eq!(answers.len(), config_rate as usize - 1);
        assert!(answers.iter().all(|f| f.status == Status::Ok));
        h.send(&alice, Frame::get_peer(alice.id.clone())).await;
        assert_eq!(drain(&alice.outbox)[0].status, Status::TooManyRequests);
        tokio::time::sleep(Duration::from_millis(2)).await;
        h.send(&alice, Frame::get_peer(alice.id.clone())).await;
        assert_eq!(drain(&alice.outbox)[0].status, Status::Ok);
        h.shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn every_accepted_message_reaches_the_hook_once_in_order() {
        let (hook, mut accepted) = ChannelHook::new(16);
        let mut h = start_with_hooks(vec![Box::new(hook)]);
        let alice = h.join("alice").await;
        let bob = h.join("bob").await;
        h.send(&alice, Frame::broadcast("one")).await;
        h.send(&bob, Frame::direct(alice.id.clone(), "two")).await;
        // Refused: unknown peer. Not accepted, so not seen by the hook.
        h.send(&bob, Frame::direct("nobody1234", "lost")).await;
        h.send(&alice, Frame::broadcast("three")).await;
        let mut seen = Vec::new();
        while let Ok(message) = accepted.try_recv() {
            seen.push(message);
        }
        let texts: Vec<&str> = seen.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        let seqs: Vec<u64> = seen.iter().map(|m| m.seq).collect();
        // Ids are sqids of seqs that grow with acceptance.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let AcceptedMessage {
            conversation,
            author_id,
            author_name,
            ..
        } = &seen[1];
        assert_eq!(author_id, bob.id.as_str());
        assert_eq!(author_name, "bob");
        assert_eq!(conversation, &Conversation::direct(&bob.id, &alice.id));
        assert_eq!(seen[0].conversation, Conversation::Lobby);
        h.shutdown.cancel();
    }
}
