//! `cargo xtask bench --cluster`: what acting as one server across nodes
//! costs, measured beside a single server and beside ngircd's own server
//! linking, in one run on this machine.
//!
//! Columns (each run starts fresh processes and kills them by their
//! handles afterwards):
//! - `tsockm`: one `tsockm-server` on its own (`--store memory`);
//! - `tsockm-cluster-1`: one node of a cluster, so every message goes
//!   through Redis (the cost of the cluster without a second node);
//! - `tsockm-cluster-N`: N nodes (default 2) sharing one `redis-server`,
//!   the clients split evenly over them;
//! - `ngircd`: one ngircd;
//! - `ngircd-linked-N`: N ngircds linked with ngircd's own server links
//!   (`[Server]` sections; the first is the hub), the clients split over
//!   them.
//!
//! Every server process, the `redis-server` included, is pinned to core 0
//! and the generator to core 1 (`taskset`), so a cluster's nodes share one
//! core with its Redis, exactly as the single server has that core alone.
//! The generator splits its clients round-robin over the addresses and
//! reports the latency of deliveries between clients of different
//! servers apart (`cross_p99_ms`). Server CPU is summed over every server
//! process, Redis included.
//!
//! The figures go to standard output and, unless `--no-docs`, into the
//! `## Cluster fan-out (cargo xtask bench --cluster)` section of
//! `docs/benchmarks.md`, with the goals checked against ratios taken
//! within each repetition (the machine is shared and noisy; columns of
//! one repetition run back to back).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    Fields, MAX_UNREGISTERED, NOFILE, START_TIMEOUT, WORKLOADS, WorkDir, Workload, cell, free_port,
    have, list, median, number, pinned, run_generator, target_dir, wait_listening, worst,
    write_section,
};
use crate::project_root;

const USAGE: &str = "\
usage: cargo xtask bench --cluster [options]

  --nodes N        nodes of the cluster and linked ngircds (default 2)
  --reps N         repetitions (default 3); the goals use ratios within each
  --only LIST      fan-out workloads of A,B,C,D (default B,D)
  --servers LIST   of tsockm,ngircd (default both; ngircd if installed)
  --timeout SECS   bound for one generator run (default 180)
  --no-pin         do not pin with taskset
  --no-docs        do not write docs/benchmarks.md";

/// The heading of the section this task owns in `docs/benchmarks.md`.
pub const SECTION: &str = "## Cluster fan-out (cargo xtask bench --cluster)";
/// The key prefix of the benchmark's cluster.
const CLUSTER_NAME: &str = "bench";
/// How long linked ngircds get to establish their links (ngircd tries a
/// configured peer about a second after it starts, then every
/// `ConnectRetry` seconds).
const LINK_TIMEOUT: Duration = Duration::from_secs(30);
/// The password of the ngircd server links (loopback only).
const LINK_PASSWORD: &str = "benchlink";
/// Goal: D's p99 between clients of different nodes, ms.
const GOAL_CROSS_P99_MS: f64 = 10.0;
/// Goal: B on the cluster over B on one server, same core.
const GOAL_VS_SINGLE: f64 = 0.5;
/// Goal: B on the cluster over B on the linked ngircds.
const GOAL_VS_NGIRCD: f64 = 1.0;

/// How one column's servers are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// `tsockm-server`s: one on its own (`cluster: false`, `nodes` 1) or
    /// `nodes` nodes of a cluster on one `redis-server`.
    Tsockm { nodes: usize, cluster: bool },
    /// `servers` ngircds, linked when more than one.
    Ngircd { servers: usize },
}

/// One column of the tables.
#[derive(Debug)]
struct Column {
    label: String,
    setup: Setup,
}

impl Column {
    fn servers(&self) -> usize {
        match self.setup {
            Setup::Tsockm { nodes, .. } => nodes,
            Setup::Ngircd { servers } => servers,
        }
    }
}

