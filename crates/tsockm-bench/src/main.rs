//! `tsockm-bench`: a load generator for TsockM and, for comparison, IRC
//! servers.
//!
//! - `fanout`: C clients register, wait at a barrier until all are registered
//!   and have seen each other join, then each sends M broadcasts of S bytes at
//!   full speed or at `--rate` per client; every client reads everything.
//!   Reports deliveries per second (first send to last delivery), latency
//!   percentiles, completeness (missing, duplicated, out of order per author)
//!   and the server's CPU seconds per million deliveries.
//! - `rooms`: R × K clients in R rooms of K members (TsockM v2 rooms, or IRC
//!   channels); each joins its room, and once every room is complete each
//!   sends M messages to its room. Reports the same figures as `fanout`, and
//!   also counts messages from another room or addressed elsewhere.
//! - `idle`: N clients register and stay idle; reports the server's resident
//!   memory per registered peer.
//! - `join`: the join storm. N clients register (IRC: and join one channel)
//!   and every client learns of every other; reports when the last one had
//!   registered and when the last one had seen all the others.
//!
//! `--addr` and `--irc` may be repeated: several servers that act as one
//! (the nodes of a TsockM cluster, linked IRC servers). Clients are then
//! split over them round-robin, and fan-out and rooms also report the
//! latency of the deliveries that cross from one server to another.
//! `--server-pid` may be repeated too; CPU and memory are then summed.
//!
//! Modules: `dialect.rs` (what is said on the wire, TsockM or IRC),
//! `payload.rs` (the message body), `tally.rs` (completeness), `run.rs` (the
//! clients and the workloads), `procfs.rs` (the server's CPU and memory),
//! `error.rs`. Everything runs on one thread so that the server can have the
//! other core; network traffic goes only where `--addr` / `--irc` point.
//!
//! Besides a human-readable report, each run prints one `RESULT key=value ...`
//! line that `cargo xtask bench` reads.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod dialect;
mod error;
mod payload;
mod procfs;
mod run;
mod tally;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;

use crate::dialect::Dialect;
use crate::error::BenchError;
use crate::run::{Fanout, FanoutOutcome, IdleOutcome, JoinOutcome, Limits, Target, Trouble};

#[derive(Debug, Parser)]
#[command(
    name = "tsockm-bench",
    version,
    about = "Load generator for TsockM (and IRC) servers"
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// C clients each broadcast M messages; every client reads everything.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Clients (C).
        #[arg(short, long, default_value_t = 10)]
        clients: usize,
        /// Broadcasts per client (M).
        #[arg(short, long, default_value_t = 2000)]
        messages: usize,
        /// Body size in bytes (S).
        #[arg(short, long, default_value_t = 64)]
        size: usize,
        /// Messages per second per client; full speed when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// At full speed, messages written per system call.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// End the run when nothing arrives for this long after the last send.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        stall: Duration,
    },
    /// R rooms of K clients; each sends M messages to its own room.
    Rooms {
        #[command(flatten)]
        common: Common,
        /// Rooms (R).
        #[arg(short, long, default_value_t = 100)]
        rooms: usize,
        /// Members of each room (K); R × K clients in all.
        #[arg(short = 'k', long, default_value_t = 10)]
        members: usize,
        /// Messages per client (M), to its room.
        #[arg(short, long, default_value_t = 20)]
        messages: usize,
        /// Body size in bytes (S).
        #[arg(short, long, default_value_t = 64)]
        size: usize,
        /// Messages per second per client; full speed when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// At full speed, messages written per system call.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// End the run when nothing arrives for this long after the last send.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        stall: Duration,
    },
    /// N clients register and stay idle; the server's memory per peer.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Clients (N).
        #[arg(short = 'n', long, default_value_t = 1000)]
        clients: usize,
        /// How long the registered clients stay before memory is read.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        hold: Duration,
    },
    /// The join storm: N clients register (IRC: and JOIN one channel) and
    /// each learns of all the others. Its wait for the notices is bounded by
    /// `--timeout` (not `--settle-timeout`) and by `--quiet`.
    Join {
        #[command(flatten)]
        common: Common,
        /// Clients (N).
        #[arg(short = 'n', long, default_value_t = 10_000)]
        clients: usize,
        /// Give up waiting for notices after the server sent nothing for
        /// this long.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        quiet: Duration,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// A TsockM server, `host:port`. Repeat it for the nodes of a cluster:
    /// client i connects to the (i mod n)-th.
    #[arg(long, conflicts_with = "irc", required_unless_present = "irc")]
    addr: Vec<String>,
    /// An IRC server, `host:port` (NICK/USER, JOIN #bench or the room's
    /// channel, PRIVMSG to it). Repeat it for linked servers: client i
    /// connects to the (i mod n)-th.
    #[arg(long)]
    irc: Vec<String>,
    /// IRC: `name:password` of an operator block; clients OPER and set user
    /// mode +F (ngircd's relaxed flood protection). Fan-out and rooms only:
    /// idle IRC clients only register (NICK/USER), as TsockM clients do, and
    /// join-storm clients only register and JOIN.
    #[arg(long, requires = "irc")]
    irc_oper: Option<String>,
    /// The server's process id, for CPU time (`/proc/<pid>/stat`) and
    /// memory (`/proc/<pid>/status`). Repeatable: the figures are then the
    /// sums over all of them (every node, and e.g. the cluster's Redis).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Upper bound for the whole run.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Upper bound for waiting on join notices after all registered.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    settle_timeout: Duration,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// A label for the RESULT line (e.g. `tsockm` or `ngircd`).
    #[arg(long)]
    label: Option<String>,
}

