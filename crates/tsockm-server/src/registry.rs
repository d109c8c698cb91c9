//! The registry actor: the one owner of every connection's and peer's state.
//!
//! Connection tasks and the console talk to it through one bounded mpsc
//! channel of [`Command`]s (oneshot replies where an answer is needed). It
//! handles each command synchronously: it never awaits while state changes,
//! never waits on a peer (frames go into outboxes with a non-blocking push),
//! and owns every timer: handshake deadlines, removal delays, health checks,
//! liveness sweeps and `:ping` windows.
//!
//! Every frame a client sends is checked here in the contract's order
//! (section 9), so the answers to one connection's frames come out in the
//! order the frames came in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;
use tsockm_proto::{Action, BROADCAST, Frame, FrameError, Kind, Status, Text};

use crate::addr::wire_addr;
use crate::config::Config;
use crate::identity::{IdentityError, IdentityMaker, new_token, token_matches};
use crate::logging::{Direction, FrameLog};
use crate::outbox::{Backlog, Outbox};
use crate::peer::{Delivery, Link, Peer, trim};
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::username::check_username;
use crate::wire::{self, HEALTH_TIMED_OUT, RESUMED_ELSEWHERE, SHUTTING_DOWN, Wire};

/// Identifies one accepted connection for the life of the process.
pub type ConnId = u64;

/// Commands queued for the registry before connection readers wait.
pub const COMMAND_QUEUE: usize = 4096;

/// Most commands handled back to back before staged broadcasts are pushed.
pub const COMMAND_BURST: usize = 64;

/// Pushes (broadcasts × recipients) a burst of commands may stage before the
/// registry pushes them and lets the writers run.
pub const BURST_PUSHES: usize = 8192;

/// Longest the registry stops taking commands while the writers are behind;
/// then it handles one anyway, so a few stalled peers can only slow it, and
/// the send-queue bound cuts them off.
pub const CONGESTION_PAUSE_MAX: Duration = Duration::from_millis(20);

/// How many liveness sweeps run per health timeout: a silent peer is found
/// dead at most this fraction of the timeout late (1 s at the default 20 s).
const SWEEPS_PER_TIMEOUT: u32 = 20;

/// Longest a `:ping` waits for answers (it waits half the health timeout,
/// up to this).
pub const PING_WINDOW_MAX: Duration = Duration::from_secs(5);

/// The last sign of life of a connection: the last line read from it to its
/// end (a frame, a blank, a malformed or over-long line).
///
/// Written by the connection's reader after each read that ended a line,
/// read by the registry's liveness sweep, so it is an atomic rather than a
/// message per line.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records a sign of life now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the last sign of life was seen (the accept counts as one).
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// A connection just accepted, as announced to the registry.
#[derive(Debug)]
pub struct NewConnection {
    /// Its id.
    pub conn: ConnId,
    /// The client's address.
    pub addr: SocketAddr,
    /// Where the registry queues frames for it.
    pub outbox: Arc<Outbox>,
    /// Its last sign of life.
    pub activity: Arc<Activity>,
    /// When it was accepted (the handshake timeout counts from here).
    pub accepted_at: Instant,
}

/// What the registry is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A connection was accepted.
    Connect(NewConnection),
    /// A connection's reader decoded a line (or failed to).
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame, or what was wrong with the line.
        item: Result<Frame, FrameError>,
    },
    /// A connection ended: EOF, a read or write error, or it was closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// Whether it ended in an orderly EOF: the peer sends nothing more
        /// but may still be reading, so what is queued for it is written.
        input_ended: bool,
    },
    /// An operator command from the console.
    Console {
        /// The command.
        request: ConsoleRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ConsoleReply>,
    },
}

/// Whom a console command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One peer, by id.
    Peer(String),
    /// Every peer.
    All,
}

/// Console commands the registry answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleRequest {
    /// `:list`.
    List,
    /// `:kill`.
    Kill(Target),
    /// `:ping`.
    Ping(Target),
    /// `:info`.
    Info,
}

/// One peer as `:list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// Peer id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Last known address.
    pub addr: String,
    /// Online or away.
    pub online: bool,
    /// When it registered.
    pub since: SystemTime,
}

/// Counters for `:info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoReport {
    /// The listening address.
    pub addr: String,
    /// Time since the server started.
    pub uptime: Duration,
    /// Peers online.
    pub n_online: usize,
    /// Peers away.
    pub n_away: usize,
    /// Connections not registered yet.
    pub n_unregistered: usize,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Kept frames dropped for away peers.
    pub frames_dropped: u64,
    /// Frames refused with 429.
    pub frames_rate_limited: u64,
    /// Peers cut off for a full send queue.
    pub peers_cut_off: u64,
}

