//! 10,000 registered idle peers on one in-process server, then one broadcast
//! that all 9,999 others must receive.
//!
//! Holding N peers takes 2N descriptors when both ends live in one process,
//! and CI machines often cap the hard open-files limit at 20,000. So the
//! server runs in this test's process and the clients in a child process
//! (this same test binary, re-run with [`CLIENTS_ENV`] set); each side raises
//! its own soft limit to N plus a margin. Only where that limit cannot be
//! reached is the test skipped, with a message saying so.
//!
//! Every join is announced to every peer, so registering N peers moves about
//! N² frames (N²/2 NTFY_JOIN announcements, N²/2 roster lines). The clients
//! register in batches and wait, after each batch, until every line sent so
//! far was read: each peer has then read exactly `k` lines when `k` peers are
//! registered (its welcome, its roster, and one announcement per later
//! peer), so no send queue ever holds more than one batch and the server has
//! no reason to cut anyone off. Readers only count newlines until the
//! broadcast, then look for its marker.
//!
//! The file has its own `main` (`harness = false`) so that it can play both
//! roles; it honours `--list` and a name filter like libtest.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tsockm_server::{CancellationToken, Config, LogMode, Server};
use tsockm_server::{ConsoleReply, ConsoleRequest};

const TEST_NAME: &str = "ten_thousand_idle_peers_all_receive_one_broadcast";
/// Set (to the server's address) in the child process that plays the clients.
const CLIENTS_ENV: &str = "TSOCKM_MANY_PEERS_SERVER";
/// Peers to hold.
const N_PEERS: usize = 10_000;
/// Descriptors each process needs beyond one per connection.
const FD_MARGIN: u64 = 256;
/// Peers registered before waiting for every client to catch up.
const BATCH: usize = 500;
/// Longest wait for one batch to register and be read.
const BATCH_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for the broadcast to reach everyone.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Longest the whole test may take (it takes 2 to 3 minutes on a busy
/// 2-core machine; the per-batch deadline is what catches a stall).
const TEST_DEADLINE: Duration = Duration::from_secs(600);
/// Bytes one reader reads at a time.
const READ_CHUNK: usize = 4096;

fn main() -> ExitCode {
    if let Ok(addr) = std::env::var(CLIENTS_ENV) {
        return clients_process(&addr);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return ExitCode::SUCCESS;
    }
    if !selected(&args) {
        println!("running 0 tests (filtered out: {TEST_NAME})");
        return ExitCode::SUCCESS;
    }
    println!("running 1 test");
    match server_process() {
        Ok(()) => {
            println!("test {TEST_NAME} ... ok");
            ExitCode::SUCCESS
        }
        Err(message) => {
            println!("test {TEST_NAME} ... FAILED\n{message}");
            ExitCode::FAILURE
        }
    }
}

/// Whether libtest-style name filters (arguments not starting with `-`,
/// other than option values) select this test.
fn selected(args: &[String]) -> bool {
    let mut filters = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--test-threads" | "--skip" | "--color" | "--format" | "--logfile" | "-Z" => {
                iter.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter),
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                *f == TEST_NAME
            } else {
                TEST_NAME.contains(f)
            }
        })
}

/// Raises the soft open-files limit to `needed` if the hard limit allows.
fn raise_fd_limit(needed: u64) -> Result<u64, String> {
    let limit = rlimit::increase_nofile_limit(needed)
        .map_err(|e| format!("cannot raise RLIMIT_NOFILE: {e}"))?;
    if limit < needed {
        return Err(format!(
            "RLIMIT_NOFILE can only be raised to {limit}, {needed} are needed"
        ));
    }
    Ok(limit)
}

// ---- The server's side ----------------------------------------------------------

fn server_process() -> Result<(), String> {
    let needed = N_PEERS as u64 + FD_MARGIN;
    if let Err(why) = raise_fd_limit(needed) {
        println!("SKIPPED {TEST_NAME}: {why}; raise the hard limit (ulimit -Hn) to run it");
        return Ok(());
    }
    // One thread: the registry then handles a whole burst of registrations
    // before the connection writers run, so each writer sends many frames
    // per system call instead of one (the clients' process has the other
    // core). With a worker per core, the writers wake for every frame and
    // registration takes several times longer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(TEST_DEADLINE, serve_many())
            .await
            .map_err(|_| format!("the test took longer than {TEST_DEADLINE:?}"))?
    })
}

