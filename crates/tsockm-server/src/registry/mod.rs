//! The registry actor: the one owner of every connection's and peer's state.
//!
//! Connection tasks and the console talk to it through one bounded mpsc
//! channel of [`Command`]s (oneshot replies where an answer is needed); the
//! store's HISTORY answers and, in a cluster, what the link to Redis hands
//! over arrive on bounded channels of their own. It
//! handles each command synchronously: it never awaits while state changes,
//! never waits on a peer (frames go into outboxes with a non-blocking push),
//! and owns every timer.
//!
//! One job per file:
//! - `mod.rs` (this file): the actor loop and the connections;
//! - `intake.rs`: the dispatch of each command, and of each client line
//!   (through admission) to its handler;
//! - `congestion.rs`: the pause while the writers are behind, and the
//!   global byte budget;
//! - `channel.rs`: the commands the actor takes and the handle to send them;
//! - `admission.rs`: the contract's order of checks, as a pure function
//!   from a line to a typed request or a refusal;
//! - `fanout.rs`: the peer list and the frames staged for it (the flush rule);
//! - `peer.rs`: a peer, online or away;
//! - `sessions.rs`: registration, resume, peers going away and removal;
//! - `restart.rs`: ending every session at shutdown, saving and restoring
//!   them across a restart;
//! - `refusals.rs`: the error frames answering refused lines;
//! - `messages.rs`: messages (with their ids) and lookups;
//! - `rooms.rs`: rooms and their members;
//! - `history.rs`: HISTORY requests and the store's answers;
//! - `timers.rs`: handshake deadlines, removal delays, health checks, sweeps;
//! - `console.rs`: the operator's requests and the reports answering them;
//! - `hook.rs`: the seam through which accepted messages leave the actor;
//! - `cluster.rs`, `cluster_events.rs`: in a cluster, what the registry asks
//!   of the other nodes, and what it does with what comes from them.

mod admission;
mod channel;
mod cluster;
mod cluster_events;
mod congestion;
mod console;
mod fanout;
mod history;
mod hook;
mod intake;
mod messages;
mod peer;
mod refusals;
mod restart;
mod rooms;
mod sessions;
mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};
use tsockm_proto::{Frame, Text};

use crate::addr::wire_addr;
use crate::config::{Config, Password};
use crate::doorman::{Slots, Ticket};
use crate::identity::IdentityMaker;
use crate::logging::{Direction, FrameLog};
use crate::outbox::{Backlog, Outbox};
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::store::StoreHandle;
use crate::wire::{self, Wire};

pub use channel::{Command, NewConnection, RegistryClosed, RegistryHandle};
use congestion::StallScan;
pub use console::{
    ClusterInfo, ConsoleReply, ConsoleRequest, InfoReport, PeerSummary, PingReport, RoomSummary,
    Target,
};
use fanout::{Fanout, PeerKey};
use history::{HISTORY_ANSWERS, HistoryAnswer};
use hook::StoreHook;
pub use hook::{AcceptedMessage, ChannelHook, Hook};
use peer::KeptBounds;
use rooms::Rooms;
use timers::{Pings, Timer};

/// Identifies one accepted connection for the life of the process.
pub type ConnId = u64;

/// Commands queued for the registry before connection readers wait.
pub const COMMAND_QUEUE: usize = 4096;

/// Most commands handled back to back before staged broadcasts are pushed
/// (and never more than half a send queue's frames; fewer for many peers
/// or large frames, see [`BURST_PUSHES`] and [`BURST_BYTES`]; the burst's
/// load is counted by the `Fanout`).
///
/// Each writer then takes all a burst gave it in one `writev`, so bigger
/// bursts mean fewer wake-ups and syscalls per delivery: with 500 peers
/// broadcasting at full speed (workload C), 16 commands a burst gave 6.4M
/// deliveries/s and 128 gave 9.5M on the same pinned core.
pub const COMMAND_BURST: usize = 128;

/// Pushes (each frame once per peer of its audience) after which a burst
/// ends, so that the staged broadcasts are pushed and the writers run.
pub const BURST_PUSHES: usize = 65536;

/// Bytes of pushes (each frame's length × its audience, broadcasts, room
/// and direct messages alike) after which a burst ends: 8,192 pushes of the
/// default largest frame (16 KiB), as much as a burst of broadcasts could
/// push when it was bounded at 8,192 pushes. A burst also ends once its
/// frames reach half a send queue's bytes (see `Registry::burst_full`).
pub const BURST_BYTES: usize = 128 << 20;

