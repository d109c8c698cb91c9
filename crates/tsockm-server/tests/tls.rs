//! The server over real TLS on loopback (contract section 13): sessions as
//! on plain TCP, TLS 1.2 and 1.3, large and many frames, resume and
//! COMM_END; a plaintext client gets nothing but a closed connection; the
//! handshake counts toward the handshake timeout; a connection over the
//! door limits is closed unanswered; shutdown ends each
//! session with COMM_END and close_notify; and the binary's flags. Every
//! certificate is made at run time (`TestPki`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;
use tsockm_testkit::{TEST_SERVER_NAMES, TLS12, TestClient, TestPki, TestServer, test_config};

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(5);

async fn start_tls(pki: &TestPki) -> TestServer {
    TestServer::start_tls(pki, test_config()).await
}

/// Reads raw bytes until the server closes; panics if that takes longer
/// than `within`. A reset counts as closed.
async fn bytes_until_closed(tcp: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after {within:?}; got {got:?}");
    got
}

#[tokio::test]
async fn register_broadcast_and_direct_over_tls() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut alice = server.joined("alice", 0).await;
    assert_eq!(alice.tls_version().as_deref(), Some("TLSv1_3"));
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| {
            f.action == Action::NtfyJoin && f.body() == "bob"
        })
        .await;

    alice.send(Frame::broadcast("hello over TLS")).await;
    let relayed = bob.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(relayed.sender_id(), alice.id.as_str());
    assert_eq!(relayed.dst(), "*");
    assert_eq!(relayed.body(), "hello over TLS");

    bob.send(Frame::direct(alice.id.clone(), "just you")).await;
    let direct = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(direct.sender_id(), bob.id.as_str());
    assert_eq!(direct.dst(), alice.id.as_str());
    assert_eq!(direct.body(), "just you");

    // The server's address is in what it says, as on plain TCP.
    bob.send(Frame::get_peer(alice.id.clone())).await;
    let found = bob
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    assert_eq!(found.src(), server.srv.as_str());
    assert_eq!(found.body(), "alice");
    server.stop().await;
}

