//! A churn soak for the TsockM server: an in-process server on loopback and
//! a crowd of scripted clients that join, broadcast, send direct messages,
//! drop without COMM_END, resume in time or too late, stall, flood past the
//! rate limit and leave cleanly, at random from one seed.
//!
//! With [`SoakConfig::cluster_nodes`] the server is a cluster instead
//! (`cluster.md`): a `redis-server` of the run's own ([`redis`]) and N
//! in-process nodes joined to it. Clients register on any node and mostly
//! resume on another node than the one they left; every guarantee below
//! must hold across nodes.
//!
//! Every client records what it receives; when the run ends, [`check()`]
//! verifies the contract's guarantees over all records:
//! - per recipient and author, broadcasts and direct messages arrive exactly
//!   once and in the author's order;
//! - a message counts as *accepted* when any peer received it (the registry
//!   fans a broadcast out to every peer registered at that moment, or to
//!   none). The observers, registered first and never churning, must receive
//!   every accepted broadcast; every other peer a contiguous run of them
//!   (its presence is one interval); and all of them when it saw the author
//!   join and leave (it was there for the author's whole lifetime, away
//!   periods included);
//! - NTFY_JOIN and NTFY_KILL at most once per peer per recipient, nothing
//!   from a peer after its NTFY_KILL, and every observer sees exactly one
//!   NTFY_KILL for every peer that joined after it;
//! - every recipient receives the lobby's broadcasts in one order: any two
//!   that both arrive reach every recipient in the same order as they
//!   reach the first observer; a message has one id wherever it arrives,
//!   and no two messages share one;
//! - a resume within the removal delay succeeds, one after it gets 404; a
//!   resume naming the last message received loses nothing, even after a
//!   reset;
//! - after everyone has left the server (every node) holds no peer and no
//!   connection, every node's view of the cluster is empty, and the task
//!   count and RSS are back near where they started.
//!
//! A node learns of another node's change when its inbox brings it, so
//! before the observers leave, a cluster run fences: one marker peer per
//! node registers after everything that node sent, and the observers stay
//! until every node lists exactly them and the markers, then them alone.
//!
//! It is a library so that a short run is an integration test and a long
//! one is `cargo xtask soak --minutes N` (the `tsockm-soak` binary).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bot;
pub mod check;
pub mod redis;
mod rng;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};
use tsockm_server::{CancellationToken, ClusterConfig, Config, Console, LogMode, Server};
use tsockm_server::{ConsoleReply, ConsoleRequest, InfoReport};

pub use check::check;
pub use rng::Rng;

/// What a run does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long clients churn (the run then needs a few seconds to wind down).
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Clients that churn.
    pub n_churners: usize,
    /// Clients that stay for the whole run and receive everything (at
    /// least one per node).
    pub n_observers: usize,
    /// `None`: one server on its own. `Some(n)`: a cluster of `n` nodes
    /// sharing a `redis-server` the run starts and stops.
    pub cluster_nodes: Option<usize>,
}

impl SoakConfig {
    /// A run of `duration` with the default crowd.
    pub fn new(duration: Duration, seed: u64) -> Self {
        SoakConfig {
            duration,
            seed,
            n_churners: 24,
            n_observers: 2,
            cluster_nodes: None,
        }
    }

    /// The same run across a cluster of `nodes` nodes.
    pub fn cluster(mut self, nodes: usize) -> Self {
        self.cluster_nodes = Some(nodes.max(1));
        self.n_observers = self.n_observers.max(nodes);
        self
    }
}

/// Timers of the soak's server: short, so that drops, resumes and removals
/// all happen many times in a short run.
pub fn server_config() -> Config {
    Config {
        store: Some(tsockm_server::StoreSpec::Memory),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        removal_delay: REMOVAL_DELAY,
        health_interval: Duration::from_millis(300),
        health_timeout: HEALTH_TIMEOUT,
        handshake_timeout: Duration::from_secs(5),
        max_rate: MAX_RATE,
        send_queue_frames: 512,
        // Far more than a peer can miss while away in this load, so that no
        // kept frame is dropped and every gap is a bug.
        kept_frames: 4096,
        // Every bot comes from 127.0.0.1, many registering at once.
        max_unregistered_per_ip: tsockm_server::config::DEFAULT_MAX_UNREGISTERED,
        log_mode: LogMode::Silent,
        ..Config::default()
    }
}