#[derive(Debug)]
struct Options {
    nodes: usize,
    reps: usize,
    only: Vec<String>,
    tsockm: bool,
    ngircd: bool,
    timeout_s: u64,
    pin: bool,
    docs: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        nodes: 2,
        reps: 3,
        only: vec!["B".to_owned(), "D".to_owned()],
        tsockm: true,
        ngircd: true,
        timeout_s: 180,
        pin: true,
        docs: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--cluster" => {}
            "--nodes" => o.nodes = number(&value("--nodes")?)?.clamp(2, 8),
            "--reps" => o.reps = number(&value("--reps")?)?.max(1),
            "--only" => {
                o.only = list(&value("--only")?);
                if let Some(bad) = o
                    .only
                    .iter()
                    .find(|w| !WORKLOADS.iter().any(|k| k.name == w.as_str()))
                {
                    return Err(format!(
                        "unknown workload `{bad}` (the cluster bench runs A, B, C, D)"
                    ));
                }
            }
            "--servers" => {
                let servers = list(&value("--servers")?);
                o.tsockm = servers.iter().any(|s| s == "tsockm");
                o.ngircd = servers.iter().any(|s| s == "ngircd");
                if let Some(bad) = servers.iter().find(|s| *s != "tsockm" && *s != "ngircd") {
                    return Err(format!("unknown server `{bad}`"));
                }
            }
            "--timeout" => o.timeout_s = number(&value("--timeout")?)? as u64,
            "--no-pin" => o.pin = false,
            "--no-docs" => o.docs = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(o)
}

fn columns(o: &Options) -> Vec<Column> {
    let n = o.nodes;
    let mut columns = Vec::new();
    if o.tsockm {
        columns.push(Column {
            label: "tsockm".to_owned(),
            setup: Setup::Tsockm {
                nodes: 1,
                cluster: false,
            },
        });
        columns.push(Column {
            label: "tsockm-cluster-1".to_owned(),
            setup: Setup::Tsockm {
                nodes: 1,
                cluster: true,
            },
        });
        columns.push(Column {
            label: format!("tsockm-cluster-{n}"),
            setup: Setup::Tsockm {
                nodes: n,
                cluster: true,
            },
        });
    }
    if o.ngircd {
        columns.push(Column {
            label: "ngircd".to_owned(),
            setup: Setup::Ngircd { servers: 1 },
        });
        columns.push(Column {
            label: format!("ngircd-linked-{n}"),
            setup: Setup::Ngircd { servers: n },
        });
    }
    columns
}

/// Every repetition's outcome (index = repetition − 1), per (workload,
/// column index).
type Results = BTreeMap<(String, usize), Vec<Result<Fields, String>>>;

/// Runs `cargo xtask bench --cluster ...`.
pub fn bench(args: &[String]) -> Result<(), String> {
    let mut o = parse(args)?;
    if o.ngircd && !have("ngircd", &["--version"]) {
        eprintln!("xtask bench: ngircd not found, skipping its columns (apt-get install ngircd)");
        o.ngircd = false;
    }
    if o.tsockm && !have("redis-server", &["--version"]) {
        return Err("redis-server not found (apt-get install redis-server)".to_owned());
    }
    if o.pin && !have("taskset", &["-V"]) {
        eprintln!("xtask bench: taskset not found, running unpinned");
        o.pin = false;
    }
    let mut packages = vec!["build", "--release", "-p", "tsockm-bench"];
    if o.tsockm {
        packages.extend(["-p", "tsockm-server"]);
    }
    crate::run("cargo", &packages)?;
    let root = project_root();
    let release = target_dir(&root).join("release");
    let columns = columns(&o);
    if columns.is_empty() {
        return Err("no server to run: see --servers".to_owned());
    }
    let work = WorkDir(
        std::env::temp_dir().join(format!("tsockm-xtask-bench-cluster-{}", std::process::id())),
    );
    std::fs::create_dir_all(&work.0)
        .map_err(|e| format!("cannot create {}: {e}", work.0.display()))?;
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| o.only.iter().any(|x| x == w.name))
        .collect();
    let tools = Tools {
        generator: release.join("tsockm-bench"),
        server: release.join("tsockm-server"),
        work: work.0.clone(),
    };
    let mut results: Results = BTreeMap::new();
    for rep in 1..=o.reps {
        for w in &workloads {
            for (i, column) in columns.iter().enumerate() {
                eprintln!(
                    "xtask bench --cluster: {} on {} (repetition {rep}/{})",
                    w.name, column.label, o.reps
                );
                let outcome = one_run(&tools, column, w, &o);
                if let Err(e) = &outcome {
                    eprintln!("xtask bench --cluster:   failed: {e}");
                }
                results
                    .entry((w.name.to_owned(), i))
                    .or_default()
                    .push(outcome);
            }
        }
    }
    drop(work);
    let tables = tables(&workloads, &columns, &results, &o);
    println!("\n{tables}");
    if o.docs {
        let text = section(&o, &tables);
        write_section(&root.join("docs").join("benchmarks.md"), SECTION, &text)?;
        eprintln!("xtask bench: wrote `{SECTION}` in docs/benchmarks.md");
    }
    Ok(())
}

