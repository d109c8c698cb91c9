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
use crate::doorman::{DoorLimits, Doorman, Slots};
use crate::identity::IdentityMaker;
use crate::logging::FrameLog;
use crate::outbox::{Backlog, Outbox};
use crate::registry::hook::{AcceptedMessage, ChannelHook, Hook};
use crate::registry::{
    Command, ConsoleRequest, HOOK_FLUSH_BYTES, HOOK_FLUSH_DELAY, HOOK_FLUSH_MESSAGES,
    NewConnection, RegistryHandle, Shared,
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
        slots: Slots::new(config.max_peers),
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
            id: String::new(),
            token: String::new(),
        };
        let doorman = Doorman::new(DoorLimits {
            unregistered: 1000,
            unregistered_per_ip: 1000,
            conns_per_ip: 0,
        });
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let new = NewConnection::new(
            conn.conn,
            addr,
            conn.outbox.clone(),
            Instant::now(),
            doorman.admit(addr).unwrap(),
        );
        self.handle.send(Command::Connect(new)).await.unwrap();
        conn
    }

    async fn send(&self, conn: &TestConn, frame: Frame) {
        conn.outbox.touch();
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
        let (id, token) = welcome.body().split_once(' ').unwrap();
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
    alice.outbox.touch();
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
    assert_eq!(kills[0].sender_id(), bob.id.as_str());
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
    assert!(welcome[0].body().starts_with(&bob.id));
    // Past the original deadline: nobody is removed.
    tokio::time::sleep(DELAY).await;
    alice.outbox.touch();
    back.outbox.touch();
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
    assert_eq!(last.body(), "health check timed out");
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

/// A hook that records how many messages each flush handed on.
#[derive(Debug, Default)]
struct FlushRecorder {
    pending: usize,
    flushes: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl Hook for FlushRecorder {
    fn accepted(&mut self, _message: &AcceptedMessage) {
        self.pending += 1;
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            self.flushes.lock().unwrap().push(self.pending);
            self.pending = 0;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_hooks_get_a_megabyte_of_messages_at_once_without_waiting() {
    let recorder = FlushRecorder::default();
    let flushes = recorder.flushes.clone();
    let mut h = start_with_hooks(vec![Box::new(recorder)]);
    let alice = h.join("alice").await;
    let body = "x".repeat(15_000);
    let one = AcceptedMessage {
        seq: 0,
        at_ms: 0,
        conversation: Conversation::Lobby,
        author_id: alice.id.clone(),
        author_name: "alice".to_owned(),
        text: body.clone(),
    }
    .queued_bytes();
    let needed = HOOK_FLUSH_BYTES.div_ceil(one);
    assert!(needed < HOOK_FLUSH_MESSAGES);
    let start = Instant::now();
    for _ in 0..needed {
        h.send(&alice, Frame::broadcast(body.as_str())).await;
    }
    // No time passed, so the delay did not flush them: their bytes did.
    assert!(start.elapsed() < HOOK_FLUSH_DELAY);
    assert_eq!(*flushes.lock().unwrap(), [needed]);
    h.shutdown.cancel();
}