/// The settings of node `index` of a cluster soak whose Redis is at `url`.
pub fn node_config(url: &str, index: usize) -> Config {
    Config {
        cluster: Some(ClusterConfig {
            url: url.to_owned(),
            name: CLUSTER_NAME.to_owned(),
            node: format!("n{index}"),
            node_timeout: NODE_TIMEOUT,
        }),
        ..server_config()
    }
}

/// The key prefix of the soak's cluster.
pub const CLUSTER_NAME: &str = "soak";
/// How long a cluster soak's node may miss its heartbeat. No node dies in
/// the soak, so this only has to be long enough that a busy machine never
/// declares a live node dead.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// The soak server's removal delay.
pub const REMOVAL_DELAY: Duration = Duration::from_secs(2);
/// The soak server's health timeout.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(900);
/// The soak server's rate limit, frames per second.
pub const MAX_RATE: u32 = 50;
/// Longest the wind-down (everyone leaving, removals, final checks) may take.
pub const WIND_DOWN: Duration = Duration::from_secs(20);
/// Tasks the server may hold after the run beyond its count at the start.
pub const TASK_SLACK: usize = 2;
/// More of them per node of a cluster: a node's link holds two Redis
/// connections, each with a driver task; the reader's connects lazily (so
/// it may start after the count at the start), and a connection that timed
/// out on a busy machine is replaced by a new one.
pub const CLUSTER_TASK_SLACK: usize = 2;
/// RSS growth over the run that counts as a leak, in bytes, besides the
/// clients' own records ([`RECORD_BYTES`] a frame received).
pub const RSS_SLACK_BYTES: u64 = 64 << 20;
/// What the clients keep, in this process, for every frame they receive
/// (an `Rx` with its two strings, and its place in a vector that grew by
/// doubling): the checks need all of it at the end, so it grows with the
/// run (about 70 MiB in a 3-minute soak across a cluster).
pub const RECORD_BYTES: u64 = 192;

/// Counts of what the clients did, shared by all of them.
#[derive(Debug, Default)]
pub struct Counters {
    /// New registrations.
    pub registrations: AtomicU64,
    /// Broadcasts written (including floods).
    pub broadcasts: AtomicU64,
    /// Direct messages written.
    pub directs: AtomicU64,
    /// Floods (bursts past the rate limit).
    pub floods: AtomicU64,
    /// 429 answers received.
    pub rate_limited: AtomicU64,
    /// Clean leaves (COMM_END answered).
    pub leaves: AtomicU64,
    /// Drops without COMM_END.
    pub drops: AtomicU64,
    /// Resumes within the delay that succeeded.
    pub resumes: AtomicU64,
    /// Of those, resumes on another node than the one the client left.
    pub resumes_elsewhere: AtomicU64,
    /// Of those, resumes that named the last message id received.
    pub resumes_after_id: AtomicU64,
    /// Resumes after the delay that got 404.
    pub late_resumes: AtomicU64,
    /// Stalls (stopped reading and writing).
    pub stalls: AtomicU64,
    /// Frames received by all clients.
    pub frames_received: AtomicU64,
}

impl Counters {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// `(what, value)` rows of the summary table.
    pub rows: Vec<(String, String)>,
    /// Every invariant that did not hold, described.
    pub violations: Vec<String>,
}

impl Report {
    fn row(&mut self, what: &str, value: impl ToString) {
        self.rows.push((what.to_owned(), value.to_string()));
    }

    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The summary table and the first violations, as text.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (what, value) in &self.rows {
            let _ = writeln!(out, "  {what:<width$}  {value}");
        }
        let _ = writeln!(out, "  {:<width$}  {}", "violations", self.violations.len());
        for violation in self.violations.iter().take(20) {
            let _ = writeln!(out, "    - {violation}");
        }
        if self.violations.len() > 20 {
            let _ = writeln!(out, "    ... and {} more", self.violations.len() - 20);
        }
        out
    }
}

/// One server of the run: on its own, or a node of the cluster.
struct Node {
    addr: SocketAddr,
    console: Console,
    task: JoinHandle<std::io::Result<()>>,
}

