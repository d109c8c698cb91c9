//! `cargo xtask bench`: TsockM beside ngircd, same machine, same run.
//!
//! Builds the release server and load generator, then for each server and
//! each workload starts a fresh server on a free loopback port (pinned to
//! core 0 with `taskset` when it exists), runs `tsockm-bench` pinned to
//! core 1, reads its `RESULT` line and stops the server. Medians of the
//! repetitions go to standard output and, unless `--no-docs`, into the
//! `## Server fan-out (tsockm-bench)` section of `docs/benchmarks.md`.
//!
//! ngircd is optional: when `ngircd` is not on PATH its column is skipped
//! with a note (`apt-get install ngircd` brings it). Every child process is
//! ours and is killed by its handle; every run has a timeout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::project_root;

const USAGE: &str = "\
usage: cargo xtask bench [options]

  --quick               one repetition, idle N=1000 only (a few minutes)
  --reps N              repetitions of each run (default 3)
  --only LIST           workloads to run, of A,B,C,D,idle (default all)
  --idle LIST           idle sizes (default 5000,10000)
  --servers LIST        of tsockm,ngircd (default both; ngircd if installed)
  --tsockm-arg ARG      extra flag for tsockm-server (repeatable)
  --timeout SECS        bound for one generator run (default 180)
  --no-pin              do not pin with taskset
  --no-docs             do not write docs/benchmarks.md";

/// The heading of the section this task owns in `docs/benchmarks.md`.
const SECTION: &str = "## Server fan-out (tsockm-bench)";
/// How long a server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Open files for server and generator (idle runs hold 10,000 sockets).
const NOFILE: u32 = 20_000;

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

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Tsockm,
    Ngircd,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Tsockm => "tsockm",
            Server::Ngircd => "ngircd",
        }
    }
}