/// The programs and the run's temporary directory.
struct Tools {
    generator: PathBuf,
    server: PathBuf,
    work: PathBuf,
}

/// The processes of one run, killed by their handles (last started
/// first) when dropped, whatever happened.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Processes {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        while let Some(mut child) = self.0.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the column's servers, runs the generator once, kills them.
fn one_run(tools: &Tools, column: &Column, w: &Workload, o: &Options) -> Result<Fields, String> {
    let mut procs = Processes::default();
    let addrs = match column.setup {
        Setup::Tsockm { nodes, cluster } => start_tsockm(tools, &mut procs, nodes, cluster, o)?,
        Setup::Ngircd { servers } => start_ngircd(tools, &mut procs, servers, o)?,
    };
    let mut cmd = pinned(o.pin, "1", &tools.generator.to_string_lossy());
    cmd.args(["fanout", "-c", &w.clients.to_string()]);
    cmd.args(["-m", &w.messages.to_string(), "-s", "64"]);
    if let Some(rate) = w.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    for addr in &addrs {
        match column.setup {
            Setup::Tsockm { .. } => cmd.args(["--addr", addr]),
            Setup::Ngircd { .. } => cmd.args(["--irc", addr]),
        };
    }
    if matches!(column.setup, Setup::Ngircd { .. }) {
        cmd.args(["--irc-oper", "bench:bench"]);
    }
    for pid in procs.pids() {
        cmd.args(["--server-pid", &pid.to_string()]);
    }
    cmd.args(["--label", &column.label]);
    cmd.args(["--timeout", &format!("{}s", o.timeout_s)]);
    let outcome = run_generator(cmd);
    drop(procs);
    outcome
}

/// Starts `argv` (pinned to core 0 when pinning) with its stderr in `log`.
/// `exec` keeps the pid, so the child's pid is the program's.
fn spawn_server(argv: &[String], log: &Path, work: &Path, o: &Options) -> Result<Child, String> {
    let mut full: Vec<String> = Vec::new();
    if o.pin {
        full.extend(["taskset", "-c", "0"].map(String::from));
    }
    full.extend(argv.iter().cloned());
    let log_file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let script = format!("ulimit -n {NOFILE} 2>/dev/null; exec \"$@\"");
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(&full)
        .env("XDG_DATA_HOME", work.join("data"))
        .env_remove("TSOCKM_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv.join(" ")))
}

/// A `redis-server` of the run's own, then `nodes` nodes joined to it (or
/// one server on its own); their addresses.
fn start_tsockm(
    tools: &Tools,
    procs: &mut Processes,
    nodes: usize,
    cluster: bool,
    o: &Options,
) -> Result<Vec<String>, String> {
    let url = if cluster {
        let port = free_port()?;
        let argv: Vec<String> = [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &tools.work.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        let log = tools.work.join(format!("redis-{port}.log"));
        procs.0.push(spawn_server(&argv, &log, &tools.work, o)?);
        wait_redis(port, procs, &log)?;
        Some(format!("redis://127.0.0.1:{port}"))
    } else {
        None
    };
    let mut addrs = Vec::new();
    for i in 0..nodes {
        let port = free_port()?;
        let mut argv: Vec<String> = vec![tools.server.to_string_lossy().into_owned()];
        argv.extend(node_args(port, url.as_deref(), i));
        let log = tools.work.join(format!("tsockm-{port}.log"));
        procs.0.push(spawn_server(&argv, &log, &tools.work, o)?);
        if let Some(child) = procs.0.last_mut() {
            wait_listening(port, child, &log)?;
        }
        addrs.push(format!("127.0.0.1:{port}"));
    }
    Ok(addrs)
}

/// The flags of node `index` (or of the server on its own, `url` `None`):
/// the same limits as `cargo xtask bench` gives a TsockM server; a node
/// keeps its history in the cluster's Redis, the server on its own in
/// memory.
fn node_args(port: u16, url: Option<&str>, index: usize) -> Vec<String> {
    let mut argv: Vec<String> = [
        "--addr",
        &format!("127.0.0.1:{port}"),
        "-s",
        "--max-rate",
        "1000000",
        "--max-peers",
        "20000",
        "--max-unregistered",
        MAX_UNREGISTERED,
        "--max-unregistered-per-ip",
        MAX_UNREGISTERED,
    ]
    .map(String::from)
    .to_vec();
    match url {
        Some(url) => argv.extend([
            "--cluster".to_owned(),
            url.to_owned(),
            "--cluster-name".to_owned(),
            CLUSTER_NAME.to_owned(),
            "--node-name".to_owned(),
            format!("n{index}"),
        ]),
        None => argv.extend(["--store".to_owned(), "memory".to_owned()]),
    }
    argv
}

/// Waits until the `redis-server` on `port` answers PING.
fn wait_redis(port: u16, procs: &mut Processes, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < START_TIMEOUT {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut answer = String::new();
            if stream.write_all(b"PING\r\n").is_ok()
                && BufReader::new(stream).read_line(&mut answer).is_ok()
                && answer.starts_with("+PONG")
            {
                return Ok(());
            }
        }
        if let Some(child) = procs.0.last_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("redis-server exited ({status}): {}", text.trim()));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "redis-server not answering on port {port} after {START_TIMEOUT:?}"
    ))
}

