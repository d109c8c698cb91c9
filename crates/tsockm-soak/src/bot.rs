//! One scripted client: registers, talks, and ends its connections in every
//! way the contract knows, recording each frame it receives per peer id.
//!
//! With several nodes (a cluster) a client registers on any of them and,
//! after a drop or a stall, usually resumes on another node than the one it
//! left: the contract lets a session move.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tsockm_proto::{Action, BROADCAST, Frame, FrameCodec, Kind, SERVER_ID, Status};

use crate::rng::Rng;
use crate::{Counters, HEALTH_TIMEOUT, MAX_RATE, REMOVAL_DELAY};

/// How long a client waits for an answer it is owed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames buffered between a connection's reader and the bot; a stalled
/// bot stops taking them, so the socket fills and the server sees a peer
/// that does not read.
const INBOX_FRAMES: usize = 64;
/// Broadcasts written at once by a flood (more than the rate bucket holds).
const FLOOD_FRAMES: u64 = MAX_RATE as u64 * 3 / 2;

/// One item a client received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rx {
    /// A broadcast `b<seq>` by `author`, with its message id.
    Broadcast {
        author: String,
        seq: u64,
        id: String,
    },
    /// A direct message `d<seq>` by `author`, with its message id.
    Direct {
        author: String,
        seq: u64,
        id: String,
    },
    /// NTFY_JOIN for `peer`; `announced` when fanned out (DST `*`), not roster.
    Join { peer: String, announced: bool },
    /// NTFY_KILL for `peer`.
    Kill { peer: String },
}

/// Everything one peer id received, across its connections.
#[derive(Debug, Clone)]
pub struct Session {
    /// The peer id.
    pub peer_id: String,
    /// Which client it was.
    pub bot: usize,
    /// Whether it was an observer (never churns, leaves last).
    pub observer: bool,
    /// Whether a connection of it was reset with frames possibly in flight
    /// and the resume did not name its last message id (such frames cannot
    /// be known to be lost, so coverage is not checked).
    pub lossy: bool,
    /// What it received, in order.
    pub received: Vec<Rx>,
    /// Its connections, in order, for the reports.
    pub connections: Vec<Connection>,
    /// How it ended, for the reports (`left`, `not resumed in time (404)`,
    /// ...).
    pub end: &'static str,
    /// When it began and ended, ms since the process started.
    pub span_ms: (u64, u64),
}

/// Milliseconds since the first call in this process.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection of a session, for the reports: where a gap falls
/// relative to the drops and resumes says what to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// How many items the session had received when it began.
    pub at: usize,
    /// The node it was made to.
    pub node: usize,
    /// How it began: `registered`, `resumed`, `resumed after <msg id>`.
    pub how: String,
    /// How the connection before it ended (empty for the first).
    pub after: &'static str,
}

/// A connection: the write half, and frames decoded by a reader task.
#[derive(Debug)]
struct Conn {
    write: OwnedWriteHalf,
    inbox: mpsc::Receiver<Result<Frame, String>>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What waiting on a connection ended with.
enum Waited {
    Frame(Frame),
    Eof,
    TimedOut,
}

/// A scripted client.
#[derive(Debug)]
pub struct Bot {
    index: usize,
    observer: bool,
    /// Every node's address (one for a server on its own).
    nodes: Arc<[SocketAddr]>,
    /// The node of the current, or the last, connection.
    node: usize,
    rng: Rng,
    counters: Arc<Counters>,
    violations: Arc<Mutex<Vec<String>>>,
    conn: Option<Conn>,
    /// `(peer id, resume token)` while the peer exists (online or away).
    identity: Option<(String, String)>,
    session: Option<Session>,
    sessions: Vec<Session>,
    next_broadcast: u64,
    next_direct: u64,
    /// Peers this client knows of (joined and not killed).
    known: Vec<String>,
    /// The id of the last message (MSG) this peer id received.
    last_msg_id: Option<String>,
    /// Whether the last connection was reset (frames in flight lost).
    was_reset: bool,
    /// How the last connection ended, for the session's record.
    ended: &'static str,
}

impl Bot {
    /// A client that has not connected yet; it first connects to
    /// `nodes[node]`.
    pub fn new(
        index: usize,
        observer: bool,
        (nodes, node): (Arc<[SocketAddr]>, usize),
        rng: Rng,
        counters: Arc<Counters>,
        violations: Arc<Mutex<Vec<String>>>,
    ) -> Bot {
        Bot {
            index,
            observer,
            node: node % nodes.len().max(1),
            nodes,
            rng,
            counters,
            violations,
            conn: None,
            identity: None,
            session: None,
            sessions: Vec::new(),
            next_broadcast: 0,
            next_direct: 0,
            known: Vec::new(),
            last_msg_id: None,
            was_reset: false,
            ended: "",
        }
    }

