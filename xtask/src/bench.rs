//! `cargo xtask bench`: TsockM beside ngircd, same machine, same run.
//!
//! Builds the release server and load generator, then for each column (a
//! server and how it runs) and each workload starts a fresh server on a free
//! loopback port (pinned to core 0 with `taskset` when it exists), runs
//! `tsockm-bench` pinned to core 1, reads its `RESULT` line and stops the
//! server. Medians of the repetitions go to standard output and, unless
//! `--no-docs`, into the `## Server fan-out (tsockm-bench)` section of
//! `docs/benchmarks.md`.
//!
//! Columns: the TsockM built from this tree (once per `--tsockm-store`), any
//! other TsockM binary given with `--tsockm-bin` (an older commit's release
//! build, for before/after figures), and ngircd. A TsockM binary only gets
//! the flags its `--help` lists, so older builds still start; none ever
//! writes to the default data directory (`--store memory`, or an SQLite file
//! in this run's temporary directory, and `XDG_DATA_HOME` pointed there).
//!
//! ngircd is optional: when `ngircd` is not on PATH its column is skipped
//! with a note (`apt-get install ngircd` brings it). Every child process is
//! ours and is killed by its handle; every run has a timeout.
//!
//! `cargo xtask bench --cluster` is the cluster's benchmark instead (one
//! server, a cluster's nodes, linked ngircds): see `bench/cluster.rs`.

mod cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::project_root;

const USAGE: &str = "\
usage: cargo xtask bench [options]
       cargo xtask bench --cluster [options]   (see `cargo xtask bench --cluster --help`)

  --quick               one repetition; idle and join N=1000 only (a few minutes)
  --reps N              repetitions of each run (default 3)
  --only LIST           workloads to run, of A,B,C,D,idle,rooms,join (default all)
  --idle LIST           idle sizes (default 5000,10000)
  --join LIST           join-storm sizes (default 10000)
  --join-concurrency N  join storm: registrations in flight at once (default 8:
                        ngircd listens with a backlog of 10)
  --rooms-rate N        rooms: messages/s per client (default full speed)
  --servers LIST        of tsockm,ngircd (default both; ngircd if installed);
                        tsockm is the server built from this tree
  --tsockm-store LIST   of memory,sqlite (default memory): one TsockM column per
                        store, named tsockm/memory, tsockm/sqlite when more than
                        one; the SQLite file lives in a temporary directory and
                        is removed after each run
  --tsockm-bin L=PATH   also run the tsockm-server binary at PATH in column L
                        (repeatable), e.g. an older commit's release build; it
                        gets only the flags its --help lists
  --tsockm-arg ARG      extra flag for every tsockm-server (repeatable)
  --timeout SECS        bound for one generator run (default 180)
  --no-pin              do not pin with taskset
  --no-docs             do not write docs/benchmarks.md";

/// The heading of the section this task owns in `docs/benchmarks.md`.
const SECTION: &str = "## Server fan-out (tsockm-bench)";
/// How long a server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Open files for server and generator (idle runs hold 10,000 sockets).
const NOFILE: u32 = 20_000;
/// The room workload: rooms, members of each, messages per client.
const ROOMS: (usize, usize, usize) = (100, 10, 20);
/// Every workload `--only` knows, in the order they run.
const ALL_WORKLOADS: [&str; 7] = ["A", "B", "C", "D", "idle", "rooms", "join"];
/// Join storm: registrations in flight at once. ngircd calls `listen` with
/// a backlog of 10; with more connections arriving at once the kernel drops
/// some (`TcpExtListenOverflows`) and their clients retry a second later,
/// which would time the backlog rather than the server.
const JOIN_CONCURRENCY: usize = 8;
/// Connections not yet registered that a TsockM server accepts, in all and
/// from one address: every generator client comes from 127.0.0.1, and up to
/// `--connect-concurrency` (64) of them register at once.
const MAX_UNREGISTERED: &str = "1024";

/// A fan-out workload of issue 6.
struct Workload {
    name: &'static str,
    clients: usize,
    messages: usize,
    rate: Option<u32>,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "A",
        clients: 10,
        messages: 2000,
        rate: None,
    },
    Workload {
        name: "B",
        clients: 100,
        messages: 200,
        rate: None,
    },
    Workload {
        name: "C",
        clients: 500,
        messages: 20,
        rate: None,
    },
    Workload {
        name: "D",
        clients: 100,
        messages: 200,
        rate: Some(50),
    },
];

/// A server program `--servers` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    /// tsockm-server built from this tree.
    Tsockm,
    Ngircd,
}

/// Where a TsockM server keeps history and sessions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    /// `--store memory`.
    Memory,
    /// `--store sqlite:<file in the run's temporary directory>`.
    Sqlite,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Sqlite => "sqlite",
        }
    }
}

/// The flags of interest a TsockM binary's `--help` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Knows {
    store: bool,
    max_unregistered: bool,
    max_unregistered_per_ip: bool,
    /// `--max-rooms-per-peer`: the binary has rooms (v2).
    rooms: bool,
}