/// `servers` ngircds: the first is the hub, every other links to it; their
/// addresses once every link is up.
fn start_ngircd(
    tools: &Tools,
    procs: &mut Processes,
    servers: usize,
    o: &Options,
) -> Result<Vec<String>, String> {
    let ports: Vec<u16> = (0..servers)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = (0..servers).map(server_name).collect();
    for (i, &port) in ports.iter().enumerate() {
        let conf = tools.work.join(format!("ngircd-{port}.conf"));
        std::fs::write(&conf, linked_conf(i, &ports, &tools.work))
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let argv = ["ngircd", "-n", "-f", &conf.to_string_lossy()].map(String::from);
        let log = tools.work.join(format!("ngircd-{port}.log"));
        procs.0.push(spawn_server(&argv, &log, &tools.work, o)?);
        if let Some(child) = procs.0.last_mut() {
            wait_listening(port, child, &log)?;
        }
    }
    if servers > 1 {
        wait_linked(ports[0], &names[1..])?;
    }
    Ok(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect())
}

/// The IRC name of linked server `index`.
fn server_name(index: usize) -> String {
    format!("irc{index}.bench.invalid")
}

/// The configuration of linked ngircd `index` of `ports.len()`: the limits
/// of `cargo xtask bench`'s ngircd, plus a `[Server]` section for each
/// peer it links with (the hub waits for the others, each other server
/// connects to the hub).
fn linked_conf(index: usize, ports: &[u16], work: &Path) -> String {
    let mut conf = super::ngircd_conf_named(&server_name(index), ports[index], work);
    let peers: Vec<usize> = if index == 0 {
        (1..ports.len()).collect()
    } else {
        vec![0]
    };
    for peer in peers {
        let _ = write!(
            conf,
            "[Server]\n\
             Name = {name}\n\
             Host = 127.0.0.1\n\
             Port = {port}\n\
             MyPassword = {LINK_PASSWORD}\n\
             PeerPassword = {LINK_PASSWORD}\n\
             Passive = {passive}\n",
            name = server_name(peer),
            port = ports[peer],
            passive = if index == 0 { "yes" } else { "no" },
        );
    }
    conf
}

/// Waits until the hub on `port` lists every one of `names` in `LINKS`.
fn wait_linked(port: u16, names: &[String]) -> Result<(), String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < LINK_TIMEOUT {
        match links(port) {
            Ok(linked) if names.iter().all(|n| linked.contains(n)) => return Ok(()),
            Ok(linked) => last = format!("LINKS lists {linked:?}"),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(250));
    }
    Err(format!(
        "the ngircds did not link within {LINK_TIMEOUT:?}: {last}"
    ))
}