/// Who answered a `:ping`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingReport {
    /// Peers that answered, with how long they took.
    pub answered: Vec<(PeerSummary, Duration)>,
    /// Online peers that did not answer within the window.
    pub silent: Vec<PeerSummary>,
    /// Away peers (nothing to send a check to).
    pub away: Vec<PeerSummary>,
    /// How long the registry waited.
    pub window: Duration,
}

/// The registry's answer to a console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleReply {
    /// For `:list`.
    List(Vec<PeerSummary>),
    /// For `:kill`: the peers removed.
    Killed(Vec<PeerSummary>),
    /// For `:ping`.
    Pinged(PingReport),
    /// For `:info`.
    Info(InfoReport),
    /// `:kill` / `:ping` named an id no peer has.
    UnknownPeer(String),
}

/// A cloneable handle to send the registry commands.
#[derive(Debug, Clone)]
pub struct RegistryHandle {
    tx: mpsc::Sender<Command>,
}

/// The registry has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the registry has stopped")]
pub struct RegistryClosed;

impl RegistryHandle {
    /// Queues a command, waiting while the registry's queue is full.
    pub async fn send(&self, command: Command) -> Result<(), RegistryClosed> {
        // `reserve` first: the command is not held across the wait, which
        // keeps every connection task's future small.
        self.reserve().await?.send(command);
        Ok(())
    }

    /// Waits for a place in the registry's queue, to fill without waiting.
    ///
    /// The waiting future is large (a semaphore waiter) and is only needed
    /// when the queue is full, so it lives on the heap for as long as the
    /// wait lasts instead of in every connection task.
    pub async fn reserve(&self) -> Result<mpsc::Permit<'_, Command>, RegistryClosed> {
        match self.tx.try_reserve() {
            Ok(permit) => Ok(permit),
            Err(mpsc::error::TrySendError::Full(())) => Box::pin(self.tx.reserve())
                .await
                .map_err(|_| RegistryClosed),
            Err(mpsc::error::TrySendError::Closed(())) => Err(RegistryClosed),
        }
    }

    /// Asks a console question and waits for the answer.
    pub async fn console(&self, request: ConsoleRequest) -> Result<ConsoleReply, RegistryClosed> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Console { request, reply }).await?;
        answer.await.map_err(|_| RegistryClosed)
    }
}

/// Registry timers. Stale ones (the state moved on) are ignored when they fire.
#[derive(Debug)]
enum Timer {
    Handshake(ConnId),
    Removal { peer: Text, generation: u64 },
    PingWindow(u64),
}

/// What becomes of the frames still queued for a connection that ends.
#[derive(Debug)]
enum Queued {
    /// Taken back and kept for the peer's resume, followed by these frames
    /// that did not fit in the queue.
    Keep(Vec<Bytes>),
    /// Written to the connection before it closes: the peer only stopped
    /// sending (EOF) and may still be reading.
    Write,
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    addr_text: Text,
    outbox: Arc<Outbox>,
    activity: Arc<Activity>,
    /// Set once it registered or resumed.
    peer: Option<Text>,
    rate: TokenBucket,
}

impl Conn {
    /// Whom errors for this connection are addressed to.
    fn dst(&self) -> &Text {
        self.peer.as_ref().unwrap_or(&self.addr_text)
    }
}

/// A `:ping` waiting for answers.
#[derive(Debug)]
struct PendingPing {
    started: Instant,
    waiting: HashSet<Text>,
    answered: Vec<(Text, Duration)>,
    away: Vec<Text>,
    reply: oneshot::Sender<ConsoleReply>,
}

/// The settings the registry uses.
#[derive(Debug, Clone)]
struct Limits {
    max_peers: usize,
    health_interval: Duration,
    health_timeout: Duration,
    removal_delay: Duration,
    handshake_timeout: Duration,
    max_rate: u32,
    kept_frames: usize,
}

/// The actor. Build it with [`Registry::new`], then `run` it.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    wire: Wire,
    log: FrameLog,
    stats: Arc<Stats>,
    /// Frames waiting in all outboxes (see [`Registry::congested`]).
    backlog: Arc<Backlog>,
    /// Most frames one outbox holds (`--send-queue`).
    send_queue_frames: usize,
    started: Instant,
    ids: IdentityMaker,
    conns: HashMap<ConnId, Conn>,
    /// Registered peers, online and away, in registration order.
    peers: IndexMap<Text, Peer>,
    timers: DelayQueue<Timer>,
    /// Broadcasts handled but not yet pushed, with the index (in `peers`) of
    /// the peer to skip. Pushed together once per burst of commands, so each
    /// recipient's outbox is locked once for all of them; anything else that
    /// touches an outbox or the peer list flushes them first, so every
    /// recipient still gets every frame in order.
    staged: Vec<(Option<usize>, Bytes)>,
    pings: HashMap<u64, PendingPing>,
    next_ping: u64,
    next_generation: u64,
    rx: mpsc::Receiver<Command>,
}