/// Longest the registry stops taking commands while the writers are behind;
/// then it handles one anyway, so a few stalled peers can only slow it, and
/// the send-queue bound cuts them off.
pub const CONGESTION_PAUSE_MAX: Duration = Duration::from_millis(20);

/// A writer that has made no progress for this long, with frames waiting,
/// is stalled: its queue no longer counts toward congestion.
pub const STALLED_AFTER: Duration = Duration::from_millis(500);

/// How often, at most, the congestion check looks at which writers are
/// stalled (only while the total backlog is over its limit).
pub const STALL_SCAN_EVERY: Duration = Duration::from_millis(5);

/// Accepted messages gathered for the hooks, at most, before they are
/// handed over (sooner if [`HOOK_FLUSH_DELAY`] passes first).
pub const HOOK_FLUSH_MESSAGES: usize = 1024;

/// Bytes of accepted messages gathered for the hooks, at most (see
/// `StoredMessage::queued_bytes`), before they are handed over.
pub const HOOK_FLUSH_BYTES: usize = 1024 * 1024;

/// How long an accepted message may wait for the hooks (the store's
/// thread) with others, at most. Handing over each message alone woke the
/// store's thread once per message at light load: four context switches
/// and five futex calls per message in benchmark D. A HISTORY and a
/// shutdown flush at once, so nobody sees the delay; a crash loses at most
/// this much more of what was not yet stored.
pub const HOOK_FLUSH_DELAY: Duration = Duration::from_millis(20);

/// Wrong passwords a connection may send; the last one closes it.
pub const MAX_BAD_PASSWORDS: u8 = 3;

/// What the registry shares with the connections and the console.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The frame dump.
    pub log: FrameLog,
    /// Traffic counters.
    pub stats: Arc<Stats>,
    /// Every connection's place while its task runs.
    pub slots: Arc<Slots>,
    /// Frames waiting in all outboxes.
    pub backlog: Arc<Backlog>,
}

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    /// Whom frames for this connection are addressed to: its address as
    /// written on the wire until it registers or resumes, then its peer
    /// id (the address is then in the peer's [`peer::PeerInfo`]).
    dst: Text,
    outbox: Arc<Outbox>,
    /// The peer, once it registered or resumed (its id is `dst`).
    peer: Option<PeerKey>,
    rate: TokenBucket,
    /// Health checks sent and not answered yet: that many answers are
    /// exempt from the rate.
    solicited: u32,
    /// Its places at the door.
    ticket: Ticket,
    /// Its handshake deadline, until it registers.
    handshake_timer: Option<delay_queue::Key>,
    /// Whether it gave the server password (or none is needed).
    authed: bool,
    /// Wrong passwords it sent.
    n_bad_passwords: u8,
}

impl Conn {
    /// Its peer's key and id, once it registered or resumed.
    fn peer_and_id(&self) -> Option<(PeerKey, &Text)> {
        self.peer.map(|key| (key, &self.dst))
    }
}

/// Below this many slots, the timer queue is never compacted.
const TIMERS_KEPT_CAPACITY: usize = 256;

impl Registry {
    /// Makes the connection the peer at `key`: it leaves the door's
    /// unregistered count and its handshake deadline is dropped (so a join
    /// storm leaves no timers behind for the peers it registered).
    fn bind_peer(&mut self, conn_id: ConnId, key: PeerKey, id: Text) -> Option<&mut Conn> {
        let conn = self.conns.get_mut(&conn_id)?;
        conn.peer = Some(key);
        conn.dst = id;
        conn.ticket.registered();
        if let Some(timer) = conn.handshake_timer.take() {
            self.timers.try_remove(&timer);
            if self.timers.capacity() > TIMERS_KEPT_CAPACITY
                && self.timers.len() * 4 < self.timers.capacity()
            {
                // A burst of connections grew the queue: give the space back.
                self.timers.compact();
            }
        }
        Some(conn)
    }
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
    send_queue_frames: usize,
    send_queue_bytes: usize,
    max_queued_bytes: usize,
    max_frame_bytes: usize,
    max_rooms_per_peer: usize,
    history_max: usize,
    kept_frames: usize,
}