#[tokio::test]
async fn tls_1_2_is_served_too() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut alice = server.joined("alice", 0).await;
    let mut old =
        TestClient::connect_tls_versions(server.addr, &pki.ca_pem, TEST_SERVER_NAMES[0], &[&TLS12])
            .await;
    assert_eq!(old.tls_version().as_deref(), Some("TLSv1_2"));
    old.join_as("old", 1).await;
    old.send(Frame::broadcast("from TLS 1.2")).await;
    let relayed = alice
        .expect_where("the TLS 1.2 message", |f| f.action == Action::Msg)
        .await;
    assert_eq!(relayed.body(), "from TLS 1.2");
    // The certificate is valid for the loopback address as well.
    let mut by_ip = TestClient::connect_tls(server.addr, &pki.ca_pem, "127.0.0.1").await;
    by_ip.join_as("by-ip", 2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_large_message_and_a_burst_arrive_whole_and_in_order() {
    const N_BURST: usize = 2_000;
    let pki = TestPki::new();
    let config = Config {
        max_frame_bytes: 1 << 20,
        max_rate: 0,
        ..test_config()
    };
    let server = TestServer::start_tls(&pki, config).await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;

    // Far over one TLS record (16 KiB) and rustls's 64 KiB send buffer,
    // and over the socket buffers while bob is not reading yet.
    let large: String = (0..600_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    alice.send(Frame::broadcast(large.clone())).await;
    for i in 0..N_BURST {
        alice.send(Frame::broadcast(format!("burst {i}"))).await;
    }
    let first = bob.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(first.body().len(), large.len());
    assert!(first.body() == large.as_str(), "the large message changed");
    for i in 0..N_BURST {
        let frame = bob.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
        assert_eq!(frame.body(), format!("burst {i}").as_str());
    }
    // And the other way, to the author's side.
    bob.send(Frame::broadcast(large.clone())).await;
    let back = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert!(back.body() == large.as_str(), "the large message changed");
    server.stop().await;
}

#[tokio::test]
async fn a_session_resumes_on_a_new_tls_connection() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let (bob_id, bob_token) = (bob.id.clone(), bob.token.clone());
    // Gone without COMM_END (no close_notify either): bob is away.
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    alice
        .send(Frame::direct(bob_id.clone(), "while you were away"))
        .await;

    let mut bob = server.client().await;
    bob.send(Frame::resume(bob_id.clone(), bob_token)).await;
    let welcome = bob.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    assert!(
        welcome.body().starts_with(&format!("{bob_id} ")),
        "{welcome}"
    );
    let kept = bob.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(kept.body(), "while you were away");
    // Nobody saw bob leave or come back.
    alice.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn comm_end_is_answered_then_the_tls_session_is_closed_cleanly() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    bob.send(Frame::comm_end()).await;
    let end = bob
        .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
        .await;
    assert_eq!(end.body(), "OK");
    // close_notify, then FIN: a clean end, not an unexpected EOF.
    bob.expect_clean_eof().await;
    let kill = alice
        .expect_frame(Kind::Res, Action::NtfyKill, Status::Ok)
        .await;
    assert_eq!(kill.sender_id(), bob.id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn a_plaintext_client_gets_nothing_but_a_closed_connection() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    for line in [
        &b"REQ::COMM::200::::::::mallory\n"[..],
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\n",
    ] {
        let mut plain = TcpStream::connect(server.addr).await.expect("connect");
        plain.write_all(line).await.expect("write");
        let got = bytes_until_closed(&mut plain, WAIT).await;
        assert!(got.is_empty(), "a plaintext client got {got:?}");
    }
    // Nobody registered, and TLS clients are still served.
    assert!(server.peers().await.is_empty());
    server.joined("alice", 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_connection_over_the_door_limits_is_closed_unanswered() {
    let pki = TestPki::new();
    let config = Config {
        max_unregistered_per_ip: 1,
        ..test_config()
    };
    let server = TestServer::start_tls(&pki, config).await;
    // Handshaking or handshaken, a connection not registered yet holds the
    // address's one place.
    let mut first = server.client().await;
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    let got = bytes_until_closed(&mut second, WAIT).await;
    assert!(got.is_empty(), "a 503 in clear on a TLS port: {got:?}");
    // Once the first registers, the place is free again.
    first.join_as("alice", 0).await;
    server.joined("bob", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unfinished_handshake_is_closed_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let pki = TestPki::new();
    let config = Config {
        handshake_timeout: timeout,
        ..test_config()
    };
    let server = TestServer::start_tls(&pki, config).await;
    // Connects and says nothing; starts a ClientHello and stalls.
    for start in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]] {
        let began = Instant::now();
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(start).await.expect("write");
        let got = bytes_until_closed(&mut tcp, timeout + WAIT).await;
        let took = began.elapsed();
        assert!(got.is_empty(), "got {got:?}");
        assert!(took >= timeout, "closed after {took:?}, before the timeout");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_tls_client_that_does_not_register_gets_408_at_the_same_deadline() {
    let pki = TestPki::new();
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let server = TestServer::start_tls(&pki, config).await;
    let mut idle = server.client().await;
    idle.expect_error(Action::Comm, Status::RequestTimeout)
        .await;
    idle.expect_clean_eof().await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_sends_comm_end_over_tls_and_closes_cleanly() {
    let pki = TestPki::new();
    let server = start_tls(&pki).await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    server.console_line(":exit").await;
    for client in [&mut alice, &mut bob] {
        let end = client
            .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
            .await;
        assert!(end.body().starts_with("server shutting down"), "{end}");
        client.expect_clean_eof().await;
    }
    server.stop().await;
}

/// Runs the binary with `args`, expecting it to exit at once; returns its
/// exit code and standard error.
fn run_to_exit(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .args(["--addr", "127.0.0.1:0", "--silent"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the server");
    let code = output.status.code().expect("exited, not killed");
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn one_tls_flag_alone_is_a_usage_error() {
    let (code, stderr) = run_to_exit(&["--tls-cert", "fullchain.pem"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--tls-key", "privkey.pem"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

#[test]
fn a_missing_or_bad_file_is_one_line_naming_it_and_exit_1() {
    let pki = TestPki::new();
    let missing = pki.dir().join("missing.pem");
    let cert = pki.cert_path.to_str().expect("a UTF-8 path");
    let key = pki.key_path.to_str().expect("a UTF-8 path");
    let missing = missing.to_str().expect("a UTF-8 path");
    for (cert, key, named) in [
        (missing, key, missing),
        (cert, missing, missing),
        (key, key, key),
    ] {
        let (code, stderr) = run_to_exit(&["--tls-cert", cert, "--tls-key", key]);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("tsockm-server: "), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("PRIVATE KEY-----"), "{stderr}");
    }
}

#[tokio::test]
async fn the_binary_serves_tls_with_the_flags() {
    let pki = TestPki::new();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", "memory")
        .args(["--addr", "127.0.0.1:0", "--silent", "--tls-cert"])
        .arg(&pki.cert_path)
        .arg("--tls-key")
        .arg(&pki.key_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("read stdout")
        .expect("stdout open");
    let addr: SocketAddr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("an address");
    let mut alice = TestClient::connect_tls(addr, &pki.ca_pem, "localhost").await;
    alice.join_as("alice", 0).await;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b":exit\n").await.expect("write :exit");
    let end = alice
        .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
        .await;
    assert!(end.body().starts_with("server shutting down"), "{end}");
    alice.expect_clean_eof().await;
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the server exits in time")
        .expect("wait for the server");
    assert!(status.success(), "{status}");
}