impl Registry {
    /// A registry for a server listening on `local_addr`, and its handle.
    pub fn new(
        config: &Config,
        local_addr: SocketAddr,
        log: FrameLog,
        stats: Arc<Stats>,
        backlog: Arc<Backlog>,
    ) -> Result<(Registry, RegistryHandle), IdentityError> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let registry = Registry {
            limits: Limits {
                max_peers: config.max_peers,
                health_interval: config.health_interval,
                health_timeout: config.health_timeout,
                removal_delay: config.removal_delay,
                handshake_timeout: config.handshake_timeout,
                max_rate: config.max_rate,
                kept_frames: config.kept_frames,
            },
            wire: Wire {
                srv: Text::from(wire_addr(local_addr)),
            },
            log,
            stats,
            backlog,
            send_queue_frames: config.send_queue_frames,
            started: Instant::now(),
            ids: IdentityMaker::new()?,
            conns: HashMap::new(),
            peers: IndexMap::new(),
            timers: DelayQueue::new(),
            staged: Vec::new(),
            pings: HashMap::new(),
            next_ping: 0,
            next_generation: 0,
            rx,
        };
        Ok((registry, RegistryHandle { tx }))
    }

    /// Runs until `shutdown` is cancelled (or every handle is dropped), then
    /// ends every session: COMM_END to each online peer, 503 to connections
    /// that never registered.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let start = Instant::now();
        let mut health = tokio::time::interval_at(
            start + self.limits.health_interval,
            self.limits.health_interval,
        );
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sweep_period = (self.limits.health_timeout / SWEEPS_PER_TIMEOUT)
            .clamp(Duration::from_millis(10), self.limits.health_interval);
        let mut sweep = tokio::time::interval_at(start + sweep_period, sweep_period);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.congested() {
                // The writers are behind as a whole: let them drain before
                // taking in more frames (readers then wait, and TCP slows the
                // senders) rather than fill every queue until peers are cut
                // off. Each writer's progress wakes us to look again; the
                // pause ends when enough has drained, or at the deadline.
                let deadline = Instant::now() + CONGESTION_PAUSE_MAX;
                while self.congested() {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        () = self.backlog.drained() => {}
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
                if shutdown.is_cancelled() {
                    break;
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(expired) = self.timers.next() => self.on_timer(expired.into_inner()),
                _ = health.tick() => self.send_health_checks(),
                _ = sweep.tick() => self.sweep_dead(),
                command = self.rx.recv() => match command {
                    Some(command) => {
                        self.handle_one(command);
                        // Bound the work between two yields: a burst of
                        // broadcasts costs one push per recipient each.
                        let burst = (BURST_PUSHES / self.peers.len().max(1)).clamp(1, COMMAND_BURST);
                        for _ in 1..burst {
                            match self.rx.try_recv() {
                                Ok(command) => self.handle_one(command),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
            }
            // Whatever the branch staged goes out before the next wait.
            self.flush_broadcasts();
        }
        // Frames already queued were accepted from their connections: handle
        // them before the sessions end, but no more than one queue's worth.
        for _ in 0..COMMAND_QUEUE {
            match self.rx.try_recv() {
                Ok(command) => self.handle_one(command),
                Err(_) => break,
            }
        }
        self.shut_down();
    }

    /// Whether the frames waiting in all outboxes average more than 1/64 of
    /// a send queue (64 frames by default), on top of one full queue: the
    /// writers as a whole are behind. One stalled peer never reaches this
    /// alone (it is cut off at one full queue); a few of them can slow
    /// intake until they are cut off, which the pause bounds.
    fn congested(&self) -> bool {
        let per_conn = self.send_queue_frames / 64;
        let limit = self
            .conns
            .len()
            .saturating_mul(per_conn)
            .saturating_add(self.send_queue_frames);
        self.backlog.frames() > limit
    }

    /// Handles one command completely (staged broadcasts included).
    pub fn handle(&mut self, command: Command) {
        self.handle_one(command);
        self.flush_broadcasts();
    }

    /// Handles one command; broadcasts may stay staged.
    fn handle_one(&mut self, command: Command) {
        match command {
            Command::Connect(new) => self.on_connect(new),
            Command::Frame { conn, item } => self.on_frame(conn, item),
            Command::Disconnected { conn, input_ended } => {
                let queued = if input_ended {
                    Queued::Write
                } else {
                    Queued::Keep(Vec::new())
                };
                self.disconnect(conn, None, queued);
            }
            Command::Console { request, reply } => self.on_console(request, reply),
        }
    }

    fn on_connect(&mut self, new: NewConnection) {
        let deadline = new.accepted_at + self.limits.handshake_timeout;
        self.timers.insert_at(Timer::Handshake(new.conn), deadline);
        self.conns.insert(
            new.conn,
            Conn {
                addr_text: Text::from(wire_addr(new.addr)),
                outbox: new.outbox,
                activity: new.activity,
                peer: None,
                rate: TokenBucket::new(self.limits.max_rate, Instant::now()),
            },
        );
    }

    // ---- Frames from clients ------------------------------------------------

    fn on_frame(&mut self, conn_id: ConnId, item: Result<Frame, FrameError>) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return; // Closed by the registry while the frame was queued.
        };
        Stats::add(&self.stats.frames_in, 1);
        // Every frame takes a token except a registered peer's health-check
        // answer; being over the rate is only reported at step 8, after the
        // checks that come first.
        let is_health_answer = conn.peer.is_some()
            && matches!(&item, Ok(f) if f.kind == Kind::Res && f.action == Action::Comm);
        let over_rate = !is_health_answer && !conn.rate.try_take(Instant::now());
        let who = conn.dst().clone();
        let frame = match item {
            Ok(frame) => frame,
            Err(error) => {
                if self.log.enabled() {
                    tracing::info!("<- {who} refused: {error}");
                }
                let dst = who;
                let answer =
                    self.wire
                        .error(error.action(), error.status(), &dst, error.to_string());
                self.send_to_conn(conn_id, &answer);
                return;
            }
        };
        self.log.frame(Direction::In, &who, &frame);
        let action = frame.action;
        let taken = (frame.kind == Kind::Res && action == Action::Comm)
            || (frame.kind == Kind::Req
                && matches!(
                    action,
                    Action::Comm | Action::CommEnd | Action::Msg | Action::GetPeer
                ));
        if !taken {
            let reason = format!(
                "the server does not take {}::{} from clients",
                frame.kind, action
            );
            self.reply_error(conn_id, action, Status::MethodNotAllowed, reason);
            return;
        }
        let Some(peer_id) = conn.peer.clone() else {
            if frame.kind == Kind::Req && action == Action::Comm {
                if over_rate {
                    self.rate_limited(conn_id, action);
                    return;
                }
                if frame.sender_id.is_empty() {
                    self.register(conn_id, &frame.body);
                } else {
                    self.resume(conn_id, &frame.sender_id, &frame.body);
                }
            } else {
                self.reply_error(
                    conn_id,
                    action,
                    Status::BadRequest,
                    "not registered: register first with REQ::COMM and a username",
                );
            }
            return;
        };
        if frame.kind == Kind::Req && action == Action::Comm {
            self.reply_error(conn_id, action, Status::BadRequest, "already registered");
            return;
        }
        if !frame.sender_id.is_empty() && frame.sender_id != peer_id {
            let reason = format!(
                "SENDER_ID `{}` is not this connection's peer id",
                frame.sender_id
            );
            self.reply_error(conn_id, action, Status::Forbidden, reason);
            return;
        }
        if is_health_answer {
            self.on_health_answer(&peer_id);
            return;
        }
        if over_rate {
            self.rate_limited(conn_id, action);
            return;
        }
        match action {
            Action::Msg => self.on_msg(conn_id, &peer_id, frame),
            Action::GetPeer => self.on_get_peer(conn_id, &peer_id, &frame.body),
            Action::CommEnd => {
                let end = self.wire.comm_end(&peer_id, "OK");
                self.remove_peer(&peer_id, Some(&end));
            }
            _ => {} // Filtered out by `taken` above.
        }
    }

    fn rate_limited(&mut self, conn_id: ConnId, action: Action) {
        Stats::add(&self.stats.frames_rate_limited, 1);
        let reason = format!(
            "too many frames: at most {} a second, this one was dropped",
            self.limits.max_rate
        );
        self.reply_error(conn_id, action, Status::TooManyRequests, reason);
    }

    fn register(&mut self, conn_id: ConnId, username: &Text) {
        self.flush_broadcasts();
        if let Err(error) = check_username(username) {
            self.reply_error(conn_id, Action::Comm, Status::BadRequest, error.to_string());
            return;
        }
        if self.peers.len() >= self.limits.max_peers {
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            let reason = format!("server full: {} peers", self.peers.len());
            let answer =
                self.wire
                    .error(Action::Comm, Status::ServiceUnavailable, conn.dst(), reason);
            self.log.frame(Direction::Out, &conn.addr_text, &answer);
            self.disconnect(conn_id, wire::encode(&answer), Queued::Keep(Vec::new()));
            return;
        }
        let (id, token) = match self
            .ids
            .next_peer_id()
            .and_then(|id| Ok((id, new_token()?)))
        {
            Ok(identity) => identity,
            Err(error) => {
                tracing::error!(%error, "cannot make a peer identity");
                self.reply_error(
                    conn_id,
                    Action::Comm,
                    Status::BadGateway,
                    "internal error: cannot make a peer id",
                );
                return;
            }
        };
        let id = Text::from(id);
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.peer = Some(id.clone());
        let addr = conn.addr_text.clone();
        let outbox = conn.outbox.clone();
        let welcome = self.wire.welcome(&addr, &id, &token);
        self.send_to_conn(conn_id, &welcome);

        // The roster: one NTFY_JOIN per peer already registered, written as
        // one buffer so a large roster takes one queue slot.
        // Sized up front: growing it by doubling leaves freed blocks of
        // every size behind, which the allocator keeps as resident memory.
        let roster_len: usize = self
            .peers
            .values()
            .map(|other| self.wire.roster_line_len(&other.id, &other.username, &id))
            .sum();
        let mut roster = bytes::BytesMut::with_capacity(roster_len);
        let log_frames = self.log.enabled();
        for other in self.peers.values() {
            if log_frames {
                let join = self
                    .wire
                    .about_peer(Action::NtfyJoin, &other.id, &id, &other.username);
                self.log.frame(Direction::Out, &id, &join);
            }
            self.wire
                .roster_line(&mut roster, &other.id, &other.username, &id);
        }
        if !self.peers.is_empty() {
            Stats::add(&self.stats.frames_out, self.peers.len() as u64);
            outbox.push_unbounded(roster.freeze());
        }

        // A copy of its own: the frame's text is a slice of the connection's
        // read buffer, which would otherwise stay allocated for the whole
        // session of an idle peer.
        let username = &Text::from(username.as_str());
        let announcement = self.wire.announce(Action::NtfyJoin, &id, username);
        self.peers.insert(
            id.clone(),
            Peer {
                id: id.clone(),
                username: username.clone(),
                token,
                addr,
                since: SystemTime::now(),
                link: Link::Online {
                    conn: conn_id,
                    outbox,
                },
            },
        );
        tracing::info!(peer = %id, username = %username, "peer registered");
        self.fan_out(&announcement, Some(&id));
    }

    fn resume(&mut self, conn_id: ConnId, peer_id: &Text, token: &Text) {
        self.flush_broadcasts();
        let valid = self
            .peers
            .get(peer_id)
            .is_some_and(|peer| token_matches(&peer.token, token));
        if !valid {
            self.reply_error(
                conn_id,
                Action::Comm,
                Status::NotFound,
                "cannot resume: unknown or removed peer id, or wrong resume token",
            );
            return;
        }
        let new_token = match new_token() {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot make a resume token");
                self.reply_error(
                    conn_id,
                    Action::Comm,
                    Status::BadGateway,
                    "internal error: cannot make a token",
                );
                return;
            }
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.peer = Some(peer_id.clone());
        let addr = conn.addr_text.clone();
        let outbox = conn.outbox.clone();
        let Some(peer) = self.peers.get_mut(peer_id) else {
            return;
        };
        peer.token = new_token;
        peer.addr = addr.clone();
        let previous = std::mem::replace(
            &mut peer.link,
            Link::Online {
                conn: conn_id,
                outbox: outbox.clone(),
            },
        );
        let welcome = self.wire.welcome(&addr, peer_id, &peer.token);
        let pending = match previous {
            Link::Away { kept, .. } => kept,
            Link::Online {
                conn: old_conn,
                outbox: old_outbox,
            } => {
                // Takeover: what the old connection has not written yet
                // follows the peer; the old connection is told and closed.
                let pending = old_outbox.take_pending();
                let end = self.wire.comm_end(peer_id, RESUMED_ELSEWHERE);
                self.log.frame(Direction::Out, peer_id, &end);
                old_outbox.close(wire::encode(&end));
                self.conns.remove(&old_conn);
                pending
            }
        };
        tracing::info!(peer = %peer_id, n_kept = pending.len(), "peer resumed");
        self.send_to_conn(conn_id, &welcome);
        Stats::add(&self.stats.frames_out, pending.len() as u64);
        for frame in pending {
            outbox.push_unbounded(frame);
        }
    }

    fn on_msg(&mut self, conn_id: ConnId, author: &Text, frame: Frame) {
        let dst = frame.dst;
        if dst.is_empty() || dst == BROADCAST {
            let relayed = self.wire.about_peer(
                Action::Msg,
                author,
                &Text::from_static(BROADCAST),
                &frame.body,
            );
            self.fan_out(&relayed, Some(author));
            return;
        }
        let Some(index) = self.peers.get_index_of(&dst) else {
            let reason = format!("no peer with id `{dst}`");
            self.reply_error(conn_id, Action::Msg, Status::NotFound, reason);
            return;
        };
        let relayed = self.wire.about_peer(Action::Msg, author, &dst, &frame.body);
        self.log.frame(Direction::Out, &dst, &relayed);
        if let Some(bytes) = wire::encode(&relayed) {
            self.deliver_at(index, &bytes);
        }
    }

    fn on_get_peer(&mut self, conn_id: ConnId, requester: &Text, wanted: &Text) {
        let answer = match self.peers.get(wanted) {
            Some(peer) => {
                self.wire
                    .about_peer(Action::GetPeer, &peer.id, requester, &peer.username)
            }
            None => self.wire.error(
                Action::GetPeer,
                Status::NotFound,
                requester,
                format!("no peer with id `{wanted}`"),
            ),
        };
        self.send_to_conn(conn_id, &answer);
    }

    fn on_health_answer(&mut self, peer_id: &Text) {
        let now = Instant::now();
        let mut done = Vec::new();
        for (key, ping) in &mut self.pings {
            if ping.waiting.remove(peer_id) {
                ping.answered.push((peer_id.clone(), now - ping.started));
                if ping.waiting.is_empty() {
                    done.push(*key);
                }
            }
        }
        for key in done {
            self.finish_ping(key);
        }
    }

    // ---- Sending --------------------------------------------------------------

    /// Queues a frame for one connection (registered or not).
    fn send_to_conn(&mut self, conn_id: ConnId, frame: &Frame) {
        self.flush_broadcasts();
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        self.log.frame(Direction::Out, conn.dst(), frame);
        let Some(bytes) = wire::encode(frame) else {
            return;
        };
        match conn.outbox.push(bytes.clone()) {
            Ok(()) => Stats::add(&self.stats.frames_out, 1),
            Err(_) => self.cut_off(conn_id, vec![bytes]),
        }
    }

    fn reply_error(
        &mut self,
        conn_id: ConnId,
        action: Action,
        status: Status,
        reason: impl Into<Text>,
    ) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let answer = self.wire.error(action, status, conn.dst(), reason);
        self.send_to_conn(conn_id, &answer);
    }

    /// Delivers to the peer at `index` in the registry (online or away).
    fn deliver_at(&mut self, index: usize, bytes: &Bytes) {
        self.flush_broadcasts();
        let kept_frames = self.limits.kept_frames;
        let Some((_, peer)) = self.peers.get_index_mut(index) else {
            return;
        };
        match peer.deliver_all(std::iter::once(bytes), kept_frames) {
            Delivery::Queued(n) => Stats::add(&self.stats.frames_out, n),
            Delivery::Kept { dropped } => Stats::add(&self.stats.frames_dropped, dropped),
            Delivery::Overflow(undelivered) => {
                if let Link::Online { conn, .. } = peer.link {
                    self.cut_off(conn, undelivered);
                }
            }
        }
    }

    /// Encodes `frame` once and stages it for every peer but `except`.
    fn fan_out(&mut self, frame: &Frame, except: Option<&Text>) {
        self.log.frame(Direction::Out, BROADCAST, frame);
        let Some(bytes) = wire::encode(frame) else {
            return;
        };
        let skip = except.and_then(|id| self.peers.get_index_of(id));
        self.staged.push((skip, bytes));
    }

    /// Pushes the staged broadcasts: per recipient, one lock for all of them.
    fn flush_broadcasts(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let mut staged = std::mem::take(&mut self.staged);
        let kept_frames = self.limits.kept_frames;
        let mut n_queued = 0;
        let mut n_dropped = 0;
        let mut overflowed = Vec::new();
        for (index, peer) in self.peers.values_mut().enumerate() {
            let frames = staged
                .iter()
                .filter(|(skip, _)| *skip != Some(index))
                .map(|(_, bytes)| bytes);
            match peer.deliver_all(frames, kept_frames) {
                Delivery::Queued(n) => n_queued += n,
                Delivery::Kept { dropped } => n_dropped += dropped,
                Delivery::Overflow(undelivered) => {
                    if let Link::Online { conn, .. } = peer.link {
                        overflowed.push((conn, undelivered));
                    }
                }
            }
        }
        Stats::add(&self.stats.frames_out, n_queued);
        Stats::add(&self.stats.frames_dropped, n_dropped);
        // Give the allocation back for the next burst.
        staged.clear();
        self.staged = staged;
        for (conn, undelivered) in overflowed {
            self.cut_off(conn, undelivered);
        }
    }

    /// A connection whose send queue is full: disconnect it; `undelivered`
    /// is kept for the peer with what was still queued.
    fn cut_off(&mut self, conn_id: ConnId, undelivered: Vec<Bytes>) {
        Stats::add(&self.stats.peers_cut_off, 1);
        if let Some(conn) = self.conns.get(&conn_id) {
            tracing::warn!(who = %conn.dst(), "send queue full: disconnecting a peer that does not read");
        }
        self.disconnect(conn_id, None, Queued::Keep(undelivered));
    }

    // ---- Connections ending and peers leaving -------------------------------

    /// Ends a connection the registry knows, writing `last` before closing.
    /// If a registered peer was online on it, the peer goes away and its
    /// removal timer starts; what was still queued for the connection is
    /// written or kept for the resume, as `queued` says.
    fn disconnect(&mut self, conn_id: ConnId, last: Option<Bytes>, queued: Queued) {
        self.flush_broadcasts();
        let Some(conn) = self.conns.remove(&conn_id) else {
            return; // Already closed by the registry.
        };
        let Some(peer_id) = conn.peer else {
            conn.outbox.close(last);
            return;
        };
        let mut pending = match queued {
            Queued::Keep(undelivered) => {
                let mut pending = conn.outbox.take_pending();
                pending.extend(undelivered);
                pending
            }
            Queued::Write => VecDeque::new(),
        };
        conn.outbox.close(last);
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        if !matches!(peer.link, Link::Online { conn, .. } if conn == conn_id) {
            return;
        }
        let dropped = trim(&mut pending, self.limits.kept_frames);
        Stats::add(&self.stats.frames_dropped, dropped);
        self.next_generation += 1;
        let generation = self.next_generation;
        peer.link = Link::Away {
            kept: pending,
            generation,
        };
        self.timers.insert(
            Timer::Removal {
                peer: peer_id.clone(),
                generation,
            },
            self.limits.removal_delay,
        );
        tracing::info!(peer = %peer_id, "peer away: connection lost");
    }

    /// Removes a peer at once (COMM_END, `:kill`): `last` goes to its
    /// connection after what is queued, then every other peer gets NTFY_KILL.
    fn remove_peer(&mut self, peer_id: &Text, last: Option<&Frame>) -> Option<PeerSummary> {
        self.flush_broadcasts();
        let peer = self.peers.shift_remove(peer_id)?;
        let summary = summarize(&peer);
        if let Link::Online { conn, outbox } = &peer.link {
            self.conns.remove(conn);
            if let Some(frame) = last {
                self.log.frame(Direction::Out, peer_id, frame);
                Stats::add(&self.stats.frames_out, 1);
            }
            outbox.close(last.and_then(wire::encode));
        }
        tracing::info!(peer = %peer_id, "peer removed");
        let kill = self
            .wire
            .announce(Action::NtfyKill, &peer.id, &peer.username);
        self.fan_out(&kill, None);
        Some(summary)
    }

    // ---- Timers -----------------------------------------------------------------

    fn on_timer(&mut self, timer: Timer) {
        self.flush_broadcasts();
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
                let due = self.peers.get(&peer).is_some_and(
                    |p| matches!(p.link, Link::Away { generation: g, .. } if g == generation),
                );
                if due {
                    self.remove_peer(&peer, None);
                }
            }
            Timer::PingWindow(key) => self.finish_ping(key),
        }
    }

    fn send_health_checks(&mut self) {
        self.flush_broadcasts();
        let mut overflowed = Vec::new();
        let mut n_queued = 0;
        for peer in self.peers.values() {
            let Link::Online { conn, outbox } = &peer.link else {
                continue;
            };
            let check = self.wire.health_check(&peer.id);
            let Some(bytes) = wire::encode(&check) else {
                continue;
            };
            match outbox.push(bytes.clone()) {
                Ok(()) => n_queued += 1,
                Err(_) => overflowed.push((*conn, bytes)),
            }
        }
        Stats::add(&self.stats.frames_out, n_queued);
        for (conn, bytes) in overflowed {
            self.cut_off(conn, vec![bytes]);
        }
    }

    /// Disconnects every registered connection silent for a health timeout.
    fn sweep_dead(&mut self) {
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
    }

    // ---- Console ----------------------------------------------------------------

    fn on_console(&mut self, request: ConsoleRequest, reply: oneshot::Sender<ConsoleReply>) {
        self.flush_broadcasts();
        let answer = match request {
            ConsoleRequest::List => {
                ConsoleReply::List(self.peers.values().map(summarize).collect())
            }
            ConsoleRequest::Info => ConsoleReply::Info(self.info()),
            ConsoleRequest::Kill(target) => self.kill(target),
            ConsoleRequest::Ping(target) => {
                self.ping(target, reply);
                return;
            }
        };
        // The console may have given up waiting; nothing to do then.
        let _ = reply.send(answer);
    }

    fn kill(&mut self, target: Target) -> ConsoleReply {
        let ids: Vec<Text> = match &target {
            Target::All => self.peers.keys().cloned().collect(),
            Target::Peer(id) => match self.peers.get_key_value(id.as_str()) {
                Some((id, _)) => vec![id.clone()],
                None => return ConsoleReply::UnknownPeer(id.clone()),
            },
        };
        let mut removed = Vec::new();
        for id in ids {
            let end = self.wire.comm_end(&id, "removed by the server operator");
            removed.extend(self.remove_peer(&id, Some(&end)));
        }
        ConsoleReply::Killed(removed)
    }

    fn ping(&mut self, target: Target, reply: oneshot::Sender<ConsoleReply>) {
        self.flush_broadcasts();
        let ids: Vec<Text> = match &target {
            Target::All => self.peers.keys().cloned().collect(),
            Target::Peer(id) => match self.peers.get_key_value(id.as_str()) {
                Some((id, _)) => vec![id.clone()],
                None => {
                    let _ = reply.send(ConsoleReply::UnknownPeer(id.clone()));
                    return;
                }
            },
        };
        let mut waiting = HashSet::new();
        let mut away = Vec::new();
        let mut overflowed = Vec::new();
        for id in ids {
            let Some(peer) = self.peers.get(&id) else {
                continue;
            };
            let Link::Online { conn, outbox } = &peer.link else {
                away.push(id);
                continue;
            };
            let check = self.wire.health_check(&id);
            self.log.frame(Direction::Out, &id, &check);
            let Some(bytes) = wire::encode(&check) else {
                continue;
            };
            match outbox.push(bytes.clone()) {
                Ok(()) => {
                    Stats::add(&self.stats.frames_out, 1);
                    waiting.insert(id);
                }
                Err(_) => overflowed.push((*conn, bytes)),
            }
        }
        for (conn, bytes) in overflowed {
            self.cut_off(conn, vec![bytes]);
        }
        let key = self.next_ping;
        self.next_ping += 1;
        let window = (self.limits.health_timeout / 2).min(PING_WINDOW_MAX);
        self.pings.insert(
            key,
            PendingPing {
                started: Instant::now(),
                waiting,
                answered: Vec::new(),
                away,
                reply,
            },
        );
        if self.pings.get(&key).is_some_and(|p| p.waiting.is_empty()) {
            self.finish_ping(key);
        } else {
            self.timers.insert(Timer::PingWindow(key), window);
        }
    }

    fn finish_ping(&mut self, key: u64) {
        let Some(ping) = self.pings.remove(&key) else {
            return;
        };
        let summary_of = |id: &Text| self.peers.get(id).map(summarize);
        let report = PingReport {
            answered: ping
                .answered
                .iter()
                .filter_map(|(id, rtt)| Some((summary_of(id)?, *rtt)))
                .collect(),
            silent: ping.waiting.iter().filter_map(summary_of).collect(),
            away: ping.away.iter().filter_map(summary_of).collect(),
            window: ping.started.elapsed(),
        };
        let _ = ping.reply.send(ConsoleReply::Pinged(report));
    }

    fn info(&self) -> InfoReport {
        let n_online = self.peers.values().filter(|p| p.is_online()).count();
        InfoReport {
            addr: self.wire.srv.to_string(),
            uptime: self.started.elapsed(),
            n_online,
            n_away: self.peers.len() - n_online,
            n_unregistered: self.conns.values().filter(|c| c.peer.is_none()).count(),
            frames_in: Stats::get(&self.stats.frames_in),
            frames_out: Stats::get(&self.stats.frames_out),
            bytes_in: Stats::get(&self.stats.bytes_in),
            bytes_out: Stats::get(&self.stats.bytes_out),
            frames_dropped: Stats::get(&self.stats.frames_dropped),
            frames_rate_limited: Stats::get(&self.stats.frames_rate_limited),
            peers_cut_off: Stats::get(&self.stats.peers_cut_off),
        }
    }

    // ---- Shutdown ---------------------------------------------------------------

    /// COMM_END to every online peer, 503 to unregistered connections; no NTFY_KILL.
    fn shut_down(&mut self) {
        self.flush_broadcasts();
        tracing::info!(
            n_peers = self.peers.len(),
            "shutting down: ending every session"
        );
        for (_, conn) in self.conns.drain() {
            let last = match &conn.peer {
                Some(peer_id) => self.wire.comm_end(peer_id, SHUTTING_DOWN),
                None => self.wire.error(
                    Action::None,
                    Status::ServiceUnavailable,
                    &conn.addr_text,
                    SHUTTING_DOWN,
                ),
            };
            self.log.frame(Direction::Out, conn.dst(), &last);
            conn.outbox.close(wire::encode(&last));
        }
        self.peers.clear();
        // Pings never finish: dropping their reply channels tells the
        // console the server is shutting down.
        self.pings.clear();
    }
}

fn summarize(peer: &Peer) -> PeerSummary {
    PeerSummary {
        id: peer.id.to_string(),
        username: peer.username.to_string(),
        addr: peer.addr.to_string(),
        online: peer.is_online(),
        since: peer.since,
    }
}

#[cfg(test)]
mod tests {
    //! The registry's timing logic under Tokio's paused clock: exact and fast.

    use super::*;
    use crate::config::LogMode;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;
    use tsockm_proto::FrameCodec;

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
        let config = Config {
            health_interval: INTERVAL,
            health_timeout: TIMEOUT,
            removal_delay: DELAY,
            handshake_timeout: HANDSHAKE,
            log_mode: LogMode::Silent,
            ..Config::default()
        };
        let addr: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        let (registry, handle) = Registry::new(
            &config,
            addr,
            FrameLog::new(LogMode::Silent),
            Arc::new(Stats::default()),
            Arc::new(Backlog::default()),
        )
        .unwrap();
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
            let new = NewConnection {
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
}
