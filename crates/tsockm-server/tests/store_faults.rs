//! Section 12's store faults, over TCP and through the binary: the database
//! file deleted while the server runs (messages keep being relayed, `:info`
//! counts the failed writes), and a store that cannot be opened at start (a
//! data directory that is not writable, a database written by a newer
//! schema version): one clear line on standard error, exit 1.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{config, start_with};
use tsockm_proto::{Action, Frame};
use tsockm_server::{Config, ConsoleReply, ConsoleRequest, StoreSpec};

/// The user id tests run the binary as when they run as root, for whom
/// file permissions do not apply (`nobody`).
const NOBODY: u32 = 65_534;

fn sqlite_config(path: &Path) -> Config {
    Config {
        store: Some(StoreSpec::Sqlite(path.to_owned())),
        ..config()
    }
}

/// "A store that fails (disk full, file removed) is logged as an error and
/// counted in `:info`; the server keeps relaying."
#[tokio::test]
async fn a_database_deleted_while_running_is_counted_and_relaying_goes_on() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("x.db");
    let server = start_with(sqlite_config(&db)).await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    alice.send(Frame::broadcast("stored")).await;
    assert_eq!(bob.expect_msg().await.body(), "stored");
    std::fs::remove_file(&db).expect("delete the database");

    let mut failed = 0;
    for i in 0..200 {
        alice.send(Frame::broadcast(format!("m{i}"))).await;
        assert_eq!(bob.expect_msg().await.body(), format!("m{i}").as_str());
        let ConsoleReply::Info(info) = server.console(ConsoleRequest::Info).await else {
            panic!("not an answer to :info");
        };
        failed = info.store_failed;
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failed > 0, "no failed write counted");
    let info = server.console_line(":info").await;
    let line = info
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| panic!("no store line in {info}"));
    assert!(
        line.contains("FAILING") && !line.contains(" 0 failed"),
        "{line}"
    );
    // Relaying goes on.
    alice.send(Frame::broadcast("still relayed")).await;
    assert_eq!(bob.expect_msg().await.body(), "still relayed");
    bob.send(Frame::direct(alice.id.clone(), "and back")).await;
    assert_eq!(alice.expect_msg().await.body(), "and back");
    // HISTORY still answers (a failing store answers 503 at worst).
    bob.send(Frame::history("*", "1")).await;
    let answer = bob
        .expect_where("HISTORY's answer", |f| f.action == Action::History)
        .await;
    assert!(
        answer.kind == tsockm_proto::Kind::Res
            || answer.status == tsockm_proto::Status::ServiceUnavailable,
        "{answer}"
    );
    server.stop().await;
}

/// What the binary did when started on `store`: its exit code and its
/// standard error.
async fn run_binary(store: &str, as_nobody: bool) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"));
    command
        .env("TSOCKM_STORE", store)
        .args(["--addr", "127.0.0.1:0", "--silent"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if as_nobody {
        command.uid(NOBODY).gid(NOBODY);
    }
    let child = command.spawn().expect("start the server binary");
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the server exits in time")
        .expect("its output");
    let code = output.status.code().expect("exited, not killed");
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Whether this process runs as root (permissions do not stop it).
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn a_data_directory_not_writable_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("make the data directory");
    let as_nobody = is_root();
    if as_nobody {
        // Root may write anywhere: the binary runs as nobody, for whom the
        // directory (root's, 0755) is not writable.
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.path(), open.clone()).expect("chmod");
        std::fs::set_permissions(&data, open).expect("chmod");
    } else {
        let read_only = std::fs::Permissions::from_mode(0o555);
        std::fs::set_permissions(&data, read_only).expect("chmod");
    }
    let db = data.join("x.db");
    let (code, stderr) = run_binary(&format!("sqlite:{}", db.display()), as_nobody).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "tsockm-server: cannot create the database {}: permission denied\n",
            db.display()
        )
    );
    let below = data.join("sub").join("x.db");
    let (code, stderr) = run_binary(&format!("sqlite:{}", below.display()), as_nobody).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "tsockm-server: cannot create the data directory {}: permission denied\n",
            data.join("sub").display()
        )
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("x.db");
    // A database this build made, then marked as a later version's.
    start_with(sqlite_config(&db)).await.stop().await;
    let connection = rusqlite::Connection::open(&db).expect("open the database");
    connection
        .execute("UPDATE schema_version SET version = 99", [])
        .expect("set a newer version");
    drop(connection);
    let (code, stderr) = run_binary(&format!("sqlite:{}", db.display()), false).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "tsockm-server: the database {} was written by a newer TsockM (schema version 99; \
             this build knows {}): refusing to start\n",
            db.display(),
            tsockm_server::store::SCHEMA_VERSION
        )
    );
    // Nothing was changed: the version is still the newer one.
    let connection = rusqlite::Connection::open(&db).expect("open the database");
    let version: i64 = connection
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .expect("read the version");
    assert_eq!(version, 99);
}