/// One column of the tables: a server and how it is run.
struct Column {
    /// The name in the tables and on the `RESULT` lines.
    label: String,
    kind: ColumnKind,
}

enum ColumnKind {
    Tsockm {
        bin: PathBuf,
        /// Built from this tree (not a `--tsockm-bin`).
        built: bool,
        store: Store,
        knows: Knows,
    },
    Ngircd,
}

impl Column {
    fn is_ngircd(&self) -> bool {
        matches!(self.kind, ColumnKind::Ngircd)
    }
}

struct Options {
    reps: usize,
    only: Vec<String>,
    idle: Vec<usize>,
    join: Vec<usize>,
    join_concurrency: usize,
    rooms_rate: Option<u32>,
    servers: Vec<Server>,
    stores: Vec<Store>,
    /// `(label, path)` of other TsockM binaries.
    bins: Vec<(String, PathBuf)>,
    tsockm_args: Vec<String>,
    timeout_s: u64,
    pin: bool,
    docs: bool,
    quick: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        reps: 3,
        only: ALL_WORKLOADS.map(String::from).to_vec(),
        idle: vec![5000, 10_000],
        join: vec![10_000],
        join_concurrency: JOIN_CONCURRENCY,
        rooms_rate: None,
        servers: vec![Server::Tsockm, Server::Ngircd],
        stores: vec![Store::Memory],
        bins: Vec::new(),
        tsockm_args: Vec::new(),
        timeout_s: 180,
        pin: true,
        docs: true,
        quick: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => {
                o.quick = true;
                o.reps = 1;
                o.idle = vec![1000];
                o.join = vec![1000];
            }
            "--reps" => o.reps = number(&value("--reps")?)?,
            "--only" => {
                o.only = list(&value("--only")?);
                if let Some(bad) = o.only.iter().find(|w| !ALL_WORKLOADS.contains(&w.as_str())) {
                    return Err(format!(
                        "unknown workload `{bad}` (expected some of {})",
                        ALL_WORKLOADS.join(",")
                    ));
                }
            }
            "--idle" => {
                o.idle = list(&value("--idle")?)
                    .iter()
                    .map(|n| number(n))
                    .collect::<Result<_, _>>()?;
            }
            "--join" => {
                o.join = list(&value("--join")?)
                    .iter()
                    .map(|n| number(n))
                    .collect::<Result<_, _>>()?;
            }
            "--join-concurrency" => {
                o.join_concurrency = number(&value("--join-concurrency")?)?.max(1);
            }
            "--rooms-rate" => {
                let rate = number(&value("--rooms-rate")?)?;
                o.rooms_rate = Some(u32::try_from(rate).map_err(|e| format!("--rooms-rate: {e}"))?);
            }
            "--tsockm-store" => {
                o.stores = list(&value("--tsockm-store")?)
                    .iter()
                    .map(|s| match s.as_str() {
                        "memory" => Ok(Store::Memory),
                        "sqlite" => Ok(Store::Sqlite),
                        other => Err(format!("unknown store `{other}` (memory or sqlite)")),
                    })
                    .collect::<Result<_, _>>()?;
                o.stores.dedup();
                if o.stores.is_empty() {
                    return Err("--tsockm-store needs memory, sqlite or both".to_owned());
                }
            }
            "--tsockm-bin" => {
                let spec = value("--tsockm-bin")?;
                let Some((label, path)) = spec.split_once('=') else {
                    return Err(format!("--tsockm-bin wants LABEL=PATH, not `{spec}`"));
                };
                o.bins.push((label.to_owned(), PathBuf::from(path)));
            }
            "--servers" => {
                o.servers = list(&value("--servers")?)
                    .iter()
                    .map(|s| match s.as_str() {
                        "tsockm" => Ok(Server::Tsockm),
                        "ngircd" => Ok(Server::Ngircd),
                        other => Err(format!("unknown server `{other}`")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--tsockm-arg" => o.tsockm_args.push(value("--tsockm-arg")?),
            "--timeout" => o.timeout_s = number(&value("--timeout")?)? as u64,
            "--no-pin" => o.pin = false,
            "--no-docs" => o.docs = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    o.reps = o.reps.max(1);
    Ok(o)
}

/// A column label must fit in a table cell and on a `RESULT` line.
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty()
        || label
            .chars()
            .any(|c| c.is_whitespace() || c == '|' || c == '=' || c.is_control())
    {
        return Err(format!(
            "column label `{label}` must be non-empty, without spaces, `|` or `=`"
        ));
    }
    Ok(())
}

/// Which flags of interest `help` (a binary's `--help` text) lists, as
/// whole words.
fn knows_from_help(help: &str) -> Knows {
    let words: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == ']')
        .collect();
    Knows {
        store: words.contains("--store"),
        max_unregistered: words.contains("--max-unregistered"),
        max_unregistered_per_ip: words.contains("--max-unregistered-per-ip"),
        rooms: words.contains("--max-rooms-per-peer"),
    }
}

/// Asks a TsockM binary which flags it takes.
fn probe(bin: &Path) -> Result<Knows, String> {
    let output = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{} --help`: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} --help` failed ({}): {}",
            bin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(knows_from_help(&String::from_utf8_lossy(&output.stdout)))
}

/// The columns to run, and notes on the ones left out.
fn columns(o: &Options, built_server: &Path) -> Result<(Vec<Column>, Vec<String>), String> {
    let mut bins: Vec<(String, PathBuf, bool)> = o
        .bins
        .iter()
        .map(|(label, path)| (label.clone(), path.clone(), false))
        .collect();
    if o.servers.contains(&Server::Tsockm) {
        bins.push(("tsockm".to_owned(), built_server.to_path_buf(), true));
    }
    let mut columns = Vec::new();
    let mut notes = Vec::new();
    for (name, bin, built) in &bins {
        let knows = probe(bin)?;
        for &store in &o.stores {
            if store == Store::Sqlite && !knows.store {
                notes.push(format!(
                    "`{name}` has no `--store` flag (it predates the store): no SQLite column"
                ));
                continue;
            }
            let label = if o.stores.len() > 1 {
                format!("{name}/{}", store.name())
            } else {
                name.clone()
            };
            columns.push(Column {
                label,
                kind: ColumnKind::Tsockm {
                    bin: bin.clone(),
                    built: *built,
                    store,
                    knows,
                },
            });
        }
    }
    if o.servers.contains(&Server::Ngircd) {
        columns.push(Column {
            label: "ngircd".to_owned(),
            kind: ColumnKind::Ngircd,
        });
    }
    let mut seen = BTreeSet::new();
    for c in &columns {
        check_label(&c.label)?;
        if !seen.insert(c.label.as_str()) {
            return Err(format!("two columns are named `{}`", c.label));
        }
    }
    Ok((columns, notes))
}

/// The temporary directory of one `cargo xtask bench`, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn number(text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One run's `RESULT` fields, or why it failed.
type Fields = BTreeMap<String, String>;

/// One planned workload: its name in the tables and the generator's
/// arguments.
struct Planned {
    /// What `--only` and the progress lines call it (`A`, `idle 5000`).
    name: String,
    /// Its row label in the tables (`A 10×2000`, `rooms 100×10 M=20`).
    label: String,
    args: Vec<String>,
}

impl Planned {
    fn is_idle(&self) -> bool {
        self.name.starts_with("idle")
    }
    fn is_join(&self) -> bool {
        self.name.starts_with("join")
    }
    fn is_rooms(&self) -> bool {
        self.name.starts_with("rooms")
    }
}

/// The workloads `o` asks for, in order.
fn plan(o: &Options) -> Vec<Planned> {
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let wants = |name: &str| o.only.iter().any(|x| x == name);
    let mut plan = Vec::new();
    for w in WORKLOADS.iter().filter(|w| wants(w.name)) {
        let mut args = owned(&["fanout", "-c", &w.clients.to_string()]);
        args.extend(owned(&["-m", &w.messages.to_string(), "-s", "64"]));
        if let Some(rate) = w.rate {
            args.extend(owned(&["--rate", &rate.to_string()]));
        }
        let label = match w.rate {
            Some(r) => format!("{} {}×{} @{r}/s", w.name, w.clients, w.messages),
            None => format!("{} {}×{}", w.name, w.clients, w.messages),
        };
        plan.push(Planned {
            name: w.name.to_owned(),
            label,
            args,
        });
    }
    if wants("idle") {
        for n in &o.idle {
            plan.push(Planned {
                name: format!("idle {n}"),
                label: format!("idle {n}"),
                args: owned(&["idle", "-n", &n.to_string()]),
            });
        }
    }
    if wants("rooms") {
        let (rooms, members, messages) = ROOMS;
        let mut args = owned(&["rooms", "-r", &rooms.to_string(), "-k"]);
        args.extend(owned(&[&members.to_string(), "-m", &messages.to_string()]));
        args.extend(owned(&["-s", "64"]));
        let mut label = format!("rooms {rooms}×{members} M={messages}");
        if let Some(rate) = o.rooms_rate {
            args.extend(owned(&["--rate", &rate.to_string()]));
            label.push_str(&format!(" @{rate}/s"));
        }
        plan.push(Planned {
            name: "rooms".to_owned(),
            label,
            args,
        });
    }
    if wants("join") {
        for n in &o.join {
            plan.push(Planned {
                name: format!("join {n}"),
                label: format!("join {n}"),
                args: owned(&[
                    "join",
                    "-n",
                    &n.to_string(),
                    "--connect-concurrency",
                    &o.join_concurrency.to_string(),
                ]),
            });
        }
    }
    plan
}

/// Why `column` does not run `workload`, if it does not.
fn skip_reason(column: &Column, workload: &Planned) -> Option<String> {
    match &column.kind {
        ColumnKind::Tsockm { knows, .. } if workload.is_rooms() && !knows.rooms => Some(format!(
            "{} on `{}` skipped: the binary predates rooms (no `--max-rooms-per-peer` in its \
             `--help`)",
            workload.name, column.label
        )),
        _ => None,
    }
}

/// Every repetition's outcome, per (workload, column index).
type Results = BTreeMap<(String, usize), Vec<Result<Fields, String>>>;

pub fn bench(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--cluster") {
        return cluster::bench(args);
    }
    let mut o = parse(args)?;
    if o.servers.contains(&Server::Ngircd) && !have("ngircd", &["--version"]) {
        eprintln!("xtask bench: ngircd not found, skipping its column (apt-get install ngircd)");
        o.servers.retain(|s| *s != Server::Ngircd);
    }
    if o.pin && !have("taskset", &["-V"]) {
        eprintln!("xtask bench: taskset not found, running unpinned");
        o.pin = false;
    }
    let mut packages = vec!["build", "--release", "-p", "tsockm-bench"];
    if o.servers.contains(&Server::Tsockm) {
        packages.extend(["-p", "tsockm-server"]);
    }
    crate::run("cargo", &packages)?;
    let root = project_root();
    let target = target_dir(&root).join("release");
    let (columns, mut notes) = columns(&o, &target.join("tsockm-server"))?;
    if columns.is_empty() {
        return Err("no server to run: see --servers and --tsockm-bin".to_owned());
    }
    let work =
        WorkDir(std::env::temp_dir().join(format!("tsockm-xtask-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work.0)
        .map_err(|e| format!("cannot create {}: {e}", work.0.display()))?;

    let plan = plan(&o);
    for w in &plan {
        notes.extend(columns.iter().filter_map(|c| skip_reason(c, w)));
    }
    let generator = target.join("tsockm-bench");
    let mut results: Results = BTreeMap::new();
    for rep in 1..=o.reps {
        for w in &plan {
            for (i, column) in columns.iter().enumerate() {
                if skip_reason(column, w).is_some() {
                    continue;
                }
                eprintln!(
                    "xtask bench: {} on {} (repetition {rep}/{})",
                    w.name, column.label, o.reps
                );
                let outcome = one_run(&generator, &work.0, column, &w.args, &o);
                if let Err(e) = &outcome {
                    eprintln!("xtask bench:   failed: {e}");
                }
                results
                    .entry((w.name.clone(), i))
                    .or_default()
                    .push(outcome);
            }
        }
    }
    drop(work);

    let tables = tables(&plan, &columns, &results, &notes);
    println!("\n{tables}");
    if o.docs {
        let section = section(&o, &columns, &tables);
        write_section(&root.join("docs").join("benchmarks.md"), SECTION, &section)?;
        eprintln!("xtask bench: wrote `{SECTION}` in docs/benchmarks.md");
    }
    Ok(())
}

/// Starts a fresh server, runs the generator once against it, stops it.
fn one_run(
    generator: &Path,
    work: &Path,
    column: &Column,
    bench_args: &[String],
    o: &Options,
) -> Result<Fields, String> {
    let port = free_port()?;
    let stem = format!("{}-{port}", column.label.replace('/', "-"));
    let log = work.join(format!("{stem}.log"));
    let db = work.join(format!("{stem}.db"));
    let mut child = start_server(work, column, port, &log, &db, o)?;
    let pid = child.id();
    let outcome = wait_listening(port, &mut child, &log).and_then(|()| {
        let mut cmd = pinned(o.pin, "1", &generator.to_string_lossy());
        cmd.args(bench_args);
        let addr = format!("127.0.0.1:{port}");
        match column.kind {
            ColumnKind::Tsockm { .. } => cmd.args(["--addr", &addr]),
            ColumnKind::Ngircd => cmd.args(["--irc", &addr, "--irc-oper", "bench:bench"]),
        };
        cmd.args(["--server-pid", &pid.to_string(), "--label", &column.label]);
        cmd.args(["--timeout", &format!("{}s", o.timeout_s)]);
        run_generator(cmd)
    });
    let _ = child.kill();
    let _ = child.wait();
    // A fresh store for every run: the SQLite file and its companions go.
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    outcome
}

fn run_generator(mut cmd: Command) -> Result<Fields, String> {
    let output = cmd
        .current_dir(project_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start tsockm-bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
        eprintln!("  {line}");
    }
    let Some(result) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("no result ({}): {}", output.status, stderr.trim()));
    };
    Ok(result
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// `taskset -c CORE program` when pinning, else just `program`.
fn pinned(pin: bool, core: &str, program: &str) -> Command {
    if pin {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", core, program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// The flags a TsockM binary gets: the common ones, then those of the v2
/// server that its `--help` lists, then `--tsockm-arg`s.
fn tsockm_args(port: u16, store: Store, knows: Knows, db: &Path, extra: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "--addr",
        &format!("127.0.0.1:{port}"),
        "-s",
        "--max-rate",
        "1000000",
        "--max-peers",
        "20000",
    ]
    .map(String::from)
    .to_vec();
    if knows.store {
        let spec = match store {
            Store::Memory => "memory".to_owned(),
            Store::Sqlite => format!("sqlite:{}", db.display()),
        };
        argv.extend(["--store".to_owned(), spec]);
    }
    if knows.max_unregistered {
        argv.extend(["--max-unregistered".to_owned(), MAX_UNREGISTERED.to_owned()]);
    }
    if knows.max_unregistered_per_ip {
        argv.extend([
            "--max-unregistered-per-ip".to_owned(),
            MAX_UNREGISTERED.to_owned(),
        ]);
    }
    argv.extend(extra.iter().cloned());
    argv
}

fn start_server(
    work: &Path,
    column: &Column,
    port: u16,
    log: &Path,
    db: &Path,
    o: &Options,
) -> Result<Child, String> {
    let mut argv: Vec<String> = Vec::new();
    if o.pin {
        argv.extend(["taskset", "-c", "0"].map(String::from));
    }
    match &column.kind {
        ColumnKind::Tsockm {
            bin, store, knows, ..
        } => {
            argv.push(bin.to_string_lossy().into_owned());
            argv.extend(tsockm_args(port, *store, *knows, db, &o.tsockm_args));
        }
        ColumnKind::Ngircd => {
            let conf = work.join(format!("ngircd-{port}.conf"));
            std::fs::write(&conf, ngircd_conf(port, work))
                .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
            argv.extend(["ngircd".to_owned(), "-n".to_owned(), "-f".to_owned()]);
            argv.push(conf.to_string_lossy().into_owned());
        }
    }
    let log_file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    // `exec` keeps the pid, so the child's pid is the server's.
    let script = format!("ulimit -n {NOFILE} 2>/dev/null; exec \"$@\"");
    // Whatever a TsockM build does about its store, the platform's data
    // directory is this run's temporary one, and no store comes from the
    // environment.
    let data_home = work.join("data");
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(&argv)
        .env("XDG_DATA_HOME", &data_home)
        .env_remove("TSOCKM_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", column.label))
}

/// An ngircd configuration with every per-client limit lifted: no connection
/// limits, no penalty time (`MaxPenaltyTime = 0`), no DNS/ident/PAM lookups,
/// and an operator whose clients set user mode `+F` (relaxed flood
/// protection; ngircd never throttles +F users).
fn ngircd_conf(port: u16, work: &Path) -> String {
    ngircd_conf_named("irc.bench.invalid", port, work)
}

/// [`ngircd_conf`] for a server called `name` (linked servers need
/// distinct names).
fn ngircd_conf_named(name: &str, port: u16, work: &Path) -> String {
    format!(
        "[Global]\n\
         Name = {name}\n\
         Info = tsockm-bench comparison server\n\
         Listen = 127.0.0.1\n\
         Ports = {port}\n\
         MotdPhrase = bench\n\
         PidFile = {pid}\n\
         [Limits]\n\
         MaxConnections = 0\n\
         MaxConnectionsIP = 0\n\
         MaxJoins = 0\n\
         MaxNickLength = 30\n\
         MaxPenaltyTime = 0\n\
         PingTimeout = 600\n\
         PongTimeout = 600\n\
         [Options]\n\
         DNS = no\n\
         Ident = no\n\
         PAM = no\n\
         [Operator]\n\
         Name = bench\n\
         Password = bench\n",
        pid = work.join(format!("ngircd-{port}.pid")).display()
    )
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < START_TIMEOUT {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("server exited ({status}): {}", text.trim()));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "server not listening on port {port} after {START_TIMEOUT:?}"
    ))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The median of the numeric field `key` over the successful runs.
fn median(runs: &[Result<Fields, String>], key: &str) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|f| f.get(key)?.parse().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if !values.len().is_multiple_of(2) {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// The largest value of the integer field `key` over the successful runs.
fn worst(runs: &[Result<Fields, String>], key: &str) -> u64 {
    runs.iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|f| f.get(key)?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// The smallest value of the integer field `key` over the successful runs.
fn fewest(runs: &[Result<Fields, String>], key: &str) -> Option<u64> {
    runs.iter()
        .filter_map(|r| r.as_ref().ok())
        .filter_map(|f| f.get(key)?.parse().ok())
        .min()
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if decimals == 0 => group(v.round() as u64),
        Some(v) => format!("{v:.decimals$}"),
        None => "–".to_owned(),
    }
}

/// 1234567 as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn tables(plan: &[Planned], columns: &[Column], results: &Results, notes: &[String]) -> String {
    let mut fan = String::from(
        "| workload | server | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU s / 1M deliveries | missing / dup / reordered / extra | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |\n",
    );
    let mut idle = String::from(
        "| idle | server | bytes per registered peer | setup s | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    let mut join = String::from(
        "| join storm | server | all registered s | all settled s | settled runs | fewest registered | server CPU s | RSS after MiB | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    let mut failures = String::new();
    for w in plan {
        let label = &w.label;
        for (i, column) in columns.iter().enumerate() {
            if skip_reason(column, w).is_some() {
                continue;
            }
            let server = &column.label;
            let runs = results
                .get(&(w.name.clone(), i))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let ok = runs.iter().filter(|r| r.is_ok()).count();
            for e in runs.iter().filter_map(|r| r.as_ref().err()) {
                let _ = writeln!(failures, "- {label} on {server}: {e}");
            }
            if w.is_idle() {
                let _ = writeln!(
                    idle,
                    "| {label} | {server} | {} | {} | {} | {ok}/{} |",
                    cell(median(runs, "bytes_per_peer"), 0),
                    cell(median(runs, "setup_s"), 2),
                    worst(runs, "disconnected"),
                    runs.len()
                );
            } else if w.is_join() {
                let settled = runs
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .filter(|f| f.get("settled").is_some_and(|v| v == "true"))
                    .count();
                let _ = writeln!(
                    join,
                    "| {label} | {server} | {} | {} | {settled}/{ok} | {} | {} | {} | {} | {ok}/{} |",
                    cell(median(runs, "registered_s"), 2),
                    cell(median(runs, "settled_s"), 2),
                    fewest(runs, "registered_clients").map_or("–".to_owned(), group),
                    cell(median(runs, "server_cpu_s"), 2),
                    cell(median(runs, "rss_kib").map(|k| k / 1024.0), 1),
                    worst(runs, "disconnected"),
                    runs.len()
                );
            } else {
                let _ = writeln!(
                    fan,
                    "| {label} | {server} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} | {ok}/{} |",
                    cell(median(runs, "deliveries_per_s"), 0),
                    cell(median(runs, "p50_ms"), 2),
                    cell(median(runs, "p99_ms"), 2),
                    cell(median(runs, "p999_ms"), 2),
                    cell(median(runs, "max_ms"), 2),
                    cell(median(runs, "cpu_s_per_m"), 3),
                    worst(runs, "missing"),
                    worst(runs, "duplicated"),
                    worst(runs, "out_of_order"),
                    worst(runs, "extra"),
                    worst(runs, "disconnected"),
                    runs.len()
                );
            }
        }
    }
    let mut parts = Vec::new();
    if plan.iter().any(|w| !w.is_idle() && !w.is_join()) {
        parts.push(fan);
    }
    if plan.iter().any(Planned::is_idle) {
        parts.push(idle);
    }
    if plan.iter().any(Planned::is_join) {
        parts.push(join);
    }
    let mut out = parts.join("\n");
    if !notes.is_empty() {
        out.push_str("\nNotes:\n\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    if !failures.is_empty() {
        out.push_str("\nFailed runs:\n\n");
        out.push_str(&failures);
    }
    out
}

/// How each column's server was run, one list item each.
fn column_notes(columns: &[Column], o: &Options) -> String {
    let mut out = String::new();
    for c in columns {
        let how = match &c.kind {
            ColumnKind::Tsockm {
                bin,
                built,
                store,
                knows,
            } => {
                let args = tsockm_args(0, *store, *knows, Path::new("FILE"), &o.tsockm_args)
                    .join(" ")
                    .replace("127.0.0.1:0", "127.0.0.1:PORT");
                let name = bin.file_name().map_or_else(
                    || bin.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let origin = if *built {
                    "built from this tree".to_owned()
                } else {
                    format!("`{}`", bin.display())
                };
                let missing: Vec<&str> = [
                    (!knows.store, "--store"),
                    (!knows.max_unregistered, "--max-unregistered"),
                    (!knows.max_unregistered_per_ip, "--max-unregistered-per-ip"),
                ]
                .into_iter()
                .filter_map(|(absent, flag)| absent.then_some(flag))
                .collect();
                let older = if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (its `--help` lists no {})", missing.join(", "))
                };
                format!("{origin}: `{name} {args}`{older}")
            }
            ColumnKind::Ngircd => "`ngircd -n -f CONF` (below)".to_owned(),
        };
        let _ = writeln!(out, "- `{}`: {how}", c.label);
    }
    out
}

fn section(o: &Options, columns: &[Column], tables: &str) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let ngircd = if columns.iter().any(Column::is_ngircd) {
        Command::new("ngircd")
            .arg("--version")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "ngircd (version unknown)".to_owned())
    } else {
        "ngircd not run: its rows are missing (`apt-get install ngircd`)".to_owned()
    };
    let mode = if o.quick {
        "quick mode (`--quick`)"
    } else {
        "full run"
    };
    let pin = if o.pin {
        "each server pinned to core 0 and the generator to core 1 with `taskset`"
    } else {
        "unpinned"
    };
    let (rooms, members, messages) = ROOMS;
    let rooms_pace = o.rooms_rate.map_or("at full speed".to_owned(), |r| {
        format!("at {r} messages/s per client")
    });
    format!(
        "{SECTION}\n\n\
         Written by `cargo xtask bench` ({mode}) on {date}: {cores} cores, {cpu}, Linux {kernel}; \
         {pin}; median of {reps} repetition(s), a fresh server for every run. {ngircd}.\n\n\
         Fan-out: C clients register and wait until every client has seen every other join, then \
         each sends M broadcasts with 64-byte bodies (A–C at full speed, D at 50 messages/s per \
         client); every client reads everything. Deliveries/s counts from the first send to the \
         last delivery; latency is send to receipt of each delivery; CPU is the server's \
         user + system time over the message phase (`/proc/<pid>/stat`). Missing / duplicated / \
         reordered / extra are the worst of the repetitions and must be 0 (extra: an own message \
         echoed, another room's message, or one addressed to another conversation); a \
         disconnected client is one the server cut off (for TsockM: its send queue overflowed). \
         Rooms R×K M=m: R·K clients register, each joins its room `#r<i>` of K members (TsockM: \
         `REQ::JOIN`, waiting for its own JOIN; IRC: `JOIN` of a channel of that name, waiting for \
         the end of NAMES), and once every client has seen every member of its room each sends m \
         messages to its room ({rooms_pace}); the default is {rooms} rooms of {members}, \
         {messages} messages each; figures as for fan-out. \
         Idle: N clients register and stay; bytes per peer is the growth of the server's VmRSS \
         over the pre-connection baseline, divided by N (it includes what the join notices \
         left in the allocator). Join storm N: N clients register, at most {join_cc} at a time \
         (ngircd listens with a backlog of 10; more in flight and the kernel drops connection \
         attempts, which clients retry a second later) (IRC: register and JOIN one channel); all registered is when the last client got its \
         registration answer (IRC: the end of NAMES); all settled is when the last client had \
         learnt of all N − 1 others (TsockM: its roster and the NTFY_JOINs of later joiners; \
         IRC: NAMES and later JOINs), within the generator's `--timeout`; settled runs counts \
         the runs that got there; a run that ends at the timeout still counts, with the fewest \
         clients registered in any run; CPU and RSS are the server's over the storm.\n\n\
         Columns:\n\n{columns}\n\
         A TsockM binary gets only the flags its `--help` lists. ngircd runs as `ngircd -n -f CONF` \
         with every per-client limit lifted: \
         `MaxConnections = 0`, `MaxConnectionsIP = 0`, `MaxJoins = 0`, `MaxPenaltyTime = 0` (no \
         penalty time), `DNS = no`, `Ident = no`, `PAM = no`, and an `[Operator]` block; each \
         fan-out and rooms client sends OPER and sets user mode `+F`, which ngircd never \
         throttles. The generator runs `tsockm-bench fanout|rooms|idle|join --addr|--irc ...` \
         (see `--help`).\n\n\
         {tables}",
        reps = o.reps,
        kernel = kernel.trim(),
        columns = column_notes(columns, o),
        join_cc = o.join_concurrency,
    )
}

/// Replaces the section under `heading` (up to the next `## ` heading) or
/// appends it.
fn write_section(path: &Path, heading: &str, section: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = replace_section(&old, heading, section);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, new)
        .map_err(|e| format!("cannot write {}: {e}", PathBuf::from(path).display()))
}

fn replace_section(old: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = old.lines().position(|l| l.trim_end() == heading) else {
        return format!("{}\n\n{section}\n", old.trim_end());
    };
    let lines: Vec<&str> = old.lines().collect();
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out = lines[..start].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(section);
    out.push('\n');
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_is_replaced_in_place_or_appended() {
        let doc = "# B\n\n## Codec (tsockm-proto)\n\nx\n";
        let added = replace_section(doc, SECTION, "## Server fan-out (tsockm-bench)\n\nfirst\n");
        assert_eq!(
            added,
            "# B\n\n## Codec (tsockm-proto)\n\nx\n\n## Server fan-out (tsockm-bench)\n\nfirst\n"
        );
        let with_tail = format!("{added}\n## Later\n\ny\n");
        let replaced = replace_section(
            &with_tail,
            SECTION,
            "## Server fan-out (tsockm-bench)\n\nsecond",
        );
        assert_eq!(
            replaced,
            "# B\n\n## Codec (tsockm-proto)\n\nx\n\n## Server fan-out (tsockm-bench)\n\nsecond\n\n## Later\n\ny\n"
        );
        // The cluster's section is another heading: the fan-out one stays.
        let both = replace_section(
            &replaced,
            cluster::SECTION,
            &format!("{}\n\nthird\n", cluster::SECTION),
        );
        assert!(
            both.contains("fan-out (tsockm-bench)\n\nsecond\n"),
            "{both}"
        );
        assert!(
            both.ends_with(&format!("## Later\n\ny\n\n{}\n\nthird\n", cluster::SECTION)),
            "{both}"
        );
        let again = replace_section(
            &both,
            cluster::SECTION,
            &format!("{}\n\nfourth", cluster::SECTION),
        );
        assert!(
            !again.contains("third") && again.ends_with("fourth\n"),
            "{again}"
        );
    }

    #[test]
    fn medians_and_grouping() {
        let run = |v: &str| -> Result<Fields, String> {
            Ok([("x".to_owned(), v.to_owned())].into_iter().collect())
        };
        let runs = vec![run("3"), Err("boom".into()), run("1"), run("2")];
        assert_eq!(median(&runs, "x"), Some(2.0));
        assert_eq!(median(&runs[..1], "y"), None);
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
    }

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_for_columns_and_workloads() {
        let o = parse(&args(
            "--only B,rooms,join --join 50,100 --tsockm-store memory,sqlite \
             --tsockm-bin before=/tmp/old/tsockm-server --rooms-rate 50",
        ))
        .expect("valid");
        assert_eq!(o.stores, [Store::Memory, Store::Sqlite]);
        assert_eq!(
            o.bins,
            [("before".to_owned(), PathBuf::from("/tmp/old/tsockm-server"))]
        );
        let plan = plan(&o);
        let names: Vec<&str> = plan.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["B", "rooms", "join 50", "join 100"]);
        assert_eq!(plan[1].label, "rooms 100×10 M=20 @50/s");
        assert_eq!(
            plan[1].args.join(" "),
            "rooms -r 100 -k 10 -m 20 -s 64 --rate 50"
        );
        assert!(parse(&args("--only E")).is_err());
        assert!(parse(&args("--tsockm-store disk")).is_err());
        assert!(parse(&args("--tsockm-bin /no/label")).is_err());
        assert!(check_label("a b").is_err() && check_label("before/sqlite").is_ok());
    }

    #[test]
    fn flags_only_where_the_help_lists_them() {
        let v2 = knows_from_help(
            "Options:\n      --store <STORE>  Where [env: TSOCKM_STORE=]\n      \
             --max-unregistered <MAX_UNREGISTERED>\n      \
             --max-unregistered-per-ip <N>\n      --max-rooms-per-peer <N>\n  -s, --silent",
        );
        assert_eq!(
            v2,
            Knows {
                store: true,
                max_unregistered: true,
                max_unregistered_per_ip: true,
                rooms: true
            }
        );
        // Only the longer flag: a prefix does not count.
        let partial = knows_from_help("      --max-unregistered-per-ip <N>\n  -s, --silent");
        assert!(!partial.max_unregistered && partial.max_unregistered_per_ip);
        let v1 = knows_from_help("  --max-rate <MAX_RATE>\n  -s, --silent");
        assert_eq!(v1, Knows::default());

        let db = Path::new("/tmp/w/x.db");
        let line =
            |store, knows| tsockm_args(7, store, knows, db, &["--tiny".to_owned()]).join(" ");
        assert_eq!(
            line(Store::Sqlite, v2),
            "--addr 127.0.0.1:7 -s --max-rate 1000000 --max-peers 20000 \
             --store sqlite:/tmp/w/x.db --max-unregistered 1024 \
             --max-unregistered-per-ip 1024 --tiny"
        );
        assert_eq!(
            line(Store::Memory, v1),
            "--addr 127.0.0.1:7 -s --max-rate 1000000 --max-peers 20000 --tiny"
        );
    }

    #[test]
    fn tables_show_every_kind_of_row() {
        let o = parse(&args("--only A,idle,rooms,join --idle 10 --join 20")).expect("valid");
        let plan = plan(&o);
        let columns = vec![
            Column {
                label: "old".to_owned(),
                kind: ColumnKind::Tsockm {
                    bin: PathBuf::from("/x/tsockm-server"),
                    built: false,
                    store: Store::Memory,
                    knows: Knows::default(),
                },
            },
            Column {
                label: "ngircd".to_owned(),
                kind: ColumnKind::Ngircd,
            },
        ];
        let fields = |line: &str| -> Result<Fields, String> {
            Ok(line
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect())
        };
        let mut results: Results = BTreeMap::new();
        results.insert(
            ("join 20".to_owned(), 1),
            vec![
                fields(
                    "registered_clients=20 registered_s=1.5 settled_s=2.5 settled=true \
                     server_cpu_s=0.5 rss_kib=2048",
                ),
                fields(
                    "registered_clients=20 registered_s=1.7 settled_s=- settled=false \
                     rss_kib=4096",
                ),
                fields("registered_clients=12 registered_s=- settled_s=- settled=false"),
            ],
        );
        results.insert(
            ("rooms".to_owned(), 1),
            vec![
                fields("deliveries_per_s=1000 extra=3"),
                Err("boom".to_owned()),
            ],
        );
        let text = tables(&plan, &columns, &results, &["a note".to_owned()]);
        assert!(
            text.contains("| join 20 | ngircd | 1.60 | 2.50 | 1/3 | 12 | 0.50 | 3.0 | 0 | 3/3 |"),
            "{text}"
        );
        assert!(
            text.contains("| rooms 100×10 M=20 | ngircd | 1,000 |"),
            "{text}"
        );
        assert!(text.contains("| 0 / 0 / 0 / 3 | 0 | 1/2 |"), "{text}");
        // The old binary has no rooms: no row, a note.
        assert!(!text.contains("| rooms 100×10 M=20 | old |"), "{text}");
        assert!(text.contains("| idle 10 | old |"), "{text}");
        assert!(text.contains("- a note") && text.contains("- rooms 100×10 M=20 on ngircd: boom"));
    }
}
