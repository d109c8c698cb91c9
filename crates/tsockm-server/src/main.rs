//! The `tsockm-server` binary: flags, logging, the console on standard
//! input, signals, and clear errors at the edge.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tokio::sync::mpsc;
use tsockm_server::{CancellationToken, Cli, Server, console, logging, shutdown};

/// jemalloc, with a background thread that gives freed memory back to the
/// system within seconds (see `allocator_gives_memory_back`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Console lines buffered between the stdin thread and the console task.
const CONSOLE_LINES: usize = 64;

/// Turns on jemalloc's background purging: without it, memory freed after a
/// burst is returned only as later allocations happen to trigger it.
///
/// Freed pages are returned after [`ALLOCATOR_DECAY_MS`] rather than
/// jemalloc's default 10 s: after a burst (a join storm, an attack) the
/// memory goes back soon; the cost is a few more page faults under churn.
fn allocator_gives_memory_back() {
    #[cfg(not(target_env = "msvc"))]
    {
        use tikv_jemalloc_ctl::{Access, AsName};
        if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
            tracing::warn!(%error, "cannot start the allocator's background purging");
        }
        let _ = b"arenas.dirty_decay_ms\0".name().write(ALLOCATOR_DECAY_MS);
        let n_arenas: u32 = b"arenas.narenas\0".name().read().unwrap_or(0);
        for arena in 0..n_arenas {
            let key = format!("arena.{arena}.dirty_decay_ms\0");
            let _ = key.as_bytes().name().write(ALLOCATOR_DECAY_MS);
        }
    }
}

/// How long freed memory stays with the allocator before it is returned.
#[cfg(not(target_env = "msvc"))]
const ALLOCATOR_DECAY_MS: isize = 1000;

fn main() -> ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(config) => config,
        // Flags that contradict each other are a bad command line: exit 2,
        // as clap does for the others.
        Err(error) => Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, error)
            .exit(),
    };
    logging::init(config.log_mode);
    allocator_gives_memory_back();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tsockm-server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let server = Server::bind(config)
            .await
            .map_err(|error| error.to_string())?;
        let shutdown = CancellationToken::new();
        // Listening for signals before saying we listen: a SIGTERM right
        // after that line must shut down gracefully, not kill.
        tokio::spawn(shutdown::cancel_on_signal(shutdown.clone()));
        eprintln!("tsockm-server: store {}", server.store());
        println!("tsockm-server listening on {}", server.local_addr());
        tokio::spawn(console::run(
            server.console(),
            stdin_lines(),
            tokio::io::stdout(),
            shutdown.clone(),
        ));
        server
            .run(shutdown)
            .await
            .map_err(|error| format!("server failed: {error}"))
    });
    // The stdin thread may be blocked in a read; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tsockm-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads standard input on a plain thread (a blocking read cannot be
/// cancelled, so it must not hold up the runtime) and forwards each line.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(CONSOLE_LINES);
    let spawned = std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot read the console; it is disabled");
    }
    rx
}
