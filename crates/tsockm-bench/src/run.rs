//! The workloads, run by many clients in one thread: fan-out (everyone to
//! everyone, or within rooms), idle, and the join storm.
//!
//! Every client is two tasks on one `LocalSet`: a reader that owns the
//! connection's read half and does all bookkeeping (registration, latency,
//! completeness), and a writer that owns the write half and sends the login,
//! the messages and the answers to health checks. State shared by all clients
//! sits in one `RefCell` that is never borrowed across an `.await`.
//!
//! With several server addresses (the nodes of a TsockM cluster, or linked
//! IRC servers) client `i` connects to address `i mod n`, so the clients
//! are split evenly and round-robin; a delivery whose author talks to
//! another address than its recipient is also measured on its own (the
//! latency across nodes).
//!
//! Every phase is bounded: a run never outlives its `--timeout` by more than
//! [`CLOSE_GRACE`], whatever the server does.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::dialect::{Dialect, Event};
use crate::error::BenchError;
use crate::payload::{Stamp, parse_body, write_body};
use crate::procfs;
use crate::tally::{Receipt, Tally};

/// How long clients get to say goodbye and see the server close.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How often the coordinator looks at the shared counters.
const POLL: Duration = Duration::from_millis(2);
/// Answers (health checks, PONG) waiting for a client's writer.
const CONTROL_QUEUE: usize = 64;
/// A line longer than this from the server ends the client.
const MAX_LINE_BYTES: usize = 1 << 20;
/// Read buffer reserved per read: small for quiet clients, large for busy ones.
const READ_CHUNK_MIN: usize = 2 * 1024;
const READ_CHUNK_MAX: usize = 64 * 1024;
/// With no bytes from the server for this long, join notices are over
/// (the default of [`Limits::quiet`]).
pub const SETTLE_QUIET: Duration = Duration::from_secs(1);

/// The server under test: one server, or several that act as one.
#[derive(Debug)]
pub struct Target {
    /// `host:port` of each server (node); never empty.
    pub addrs: Vec<String>,
    /// Their protocol.
    pub dialect: Dialect,
    /// The process ids of the server side (every node, and what they share,
    /// such as the cluster's Redis), for CPU time and memory, summed; empty
    /// skips those figures.
    pub server_pids: Vec<u32>,
}

impl Target {
    /// The same servers spoken to in `dialect`.
    fn with_dialect(&self, dialect: Dialect) -> Target {
        Target {
            addrs: self.addrs.clone(),
            dialect,
            server_pids: self.server_pids.clone(),
        }
    }

    /// CPU seconds of all server processes, if any are named.
    fn cpu_seconds(&self) -> Result<Option<f64>, BenchError> {
        if self.server_pids.is_empty() {
            return Ok(None);
        }
        let mut sum = 0.0;
        for &pid in &self.server_pids {
            sum += procfs::cpu_seconds(pid)?;
        }
        Ok(Some(sum))
    }

    /// Resident memory of all server processes in KiB, if any are named.
    fn rss_kib(&self) -> Result<Option<u64>, BenchError> {
        if self.server_pids.is_empty() {
            return Ok(None);
        }
        let mut sum = 0;
        for &pid in &self.server_pids {
            sum += procfs::rss_kib(pid)?;
        }
        Ok(Some(sum))
    }
}

/// The server (node) client `idx` talks to, of `n_servers`.
pub fn server_of(idx: usize, n_servers: usize) -> usize {
    idx % n_servers.max(1)
}

/// Limits that apply to every workload.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole run, from the first connect.
    pub timeout: Duration,
    /// Waiting for join notices after every client registered.
    pub settle_timeout: Duration,
    /// While waiting for join notices, no bytes from the server for this
    /// long ends the wait (the server has nothing more to say).
    pub quiet: Duration,
    /// Registrations in flight at once.
    pub connect_concurrency: usize,
    /// Fan-out: stop when nothing arrived for this long after the last send.
    pub stall: Duration,
}