    fn violation(&self, what: String) {
        if let Ok(mut all) = self.violations.lock() {
            all.push(format!("client {}: {what}", self.index));
        }
    }

    /// Registers; `None` if that fails.
    pub async fn registered(mut self) -> Option<Bot> {
        self.register().await.then_some(self)
    }

    /// Its peer id, once registered.
    pub fn peer_id(&self) -> Option<&str> {
        self.identity.as_ref().map(|(id, _)| id.as_str())
    }

    /// Leaves at once (COMM_END) and hands over its record.
    pub async fn leave_now(mut self) -> Vec<Session> {
        self.leave().await;
        self.finish()
    }

    /// An observer: reads and answers health checks until `done`, then
    /// leaves cleanly.
    pub async fn observe(mut self, done: CancellationToken) -> Vec<Session> {
        while !done.is_cancelled() {
            tokio::select! {
                () = done.cancelled() => break,
                alive = self.pump(Duration::from_millis(100)) => {
                    if !alive {
                        self.violation("an observer's connection ended".to_owned());
                        break;
                    }
                }
            }
        }
        self.leave().await;
        self.finish()
    }

    /// A churner: random actions until `until`, then leaves if online.
    pub async fn churn(mut self, until: Instant) -> Vec<Session> {
        while Instant::now() < until {
            if self.identity.is_none() {
                // A new peer may register on any node.
                self.node = self.rng.below(self.nodes.len() as u64) as usize;
            }
            if self.identity.is_none() && !self.register().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            for _ in 0..self.rng.between(1, 5) {
                match self.rng.below(100) {
                    0..=49 => {
                        for _ in 0..self.rng.between(1, 2) {
                            self.broadcast().await;
                        }
                    }
                    50..=69 => self.direct().await,
                    70 => self.flood().await,
                    _ => {}
                }
                let pause = self.rng.between(50, 250);
                if !self.pump(Duration::from_millis(pause)).await {
                    self.violation("connection ended while idle".to_owned());
                    self.conn = None;
                    break;
                }
            }
            if self.conn.is_none() {
                // Lost without asking: treat as a drop and resume.
                self.ended = "lost";
                self.resume_or_register(true).await;
                continue;
            }
            match self.rng.below(100) {
                0..=24 => self.leave().await,
                25..=34 => {
                    self.drop_connection(false).await;
                    let wait = self.rng.between(50, 500);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    self.resume_or_register(true).await;
                }
                35..=39 => {
                    self.drop_connection(true).await;
                    let wait = self.rng.between(50, 500);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    self.resume_or_register(true).await;
                }
                40..=49 => {
                    self.drop_connection(false).await;
                    tokio::time::sleep(REMOVAL_DELAY + Duration::from_millis(800)).await;
                    self.resume_or_register(false).await;
                }
                50..=59 => self.stall().await,
                _ => {}
            }
        }
        if self.conn.is_some() {
            self.leave().await;
        }
        self.finish()
    }

    fn finish(mut self) -> Vec<Session> {
        self.end_session("the run ended");
        self.sessions
    }

    /// Files the current session's record, saying how it ended (unless it
    /// already says).
    fn end_session(&mut self, how: &'static str) {
        if let Some(mut session) = self.session.take() {
            if session.end.is_empty() {
                session.end = how;
            }
            session.span_ms.1 = now_ms();
            self.sessions.push(session);
        }
    }

    // ---- Connections ----------------------------------------------------------