impl Common {
    fn target(&self) -> Target {
        // clap requires one of the two and forbids both.
        let (addrs, dialect) = if self.irc.is_empty() {
            (self.addr.clone(), Dialect::Tsockm)
        } else {
            let oper = self.irc_oper.as_ref().map(|s| match s.split_once(':') {
                Some((name, password)) => (name.to_owned(), password.to_owned()),
                None => (s.clone(), String::new()),
            });
            (self.irc.clone(), Dialect::Irc { oper, join: true })
        };
        Target {
            addrs,
            dialect,
            server_pids: self.server_pid.clone(),
        }
    }

    fn limits(&self, stall: Duration) -> Limits {
        Limits {
            timeout: self.timeout,
            settle_timeout: self.settle_timeout,
            quiet: run::SETTLE_QUIET,
            connect_concurrency: self.connect_concurrency,
            stall,
        }
    }

    fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| if self.irc.is_empty() { "tsockm" } else { "irc" }.to_owned())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        // The run finished but something was lost, duplicated, reordered or
        // disconnected: the report says what.
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("tsockm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the workload; `Ok(false)` when it ran but was not clean.
fn run(cli: Cli) -> Result<bool, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    match cli.workload {
        Workload::Fanout {
            common,
            clients,
            messages,
            size,
            rate,
            batch,
            stall,
        } => {
            run::raise_open_files(clients)?;
            let plan = Fanout {
                clients,
                messages,
                room_size: None,
                size,
                rate,
                batch,
            };
            let target = common.target();
            let limits = common.limits(stall);
            let outcome = local.block_on(&runtime, run::fanout(&target, &limits, &plan))?;
            report_fanout(&common.label(), &plan, &outcome);
            Ok(is_clean_fanout(&outcome))
        }
        Workload::Rooms {
            common,
            rooms,
            members,
            messages,
            size,
            rate,
            batch,
            stall,
        } => {
            let clients = rooms.saturating_mul(members);
            run::raise_open_files(clients)?;
            let plan = Fanout {
                clients,
                messages,
                room_size: Some(members.max(1)),
                size,
                rate,
                batch,
            };
            let target = common.target();
            let limits = common.limits(stall);
            let outcome = local.block_on(&runtime, run::fanout(&target, &limits, &plan))?;
            report_fanout(&common.label(), &plan, &outcome);
            Ok(is_clean_fanout(&outcome))
        }
        Workload::Idle {
            common,
            clients,
            hold,
        } => {
            run::raise_open_files(clients)?;
            let target = common.target();
            let limits = common.limits(Duration::ZERO);
            let outcome = local.block_on(&runtime, run::idle(&target, &limits, clients, hold))?;
            report_idle(&common.label(), &outcome);
            Ok(is_clean(&outcome.trouble))
        }
        Workload::Join {
            common,
            clients,
            quiet,
        } => {
            run::raise_open_files(clients)?;
            let target = common.target();
            let limits = Limits {
                settle_timeout: common.timeout,
                quiet,
                ..common.limits(Duration::ZERO)
            };
            let outcome = local.block_on(&runtime, run::join_storm(&target, &limits, clients))?;
            report_join(&common.label(), &target, &outcome);
            Ok(is_clean(&outcome.trouble) && outcome.settled.is_some() && outcome.failed == 0)
        }
    }
}