/// Runs the soak on the current (multi-thread) tokio runtime.
pub async fn run(config: SoakConfig) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    report.row("seed", config.seed);
    let tasks_at_start = alive_tasks();
    let rss_at_start = rss_bytes();
    // The cluster's Redis lives (and is killed) with this handle.
    let redis = match config.cluster_nodes {
        None => None,
        Some(_) => match redis::RedisServer::start().await {
            Ok(redis) => Some(redis),
            Err(e) => {
                report.violations.push(format!("cannot start Redis: {e}"));
                return report;
            }
        },
    };
    let configs: Vec<Config> = match (&redis, config.cluster_nodes) {
        (Some(redis), Some(n)) => (0..n.max(1))
            .map(|i| node_config(&redis.url(), i))
            .collect(),
        _ => vec![server_config()],
    };
    let shutdown = CancellationToken::new();
    let mut nodes = Vec::new();
    for (i, node_config) in configs.into_iter().enumerate() {
        let server = match Server::bind(node_config).await {
            Ok(server) => server,
            Err(e) => {
                report
                    .violations
                    .push(format!("cannot bind server {i}: {e}"));
                shutdown.cancel();
                return report;
            }
        };
        nodes.push(Node {
            addr: server.local_addr(),
            console: server.console(),
            task: tokio::spawn(server.run(shutdown.clone())),
        });
    }
    // Once every registry answers, the servers' own tasks are all running.
    for node in &nodes {
        let _ = wait_info(&node.console, WIND_DOWN, |_| true).await;
    }
    let tasks_with_server = alive_tasks();
    let addrs: Arc<[SocketAddr]> = nodes.iter().map(|n| n.addr).collect();

    let counters = Arc::new(Counters::default());
    let violations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let churn_until = tokio::time::Instant::now() + config.duration;
    let observers_done = CancellationToken::new();
    let mut rng = Rng::new(config.seed);

    // Observers first (spread over the nodes), so that every churner joins
    // after them.
    let mut observers = JoinSet::new();
    let mut observers_on = vec![0usize; nodes.len()];
    let mut observer_ids = BTreeSet::new();
    for i in 0..config.n_observers {
        let node = i % nodes.len();
        observers_on[node] += 1;
        let bot = bot::Bot::new(
            i,
            true,
            (addrs.clone(), node),
            Rng::new(rng.next_u64()),
            counters.clone(),
            violations.clone(),
        );
        let done = observers_done.clone();
        let Some(bot) = bot.registered().await else {
            report
                .violations
                .push(format!("observer {i} cannot register"));
            shutdown.cancel();
            return report;
        };
        observer_ids.extend(bot.peer_id().map(str::to_owned));
        observers.spawn(bot.observe(done));
    }
    let mut churners = JoinSet::new();
    for i in 0..config.n_churners {
        let bot = bot::Bot::new(
            config.n_observers + i,
            false,
            (addrs.clone(), i),
            Rng::new(rng.next_u64()),
            counters.clone(),
            violations.clone(),
        );
        churners.spawn(bot.churn(churn_until));
    }
    let mut sessions = Vec::new();
    let wind_down = churn_until + config.duration / 2 + WIND_DOWN;
    while let Some(joined) = tokio::time::timeout_at(wind_down, churners.join_next())
        .await
        .ok()
        .flatten()
    {
        match joined {
            Ok(done) => sessions.extend(done),
            Err(e) => report.violations.push(format!("a churner failed: {e}")),
        }
    }
    if !churners.is_empty() {
        report.violations.push(format!(
            "{} churners did not finish in time",
            churners.len()
        ));
        churners.abort_all();
    }
    if config.cluster_nodes.is_some() {
        // A registration or a removal may still be on its way to the other
        // nodes, and an observer that left now would miss its notice.
        let mut index = config.n_observers + config.n_churners;
        let markers = fence(
            &nodes,
            &addrs,
            &observer_ids,
            &mut index,
            &mut rng,
            (&counters, &violations),
        )
        .await;
        sessions.extend(markers.into_iter().flatten());
    }
    // Peers left away are removed after the delay; then only observers
    // remain, on their nodes, and every node's view of the cluster agrees.
    let n_observers = config.n_observers;
    for (i, node) in nodes.iter().enumerate() {
        let mine = observers_on[i];
        let settled = wait_info(&node.console, WIND_DOWN, |info| {
            info.n_online == mine
                && info.n_away == 0
                && info.n_unregistered == 0
                && info
                    .cluster
                    .as_ref()
                    .is_none_or(|c| c.n_online == n_observers && c.n_away == 0)
        })
        .await;
        if let Err(info) = &settled {
            report.violations.push(format!(
                "only the observers should remain, but :info of node {i} says {info:?}"
            ));
        }
    }
    observers_done.cancel();
    while let Some(joined) = tokio::time::timeout(WIND_DOWN, observers.join_next())
        .await
        .ok()
        .flatten()
    {
        match joined {
            Ok(done) => sessions.extend(done),
            Err(e) => report.violations.push(format!("an observer failed: {e}")),
        }
    }
    let mut infos = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let final_info = wait_info(&node.console, WIND_DOWN, |info| {
            info.n_online == 0
                && info.n_away == 0
                && info.n_unregistered == 0
                && info.n_connections == 0
                && info
                    .cluster
                    .as_ref()
                    .is_none_or(|c| c.n_online == 0 && c.n_away == 0)
        })
        .await;
        infos.push(match final_info {
            Ok(info) => info,
            Err(info) => {
                report.violations.push(format!(
                    "peers or connections remain on node {i} after everyone left: {info:?}"
                ));
                info
            }
        });
    }
    // Every connection task of the server ended with its socket (its
    // place counts in `n_connections`, checked above); nothing else the
    // run started lingers either.
    let task_slack = TASK_SLACK + CLUSTER_TASK_SLACK * config.cluster_nodes.unwrap_or(0);
    let task_deadline = tokio::time::Instant::now() + WIND_DOWN;
    let mut tasks_after = alive_tasks();
    while tasks_after > tasks_with_server + task_slack
        && tokio::time::Instant::now() < task_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tasks_after = alive_tasks();
    }
    if tasks_after > tasks_with_server + task_slack {
        report.violations.push(format!(
            "{tasks_after} tasks alive after the run, {tasks_with_server} with the idle server"
        ));
    }
    let sum = |f: fn(&InfoReport) -> u64| infos.iter().map(f).sum::<u64>();
    let frames_dropped = sum(|i| i.frames_dropped);
    if frames_dropped != 0 {
        report.violations.push(format!(
            "{frames_dropped} kept frames were dropped: the load exceeds what the checks assume"
        ));
    }
    let rss_after = rss_bytes();
    let records = Counters::get(&counters.frames_received).saturating_mul(RECORD_BYTES);
    if rss_after > rss_at_start + RSS_SLACK_BYTES + records {
        report.violations.push(format!(
            "RSS grew from {} to {} MiB (the clients' records take about {} MiB)",
            rss_at_start >> 20,
            rss_after >> 20,
            records >> 20
        ));
    }
    shutdown.cancel();
    for (i, node) in nodes.into_iter().enumerate() {
        match tokio::time::timeout(WIND_DOWN, node.task).await {
            Ok(Ok(Ok(()))) => {}
            other => report
                .violations
                .push(format!("server {i} did not stop cleanly: {other:?}")),
        }
    }
    drop(redis);

    if let Ok(mut found) = violations.lock() {
        report.violations.append(&mut found);
    }
    let checked = check(&sessions);
    report.violations.extend(checked.violations);

    let c = &counters;
    report.row(
        "duration",
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    );
    report.row(
        "servers",
        match config.cluster_nodes {
            Some(n) => format!("a cluster of {n} nodes on one redis-server"),
            None => "one".to_owned(),
        },
    );
    report.row(
        "clients",
        format!(
            "{} churners, {} observers",
            config.n_churners, config.n_observers
        ),
    );
    report.row("sessions (peer ids)", sessions.len());
    report.row("registrations", Counters::get(&c.registrations));
    report.row("broadcasts written", Counters::get(&c.broadcasts));
    report.row("broadcasts accepted", checked.n_accepted);
    report.row("broadcast deliveries", checked.n_deliveries);
    report.row(
        "deliveries in the observers' order",
        checked.n_order_checked,
    );
    report.row("direct messages", Counters::get(&c.directs));
    report.row(
        "floods / 429s",
        format!(
            "{} / {}",
            Counters::get(&c.floods),
            Counters::get(&c.rate_limited)
        ),
    );
    report.row("clean leaves", Counters::get(&c.leaves));
    report.row("drops without COMM_END", Counters::get(&c.drops));
    report.row(
        "resumes in time (on another node / naming the last id)",
        format!(
            "{} ({} / {})",
            Counters::get(&c.resumes),
            Counters::get(&c.resumes_elsewhere),
            Counters::get(&c.resumes_after_id)
        ),
    );
    report.row("resumes too late (404)", Counters::get(&c.late_resumes));
    report.row("stalls", Counters::get(&c.stalls));
    report.row("NTFY_KILL seen", checked.n_kills);
    report.row("frames received", Counters::get(&c.frames_received));
    report.row(
        "server frames in / out",
        format!("{} / {}", sum(|i| i.frames_in), sum(|i| i.frames_out)),
    );
    report.row(
        "server cut-offs / kept dropped",
        format!("{} / {frames_dropped}", sum(|i| i.peers_cut_off)),
    );
    report.row(
        "tasks start / idle server / end",
        format!("{tasks_at_start} / {tasks_with_server} / {tasks_after}"),
    );
    report.row(
        "RSS start / end",
        format!("{} / {} MiB", rss_at_start >> 20, rss_after >> 20),
    );
    report
}