    async fn connect(&mut self) -> bool {
        let Some(&addr) = self.nodes.get(self.node) else {
            self.violation("no node to connect to".to_owned());
            return false;
        };
        let stream = match tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            other => {
                self.violation(format!("cannot connect: {other:?}"));
                return false;
            }
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, inbox) = mpsc::channel(INBOX_FRAMES);
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read, FrameCodec::with_max_frame_bytes(1 << 20));
            while let Some(item) = frames.next().await {
                let item = match item {
                    Ok(Ok(frame)) => Ok(frame),
                    Ok(Err(e)) => Err(format!("malformed frame from the server: {e}")),
                    Err(_) => break, // Reset: the connection is over.
                };
                if tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        self.conn = Some(Conn {
            write,
            inbox,
            reader,
        });
        true
    }

    async fn write(&mut self, line: &[u8]) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        conn.write.write_all(line).await.is_ok()
    }

    /// The next frame (recorded and handled), EOF, or nothing in `timeout`.
    async fn next(&mut self, timeout: Duration) -> Waited {
        let Some(conn) = &mut self.conn else {
            return Waited::Eof;
        };
        let item = match tokio::time::timeout(timeout, conn.inbox.recv()).await {
            Err(_) => return Waited::TimedOut,
            Ok(None) => return Waited::Eof,
            Ok(Some(item)) => item,
        };
        match item {
            Ok(frame) => {
                self.on_frame(&frame).await;
                Waited::Frame(frame)
            }
            Err(e) => {
                self.violation(e);
                Waited::Eof
            }
        }
    }

    /// Handles frames for `period`; `false` if the connection ended.
    async fn pump(&mut self, period: Duration) -> bool {
        let until = Instant::now() + period;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.next(left).await {
                Waited::Frame(_) => {}
                Waited::Eof => return false,
                Waited::TimedOut => return true,
            }
        }
    }

    /// Handles frames until one satisfies `wanted` (returned), or EOF or
    /// the timeout (`None`).
    async fn pump_until(&mut self, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let until = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Waited::Frame(frame) if wanted(&frame) => return Some(frame),
                Waited::Frame(_) => {}
                Waited::Eof | Waited::TimedOut => return None,
            }
        }
    }

    /// Reads everything the server still sends until it closes.
    async fn drain_to_eof(&mut self) -> bool {
        let until = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Waited::Frame(_) => {}
                Waited::Eof => {
                    self.conn = None;
                    return true;
                }
                Waited::TimedOut => return false,
            }
        }
    }

    /// Records a frame and answers health checks.
    async fn on_frame(&mut self, frame: &Frame) {
        self.counters
            .frames_received
            .fetch_add(1, Ordering::Relaxed);
        let rx = match (frame.kind, frame.action) {
            (Kind::Req, Action::Comm) => {
                self.write(b"RES::COMM::200::::::::OK\n").await;
                None
            }
            (Kind::Res, Action::Msg) => {
                let author = frame.sender_id().to_string();
                let id = frame.src().to_string();
                self.last_msg_id = Some(id.clone());
                let body = frame.body();
                let seq = body.get(1..).and_then(|s| s.parse::<u64>().ok());
                match (body.as_bytes().first(), seq) {
                    (Some(b'b'), Some(seq)) if frame.dst() == BROADCAST => {
                        Some(Rx::Broadcast { author, seq, id })
                    }
                    (Some(b'd'), Some(seq)) if frame.dst() != BROADCAST => {
                        Some(Rx::Direct { author, seq, id })
                    }
                    _ => {
                        self.violation(format!("unexpected message {frame}"));
                        None
                    }
                }
            }
            (Kind::Res, Action::NtfyJoin) => {
                let peer = frame.sender_id().to_string();
                if !self.known.contains(&peer) {
                    self.known.push(peer.clone());
                }
                Some(Rx::Join {
                    peer,
                    announced: frame.dst() == BROADCAST,
                })
            }
            (Kind::Res, Action::NtfyKill) => {
                let peer = frame.sender_id().to_string();
                self.known.retain(|p| *p != peer);
                Some(Rx::Kill { peer })
            }
            (Kind::Err, _) if frame.status == Status::TooManyRequests => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => None,
        };
        if let (Some(rx), Some(session)) = (rx, &mut self.session) {
            session.received.push(rx);
        }
    }

    // ---- Registration and resume ---------------------------------------------

    async fn register(&mut self) -> bool {
        self.end_session("registered anew");
        self.identity = None;
        self.known.clear();
        self.last_msg_id = None;
        self.was_reset = false;
        if !self.connect().await {
            return false;
        }
        let line = format!("REQ::COMM::200::::::::bot{}\n", self.index);
        if !self.write(line.as_bytes()).await {
            return false;
        }
        let Some(welcome) = self.pump_until(is_welcome).await else {
            self.violation("no welcome to a registration".to_owned());
            self.conn = None;
            return false;
        };
        let Some((id, token)) = welcome.body().split_once(' ') else {
            self.violation(format!("bad welcome {welcome}"));
            return false;
        };
        self.identity = Some((id.to_owned(), token.to_owned()));
        self.session = Some(Session {
            peer_id: id.to_owned(),
            bot: self.index,
            observer: self.observer,
            lossy: false,
            received: Vec::new(),
            connections: vec![Connection {
                at: 0,
                node: self.node,
                how: "registered".to_owned(),
                after: "",
            }],
            end: "",
            span_ms: (now_ms(), 0),
        });
        self.next_broadcast = 0;
        self.next_direct = 0;
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Resumes on a new connection, usually to another node than the one
    /// it left; `in_time` says whether it must succeed. After a refused
    /// resume the client registers anew (on the node it asked).
    async fn resume_or_register(&mut self, in_time: bool) {
        let Some((id, token)) = self.identity.clone() else {
            self.register().await;
            return;
        };
        self.conn = None;
        let left = self.node;
        let n_nodes = self.nodes.len() as u64;
        if n_nodes > 1 && self.rng.below(4) != 0 {
            self.node = (left + 1 + self.rng.below(n_nodes - 1) as usize) % n_nodes as usize;
        }
        if !self.connect().await {
            return;
        }
        // Half the resumes name the last message received: nothing written
        // to the old connection is then lost, and nothing arrives twice.
        // The others get the kept frames only (v1), so after a reset the
        // frames that were in flight may be missing.
        let after = if self.rng.below(2) == 0 {
            self.last_msg_id.clone().unwrap_or_default()
        } else {
            String::new()
        };
        if std::mem::take(&mut self.was_reset)
            && after.is_empty()
            && let Some(session) = &mut self.session
        {
            session.lossy = true;
        }
        let line = format!("REQ::COMM::200::{id}::{after}::::{token}\n");
        let answer = if self.write(line.as_bytes()).await {
            self.pump_until(|f| f.action == Action::Comm && f.kind != Kind::Req)
                .await
        } else {
            None
        };
        match answer {
            Some(frame) if is_welcome(&frame) => {
                let resumed = frame.body().split_once(' ');
                match resumed {
                    Some((same, new_token)) if same == id => {
                        self.identity = Some((id.clone(), new_token.to_owned()));
                    }
                    _ => self.violation(format!("resume answered with {frame}")),
                }
                if let Some(session) = &mut self.session {
                    session.connections.push(Connection {
                        at: session.received.len(),
                        node: self.node,
                        how: if after.is_empty() {
                            "resumed".to_owned()
                        } else {
                            format!("resumed after {after}")
                        },
                        after: std::mem::take(&mut self.ended),
                    });
                }
                if in_time {
                    self.counters.resumes.fetch_add(1, Ordering::Relaxed);
                    if self.node != left {
                        self.counters
                            .resumes_elsewhere
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if !after.is_empty() {
                        self.counters
                            .resumes_after_id
                            .fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    self.violation(format!("{id} resumed after the removal delay"));
                }
            }
            Some(frame) if frame.kind == Kind::Err && frame.status == Status::NotFound => {
                if in_time {
                    self.violation(format!("{id} could not resume within the delay: {frame}"));
                } else {
                    self.counters.late_resumes.fetch_add(1, Ordering::Relaxed);
                }
                self.end_session("resume refused (404)");
                self.register().await;
            }
            other => {
                self.violation(format!("no answer to a resume of {id}: {other:?}"));
                self.end_session("resume unanswered");
                self.register().await;
            }
        }
    }

    // ---- Actions ----------------------------------------------------------------

    async fn broadcast(&mut self) {
        let line = format!("REQ::MSG::200::::::*::b{}\n", self.next_broadcast);
        self.next_broadcast += 1;
        self.counters.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.write(line.as_bytes()).await;
    }

    async fn direct(&mut self) {
        let Some(me) = self.identity.as_ref().map(|(id, _)| id.clone()) else {
            return;
        };
        let others: Vec<&String> = self.known.iter().filter(|p| **p != me).collect();
        if others.is_empty() {
            return;
        }
        let pick = self.rng.below(others.len() as u64) as usize;
        let to = others[pick].clone();
        let line = format!("REQ::MSG::200::::::{to}::d{}\n", self.next_direct);
        self.next_direct += 1;
        self.counters.directs.fetch_add(1, Ordering::Relaxed);
        self.write(line.as_bytes()).await;
    }

    /// More broadcasts at once than the rate bucket holds; the excess gets
    /// 429 and is dropped (so it never counts as accepted).
    async fn flood(&mut self) {
        let mut lines = String::new();
        for _ in 0..FLOOD_FRAMES {
            lines.push_str(&format!("REQ::MSG::200::::::*::b{}\n", self.next_broadcast));
            self.next_broadcast += 1;
        }
        self.counters.floods.fetch_add(1, Ordering::Relaxed);
        self.counters
            .broadcasts
            .fetch_add(FLOOD_FRAMES, Ordering::Relaxed);
        self.write(lines.as_bytes()).await;
        // Let the bucket refill before the next ordinary message.
        let refill = Duration::from_millis(1000 * FLOOD_FRAMES / u64::from(MAX_RATE));
        self.pump(refill).await;
    }

    /// COMM_END, its answer, then EOF. The peer is gone.
    async fn leave(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let mut answered = false;
        for _ in 0..20 {
            if !self.write(b"REQ::COMM_END::200::::::::\n").await {
                break;
            }
            let answer = self
                .pump_until(|f| {
                    f.action == Action::CommEnd
                        && (f.kind == Kind::Res || f.status == Status::TooManyRequests)
                })
                .await;
            match answer {
                Some(frame) if frame.kind == Kind::Res => {
                    answered = true;
                    break;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                None => break,
            }
        }
        if !answered {
            self.violation("COMM_END was not answered".to_owned());
        }
        if !self.drain_to_eof().await {
            self.violation("the server did not close after COMM_END".to_owned());
        }
        self.conn = None;
        self.counters.leaves.fetch_add(1, Ordering::Relaxed);
        self.end_session(if answered {
            "left (COMM_END answered)"
        } else {
            "left (COMM_END unanswered)"
        });
        self.identity = None;
    }

    /// Ends the connection without COMM_END: a half-close, reading what is
    /// still in flight to EOF (so nothing is lost in transit), or a reset.
    async fn drop_connection(&mut self, reset: bool) {
        self.counters.drops.fetch_add(1, Ordering::Relaxed);
        if reset {
            // Frames in flight die with the socket; a resume naming the
            // last message gets the messages among them back.
            self.was_reset = true;
            self.ended = "reset";
            if let Some(conn) = self.conn.take() {
                let Conn { write, .. } = &conn;
                // Reunite is not possible with the reader owning its half;
                // linger zero on the write half's socket makes the close a
                // reset.
                let _ = write.as_ref().set_zero_linger();
                drop(conn);
            }
            return;
        }
        self.ended = "half-close";
        if let Some(conn) = &mut self.conn {
            let _ = conn.write.shutdown().await;
        }
        if !self.drain_to_eof().await {
            self.violation("the server did not close a half-closed connection".to_owned());
            self.conn = None;
        }
    }

    /// Stops reading and writing past the health timeout; the server must
    /// time the peer out (408) and close. Then drains to EOF and resumes.
    async fn stall(&mut self) {
        self.counters.stalls.fetch_add(1, Ordering::Relaxed);
        self.ended = "timed out (stall)";
        tokio::time::sleep(HEALTH_TIMEOUT + HEALTH_TIMEOUT / 2 + Duration::from_millis(200)).await;
        if !self.drain_to_eof().await {
            self.violation("a stalled peer was not timed out".to_owned());
            self.conn = None;
        }
        self.resume_or_register(true).await;
    }
}

fn is_welcome(frame: &Frame) -> bool {
    frame.kind == Kind::Res && frame.action == Action::Comm && frame.sender_id() == SERVER_ID
}