/// A fan-out workload: to everybody, or within rooms.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Clients (C).
    pub clients: usize,
    /// Messages each client sends (M).
    pub messages: usize,
    /// `None`: everybody broadcasts to everybody (TsockM's lobby, one IRC
    /// channel). `Some(K)`: clients `0..K` are in room `#r0`, `K..2K` in
    /// `#r1`, and so on; each sends to its room only.
    pub room_size: Option<usize>,
    /// Body size in bytes (S).
    pub size: usize,
    /// Messages per second per client; `None` is full speed.
    pub rate: Option<f64>,
    /// At full speed, messages written per system call.
    pub batch: usize,
}

/// What a fan-out run measured.
#[derive(Debug)]
pub struct FanoutOutcome {
    /// Deliveries expected, C × (C − 1) × M (in rooms of K: C × (K − 1) × M).
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Expected deliveries never received.
    pub missing: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Deliveries overtaken by a later message of the same author.
    pub out_of_order: u64,
    /// Own messages sent back to their author.
    pub echoed: u64,
    /// Message lines that were not ours.
    pub foreign: u64,
    /// Messages of another room delivered to a client.
    pub strayed: u64,
    /// Messages whose conversation (DST, IRC target) was not the client's.
    pub misrouted: u64,
    /// First send to last delivery.
    pub elapsed: Duration,
    /// First send to last send.
    pub send_span: Duration,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// Servers (nodes) the clients were split over.
    pub n_servers: usize,
    /// Latency in microseconds of the deliveries whose author talked to
    /// another server than the recipient (empty with one server).
    pub cross_latency_us: Histogram<u64>,
    /// Server CPU seconds over the message phase.
    pub server_cpu_s: Option<f64>,
    /// Generator CPU seconds over the message phase.
    pub generator_cpu_s: Option<f64>,
    /// Whether the run hit its timeout or stalled before completing.
    pub incomplete: bool,
    /// Problems seen: disconnects, refusals.
    pub trouble: Trouble,
    /// Time to connect and register every client, and to settle.
    pub setup: Duration,
    /// Whether every client saw every other join before the start.
    pub settled: bool,
}

/// What an idle run measured.
#[derive(Debug)]
pub struct IdleOutcome {
    /// Registered clients.
    pub clients: usize,
    /// Server RSS before the first connection, KiB.
    pub rss_before_kib: Option<u64>,
    /// Server RSS with every client registered and quiet, KiB.
    pub rss_after_kib: Option<u64>,
    /// Time to connect and register every client.
    pub setup: Duration,
    /// Whether every client saw every other join.
    pub settled: bool,
    /// Problems seen: disconnects, refusals.
    pub trouble: Trouble,
}

/// What a join storm measured.
#[derive(Debug)]
pub struct JoinOutcome {
    /// Clients asked for (N).
    pub clients: usize,
    /// Clients that registered (IRC: and joined) within the bounds.
    pub registered_clients: usize,
    /// Clients whose connection or registration failed.
    pub failed: usize,
    /// The first such failure, or empty.
    pub first_failure: String,
    /// From the first connect until the last client was registered (IRC:
    /// had joined the channel, end of NAMES).
    pub registered: Option<Duration>,
    /// From the first connect until the last client had seen all N − 1
    /// others (TsockM: roster plus `NTFY_JOIN`s; IRC: NAMES plus JOINs);
    /// `None` if that never happened within the bounds.
    pub settled: Option<Duration>,
    /// Clients that saw all N − 1 others.
    pub settled_clients: usize,
    /// Join notices received by all clients together (each peer counted
    /// once per client that learnt of it).
    pub notices: u64,
    /// N × (N − 1).
    pub notices_expected: u64,
    /// Server CPU seconds from before the first connect to the end of the
    /// storm.
    pub server_cpu_s: Option<f64>,
    /// Server RSS after the storm, KiB.
    pub rss_kib: Option<u64>,
    /// Problems seen: disconnects, refusals.
    pub trouble: Trouble,
}

/// Things that should not happen in a clean run.
#[derive(Debug, Default, Clone)]
pub struct Trouble {
    /// Clients whose connection ended before the end of the run.
    pub disconnected: usize,
    /// The first such end, with the server's last word if any.
    pub first_disconnect: Option<String>,
    /// Errors the server sent (ERR frames, IRC errors) during the run.
    pub refusals: u64,
    /// The first of them.
    pub first_refusal: Option<String>,
    /// Control lines (health-check answers, OPER and JOIN) dropped because
    /// a writer was backed up.
    pub replies_dropped: u64,
}