fn is_clean(trouble: &Trouble) -> bool {
    trouble.disconnected == 0 && trouble.refusals == 0
}

fn is_clean_fanout(o: &FanoutOutcome) -> bool {
    is_clean(&o.trouble)
        && !o.incomplete
        && o.missing == 0
        && o.duplicated == 0
        && o.out_of_order == 0
        && extra(o) == 0
}

/// Deliveries nobody should have got: own messages echoed, another room's
/// messages, messages addressed to another conversation.
fn extra(o: &FanoutOutcome) -> u64 {
    o.echoed + o.strayed + o.misrouted
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99, p99.9 and max of a latency histogram, in ms (zeros when
/// empty).
fn percentiles(h: &Histogram<u64>) -> (f64, f64, f64, f64) {
    if h.is_empty() {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        )
    }
}

fn report_fanout(label: &str, plan: &Fanout, o: &FanoutOutcome) {
    let secs = o.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        o.delivered as f64 / secs
    } else {
        0.0
    };
    let (p50, p99, p999, max) = percentiles(&o.latency_us);
    let cross = &o.cross_latency_us;
    let (x50, x99, x999, xmax) = percentiles(cross);
    let cross_ms = |v: f64| {
        if cross.is_empty() {
            "-".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    let per_million = |cpu: Option<f64>| {
        cpu.filter(|_| o.delivered > 0)
            .map(|c| c / o.delivered as f64 * 1e6)
    };
    let rate_text = plan
        .rate
        .map_or("full speed".to_owned(), |r| format!("{r} msg/s per client"));
    let (kind, shape) = match plan.room_size {
        Some(k) => (
            "rooms",
            format!("R={} K={k} ", plan.clients.div_ceil(k.max(1))),
        ),
        None => ("fanout", String::new()),
    };
    println!(
        "{} [{label}] {shape}C={} M={} S={} ({rate_text})",
        if kind == "rooms" { "rooms" } else { "fan-out" },
        plan.clients,
        plan.messages,
        plan.size
    );
    println!(
        "  setup {:.2}s{}; messages sent over {:.3}s",
        o.setup.as_secs_f64(),
        if o.settled {
            ""
        } else {
            " (not every join notice seen)"
        },
        o.send_span.as_secs_f64()
    );
    println!(
        "  delivered {} of {} in {:.3}s: {:.0} deliveries/s",
        o.delivered, o.expected, secs, rate
    );
    println!("  latency p50 {p50:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms  max {max:.3} ms");
    if o.n_servers > 1 {
        println!(
            "  across servers ({} of {} deliveries, clients split over {} servers): \
             p50 {x50:.3} ms  p99 {x99:.3} ms  p99.9 {x999:.3} ms  max {xmax:.3} ms",
            cross.len(),
            o.delivered,
            o.n_servers
        );
    }
    println!(
        "  missing {}  duplicated {}  out of order {}  echoed {}  other room {}  \
         misaddressed {}  foreign {}{}",
        o.missing,
        o.duplicated,
        o.out_of_order,
        o.echoed,
        o.strayed,
        o.misrouted,
        o.foreign,
        if o.incomplete {
            "  (run ended incomplete)"
        } else {
            ""
        }
    );
    if let Some(cpu) = o.server_cpu_s {
        println!(
            "  server CPU {cpu:.2}s = {:.3}s per 1M deliveries",
            per_million(Some(cpu)).unwrap_or(0.0)
        );
    }
    if let Some(cpu) = o.generator_cpu_s {
        let busy = if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 };
        println!("  generator CPU {cpu:.2}s ({busy:.0}% of one core over the run)");
    }
    report_trouble(&o.trouble);
    let rooms = plan.room_size.map_or(String::new(), |k| {
        format!("rooms={} members={k} ", plan.clients.div_ceil(k.max(1)))
    });
    println!(
        "RESULT kind={kind} label={label} {rooms}clients={} messages={} size={} rate={} \
         expected={} delivered={} missing={} duplicated={} out_of_order={} echoed={} \
         strayed={} misrouted={} extra={} foreign={} \
         disconnected={} refusals={} incomplete={} elapsed_s={:.6} deliveries_per_s={:.0} \
         p50_ms={p50:.3} p99_ms={p99:.3} p999_ms={p999:.3} max_ms={max:.3} \
         server_cpu_s={} cpu_s_per_m={} generator_cpu_s={} setup_s={:.3} settled={} \
         servers={} cross_deliveries={} cross_p50_ms={} cross_p99_ms={} cross_p999_ms={} \
         cross_max_ms={}",
        plan.clients,
        plan.messages,
        plan.size,
        plan.rate.map_or("full".to_owned(), |r| r.to_string()),
        o.expected,
        o.delivered,
        o.missing,
        o.duplicated,
        o.out_of_order,
        o.echoed,
        o.strayed,
        o.misrouted,
        extra(o),
        o.foreign,
        o.trouble.disconnected,
        o.trouble.refusals,
        o.incomplete,
        secs,
        rate,
        opt(o.server_cpu_s, 2),
        opt(per_million(o.server_cpu_s), 3),
        opt(o.generator_cpu_s, 2),
        o.setup.as_secs_f64(),
        o.settled,
        o.n_servers,
        cross.len(),
        cross_ms(x50),
        cross_ms(x99),
        cross_ms(x999),
        cross_ms(xmax),
    );
}

fn report_idle(label: &str, o: &IdleOutcome) {
    let per_peer = o
        .rss_before_kib
        .zip(o.rss_after_kib)
        .filter(|_| o.clients > 0)
        .map(|(a, b)| (b.saturating_sub(a) * 1024) as f64 / o.clients as f64);
    println!("idle [{label}] N={}", o.clients);
    println!(
        "  registered in {:.2}s{}",
        o.setup.as_secs_f64(),
        if o.settled {
            ""
        } else {
            " (not every join notice seen)"
        }
    );
    if let (Some(a), Some(b)) = (o.rss_before_kib, o.rss_after_kib) {
        println!(
            "  server RSS {a} KiB before, {b} KiB after: {:.0} bytes per registered peer",
            per_peer.unwrap_or(0.0)
        );
    }
    report_trouble(&o.trouble);
    println!(
        "RESULT kind=idle label={label} clients={} rss_before_kib={} rss_after_kib={} \
         bytes_per_peer={} setup_s={:.3} settled={} disconnected={} refusals={}",
        o.clients,
        o.rss_before_kib.map_or("-".to_owned(), |v| v.to_string()),
        o.rss_after_kib.map_or("-".to_owned(), |v| v.to_string()),
        opt(per_peer, 0),
        o.setup.as_secs_f64(),
        o.settled,
        o.trouble.disconnected,
        o.trouble.refusals,
    );
}

fn report_join(label: &str, target: &Target, o: &JoinOutcome) {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let what = if target.dialect.announces_registrations() {
        "registered (COMM answered)"
    } else {
        "registered and joined the channel (end of NAMES)"
    };
    let notices = if target.dialect.announces_registrations() {
        "roster lines and NTFY_JOINs"
    } else {
        "NAMES entries and JOINs"
    };
    println!("join storm [{label}] N={}", o.clients);
    match o.registered {
        Some(d) => println!("  all {what} after {:.3}s", d.as_secs_f64()),
        None => println!(
            "  NOT ALL REGISTERED: {} of {} {what} within the bounds ({} failed{})",
            o.registered_clients,
            o.clients,
            o.failed,
            if o.first_failure.is_empty() {
                String::new()
            } else {
                format!(", first: {}", o.first_failure)
            }
        ),
    }
    match o.settled {
        Some(d) => println!(
            "  every client had seen the other {} after {:.3}s",
            o.clients.saturating_sub(1),
            d.as_secs_f64()
        ),
        None => println!(
            "  NOT SETTLED: {} of {} clients saw all the others",
            o.settled_clients, o.clients
        ),
    }
    println!(
        "  {notices}: {} of {} expected",
        o.notices, o.notices_expected
    );
    if let Some(cpu) = o.server_cpu_s {
        println!("  server CPU {cpu:.2}s over the storm");
    }
    if let Some(rss) = o.rss_kib {
        println!("  server RSS {rss} KiB after the storm");
    }
    report_trouble(&o.trouble);
    println!(
        "RESULT kind=join label={label} clients={} registered_clients={} failed={} \
         registered_s={} settled_s={} settled={} \
         settled_clients={} notices={} notices_expected={} server_cpu_s={} rss_kib={} \
         disconnected={} refusals={}",
        o.clients,
        o.registered_clients,
        o.failed,
        opt(secs(o.registered), 3),
        opt(secs(o.settled), 3),
        o.settled.is_some(),
        o.settled_clients,
        o.notices,
        o.notices_expected,
        opt(o.server_cpu_s, 2),
        o.rss_kib.map_or("-".to_owned(), |v| v.to_string()),
        o.trouble.disconnected,
        o.trouble.refusals,
    );
}

fn report_trouble(t: &Trouble) {
    if t.disconnected > 0 {
        println!(
            "  DISCONNECTED: {} clients (first: {})",
            t.disconnected,
            t.first_disconnect.as_deref().unwrap_or("?")
        );
    }
    if t.refusals > 0 {
        println!(
            "  server errors: {} (first: {})",
            t.refusals,
            t.first_refusal.as_deref().unwrap_or("?")
        );
    }
    if t.replies_dropped > 0 {
        println!(
            "  control lines dropped (health-check answers, JOIN): {}",
            t.replies_dropped
        );
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `250ms`, `10s`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in `{text}`: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "tsockm-bench",
            "fanout",
            "--irc",
            "127.0.0.1:6667",
            "-c",
            "5",
            "--rate",
            "50",
        ])
        .expect("valid");
        let Workload::Fanout {
            common,
            clients,
            rate,
            ..
        } = cli.workload
        else {
            panic!("fanout expected");
        };
        assert_eq!((clients, rate), (5, Some(50.0)));
        assert!(matches!(common.target().dialect, Dialect::Irc { .. }));
        assert!(Cli::try_parse_from(["tsockm-bench", "idle"]).is_err());
        let cli = Cli::try_parse_from(["tsockm-bench", "rooms", "--addr", "a:1", "-r", "3"])
            .expect("valid");
        let Workload::Rooms {
            rooms,
            members,
            messages,
            ..
        } = cli.workload
        else {
            panic!("rooms expected");
        };
        assert_eq!((rooms, members, messages), (3, 10, 20));
        let cli = Cli::try_parse_from(["tsockm-bench", "join", "--irc", "a:1", "-n", "50"])
            .expect("valid");
        assert!(matches!(cli.workload, Workload::Join { clients: 50, .. }));
        assert!(
            Cli::try_parse_from(["tsockm-bench", "idle", "--addr", "a:1", "--irc", "b:2"]).is_err()
        );
    }

    #[test]
    fn several_servers_round_robin() {
        let cli = Cli::try_parse_from([
            "tsockm-bench",
            "fanout",
            "--addr",
            "a:1",
            "--addr",
            "b:2",
            "--server-pid",
            "10",
            "--server-pid",
            "11",
        ])
        .expect("valid");
        let Workload::Fanout { common, .. } = cli.workload else {
            panic!("fanout expected");
        };
        let target = common.target();
        assert_eq!(target.addrs, ["a:1", "b:2"]);
        assert_eq!(target.server_pids, [10, 11]);
        assert!(matches!(target.dialect, Dialect::Tsockm));
        let cli = Cli::try_parse_from([
            "tsockm-bench",
            "fanout",
            "--irc",
            "a:1",
            "--irc",
            "b:2",
            "--irc",
            "c:3",
        ])
        .expect("valid");
        let Workload::Fanout { common, .. } = cli.workload else {
            panic!("fanout expected");
        };
        assert_eq!(common.target().addrs.len(), 3);
        assert_eq!(common.label(), "irc");
        let servers: Vec<usize> = (0..5).map(|i| run::server_of(i, 2)).collect();
        assert_eq!(servers, [0, 1, 0, 1, 0]);
        assert_eq!(run::server_of(7, 0), 0);
    }
}