/// The server names `LINKS` lists on the ngircd at `port`.
fn links(port: u16) -> Result<Vec<String>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    writer
        .write_all(b"NICK linkprobe\r\nUSER linkprobe 0 * :probe\r\n")
        .map_err(|e| e.to_string())?;
    let mut linked = Vec::new();
    let mut asked = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    for line in BufReader::new(stream).lines() {
        if Instant::now() >= deadline {
            break;
        }
        let line = line.map_err(|e| e.to_string())?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["PING", token, ..] => {
                let _ = writer.write_all(format!("PONG {token}\r\n").as_bytes());
            }
            [_, "001", ..] if !asked => {
                asked = true;
                writer.write_all(b"LINKS\r\n").map_err(|e| e.to_string())?;
            }
            // `:hub 364 nick <server> <hub> :<hops> <info>`
            [_, "364", _, server, ..] => linked.push((*server).to_owned()),
            [_, "365", ..] => {
                let _ = writer.write_all(b"QUIT\r\n");
                return Ok(linked);
            }
            _ => {}
        }
    }
    Err("no end of LINKS within 5 s".to_owned())
}

/// The per-repetition values of the numeric field `key`, `None` where the
/// run failed or lacks it.
fn per_rep(runs: &[Result<Fields, String>], key: &str) -> Vec<Option<f64>> {
    runs.iter()
        .map(|r| r.as_ref().ok()?.get(key)?.parse().ok())
        .collect()
}

/// The median of the values present.
fn median_of(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `a / b` per repetition, where both ran.
fn ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<Option<f64>> {
    a.iter()
        .zip(b)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if *b > 0.0 => Some(a / b),
            _ => None,
        })
        .collect()
}