/// Runs a fan-out workload to completion, timeout or stall.
pub async fn fanout(
    target: &Target,
    limits: &Limits,
    plan: &Fanout,
) -> Result<FanoutOutcome, BenchError> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let run = Run::launch(target, limits, plan.clone())?;
    let settled = run.setup_or_finish(limits, deadline).await?;
    let setup = started.elapsed();

    let server_cpu0 = target.cpu_seconds()?;
    let own_cpu0 = procfs::cpu_seconds(std::process::id()).ok();
    run.start_tx.send_replace(true);

    let mut last_progress = (0u64, Instant::now());
    let mut incomplete = false;
    loop {
        {
            let sh = run.shared.borrow();
            let gone = sh.trouble.disconnected;
            if sh.complete + gone >= plan.clients {
                break;
            }
            if sh.tally.distinct != last_progress.0 {
                last_progress = (sh.tally.distinct, Instant::now());
            } else if sh.all_sent + gone >= plan.clients && last_progress.1.elapsed() > limits.stall
            {
                incomplete = true;
                break;
            }
        }
        if Instant::now() >= deadline {
            incomplete = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let server_cpu1 = target.cpu_seconds()?;
    let own_cpu1 = procfs::cpu_seconds(std::process::id()).ok();
    run.finish().await;

    let sh = run.shared.borrow();
    let first = sh.first_send_ns.min(sh.last_delivery_ns);
    Ok(FanoutOutcome {
        expected: sh.tally.expected(),
        delivered: sh.tally.distinct,
        missing: sh.tally.missing(),
        duplicated: sh.tally.duplicated,
        out_of_order: sh.tally.out_of_order,
        echoed: sh.tally.echoed,
        foreign: sh.tally.foreign,
        strayed: sh.tally.strayed,
        misrouted: sh.misrouted,
        elapsed: Duration::from_nanos(sh.last_delivery_ns.saturating_sub(first)),
        send_span: Duration::from_nanos(
            sh.last_send_ns
                .saturating_sub(sh.first_send_ns.min(sh.last_send_ns)),
        ),
        latency_us: sh.latency_us.clone(),
        n_servers: target.addrs.len(),
        cross_latency_us: sh.cross_latency_us.clone(),
        server_cpu_s: server_cpu0.zip(server_cpu1).map(|(a, b)| b - a),
        generator_cpu_s: own_cpu0.zip(own_cpu1).map(|(a, b)| b - a),
        incomplete: incomplete || sh.tally.missing() > 0,
        trouble: sh.trouble.clone(),
        setup,
        settled,
    })
}

/// Registers `clients` clients, lets them sit quietly for `hold`, and
/// measures the server's memory.
pub async fn idle(
    target: &Target,
    limits: &Limits,
    clients: usize,
    hold: Duration,
) -> Result<IdleOutcome, BenchError> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let rss_before_kib = target.rss_kib()?;
    let plan = Fanout {
        clients,
        messages: 0,
        room_size: None,
        size: 0,
        rate: None,
        batch: 1,
    };
    // Idle IRC clients register and do nothing else: no OPER, no JOIN.
    let idle_target = target.with_dialect(match target.dialect {
        Dialect::Tsockm => Dialect::Tsockm,
        Dialect::Irc { .. } => Dialect::Irc {
            oper: None,
            join: false,
        },
    });
    let run = Run::launch(&idle_target, limits, plan)?;
    let settled = run.setup_or_finish(limits, deadline).await?;
    let setup = started.elapsed();
    let hold_end = (Instant::now() + hold).min(deadline);
    tokio::time::sleep_until(hold_end.into()).await;
    let rss_after_kib = target.rss_kib()?;
    run.finish().await;
    let sh = run.shared.borrow();
    Ok(IdleOutcome {
        clients,
        rss_before_kib,
        rss_after_kib,
        setup,
        settled,
        trouble: sh.trouble.clone(),
    })
}