/// The actor. Build it with [`Registry::new`], then `run` it.
#[derive(Debug)]
pub struct Registry {
    limits: Limits,
    wire: Wire,
    log: FrameLog,
    stats: Arc<Stats>,
    /// The connections' places (for `:info`).
    slots: Arc<Slots>,
    /// Frames waiting in all outboxes (see [`Registry::congested`]).
    backlog: Arc<Backlog>,
    started: Instant,
    ids: IdentityMaker,
    /// Boxed: the map's spare capacity then costs a pointer per slot, not
    /// a whole `Conn`.
    conns: HashMap<ConnId, Box<Conn>>,
    fanout: Fanout,
    rooms: Rooms,
    /// Where history is kept and sessions saved.
    store: StoreHandle,
    /// In a cluster: the link to the other nodes and the view of them.
    cluster: Option<cluster::ClusterState>,
    /// In a cluster: what the link hands over.
    cluster_rx: Option<mpsc::Receiver<crate::cluster::ClusterInput>>,
    /// The store's HISTORY answers come back through here.
    history_tx: mpsc::Sender<HistoryAnswer>,
    history_rx: mpsc::Receiver<HistoryAnswer>,
    timers: DelayQueue<Timer>,
    pings: Pings,
    stall_scan: StallScan,
    next_generation: u64,
    /// The server password, if it has one.
    password: Option<Password>,
    /// Where accepted messages go besides their recipients (the store
    /// first).
    hooks: Vec<Box<dyn Hook>>,
    /// Messages accepted since the hooks were last flushed.
    unflushed: usize,
    /// Their bytes.
    unflushed_bytes: usize,
    rx: mpsc::Receiver<Command>,
}

impl Registry {
    /// A registry for a server listening on `local_addr`, keeping history
    /// in `store` and making ids with `ids`, and its handle.
    pub fn new(
        config: &Config,
        local_addr: SocketAddr,
        shared: Shared,
        ids: IdentityMaker,
        store: StoreHandle,
    ) -> (Registry, RegistryHandle) {
        let Shared {
            log,
            stats,
            slots,
            backlog,
        } = shared;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (history_tx, history_rx) = mpsc::channel(HISTORY_ANSWERS);
        let registry = Registry {
            limits: Limits {
                max_peers: config.max_peers,
                health_interval: config.health_interval,
                health_timeout: config.health_timeout,
                removal_delay: config.removal_delay,
                handshake_timeout: config.handshake_timeout,
                max_rate: config.max_rate,
                send_queue_frames: config.send_queue_frames,
                send_queue_bytes: config.send_queue_bytes,
                max_queued_bytes: config.max_queued_bytes,
                max_frame_bytes: config.max_frame_bytes,
                max_rooms_per_peer: config.max_rooms_per_peer,
                history_max: config.history_max,
                kept_frames: config.kept_frames,
            },
            wire: Wire {
                srv: Text::from(wire_addr(local_addr)),
            },
            log,
            fanout: Fanout::new(
                KeptBounds {
                    frames: config.kept_frames,
                    bytes: config.send_queue_bytes,
                },
                stats.clone(),
                backlog.clone(),
            ),
            stats,
            slots,
            backlog,
            started: Instant::now(),
            ids,
            conns: HashMap::new(),
            rooms: Rooms::default(),
            hooks: vec![Box::new(StoreHook::new(store.clone()))],
            unflushed: 0,
            unflushed_bytes: 0,
            password: config.password.clone(),
            store,
            history_tx,
            history_rx,
            cluster: None,
            cluster_rx: None,
            timers: DelayQueue::new(),
            pings: Pings::default(),
            stall_scan: StallScan {
                at: Instant::now(),
                active: 0,
            },
            next_generation: 0,
            rx,
        };
        (registry, RegistryHandle { tx })
    }

    /// Makes this registry a node of a cluster: `started` is what joining
    /// gave, `inputs` what the link will hand over. History is then the
    /// cluster's (the link writes it with each message), not the store's.
    pub(crate) fn join_cluster(
        &mut self,
        link: crate::cluster::LinkHandle,
        seq: u64,
        peers: Vec<(Text, Text, bool, Text, i64, Text)>,
        inputs: mpsc::Receiver<crate::cluster::ClusterInput>,
    ) {
        self.hooks.clear();
        self.cluster = Some(cluster::ClusterState::new(link, seq, peers));
        self.cluster_rx = Some(inputs);
    }

