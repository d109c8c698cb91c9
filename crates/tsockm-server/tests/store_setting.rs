//! Section 12's store setting, through the binary and never on the real
//! data directory: `--store`, `TSOCKM_STORE` when the flag is absent, the
//! default (`$XDG_DATA_HOME/tsockm/tsockm.db`, else
//! `~/.local/share/tsockm/tsockm.db`, with both pointed at a temporary
//! directory), the store printed at start, the file and its directory
//! readable by their owner only; and a message reaching the store within
//! one second (the binary killed one second after it was relayed still
//! has it at the next start).

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{TestClient, config, start_with};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tsockm_proto::Frame;
use tsockm_server::{Config, StoreSpec};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A running binary, its address, and its first line on standard error.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr_first: String,
}

/// Starts the binary with `args` and the environment `env` (TSOCKM_STORE,
/// XDG_DATA_HOME and HOME removed unless `env` sets them).
async fn spawn(args: &[&str], env: &[(&str, String)]) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tsockm-server"));
    command
        .env_remove("TSOCKM_STORE")
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME")
        .args(["--addr", "127.0.0.1:0", "--silent"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start the server binary");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let stderr_first = next_line(&mut stderr).await;
    let first = next_line(&mut stdout).await;
    let addr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("an address");
    Running {
        child,
        addr,
        stderr_first,
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> String {
    tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("readable")
        .expect("a line")
}

async fn kill(mut running: Running) {
    running.child.start_kill().expect("kill");
    running.child.wait().await.expect("reaped");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_store_is_the_flag_else_the_variable_else_the_data_directory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let flag_db = dir.path().join("flag").join("x.db");
    let env_db = dir.path().join("env").join("x.db");
    let flag = format!("sqlite:{}", flag_db.display());

    // The flag wins over the variable.
    let env_store = format!("sqlite:{}", env_db.display());
    let running = spawn(&["--store", &flag], &[("TSOCKM_STORE", env_store.clone())]).await;
    assert_eq!(running.stderr_first, format!("tsockm-server: store {flag}"));
    kill(running).await;
    assert!(flag_db.exists() && !env_db.exists());
    // Created readable by the owner only, the directory it made too.
    assert_eq!(mode(&flag_db), 0o600);
    assert_eq!(mode(flag_db.parent().expect("a directory")), 0o700);

    // The variable when there is no flag.
    let running = spawn(&[], &[("TSOCKM_STORE", env_store.clone())]).await;
    assert_eq!(
        running.stderr_first,
        format!("tsockm-server: store {env_store}")
    );
    kill(running).await;
    assert!(env_db.exists());
    let running = spawn(&[], &[("TSOCKM_STORE", "memory".to_owned())]).await;
    assert_eq!(running.stderr_first, "tsockm-server: store memory");
    kill(running).await;

    // Neither: `$XDG_DATA_HOME/tsockm/tsockm.db`, else under `$HOME`.
    let xdg = dir.path().join("xdg");
    let running = spawn(
        &[],
        &[
            ("XDG_DATA_HOME", xdg.display().to_string()),
            ("HOME", dir.path().display().to_string()),
        ],
    )
    .await;
    let default = xdg.join("tsockm").join("tsockm.db");
    assert_eq!(
        running.stderr_first,
        format!("tsockm-server: store sqlite:{}", default.display())
    );
    kill(running).await;
    assert_eq!(mode(&default), 0o600);
    assert_eq!(mode(&xdg.join("tsockm")), 0o700);
    let home = dir.path().join("home");
    let running = spawn(&[], &[("HOME", home.display().to_string())]).await;
    let default = home.join(".local/share/tsockm/tsockm.db");
    assert_eq!(
        running.stderr_first,
        format!("tsockm-server: store sqlite:{}", default.display())
    );
    kill(running).await;
    assert!(default.exists());
}

/// "a message ... reaches the store within one second": killed one second
/// after a message was relayed, the server has it stored.
#[tokio::test]
async fn a_relayed_message_is_stored_within_one_second() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("x.db");
    let store = format!("sqlite:{}", db.display());
    let running = spawn(&["--store", &store], &[]).await;
    let mut alice = TestClient::joined(running.addr, "alice", 0).await;
    let mut bob = TestClient::joined(running.addr, "bob", 1).await;
    alice.sync().await;
    alice.send(Frame::broadcast("stored in time")).await;
    let relayed = bob.expect_msg().await;
    // The sentence is about time: wait out the second it allows.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    kill(running).await;

    let server = start_with(Config {
        store: Some(StoreSpec::Sqlite(db.clone())),
        ..config()
    })
    .await;
    let mut carol = server.joined("carol", 0).await;
    let history = carol.history("*", "5").await;
    assert_eq!(history.ids(), [relayed.src().to_string()]);
    server.stop().await;
}