struct Options {
    reps: usize,
    only: Vec<String>,
    idle: Vec<usize>,
    servers: Vec<Server>,
    tsockm_args: Vec<String>,
    timeout_s: u64,
    pin: bool,
    docs: bool,
    quick: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        reps: 3,
        only: ["A", "B", "C", "D", "idle"].map(String::from).to_vec(),
        idle: vec![5000, 10_000],
        servers: vec![Server::Tsockm, Server::Ngircd],
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
            }
            "--reps" => o.reps = number(&value("--reps")?)?,
            "--only" => o.only = list(&value("--only")?),
            "--idle" => {
                o.idle = list(&value("--idle")?)
                    .iter()
                    .map(|n| number(n))
                    .collect::<Result<_, _>>()?;
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

pub fn bench(args: &[String]) -> Result<(), String> {
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
    let work = std::env::temp_dir().join(format!("tsockm-xtask-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;

    // results[(workload, server)] = one Fields per repetition.
    let mut results: BTreeMap<(String, Server), Vec<Result<Fields, String>>> = BTreeMap::new();
    let mut plan: Vec<(String, Vec<String>)> = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| o.only.iter().any(|x| x == w.name))
    {
        let mut a = vec![
            "fanout".to_owned(),
            "-c".to_owned(),
            w.clients.to_string(),
            "-m".to_owned(),
            w.messages.to_string(),
            "-s".to_owned(),
            "64".to_owned(),
        ];
        if let Some(rate) = w.rate {
            a.extend(["--rate".to_owned(), rate.to_string()]);
        }
        plan.push((w.name.to_owned(), a));
    }
    if o.only.iter().any(|x| x == "idle") {
        for n in &o.idle {
            plan.push((
                format!("idle {n}"),
                vec!["idle".to_owned(), "-n".to_owned(), n.to_string()],
            ));
        }
    }
    for rep in 1..=o.reps {
        for (name, bench_args) in &plan {
            for &server in &o.servers {
                eprintln!(
                    "xtask bench: {name} on {} (repetition {rep}/{})",
                    server.name(),
                    o.reps
                );
                let outcome = one_run(&root, &work, server, bench_args, &o);
                if let Err(e) = &outcome {
                    eprintln!("xtask bench:   failed: {e}");
                }
                results
                    .entry((name.clone(), server))
                    .or_default()
                    .push(outcome);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    let tables = tables(&plan, &o, &results);
    println!("\n{tables}");
    if o.docs {
        let section = section(&o, &tables);
        write_section(&root.join("docs").join("benchmarks.md"), &section)?;
        eprintln!("xtask bench: wrote `{SECTION}` in docs/benchmarks.md");
    }
    Ok(())
}

/// Starts a fresh server, runs the generator once against it, stops it.
fn one_run(
    root: &Path,
    work: &Path,
    server: Server,
    bench_args: &[String],
    o: &Options,
) -> Result<Fields, String> {
    let port = free_port()?;
    let log = work.join(format!("{}-{port}.log", server.name()));
    let mut child = start_server(root, work, server, port, &log, o)?;
    let pid = child.id();
    let outcome = wait_listening(port, &mut child, &log).and_then(|()| {
        let bin = root.join("target/release/tsockm-bench");
        let mut cmd = pinned(o.pin, "1", &bin.to_string_lossy());
        cmd.args(bench_args);
        let addr = format!("127.0.0.1:{port}");
        match server {
            Server::Tsockm => cmd.args(["--addr", &addr]),
            Server::Ngircd => cmd.args(["--irc", &addr, "--irc-oper", "bench:bench"]),
        };
        cmd.args(["--server-pid", &pid.to_string(), "--label", server.name()]);
        cmd.args(["--timeout", &format!("{}s", o.timeout_s)]);
        run_generator(cmd)
    });
    let _ = child.kill();
    let _ = child.wait();
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

fn start_server(
    root: &Path,
    work: &Path,
    server: Server,
    port: u16,
    log: &Path,
    o: &Options,
) -> Result<Child, String> {
    let mut argv: Vec<String> = Vec::new();
    if o.pin {
        argv.extend(["taskset", "-c", "0"].map(String::from));
    }
    match server {
        Server::Tsockm => {
            argv.push(
                root.join("target/release/tsockm-server")
                    .to_string_lossy()
                    .into_owned(),
            );
            argv.extend(
                [
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                    "-s",
                    "--max-rate",
                    "1000000",
                    "--max-peers",
                    "20000",
                ]
                .map(String::from),
            );
            argv.extend(o.tsockm_args.iter().cloned());
        }
        Server::Ngircd => {
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
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.name()))
}

/// An ngircd configuration with every per-client limit lifted: no connection
/// limits, no penalty time (`MaxPenaltyTime = 0`), no DNS/ident/PAM lookups,
/// and an operator whose clients set user mode `+F` (relaxed flood
/// protection; ngircd never throttles +F users).
fn ngircd_conf(port: u16, work: &Path) -> String {
    format!(
        "[Global]\n\
         Name = irc.bench.invalid\n\
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

fn tables(
    plan: &[(String, Vec<String>)],
    o: &Options,
    results: &BTreeMap<(String, Server), Vec<Result<Fields, String>>>,
) -> String {
    let mut fan = String::from(
        "| workload | server | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU s / 1M deliveries | missing / dup / reordered | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |\n",
    );
    let mut idle = String::from(
        "| idle | server | bytes per registered peer | setup s | disconnected | runs ok |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    let mut failures = String::new();
    for (name, _) in plan {
        let label = WORKLOADS
            .iter()
            .find(|w| w.name == name)
            .map(|w| match w.rate {
                Some(r) => format!("{} {}×{} @{r}/s", w.name, w.clients, w.messages),
                None => format!("{} {}×{}", w.name, w.clients, w.messages),
            })
            .unwrap_or_else(|| name.clone());
        for &server in &o.servers {
            let runs = results
                .get(&(name.clone(), server))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let ok = runs.iter().filter(|r| r.is_ok()).count();
            for e in runs.iter().filter_map(|r| r.as_ref().err()) {
                let _ = writeln!(failures, "- {label} on {}: {e}", server.name());
            }
            if name.starts_with("idle") {
                let _ = writeln!(
                    idle,
                    "| {label} | {} | {} | {} | {} | {ok}/{} |",
                    server.name(),
                    cell(median(runs, "bytes_per_peer"), 0),
                    cell(median(runs, "setup_s"), 2),
                    worst(runs, "disconnected"),
                    runs.len()
                );
            } else {
                let _ = writeln!(
                    fan,
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} | {ok}/{} |",
                    server.name(),
                    cell(median(runs, "deliveries_per_s"), 0),
                    cell(median(runs, "p50_ms"), 2),
                    cell(median(runs, "p99_ms"), 2),
                    cell(median(runs, "p999_ms"), 2),
                    cell(median(runs, "max_ms"), 2),
                    cell(median(runs, "cpu_s_per_m"), 3),
                    worst(runs, "missing"),
                    worst(runs, "duplicated"),
                    worst(runs, "out_of_order"),
                    worst(runs, "disconnected"),
                    runs.len()
                );
            }
        }
    }
    let mut out = String::new();
    if plan.iter().any(|(n, _)| !n.starts_with("idle")) {
        out.push_str(&fan);
    }
    if plan.iter().any(|(n, _)| n.starts_with("idle")) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&idle);
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
    let ngircd = if o.servers.contains(&Server::Ngircd) {
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
        "ngircd not installed: its rows are missing (`apt-get install ngircd`)".to_owned()
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
    format!(
        "{SECTION}\n\n\
         Written by `cargo xtask bench` ({mode}) on {date}: {cores} cores, {cpu}, Linux {kernel}; \
         {pin}; median of {reps} repetition(s), a fresh server for every run. {ngircd}.\n\n\
         Fan-out: C clients register and wait until every client has seen every other join, then \
         each sends M broadcasts with 64-byte bodies (A–C at full speed, D at 50 messages/s per \
         client); every client reads everything. Deliveries/s counts from the first send to the \
         last delivery; latency is send to receipt of each delivery; CPU is the server's \
         user + system time over the message phase (`/proc/<pid>/stat`). Missing / duplicated / \
         reordered are the worst of the repetitions and must be 0; a disconnected client is one \
         the server cut off (for TsockM: its send queue of `--send-queue` frames overflowed). \
         Idle: N clients register and stay; bytes per peer is the growth of the server's VmRSS \
         over the pre-connection baseline, divided by N (it includes what the join notices \
         left in the allocator).\n\n\
         TsockM runs as `tsockm-server --addr 127.0.0.1:PORT -s --max-rate 1000000 --max-peers \
         20000{extra}`. ngircd runs as `ngircd -n -f CONF` with every per-client limit lifted: \
         `MaxConnections = 0`, `MaxConnectionsIP = 0`, `MaxJoins = 0`, `MaxPenaltyTime = 0` (no \
         penalty time), `DNS = no`, `Ident = no`, `PAM = no`, and an `[Operator]` block; each \
         bench client sends OPER and sets user mode `+F`, which ngircd never throttles. The \
         generator runs `tsockm-bench fanout|idle --addr|--irc ...` (see `--help`).\n\n\
         {tables}",
        reps = o.reps,
        kernel = kernel.trim(),
        extra = o
            .tsockm_args
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>(),
    )
}

/// Replaces this task's section (up to the next `## ` heading) or appends it.
fn write_section(path: &Path, section: &str) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = replace_section(&old, section);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, new)
        .map_err(|e| format!("cannot write {}: {e}", PathBuf::from(path).display()))
}

fn replace_section(old: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = old.lines().position(|l| l.trim_end() == SECTION) else {
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
        let added = replace_section(doc, "## Server fan-out (tsockm-bench)\n\nfirst\n");
        assert_eq!(
            added,
            "# B\n\n## Codec (tsockm-proto)\n\nx\n\n## Server fan-out (tsockm-bench)\n\nfirst\n"
        );
        let with_tail = format!("{added}\n## Later\n\ny\n");
        let replaced = replace_section(&with_tail, "## Server fan-out (tsockm-bench)\n\nsecond");
        assert_eq!(
            replaced,
            "# B\n\n## Codec (tsockm-proto)\n\nx\n\n## Server fan-out (tsockm-bench)\n\nsecond\n\n## Later\n\ny\n"
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
}