async fn serve_many() -> Result<(), String> {
    let started = Instant::now();
    let config = Config {
        store: Some(tsockm_server::StoreSpec::Memory),
        addr: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        max_peers: N_PEERS,
        // Idle peers: no health checks during the test.
        health_interval: Duration::from_secs(3600),
        health_timeout: Duration::from_secs(7200),
        handshake_timeout: Duration::from_secs(120),
        // Every client comes from 127.0.0.1, many registering at once.
        max_unregistered: N_PEERS,
        max_unregistered_per_ip: N_PEERS,
        log_mode: LogMode::Silent,
        ..Config::default()
    };
    let server = Server::bind(config)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = server.local_addr();
    let console = server.console();
    let shutdown = CancellationToken::new();
    let server_task = tokio::spawn(server.run(shutdown.clone()));

    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .env(CLIENTS_ENV, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the clients' process: {e}"))?;
    let mut child_in = child.stdin.take().ok_or("no stdin")?;
    let child_out = child.stdout.take().ok_or("no stdout")?;
    // The child's reports, one line each, read on a plain thread.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines() {
            let Ok(line) = line else { break };
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut next_report = async |what: &str| -> Result<String, String> {
        match tokio::time::timeout(TEST_DEADLINE, line_rx.recv()).await {
            Ok(Some(line)) => {
                println!("clients: {line}");
                Ok(line)
            }
            Ok(None) => Err(format!("the clients' process ended before {what}")),
            Err(_) => Err(format!("no report of {what}")),
        }
    };

    let result = async {
        let registered = next_report("registration").await?;
        if !registered.starts_with("registered") {
            return Err(format!("clients failed: {registered}"));
        }
        let ConsoleReply::Info(info) = console
            .request(ConsoleRequest::Info)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("unexpected :info answer".to_owned());
        };
        println!(
            "server: {} online, {} away, {} frames out, {} bytes out, {} cut off, after {:.1} s",
            info.n_online,
            info.n_away,
            info.frames_out,
            info.bytes_out,
            info.peers_cut_off,
            started.elapsed().as_secs_f64()
        );
        if info.n_online != N_PEERS || info.peers_cut_off != 0 {
            return Err(format!(
                "expected {N_PEERS} peers online and none cut off: {info:?}"
            ));
        }
        child_in
            .write_all(b"broadcast\n")
            .and_then(|()| child_in.flush())
            .map_err(|e| format!("cannot tell the clients to broadcast: {e}"))?;
        let delivered = next_report("delivery").await?;
        let expected = format!("delivered {} of {}", N_PEERS - 1, N_PEERS - 1);
        if !delivered.starts_with(&expected) {
            return Err(format!("expected `{expected}`, got `{delivered}`"));
        }
        Ok(())
    }
    .await;

    let _ = child.kill();
    let _ = child.wait();
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(30), server_task).await {
        Ok(Ok(Ok(()))) => {}
        other => return Err(format!("the server did not stop cleanly: {other:?}")),
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    result
}

// ---- The clients' side ----------------------------------------------------------

/// Counts shared by every reader of the clients' process.
#[derive(Default)]
struct Tally {
    /// Lines read by all readers together.
    lines: AtomicU64,
    /// Readers whose connection ended (none should).
    closed: AtomicU64,
    /// Set once registration is over: readers then look for the marker.
    watching: AtomicBool,
    /// Readers that saw the broadcast.
    delivered: AtomicU64,
    /// Whether the author saw its own broadcast (it must not).
    echoed: AtomicBool,
}