/// The join storm: `clients` clients register (IRC: and join one channel)
/// as fast as `--connect-concurrency` lets them, and every client learns of
/// every other. Measures when the last one registered and when the last one
/// had seen all the others, within `limits.timeout`.
pub async fn join_storm(
    target: &Target,
    limits: &Limits,
    clients: usize,
) -> Result<JoinOutcome, BenchError> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let server_cpu0 = target.cpu_seconds()?;
    let plan = Fanout {
        clients,
        messages: 0,
        room_size: None,
        size: 0,
        rate: None,
        batch: 1,
    };
    // IRC clients join the one channel and do nothing else: no OPER.
    let storm_target = target.with_dialect(match target.dialect {
        Dialect::Tsockm => Dialect::Tsockm,
        Dialect::Irc { .. } => Dialect::Irc {
            oper: None,
            join: true,
        },
    });
    let run = Run::launch(&storm_target, limits, plan)?;
    // A storm that does not complete in time still reports how far it got.
    let failure = match run.setup(limits, deadline).await {
        Ok(_) => None,
        Err(BenchError::Registration { failed, first, .. }) => Some((failed, first)),
        Err(e) => {
            run.finish().await;
            return Err(e);
        }
    };
    let server_cpu1 = target.cpu_seconds()?;
    let rss_kib = target.rss_kib()?;
    run.finish().await;
    let sh = run.shared.borrow();
    let (failed, first_failure) = failure.unwrap_or_default();
    let since_start = |ns: Option<u64>| ns.map(Duration::from_nanos);
    let n = clients as u64;
    Ok(JoinOutcome {
        clients,
        registered_clients: sh.registered,
        failed,
        first_failure: first_failure.trim_start_matches(": ").to_owned(),
        registered: since_start(sh.all_registered_ns),
        settled: since_start(sh.all_settled_ns),
        settled_clients: sh.settled,
        notices: if storm_target.dialect.announces_registrations() {
            sh.lobby_notices
        } else {
            sh.channel_notices
        },
        notices_expected: n * n.saturating_sub(1),
        server_cpu_s: server_cpu0.zip(server_cpu1).map(|(a, b)| b - a),
        rss_kib,
        trouble: sh.trouble.clone(),
    })
}

/// Raises the open-files limit to fit `clients` connections, if it can.
pub fn raise_open_files(clients: usize) -> Result<(), BenchError> {
    let needed = clients as u64 + 64;
    let limit = rlimit::increase_nofile_limit(needed).unwrap_or(0);
    if limit < needed {
        return Err(BenchError::NoFile { needed, limit });
    }
    Ok(())
}

/// One launched set of clients and the switches that drive them.
struct Run {
    shared: Rc<RefCell<Shared>>,
    start_tx: watch::Sender<bool>,
    stop_tx: watch::Sender<bool>,
    clients: usize,
}

impl Run {
    fn launch(target: &Target, limits: &Limits, plan: Fanout) -> Result<Run, BenchError> {
        let group = plan.room_size.unwrap_or(plan.clients);
        let shared = Rc::new(RefCell::new(Shared::new(
            plan.clients,
            plan.messages,
            group,
        )?));
        let (start_tx, start_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(limits.connect_concurrency.max(1)));
        let clients = plan.clients;
        let ctx = Rc::new(Context {
            addrs: target.addrs.clone(),
            dialect: target.dialect.clone(),
            plan,
            shared: Rc::clone(&shared),
            start_rx,
            stop_rx,
        });
        for idx in 0..clients {
            tokio::task::spawn_local(client(idx, Rc::clone(&ctx), Arc::clone(&gate)));
        }
        Ok(Run {
            shared,
            start_tx,
            stop_tx,
            clients,
        })
    }

