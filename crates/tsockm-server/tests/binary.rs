//! The `tsockm-server` binary: flags, the console on standard input, and
//! signals.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tsockm_proto::{Action, Kind, Status};
use tsockm_testkit::TestClient;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
}

async fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .args(["--addr", "127.0.0.1:0", "--silent"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = next_line(&mut stdout).await;
    let addr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    Running {
        child,
        stdout,
        addr,
    }
}

async fn next_line(stdout: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(TIMEOUT, stdout.next_line())
        .await
        .expect("a line on stdout in time")
        .unwrap()
        .expect("stdout still open")
}

async fn exit_code(child: &mut Child) -> i32 {
    tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("the server exits in time")
        .unwrap()
        .code()
        .expect("exited, not killed")
}

#[test]
fn help_explains_every_flag_with_its_default() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, default) in [
        ("--addr", "127.0.0.1:6969"),
        ("--max-peers", "10000"),
        ("--max-frame", "16384"),
        ("--health-interval", "10s"),
        ("--health-timeout", "twice"),
        ("--removal-delay", "13s"),
        ("--handshake-timeout", "10s"),
        ("--send-queue", "4096"),
        ("--max-rate", "1000"),
        ("--kept-frames", "1024"),
        ("--silent", ""),
        ("--tiny", ""),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(default), "--help lacks the default {default}");
    }
}

#[test]
fn bad_flags_are_reported_clearly() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .args(["--removal-delay", "soon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("soon"), "{stderr}");
}

#[tokio::test]
async fn console_answers_on_stdout_and_the_server_outlives_stdin() {
    let mut server = spawn(&[]).await;
    let mut alice = TestClient::joined(server.addr, "alice", 0).await;
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b":list\n").await.unwrap();
    assert_eq!(next_line(&mut server.stdout).await, "1 peer(s):");
    let line = next_line(&mut server.stdout).await;
    assert!(
        line.contains(&alice.id) && line.contains("alice") && line.contains("online"),
        "{line}"
    );
    stdin.write_all(b":bogus\n").await.unwrap();
    assert!(
        next_line(&mut server.stdout)
            .await
            .contains("unknown command")
    );
    // End of standard input: the server keeps serving.
    drop(stdin);
    let mut bob = TestClient::joined(server.addr, "bob", 1).await;
    bob.send(tsockm_proto::Frame::broadcast("still up")).await;
    alice
        .expect_where("bob's message", |f| f.body() == "still up")
        .await;
    server.child.start_kill().unwrap();
}

/// A `:ping` waiting for its window does not hold up the next command.
#[tokio::test]
async fn a_pending_ping_does_not_block_the_console() {
    let mut server = spawn(&["--health-interval", "2s", "--health-timeout", "4s"]).await;
    let silent = TestClient::joined(server.addr, "quiet", 0).await;
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b":ping all\n:list\n").await.unwrap();
    assert_eq!(next_line(&mut server.stdout).await, "1 peer(s):");
    let listed = next_line(&mut server.stdout).await;
    assert!(listed.contains(&silent.id), "{listed}");
    let report = next_line(&mut server.stdout).await;
    assert!(
        report.contains(&silent.id) && report.contains("did not answer"),
        "{report}"
    );
    stdin.write_all(b":exit\n").await.unwrap();
    assert_eq!(exit_code(&mut server.child).await, 0);
}

#[tokio::test]
async fn sigterm_ends_every_session_and_exits_zero() {
    let mut server = spawn(&[]).await;
    let mut alice = TestClient::joined(server.addr, "alice", 0).await;
    let mut bob = TestClient::joined(server.addr, "bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    for client in [&mut alice, &mut bob] {
        let end = client
            .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
            .await;
        assert!(end.body().starts_with("server shutting down"), "{end}");
        client.expect_closed().await;
    }
    assert_eq!(exit_code(&mut server.child).await, 0);
}

#[tokio::test]
async fn exit_on_the_console_exits_zero() {
    let mut server = spawn(&[]).await;
    let mut alice = TestClient::joined(server.addr, "alice", 0).await;
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b":exit\n").await.unwrap();
    alice
        .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
        .await;
    assert_eq!(exit_code(&mut server.child).await, 0);
}

/// Runs the server with `args` (and `RUST_LOG` if given), lets alice and
/// bob exchange one message, ends it with `:exit`, and returns its stderr.
async fn log_of_a_session(args: &[&str], rust_log: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tsockm-server"));
    command
        .env("TSOCKM_STORE", "memory")
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let collected = tokio::spawn(async move {
        let mut all = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut all).await;
        all
    });
    let first = next_line(&mut stdout).await;
    let addr: SocketAddr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    let mut alice = TestClient::joined(addr, "alice", 0).await;
    let mut bob = TestClient::joined(addr, "bob", 1).await;
    alice
        .send(tsockm_proto::Frame::broadcast("hello log"))
        .await;
    bob.expect_where("alice's message", |f| f.body() == "hello log")
        .await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b":exit\n").await.unwrap();
    assert_eq!(exit_code(&mut child).await, 0);
    tokio::time::timeout(TIMEOUT, collected)
        .await
        .expect("stderr ends when the server exits")
        .unwrap()
}

#[tokio::test]
async fn logging_modes_print_frames_in_full_in_one_line_or_not_at_all() {
    let relayed = "RES::MSG::200::";
    let dev = log_of_a_session(&[], None).await;
    assert!(
        dev.lines()
            .any(|l| l.contains("REQ::MSG::200::") && l.contains("hello log")),
        "dev mode logs every frame in full:\n{dev}"
    );
    assert!(dev.contains(relayed), "{dev}");

    let tiny = log_of_a_session(&["--tiny"], None).await;
    assert!(
        !tiny.contains("hello log"),
        "tiny mode prints no bodies:\n{tiny}"
    );
    assert!(
        tiny.lines()
            .any(|l| l.contains("MSG") && l.contains("9 body bytes")),
        "tiny mode prints one line per frame:\n{tiny}"
    );

    let silent = log_of_a_session(&["--silent"], None).await;
    assert!(
        !silent.contains("MSG"),
        "silent mode prints no frames:\n{silent}"
    );

    let overridden = log_of_a_session(&["--silent"], Some("info")).await;
    assert!(
        overridden.contains(relayed) && overridden.contains("hello log"),
        "RUST_LOG overrides the silent filter:\n{overridden}"
    );
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .args(["--addr", &addr])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