fn joined(values: &[Option<f64>], decimals: usize, unit: &str) -> String {
    values
        .iter()
        .map(|v| v.map_or("–".to_owned(), |v| format!("{v:.decimals$}{unit}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn tables(workloads: &[&Workload], columns: &[Column], results: &Results, o: &Options) -> String {
    let mut out = String::from(
        "| workload | server | servers | deliveries/s | p50 ms | p99 ms | p99 across servers ms | max ms | CPU s / 1M deliveries | missing / dup / reordered / extra | refused | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |\n",
    );
    let mut failures = String::new();
    let empty = Vec::new();
    let runs_of = |w: &str, i: usize| results.get(&(w.to_owned(), i)).unwrap_or(&empty);
    for w in workloads {
        let label = match w.rate {
            Some(r) => format!("{} {}×{} @{r}/s", w.name, w.clients, w.messages),
            None => format!("{} {}×{}", w.name, w.clients, w.messages),
        };
        for (i, column) in columns.iter().enumerate() {
            let runs = runs_of(w.name, i);
            let ok = runs.iter().filter(|r| r.is_ok()).count();
            for e in runs.iter().filter_map(|r| r.as_ref().err()) {
                let _ = writeln!(failures, "- {label} on {}: {e}", column.label);
            }
            let cross = if column.servers() > 1 {
                cell(median(runs, "cross_p99_ms"), 2)
            } else {
                "–".to_owned()
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {cross} | {} | {} | {} / {} / {} / {} | {} | {} | {ok}/{} |",
                column.label,
                column.servers(),
                cell(median(runs, "deliveries_per_s"), 0),
                cell(median(runs, "p50_ms"), 2),
                cell(median(runs, "p99_ms"), 2),
                cell(median(runs, "max_ms"), 2),
                cell(median(runs, "cpu_s_per_m"), 3),
                worst(runs, "missing"),
                worst(runs, "duplicated"),
                worst(runs, "out_of_order"),
                worst(runs, "extra"),
                worst(runs, "refusals"),
                worst(runs, "disconnected"),
                runs.len()
            );
        }
    }

    // The goals, from ratios within each repetition.
    let index = |label: &str| columns.iter().position(|c| c.label == label);
    let cluster = format!("tsockm-cluster-{}", o.nodes);
    let linked = format!("ngircd-linked-{}", o.nodes);
    let rates = |w: &str, label: &str| {
        index(label).map_or_else(Vec::new, |i| per_rep(runs_of(w, i), "deliveries_per_s"))
    };
    let _ = writeln!(
        out,
        "\n| goal | figure (median) | per repetition | |\n| --- | ---: | --- | --- |"
    );
    if workloads.iter().any(|w| w.name == "D") {
        let cross =
            index(&cluster).map_or_else(Vec::new, |i| per_rep(runs_of("D", i), "cross_p99_ms"));
        let m = median_of(&cross);
        let _ = writeln!(
            out,
            "| D p99 across nodes < {GOAL_CROSS_P99_MS} ms ({cluster}) | {} ms | {} | {} |",
            cell(m, 2),
            joined(&cross, 2, " ms"),
            verdict(m.map(|m| m < GOAL_CROSS_P99_MS))
        );
        let anchor =
            index(&linked).map_or_else(Vec::new, |i| per_rep(runs_of("D", i), "cross_p99_ms"));
        if !anchor.is_empty() {
            let _ = writeln!(
                out,
                "| (anchor: D p99 across servers, {linked}) | {} ms | {} | |",
                cell(median_of(&anchor), 2),
                joined(&anchor, 2, " ms"),
            );
        }
    }
    if workloads.iter().any(|w| w.name == "B") {
        let on_cluster = rates("B", &cluster);
        for (what, other, goal) in [
            (
                "one server on the same core (tsockm)",
                "tsockm",
                GOAL_VS_SINGLE,
            ),
            (
                "a one-node cluster (tsockm-cluster-1)",
                "tsockm-cluster-1",
                0.0,
            ),
            (linked.as_str(), linked.as_str(), GOAL_VS_NGIRCD),
        ] {
            let r = ratios(&on_cluster, &rates("B", other));
            if r.is_empty() {
                continue;
            }
            let m = median_of(&r);
            let (name, judged) = if goal > 0.0 {
                (
                    format!("B deliveries/s, {cluster} ≥ {goal}× {what}"),
                    verdict(m.map(|m| m >= goal)),
                )
            } else {
                (format!("(B deliveries/s, {cluster} / {what})"), "")
            };
            let _ = writeln!(
                out,
                "| {name} | {}× | {} | {judged} |",
                cell(m, 2),
                joined(&r, 2, "×")
            );
        }
    }
    if !failures.is_empty() {
        out.push_str("\nFailed runs:\n\n");
        out.push_str(&failures);
    }
    out
}

fn section(o: &Options, tables: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "?".to_owned());
    let pin = if o.pin {
        "every server process (each node, the redis-server, each ngircd) pinned to core 0 and \
         the generator to core 1 with `taskset`"
    } else {
        "unpinned"
    };
    let n = o.nodes;
    format!(
        "{SECTION}\n\n\
         Written by `cargo xtask bench --cluster` on {date}: {cores} cores; {pin}; {reps} \
         repetition(s), each running every column back to back with fresh processes; Redis \
         {redis}. Workloads as in the fan-out section above (B: 100 clients × 200 broadcasts at \
         full speed; D: 100 × 200 at 50 messages/s per client; 64-byte bodies), the clients split \
         round-robin over the servers of the column. Columns: `tsockm` is one server on its own \
         (`--store memory`); `tsockm-cluster-1` one node of a cluster (every message through \
         Redis); `tsockm-cluster-{n}` {n} nodes on one `redis-server` (`--cluster \
         redis://... --cluster-name bench --node-name nI`, history in Redis); `ngircd` one \
         ngircd; `ngircd-linked-{n}` {n} ngircds linked by ngircd's own server links \
         (`[Server]` sections, the first the hub, the run starting once `LINKS` on the hub \
         lists the others). p99 across servers counts only deliveries between clients of \
         different servers (sender on one node, receiver on another). CPU is user + system \
         time of every server process together, Redis included. Missing, duplicated, \
         reordered, extra, refused (error answers, such as a cluster's `ERR::MSG::503` when \
         its queue to Redis is full: such a message was not accepted, so its deliveries \
         count as missing) and disconnected are the worst of the repetitions. The goals use \
         the ratio within each repetition, then the median of those ratios.\n\n\
         {tables}",
        reps = o.reps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_and_columns() {
        let o = parse(&args("--cluster --reps 1 --only B --servers tsockm")).expect("valid");
        assert_eq!((o.reps, o.nodes, o.ngircd), (1, 2, false));
        let labels: Vec<String> = columns(&o).into_iter().map(|c| c.label).collect();
        assert_eq!(labels, ["tsockm", "tsockm-cluster-1", "tsockm-cluster-2"]);
        let o = parse(&args("--cluster --nodes 3")).expect("valid");
        let servers: Vec<usize> = columns(&o).iter().map(Column::servers).collect();
        assert_eq!(servers, [1, 1, 3, 1, 3]);
        assert!(parse(&args("--cluster --only idle")).is_err());
        assert!(parse(&args("--cluster --servers irc")).is_err());
    }

    #[test]
    fn node_flags() {
        assert_eq!(
            node_args(7, Some("redis://127.0.0.1:9"), 1).join(" "),
            "--addr 127.0.0.1:7 -s --max-rate 1000000 --max-peers 20000 \
             --max-unregistered 1024 --max-unregistered-per-ip 1024 \
             --cluster redis://127.0.0.1:9 --cluster-name bench --node-name n1"
        );
        assert!(node_args(7, None, 0).join(" ").ends_with("--store memory"));
    }

    #[test]
    fn linked_ngircd_configurations() {
        let work = Path::new("/tmp/w");
        let hub = linked_conf(0, &[100, 200, 300], work);
        assert!(hub.contains("Name = irc0.bench.invalid\n"), "{hub}");
        assert_eq!(hub.matches("[Server]").count(), 2, "{hub}");
        assert!(hub.contains("Name = irc2.bench.invalid\nHost = 127.0.0.1\nPort = 300\n"));
        assert!(hub.contains("Passive = yes") && !hub.contains("Passive = no"));
        let leaf = linked_conf(1, &[100, 200, 300], work);
        assert!(leaf.contains("Ports = 200\n"), "{leaf}");
        assert_eq!(leaf.matches("[Server]").count(), 1);
        assert!(leaf.contains("Name = irc0.bench.invalid\nHost = 127.0.0.1\nPort = 100\n"));
        assert!(leaf.contains("Passive = no"));
    }

    #[test]
    fn goals_from_ratios_within_each_repetition() {
        let o = parse(&args("--cluster --reps 2")).expect("valid");
        let columns = columns(&o);
        let fields = |rate: &str, cross: &str| -> Result<Fields, String> {
            Ok([
                ("deliveries_per_s".to_owned(), rate.to_owned()),
                ("cross_p99_ms".to_owned(), cross.to_owned()),
            ]
            .into_iter()
            .collect())
        };
        let mut results: Results = BTreeMap::new();
        // tsockm, tsockm-cluster-1, tsockm-cluster-2, ngircd, ngircd-linked-2
        for (i, rates) in [
            ("4000", "2000"),
            ("2000", "1000"),
            ("1000", "800"),
            ("900", "900"),
            ("500", "1600"),
        ]
        .iter()
        .enumerate()
        {
            results.insert(
                ("B".to_owned(), i),
                vec![fields(rates.0, "-"), fields(rates.1, "-")],
            );
            results.insert(
                ("D".to_owned(), i),
                vec![fields("1", "4.5"), Err("boom".to_owned())],
            );
        }
        let workloads: Vec<&Workload> = WORKLOADS
            .iter()
            .filter(|w| w.name == "B" || w.name == "D")
            .collect();
        let text = tables(&workloads, &columns, &results, &o);
        // 1000/4000 and 800/2000: median 0.325.
        assert!(
            text.contains("≥ 0.5× one server on the same core (tsockm) | 0.33× | 0.25× / 0.40× | **not met** |"),
            "{text}"
        );
        // 1000/500 and 800/1600.
        assert!(
            text.contains("| 1.25× | 2.00× / 0.50× | **met** |"),
            "{text}"
        );
        assert!(
            text.contains("| 4.50 ms | 4.50 ms / – | **met** |"),
            "{text}"
        );
        assert!(text.contains("- D 100×200 @50/s on ngircd: boom"), "{text}");
    }
}