    /// [`Run::setup`], and if it fails, the clients say goodbye before the
    /// error is returned.
    async fn setup_or_finish(
        &self,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<bool, BenchError> {
        let result = self.setup(limits, deadline).await;
        if result.is_err() {
            self.finish().await;
        }
        result
    }

    /// Waits until every client is registered, then until every client has
    /// seen every other join (or the server fell quiet). Returns whether all
    /// joins were seen; an error when not every client registered in time
    /// (the clients are still connected: see [`Run::finish`]).
    async fn setup(&self, limits: &Limits, deadline: Instant) -> Result<bool, BenchError> {
        loop {
            let (registered, failed, first) = {
                let sh = self.shared.borrow();
                (sh.registered, sh.failed, sh.first_failure.clone())
            };
            if registered == self.clients {
                break;
            }
            if registered + failed >= self.clients || Instant::now() >= deadline {
                return Err(BenchError::Registration {
                    registered,
                    wanted: self.clients,
                    failed,
                    first: first.map(|f| format!(": {f}")).unwrap_or_default(),
                    timeout: limits.timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        let settle_end = (Instant::now() + limits.settle_timeout).min(deadline);
        let mut last_bytes = (u64::MAX, Instant::now());
        loop {
            let (settled, bytes_in) = {
                let sh = self.shared.borrow();
                (sh.settled, sh.bytes_in)
            };
            if settled >= self.clients {
                return Ok(true);
            }
            if bytes_in != last_bytes.0 {
                last_bytes = (bytes_in, Instant::now());
            } else if last_bytes.1.elapsed() >= limits.quiet {
                return Ok(false);
            }
            if Instant::now() >= settle_end {
                return Ok(false);
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    /// Tells every client to say goodbye and waits (boundedly) for the
    /// server to close the connections.
    async fn finish(&self) {
        self.stop_tx.send_replace(true);
        let end = Instant::now() + CLOSE_GRACE;
        while Instant::now() < end && self.shared.borrow().closed < self.clients {
            tokio::time::sleep(POLL * 5).await;
        }
    }
}

/// What every client task can see.
struct Context {
    /// Client `i` connects to `addrs[i mod addrs.len()]`.
    addrs: Vec<String>,
    dialect: Dialect,
    plan: Fanout,
    shared: Rc<RefCell<Shared>>,
    start_rx: watch::Receiver<bool>,
    stop_rx: watch::Receiver<bool>,
}

/// Counters and measurements of all clients together.
struct Shared {
    epoch: Instant,
    tally: Tally,
    latency_us: Histogram<u64>,
    /// Deliveries between clients of different servers only.
    cross_latency_us: Histogram<u64>,
    registered: usize,
    failed: usize,
    first_failure: Option<String>,
    settled: usize,
    /// When the last client became ready (registered, and joined where it
    /// joins), in nanoseconds since `epoch`.
    all_registered_ns: Option<u64>,
    /// When the last client had seen every peer it should, likewise.
    all_settled_ns: Option<u64>,
    /// `NTFY_JOIN`s received by all clients together.
    lobby_notices: u64,
    /// Channel and room members learnt by all clients together.
    channel_notices: u64,
    /// Messages addressed to a conversation other than the recipient's.
    misrouted: u64,
    complete: usize,
    all_sent: usize,
    closed: usize,
    first_send_ns: u64,
    last_send_ns: u64,
    last_delivery_ns: u64,
    bytes_in: u64,
    trouble: Trouble,
}

impl Shared {
    fn new(clients: usize, messages: usize, group: usize) -> Result<Shared, BenchError> {
        // One microsecond to ten minutes, three significant digits.
        let latency_us = Histogram::new_with_bounds(1, 600_000_000, 3)
            .expect("constant histogram bounds are valid");
        Ok(Shared {
            epoch: Instant::now(),
            tally: Tally::new(clients, messages, group)?,
            cross_latency_us: latency_us.clone(),
            latency_us,
            registered: 0,
            failed: 0,
            first_failure: None,
            settled: 0,
            all_registered_ns: None,
            all_settled_ns: None,
            lobby_notices: 0,
            channel_notices: 0,
            misrouted: 0,
            complete: 0,
            all_sent: 0,
            closed: 0,
            first_send_ns: u64::MAX,
            last_send_ns: 0,
            last_delivery_ns: 0,
            bytes_in: 0,
            trouble: Trouble::default(),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(&mut self, reason: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(reason);
    }
}

/// One client: connect, log in, then read until the connection ends.
async fn client(idx: usize, ctx: Rc<Context>, gate: Arc<Semaphore>) {
    let Ok(permit) = gate.acquire_owned().await else {
        return;
    };
    let name = format!("b{idx}");
    let Some(addr) = ctx.addrs.get(server_of(idx, ctx.addrs.len())) else {
        let mut sh = ctx.shared.borrow_mut();
        sh.fail("no server address".to_owned());
        sh.closed += 1;
        return;
    };
    let stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => {
            let mut sh = ctx.shared.borrow_mut();
            sh.fail(format!("connect to {addr}: {e}"));
            sh.closed += 1;
            return;
        }
    };
    // Small frames should leave at once; batching is the writer's job.
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    if let Err(e) = wr.write_all(&ctx.dialect.login(&name)).await {
        let mut sh = ctx.shared.borrow_mut();
        sh.fail(format!("login: {e}"));
        sh.closed += 1;
        return;
    }
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let room = room_of(idx, &ctx.plan);
    tokio::task::spawn_local(writer(idx, wr, control_rx, Rc::clone(&ctx), room.clone()));
    let clients = ctx.plan.clients;
    let group_size = ctx.shared.borrow().tally.group_size(idx);
    let room_ref = room.as_deref();
    let reader = Reader {
        idx,
        me: match ctx.dialect {
            Dialect::Tsockm => String::new(),
            Dialect::Irc { .. } => name.clone(),
        },
        name,
        conversation: ctx.dialect.conversation(room_ref).to_owned(),
        registered: false,
        ready: false,
        lobby_peers: 0,
        need_lobby: if ctx.dialect.announces_registrations() {
            clients.saturating_sub(1)
        } else {
            0
        },
        channel_peers: 0,
        need_channel: if ctx.dialect.needs_join(room_ref) {
            group_size.saturating_sub(1)
        } else {
            0
        },
        settled: false,
        received: 0,
        expected: (group_size.saturating_sub(1) * ctx.plan.messages) as u64,
        last_word: None,
        permit: Some(permit),
        control_tx,
        room,
    };
    reader.run(rd, &ctx).await;
}

/// The room client `idx` talks in (`#r<idx / K>`), or `None` in the lobby.
fn room_of(idx: usize, plan: &Fanout) -> Option<String> {
    plan.room_size.map(|k| format!("#r{}", idx / k.max(1)))
}

/// The reading half of one client and its progress.
struct Reader {
    idx: usize,
    name: String,
    /// Own peer id (TsockM, once registered) or nick (IRC).
    me: String,
    /// The room this client joins, if any.
    room: Option<String>,
    /// Where the messages it receives must be addressed (`*`, `#bench`,
    /// its room).
    conversation: String,
    /// Registration accepted.
    registered: bool,
    /// Registered (and, where it joins a channel or room, joined).
    ready: bool,
    /// Other peers announced on the server (TsockM's `NTFY_JOIN`).
    lobby_peers: usize,
    /// How many other peers the server announces to this client.
    need_lobby: usize,
    /// Other members of its channel or room seen.
    channel_peers: usize,
    /// How many other members its channel or room has.
    need_channel: usize,
    settled: bool,
    /// Distinct deliveries from other clients.
    received: u64,
    /// Deliveries this client should receive: (group − 1) × M.
    expected: u64,
    /// The server's last refusal or goodbye, for the disconnect report.
    last_word: Option<String>,
    /// A registration slot, given back once registered.
    permit: Option<OwnedSemaphorePermit>,
    control_tx: mpsc::Sender<Bytes>,
}

impl Reader {
    async fn run(mut self, mut rd: OwnedReadHalf, ctx: &Context) {
        let clients = ctx.plan.clients;
        let mut buf = BytesMut::new();
        let mut chunk = READ_CHUNK_MIN;
        let end = loop {
            if buf.capacity() - buf.len() < chunk / 2 {
                buf.reserve(chunk);
            }
            let spare = buf.capacity() - buf.len();
            let n = match rd.read_buf(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(format!("read: {e}")),
            };
            // Busy clients get larger reads; quiet ones give memory back.
            if n == spare {
                chunk = (chunk * 2).min(READ_CHUNK_MAX);
            } else if n < READ_CHUNK_MIN && buf.len() == n && buf.capacity() > READ_CHUNK_MAX {
                chunk = READ_CHUNK_MIN;
            }
            let mut sh = ctx.shared.borrow_mut();
            let now = sh.now_ns();
            sh.bytes_in += n as u64;
            let mut start = 0;
            while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
                let line = &buf[start..start + i];
                start += i + 1;
                self.handle(line, now, &mut sh, ctx, clients);
            }
            buf.advance(start);
            if buf.is_empty() && buf.capacity() > READ_CHUNK_MAX && chunk == READ_CHUNK_MIN {
                buf = BytesMut::new();
            }
            if buf.len() > MAX_LINE_BYTES {
                break Some(format!("line longer than {MAX_LINE_BYTES} bytes"));
            }
        };
        let stopping = *ctx.stop_rx.borrow();
        let mut sh = ctx.shared.borrow_mut();
        sh.closed += 1;
        if !self.ready {
            let why = self
                .last_word
                .or(end)
                .unwrap_or_else(|| "connection closed".into());
            sh.fail(format!("{}: {why}", self.name));
        } else if !stopping {
            sh.trouble.disconnected += 1;
            let why = self
                .last_word
                .or(end)
                .unwrap_or_else(|| "connection closed".into());
            sh.trouble
                .first_disconnect
                .get_or_insert(format!("{}: {why}", self.name));
        }
    }

    fn handle(&mut self, line: &[u8], now: u64, sh: &mut Shared, ctx: &Context, clients: usize) {
        match ctx.dialect.classify(line, &self.me) {
            Event::Message { to, body } => {
                let Some(Stamp {
                    author,
                    seq,
                    sent_ns,
                }) = parse_body(body)
                else {
                    sh.tally.foreign += 1;
                    return;
                };
                if to != self.conversation.as_bytes() {
                    sh.misrouted += 1;
                    return;
                }
                if sh.tally.record(self.idx, author, seq) == Receipt::New {
                    self.received += 1;
                    let latency_us = now.saturating_sub(sent_ns) / 1_000;
                    sh.latency_us.saturating_record(latency_us.max(1));
                    let n_servers = ctx.addrs.len();
                    if server_of(author as usize, n_servers) != server_of(self.idx, n_servers) {
                        sh.cross_latency_us.saturating_record(latency_us.max(1));
                    }
                    sh.last_delivery_ns = now;
                    if self.received == self.expected {
                        sh.complete += 1;
                    }
                }
            }
            Event::Registered(id) => {
                if self.registered {
                    return;
                }
                self.registered = true;
                if matches!(ctx.dialect, Dialect::Tsockm) {
                    self.me = id;
                }
                let room = self.room.as_deref();
                if let Some(bytes) = ctx.dialect.after_registration(&self.name, room) {
                    self.send(bytes, sh);
                }
                if !ctx.dialect.needs_join(room) {
                    self.become_ready(sh, now, clients);
                }
            }
            Event::Joined => self.become_ready(sh, now, clients),
            Event::LobbyPeers(n) => {
                self.lobby_peers += n;
                sh.lobby_notices += n as u64;
                self.check_settled(sh, now, clients);
            }
            Event::ChannelPeers(n) => {
                self.channel_peers += n;
                sh.channel_notices += n as u64;
                self.check_settled(sh, now, clients);
            }
            Event::Reply(bytes) => self.send(bytes, sh),
            Event::Refused(reason) => {
                if !*ctx.stop_rx.borrow() {
                    sh.trouble.refusals += 1;
                    sh.trouble
                        .first_refusal
                        .get_or_insert_with(|| format!("{}: {reason}", self.name));
                }
                self.last_word = Some(reason);
            }
            Event::Other => {}
        }
    }

    fn become_ready(&mut self, sh: &mut Shared, now: u64, clients: usize) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.permit = None;
        sh.registered += 1;
        if sh.registered == clients {
            sh.all_registered_ns = Some(now);
        }
        if self.expected == 0 {
            // Idle clients are complete as soon as they are registered.
            sh.complete += 1;
        }
        self.check_settled(sh, now, clients);
    }

    fn check_settled(&mut self, sh: &mut Shared, now: u64, clients: usize) {
        let all_seen =
            self.lobby_peers >= self.need_lobby && self.channel_peers >= self.need_channel;
        if self.ready && !self.settled && all_seen {
            self.settled = true;
            sh.settled += 1;
            if sh.settled == clients {
                sh.all_settled_ns = Some(now);
            }
        }
    }

    /// Hands `bytes` to the writer. Only a backed-up writer counts as a
    /// drop: a closed one has stopped (end of run, or its connection
    /// failed), which is reported elsewhere.
    fn send(&self, bytes: Bytes, sh: &mut Shared) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.control_tx.try_send(bytes) {
            sh.trouble.replies_dropped += 1;
        }
    }
}

/// The writing half of one client: control answers before the start, then the
/// messages, then control answers until the stop, then goodbye.
async fn writer(
    idx: usize,
    mut wr: OwnedWriteHalf,
    mut control_rx: mpsc::Receiver<Bytes>,
    ctx: Rc<Context>,
    room: Option<String>,
) {
    let mut start_rx = ctx.start_rx.clone();
    let mut stop_rx = ctx.stop_rx.clone();
    let plan = &ctx.plan;
    let started = loop {
        tokio::select! {
            biased;
            _ = stop_rx.wait_for(|s| *s) => break false,
            bytes = control_rx.recv() => match bytes {
                Some(bytes) => if wr.write_all(&bytes).await.is_err() { return },
                None => return,
            },
            _ = start_rx.wait_for(|s| *s), if plan.messages > 0 => break true,
        }
    };
    if started {
        let sent = send_messages(
            idx,
            room.as_deref(),
            &mut wr,
            &mut control_rx,
            &mut stop_rx,
            &ctx,
        )
        .await;
        ctx.shared.borrow_mut().all_sent += 1;
        if !sent {
            return;
        }
        loop {
            tokio::select! {
                biased;
                _ = stop_rx.wait_for(|s| *s) => break,
                bytes = control_rx.recv() => match bytes {
                    Some(bytes) => if wr.write_all(&bytes).await.is_err() { return },
                    None => return,
                },
            }
        }
    }
    let _ = wr.write_all(&ctx.dialect.quit()).await;
    let _ = wr.shutdown().await;
}

/// Sends this client's M messages to its room or the lobby; `false` if the
/// connection failed.
async fn send_messages(
    idx: usize,
    room: Option<&str>,
    wr: &mut OwnedWriteHalf,
    control_rx: &mut mpsc::Receiver<Bytes>,
    stop_rx: &mut watch::Receiver<bool>,
    ctx: &Context,
) -> bool {
    let plan = &ctx.plan;
    let author = u32::try_from(idx).unwrap_or(u32::MAX);
    let interval = plan
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    // Spread rate-limited clients evenly over one interval.
    let offset = interval
        .map(|iv| iv.mul_f64(idx as f64 / plan.clients.max(1) as f64))
        .unwrap_or_default();
    let mut next = tokio::time::Instant::now() + offset;
    let mut out = BytesMut::with_capacity(plan.batch.max(1) * (plan.size + 64));
    let mut body = String::with_capacity(plan.size + 32);
    let mut seq: usize = 0;
    while seq < plan.messages {
        while let Ok(bytes) = control_rx.try_recv() {
            if wr.write_all(&bytes).await.is_err() {
                return false;
            }
        }
        let n = match interval {
            Some(iv) => {
                tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|s| *s) => return true,
                    bytes = control_rx.recv() => {
                        if let Some(bytes) = bytes
                            && wr.write_all(&bytes).await.is_err()
                        {
                            return false;
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(next) => {}
                }
                next += iv;
                1
            }
            None => plan.batch.max(1).min(plan.messages - seq),
        };
        out.clear();
        let sent_ns = ctx.shared.borrow().now_ns();
        for _ in 0..n {
            let stamp = Stamp {
                author,
                seq: u32::try_from(seq).unwrap_or(u32::MAX),
                sent_ns,
            };
            write_body(stamp, plan.size, &mut body);
            ctx.dialect.message(room, &body, &mut out);
            seq += 1;
        }
        {
            let mut sh = ctx.shared.borrow_mut();
            sh.first_send_ns = sh.first_send_ns.min(sent_ns);
            sh.last_send_ns = sh.last_send_ns.max(sent_ns);
        }
        if wr.write_all(&out).await.is_err() {
            return false;
        }
    }
    true
}