    /// Adds a hook that receives every accepted message.
    pub fn add_hook(&mut self, hook: Box<dyn Hook>) {
        self.hooks.push(hook);
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
        let sweep_period = timers::sweep_period(&self.limits);
        let mut sweep = tokio::time::interval_at(start + sweep_period, sweep_period);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Armed when the first message of a batch for the hooks is accepted.
        let hook_timer = tokio::time::sleep_until(start);
        tokio::pin!(hook_timer);
        let mut hook_timer_armed = false;
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
            // The cluster's writer far behind: clients' frames wait, the
            // rest (its answers included) goes on.
            let link_busy = self.cluster.as_ref().is_some_and(|c| c.link.is_busy());
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(expired) = self.timers.next() => self.on_timer(expired.into_inner()),
                Some(answer) = self.history_rx.recv() => self.on_history_answer(answer),
                Some(input) = recv(&mut self.cluster_rx) => self.on_cluster(input),
                _ = health.tick() => self.send_health_checks(),
                _ = sweep.tick() => self.sweep_dead(),
                () = &mut hook_timer, if hook_timer_armed => {
                    hook_timer_armed = false;
                    self.flush_hooks();
                }
                () = link_room(&self.cluster), if link_busy => {}
                command = self.rx.recv(), if !link_busy => match command {
                    Some(command) => {
                        self.fanout.begin_burst();
                        self.handle(command);
                        // Bound the work between two yields: a burst of
                        // broadcasts costs one push per recipient each.
                        let burst = self.burst_commands();
                        for _ in 1..burst {
                            if self.burst_full() {
                                break;
                            }
                            match self.rx.try_recv() {
                                Ok(command) => self.handle(command),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
            }
            // Whatever the branch staged goes out before the next wait.
            self.fanout.flush();
            // The hooks (the store's thread) get what was accepted once many
            // messages gathered, or once the first of them waited
            // `HOOK_FLUSH_DELAY`: one hand-over for a whole burst, and at
            // light load not one per message. (A HISTORY flushes them
            // first, so it still sees every message.)
            if self.unflushed >= HOOK_FLUSH_MESSAGES || self.unflushed_bytes >= HOOK_FLUSH_BYTES {
                self.flush_hooks();
            }
            if self.unflushed == 0 {
                // Flushed (here, or by a HISTORY): nothing left to time.
                hook_timer_armed = false;
            } else if !hook_timer_armed {
                hook_timer.as_mut().reset(Instant::now() + HOOK_FLUSH_DELAY);
                hook_timer_armed = true;
            }
            self.settle();
            self.enforce_budget();
        }
        // Frames already queued were accepted from their connections: handle
        // them before the sessions end, but no more than one queue's worth.
        for _ in 0..COMMAND_QUEUE {
            match self.rx.try_recv() {
                Ok(command) => self.handle(command),
                Err(_) => break,
            }
        }
        self.shut_down();
    }

    /// Queues a frame for one connection (registered or not), after the
    /// staged broadcasts.
    fn send_to_conn(&mut self, conn_id: ConnId, frame: &Frame) {
        self.fanout.flush();
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        self.log.frame(Direction::Out, &conn.dst, frame);
        let Some(bytes) = wire::encode(frame) else {
            return;
        };
        match conn.outbox.push(bytes.clone()) {
            Ok(()) => Stats::add(&self.stats.frames_out, 1),
            Err(_) => self.fanout.clog(conn_id, vec![bytes]),
        }
    }

    /// Cuts off every connection whose send queue filled up.
    fn settle(&mut self) {
        loop {
            let clogged = self.fanout.take_clogged();
            if clogged.is_empty() {
                return;
            }
            for (conn, undelivered) in clogged {
                self.cut_off(conn, undelivered);
            }
        }
    }

    /// Lets every hook hand on what it gathered.
    fn flush_hooks(&mut self) {
        self.unflushed = 0;
        self.unflushed_bytes = 0;
        for hook in &mut self.hooks {
            hook.flush();
        }
    }

    /// Hands an accepted message to every hook, the store first.
    fn accepted(&mut self, message: AcceptedMessage) {
        self.unflushed += 1;
        self.unflushed_bytes += message.queued_bytes();
        if let Some((last, others)) = self.hooks.split_last_mut() {
            for hook in others {
                hook.accepted(&message);
            }
            last.accepted_owned(message);
        }
    }
}

/// Waits until the cluster's link has room again.
async fn link_room(cluster: &Option<cluster::ClusterState>) {
    match cluster {
        Some(cluster) => cluster.link.room().await,
        None => std::future::pending().await,
    }
}

/// The next item of an optional channel; never, without one.
async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