/// Waits until every change any node made so far has reached every node,
/// and its notices every observer: one marker peer registers on each node
/// (after everything its node sent before, in the cluster's one order),
/// then every node must list exactly the observers and the markers; the
/// markers then leave, and every node must list the observers alone. The
/// markers' records are returned (they are peers like any other).
async fn fence(
    nodes: &[Node],
    addrs: &Arc<[SocketAddr]>,
    observer_ids: &BTreeSet<String>,
    index: &mut usize,
    rng: &mut Rng,
    (counters, violations): (&Arc<Counters>, &Arc<std::sync::Mutex<Vec<String>>>),
) -> Vec<Vec<bot::Session>> {
    let mut markers = Vec::new();
    let mut expected = observer_ids.clone();
    for node in 0..nodes.len() {
        let bot = bot::Bot::new(
            *index,
            false,
            (addrs.clone(), node),
            Rng::new(rng.next_u64()),
            counters.clone(),
            violations.clone(),
        );
        *index += 1;
        if let Some(bot) = bot.registered().await {
            expected.extend(bot.peer_id().map(str::to_owned));
            markers.push(bot);
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        if let Err(listed) = wait_list(&node.console, &expected).await
            && let Ok(mut all) = violations.lock()
        {
            all.push(format!(
                "node {i} lists {listed:?}, not the observers and markers {expected:?}"
            ));
        }
    }
    let mut records = Vec::new();
    for marker in markers {
        records.push(marker.leave_now().await);
    }
    for (i, node) in nodes.iter().enumerate() {
        if let Err(listed) = wait_list(&node.console, observer_ids).await
            && let Ok(mut all) = violations.lock()
        {
            all.push(format!(
                "node {i} lists {listed:?}, not the observers {observer_ids:?}"
            ));
        }
    }
    records
}

/// Waits until `:list` names exactly `ids`; the last list either way.
async fn wait_list(console: &Console, ids: &BTreeSet<String>) -> Result<(), BTreeSet<String>> {
    let deadline = tokio::time::Instant::now() + WIND_DOWN;
    loop {
        let listed: BTreeSet<String> = match console.request(ConsoleRequest::List).await {
            Ok(ConsoleReply::List(peers)) => peers.into_iter().map(|p| p.id).collect(),
            _ => return Err(BTreeSet::new()),
        };
        if listed == *ids {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(listed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `:info` satisfies `done`; the last answer either way.
async fn wait_info(
    console: &Console,
    timeout: Duration,
    done: impl Fn(&InfoReport) -> bool,
) -> Result<InfoReport, InfoReport> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let info = match console.request(ConsoleRequest::Info).await {
            Ok(ConsoleReply::Info(info)) => info,
            _ => return Err(empty_info()),
        };
        if done(&info) {
            return Ok(info);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(info);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn empty_info() -> InfoReport {
    InfoReport {
        addr: String::new(),
        uptime: Duration::ZERO,
        n_online: usize::MAX,
        n_away: usize::MAX,
        n_unregistered: usize::MAX,
        n_connections: usize::MAX,
        frames_in: 0,
        frames_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        frames_dropped: 0,
        frames_rate_limited: 0,
        peers_cut_off: 0,
        peers_over_budget: 0,
        queued_bytes: 0,
        max_queued_bytes: 0,
        n_rooms: 0,
        store: String::new(),
        store_written: 0,
        store_failed: 0,
        store_dropped: 0,
        store_failing: false,
        cluster: None,
    }
}

/// Tasks alive on the current runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// This process's resident set size (0 where `/proc` is missing).
fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A seed from the clock, for runs not asked to repeat one.
pub fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
