//! A churn soak for the TsockM server: an in-process server on loopback and
//! a crowd of scripted clients that join, broadcast, send direct messages,
//! drop without COMM_END, resume in time or too late, stall, flood past the
//! rate limit and leave cleanly, at random from one seed.
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
//! - a resume within the removal delay succeeds, one after it gets 404;
//! - after everyone has left the server holds no peer and no connection,
//!   and its task count and RSS are back near where they started.
//!
//! It is a library so that a short run is an integration test and a long
//! one is `cargo xtask soak --minutes N` (the `tsockm-soak` binary).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bot;
pub mod check;
mod rng;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tsockm_server::{CancellationToken, Config, Console, LogMode, Server};
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
    /// Clients that stay for the whole run and receive everything.
    pub n_observers: usize,
}

impl SoakConfig {
    /// A run of `duration` with the default crowd.
    pub fn new(duration: Duration, seed: u64) -> Self {
        SoakConfig {
            duration,
            seed,
            n_churners: 24,
            n_observers: 2,
        }
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
/// RSS growth over the run that counts as a leak, in bytes.
pub const RSS_SLACK_BYTES: u64 = 64 << 20;

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

/// Runs the soak on the current (multi-thread) tokio runtime.
pub async fn run(config: SoakConfig) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    report.row("seed", config.seed);
    let tasks_at_start = alive_tasks();
    let rss_at_start = rss_bytes();
    let server = match Server::bind(server_config()).await {
        Ok(server) => server,
        Err(e) => {
            report
                .violations
                .push(format!("cannot bind the server: {e}"));
            return report;
        }
    };
    let addr = server.local_addr();
    let console = server.console();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.run(shutdown.clone()));
    // Once the registry answers, the server's own tasks are all running.
    let _ = wait_info(&console, WIND_DOWN, |_| true).await;
    let tasks_with_server = alive_tasks();

    let counters = Arc::new(Counters::default());
    let violations = Arc::new(std::sync::Mutex::new(Vec::new()));
    let churn_until = tokio::time::Instant::now() + config.duration;
    let observers_done = CancellationToken::new();
    let mut rng = Rng::new(config.seed);

    // Observers first, so that every churner joins after them.
    let mut observers = JoinSet::new();
    for i in 0..config.n_observers {
        let bot = bot::Bot::new(
            i,
            true,
            addr,
            Rng::new(rng.next_u64()),
            counters.clone(),
            violations.clone(),
        );
        let done = observers_done.clone();
        let Some(bot) = bot.registered().await else {
            report
                .violations
                .push(format!("observer {i} cannot register"));
            return report;
        };
        observers.spawn(bot.observe(done));
    }
    let mut churners = JoinSet::new();
    for i in 0..config.n_churners {
        let bot = bot::Bot::new(
            config.n_observers + i,
            false,
            addr,
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
    // Peers left away are removed after the delay; then only observers remain.
    let n_observers = config.n_observers;
    let settled = wait_info(&console, WIND_DOWN, |info| {
        info.n_online == n_observers && info.n_away == 0 && info.n_unregistered == 0
    })
    .await;
    if let Err(info) = &settled {
        report.violations.push(format!(
            "only the observers should remain, but :info says {info:?}"
        ));
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
    let final_info = wait_info(&console, WIND_DOWN, |info| {
        info.n_online == 0 && info.n_away == 0 && info.n_unregistered == 0
    })
    .await;
    let info = match final_info {
        Ok(info) => info,
        Err(info) => {
            report
                .violations
                .push(format!("peers remain after everyone left: {info:?}"));
            info
        }
    };
    // Every connection task of the server ends once its socket is closed.
    let task_deadline = tokio::time::Instant::now() + WIND_DOWN;
    let mut tasks_after = alive_tasks();
    while tasks_after > tasks_with_server + TASK_SLACK
        && tokio::time::Instant::now() < task_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tasks_after = alive_tasks();
    }
    if tasks_after > tasks_with_server + TASK_SLACK {
        report.violations.push(format!(
            "{tasks_after} tasks alive after the run, {tasks_with_server} with the idle server"
        ));
    }
    if info.frames_dropped != 0 {
        report.violations.push(format!(
            "{} kept frames were dropped: the load exceeds what the checks assume",
            info.frames_dropped
        ));
    }
    let rss_after = rss_bytes();
    if rss_after > rss_at_start + RSS_SLACK_BYTES {
        report.violations.push(format!(
            "RSS grew from {} to {} MiB",
            rss_at_start >> 20,
            rss_after >> 20
        ));
    }
    shutdown.cancel();
    match tokio::time::timeout(WIND_DOWN, server_task).await {
        Ok(Ok(Ok(()))) => {}
        other => report
            .violations
            .push(format!("the server did not stop cleanly: {other:?}")),
    }

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
    report.row("resumes in time", Counters::get(&c.resumes));
    report.row("resumes too late (404)", Counters::get(&c.late_resumes));
    report.row("stalls", Counters::get(&c.stalls));
    report.row("NTFY_KILL seen", checked.n_kills);
    report.row("frames received", Counters::get(&c.frames_received));
    report.row(
        "server frames in / out",
        format!("{} / {}", info.frames_in, info.frames_out),
    );
    report.row(
        "server cut-offs / kept dropped",
        format!("{} / {}", info.peers_cut_off, info.frames_dropped),
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