fn clients_process(addr: &str) -> ExitCode {
    let result = (|| -> Result<(), String> {
        let addr: SocketAddr = addr.parse().map_err(|e| format!("bad address: {e}"))?;
        raise_fd_limit(N_PEERS as u64 + FD_MARGIN)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        runtime.block_on(run_clients(addr))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_clients(addr: SocketAddr) -> Result<(), String> {
    let started = Instant::now();
    let marker = format!("::*::many-peers-broadcast-{}\n", std::process::id());
    let marker: Arc<[u8]> = marker.into_bytes().into();
    let tally = Arc::new(Tally::default());
    let mut writers: Vec<OwnedWriteHalf> = Vec::with_capacity(N_PEERS);
    while writers.len() < N_PEERS {
        let batch_end = (writers.len() + BATCH).min(N_PEERS);
        let mut connecting = tokio::task::JoinSet::new();
        for i in writers.len()..batch_end {
            connecting.spawn(async move {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect #{i}: {e}"))?;
                let (read, mut write) = stream.into_split();
                let line = format!("REQ::COMM::200::::::::p{i}\n");
                write
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("register #{i}: {e}"))?;
                Ok::<_, String>((i, read, write))
            });
        }
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(joined) = connecting.join_next().await {
            batch.push(joined.map_err(|e| e.to_string())??);
        }
        batch.sort_by_key(|(i, _, _)| *i);
        for (i, read, write) in batch {
            tokio::spawn(read_counting(i, read, tally.clone(), marker.clone()));
            writers.push(write);
        }
        // Every registered peer has read one line per registered peer.
        let k = writers.len() as u64;
        wait_for(&tally, BATCH_DEADLINE, |t| {
            t.lines.load(Ordering::SeqCst) >= k * k
        })
        .await
        .map_err(|()| {
            format!(
                "after {k} registrations {} lines were read, {} expected; {} connections closed",
                tally.lines.load(Ordering::SeqCst),
                k * k,
                tally.closed.load(Ordering::SeqCst)
            )
        })?;
    }
    let lines = tally.lines.load(Ordering::SeqCst);
    let closed = tally.closed.load(Ordering::SeqCst);
    if closed != 0 {
        return Err(format!("{closed} connections were closed by the server"));
    }
    println!(
        "registered {N_PEERS} peers in {:.1} s, {lines} lines read",
        started.elapsed().as_secs_f64()
    );

    // Wait for the go-ahead (the server checked its own count meanwhile).
    let mut go = String::new();
    let stdin = std::io::stdin();
    tokio::task::spawn_blocking(move || stdin.read_line(&mut go).map(|_| go))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("stdin: {e}"))?;

    let sent_at = Instant::now();
    tally.watching.store(true, Ordering::SeqCst);
    let body = std::str::from_utf8(&marker[5..marker.len() - 1]).map_err(|e| e.to_string())?;
    let line = format!("REQ::MSG::200::::::*::{body}\n");
    let author = writers.first_mut().ok_or("no writer")?;
    author
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("broadcast: {e}"))?;
    let expected = N_PEERS as u64 - 1;
    let _ = wait_for(&tally, DELIVERY_DEADLINE, |t| {
        t.delivered.load(Ordering::SeqCst) >= expected
    })
    .await;
    let delivered = tally.delivered.load(Ordering::SeqCst);
    if tally.echoed.load(Ordering::SeqCst) {
        return Err("the author received its own broadcast".to_owned());
    }
    println!(
        "delivered {delivered} of {expected} in {:.0} ms",
        sent_at.elapsed().as_secs_f64() * 1000.0
    );
    // Ends every session; the process exit closes the sockets.
    drop(writers);
    Ok(())
}

/// Polls `done` until it holds or `deadline` passes.
async fn wait_for(
    tally: &Tally,
    deadline: Duration,
    done: impl Fn(&Tally) -> bool,
) -> Result<(), ()> {
    let until = Instant::now() + deadline;
    loop {
        if done(tally) {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads a connection until it ends, counting lines; once `watching`, looks
/// for `marker` (which may straddle two reads).
async fn read_counting(i: usize, mut read: OwnedReadHalf, tally: Arc<Tally>, marker: Arc<[u8]>) {
    let mut buf = [0u8; READ_CHUNK];
    let mut window: Vec<u8> = Vec::new();
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let n_lines = memchr::memchr_iter(b'\n', chunk).count() as u64;
        tally.lines.fetch_add(n_lines, Ordering::Relaxed);
        if tally.watching.load(Ordering::SeqCst) {
            window.extend_from_slice(chunk);
            if memchr::memmem::find(&window, &marker).is_some() {
                if i == 0 {
                    tally.echoed.store(true, Ordering::SeqCst);
                } else {
                    tally.delivered.fetch_add(1, Ordering::SeqCst);
                }
                window.clear();
            } else {
                let keep = window.len().saturating_sub(marker.len() - 1);
                window.drain(..keep);
            }
        }
    }
    tally.closed.fetch_add(1, Ordering::SeqCst);
}
