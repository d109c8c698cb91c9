//! TLS from the client's side (contract section 13), against the real
//! server speaking TLS in-process, with a CA and certificates made at run
//! time (the testkit's `TestPki`; no key is ever committed): the session
//! library registers, messages, resumes after a cut and fails over across
//! several addresses over TLS; the binary (script mode) with `--tls --ca`
//! talks to another TLS client; a certificate from another CA or for
//! another name, a plain TCP server, and a CA file that cannot be used each
//! fail in one line with the README's exit code.

mod common;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::script::Client;
use common::{Proxy, client_config, next, wait_for, within};
use tsockm_client::{Config, ConnectError, Event, Session, Tls};
use tsockm_proto::Action;
use tsockm_testkit::{TestPki, TestServer, test_config};

/// Writes the PKI's root CA certificate to `name` in its directory.
fn ca_file(pki: &TestPki, name: &str) -> PathBuf {
    let path = pki.dir().join(name);
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

/// A self-signed CA certificate of another name than the test PKI's,
/// written to `name` in `dir`: a CA the test server's chain knows nothing of.
fn stranger_ca(dir: &Path, name: &str) -> PathBuf {
    let made = rcgen::generate_simple_self_signed(vec!["stranger.example".to_owned()]).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, made.cert.pem()).unwrap();
    path
}

/// Trusts the PKI's root CA only, read from a file as `--ca` does.
fn trust(pki: &TestPki) -> Tls {
    Tls::ca_file(ca_file(pki, "ca.pem")).unwrap()
}

/// Session settings for `addr` over TLS trusting `tls`.
fn tls_config(addr: SocketAddr, username: &str, tls: &Tls) -> Config {
    Config {
        tls: Some(tls.clone()),
        ..client_config(addr, username)
    }
}

/// A TLS server that keeps a dropped client's session for a while.
async fn tls_server(pki: &TestPki) -> TestServer {
    let config = tsockm_server::Config {
        removal_delay: Duration::from_secs(20),
        ..test_config()
    };
    TestServer::start_tls(pki, config).await
}

fn text_of(event: &Event) -> Option<&str> {
    match event {
        Event::Message(m) => Some(m.text.as_str()),
        _ => None,
    }
}

/// Register, message both ways, then resume after the connection is cut
/// (through a TCP proxy: TLS end to end) with the frames kept meanwhile.
#[tokio::test]
async fn registers_messages_and_resumes_over_tls_with_a_private_ca() {
    let pki = TestPki::new();
    let tls = trust(&pki);
    let server = tls_server(&pki).await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(tls_config(proxy.addr, "alice", &tls)))
        .await
        .unwrap();
    let alice_id = alice.id();
    assert!(alice.state().online);
    let (bob, mut bob_events) = within(Session::connect(tls_config(server.addr, "bob", &tls)))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut alice_events).await,
        Event::Joined { .. }
    ));

    alice.broadcast("hello over tls").await.unwrap();
    let event = wait_for(&mut bob_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event), Some("hello over tls"));

    proxy.set_blocked(true);
    proxy.cut();
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    let id = alice_id.as_str().to_owned();
    server
        .wait_for_peers("alice away", |peers| {
            peers.iter().any(|p| p.id == id && !p.online)
        })
        .await;
    bob.broadcast("while you were out").await.unwrap();
    proxy.set_blocked(false);

    let mut kept = Vec::new();
    let kept_frames = loop {
        match next(&mut alice_events).await {
            Event::Reconnected { kept_frames, .. } => break kept_frames,
            event => kept.extend(text_of(&event).map(str::to_owned)),
        }
    };
    assert_eq!(kept, ["while you were out"]);
    assert_eq!(kept_frames, 1);
    assert_eq!(alice.id(), alice_id, "the same session, resumed");

    alice.broadcast("back").await.unwrap();
    let event = wait_for(&mut bob_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event), Some("back"));
    alice.end().await.unwrap();
    wait_for(&mut alice_events, |e| matches!(e, Event::Closed(_))).await;
    server.stop().await;
}

/// Several addresses, one TLS setting: a dead one is skipped, and when the
/// server in use is lost the next takes over; a host name (`localhost`) is
/// checked as a DNS name, an IP address as an IP address.
#[tokio::test]
async fn fails_over_across_several_addresses_over_tls() {
    let pki = TestPki::new();
    let tls = trust(&pki);
    let first = tls_server(&pki).await;
    let second = tls_server(&pki).await;
    let proxy = Proxy::start(first.addr).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let by_name = format!("localhost:{}", second.addr.port());
    let config = Config {
        addrs: vec![dead.to_string(), proxy.addr.to_string(), by_name.clone()],
        ..tls_config(proxy.addr, "alice", &tls)
    };
    let (alice, mut alice_events) = within(Session::connect(config)).await.unwrap();
    assert_eq!(alice.state().server, proxy.addr.to_string());

    proxy.set_blocked(true);
    proxy.cut();
    let event = wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reregistered { .. })
    })
    .await;
    let Event::Reregistered { server, .. } = event else {
        unreachable!()
    };
    assert_eq!(server, by_name);
    let (bob, _bob_events) = within(Session::connect(tls_config(second.addr, "bob", &tls)))
        .await
        .unwrap();
    bob.broadcast("hello over here").await.unwrap();
    let event = wait_for(&mut alice_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event), Some("hello over here"));
    first.stop().await;
    second.stop().await;
}

/// A certificate from another CA (of another name, or of the same name),
/// or for another name, is refused with the server's address and the reason
/// in one line.
#[tokio::test]
async fn a_certificate_that_does_not_verify_is_refused_in_one_line() {
    let pki = TestPki::new();
    let server = tls_server(&pki).await;
    let stranger = Tls::ca_file(stranger_ca(pki.dir(), "stranger.pem")).unwrap();
    let config = tls_config(server.addr, "alice", &stranger);
    let error = within(Session::connect(config)).await.unwrap_err();
    assert!(
        matches!(&error, ConnectError::Certificate { addr, .. } if *addr == server.addr.to_string()),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the certificate of the server at {} does not verify: it is not signed by a CA \
             this client trusts (unknown issuer)",
            server.addr
        )
    );

    // Another test PKI's root has the same name as this one's, not the
    // same key.
    let twin = TestPki::new();
    let config = tls_config(server.addr, "alice", &trust(&twin));
    let error = within(Session::connect(config)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the certificate of the server at {} does not verify: its issuer's signature does \
             not verify (a different CA with the same name?)",
            server.addr
        )
    );

    // The certificate is for localhost and 127.0.0.1; 127.0.0.2 reaches a
    // server with it, but is not a name it is for.
    let elsewhere = TestServer::start_tls(
        &pki,
        tsockm_server::Config {
            addr: SocketAddr::from(([127, 0, 0, 2], 0)),
            ..test_config()
        },
    )
    .await;
    let config = tls_config(elsewhere.addr, "alice", &trust(&pki));
    let error = within(Session::connect(config)).await.unwrap_err();
    let words = error.to_string();
    assert!(
        matches!(error, ConnectError::Certificate { .. }),
        "{error:?}"
    );
    assert_eq!(
        words,
        format!(
            "the certificate of the server at {} does not verify: it is not valid for \
             127.0.0.2, only for localhost, 127.0.0.1",
            elsewhere.addr
        )
    );
    server.stop().await;
    elsewhere.stop().await;
}

/// A plain TCP server: the client's handshake gets a frame in clear (or
/// nothing) and says the server does not speak TLS.
#[tokio::test]
async fn a_plain_tcp_server_is_refused_cleanly() {
    let pki = TestPki::new();
    let server = TestServer::start_with(tsockm_server::Config {
        handshake_timeout: Duration::from_millis(200),
        ..test_config()
    })
    .await;
    let config = tls_config(server.addr, "alice", &trust(&pki));
    let error = within(Session::connect(config)).await.unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the TLS handshake with the server at {} failed: the server does not speak TLS \
             (a plain TCP server?)",
            server.addr
        )
    );
    server.stop().await;
}

/// The binary with `--tls --ca <file>` sends a message that a TLS client
/// receives, and ends with 0.
#[tokio::test]
async fn the_binary_with_tls_and_a_ca_file_talks_to_another_tls_client() {
    let pki = TestPki::new();
    let server = tls_server(&pki).await;
    let mut bob = server.joined("bob", 0).await;
    let ca = ca_file(&pki, "ca.pem");
    let ca = ca.to_str().unwrap();
    let mut alice = Client::spawn_at(
        server.addr,
        &["--username", "alice", "--tls", "--ca", ca],
        &[],
    );
    alice.expect("* registered as alice (").await;
    alice.send("hello over tls").await;
    let frame = bob
        .expect_where("alice's message", |f| f.action == Action::Msg)
        .await;
    assert_eq!(frame.body(), "hello over tls");
    bob.send(tsockm_proto::Frame::broadcast("hi alice")).await;
    alice.expect("bob: hi alice").await;
    let (code, rest, stderr) = alice.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(rest.last().map(String::as_str), Some("* session ended"));
    server.stop().await;
}

/// `--tls` alone trusts the platform's roots (here `SSL_CERT_FILE`, which
/// the platform's store honours, names the test CA); `--ca` alone implies
/// `--tls`.
#[tokio::test]
async fn tls_alone_uses_the_platform_roots_and_ca_alone_implies_tls() {
    let pki = TestPki::new();
    let server = tls_server(&pki).await;
    let ca = ca_file(&pki, "bundle.pem");
    let platform = [("SSL_CERT_FILE", ca.as_os_str())];
    let mut alice = Client::spawn_at(server.addr, &["--username", "alice", "--tls"], &platform);
    let ca = ca.to_str().unwrap();
    let mut bob = Client::spawn_at(server.addr, &["--username", "bob", "--ca", ca], &[]);
    alice.expect("* registered as alice (").await;
    bob.expect("* registered as bob (").await;
    bob.send("over tls too").await;
    alice.expect("bob: over tls too").await;
    for client in [alice, bob] {
        let (code, _, stderr) = client.finish().await;
        assert_eq!(code, 0, "stderr: {stderr}");
    }
    server.stop().await;
}

/// A server whose certificate is not from the CA given: one line on
/// standard error naming the server and the reason, exit 1.
#[tokio::test]
async fn the_binary_refuses_a_certificate_from_another_ca_with_exit_1() {
    let pki = TestPki::new();
    let server = tls_server(&pki).await;
    let ca = stranger_ca(pki.dir(), "stranger.pem");
    let client = Client::spawn_at(
        server.addr,
        &["--username", "alice", "--ca", ca.to_str().unwrap()],
        &[],
    );
    let (code, rest, stderr) = client.finish().await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        stderr,
        format!(
            "tsockm-client: the certificate of the server at {} does not verify: it is not \
             signed by a CA this client trusts (unknown issuer)\n",
            server.addr
        )
    );
    server.stop().await;
}

/// `--tls` to a plain TCP server: one line, exit 1.
#[tokio::test]
async fn the_binary_with_tls_against_a_plain_server_exits_1() {
    let pki = TestPki::new();
    let server = TestServer::start_with(tsockm_server::Config {
        handshake_timeout: Duration::from_millis(200),
        ..test_config()
    })
    .await;
    let ca = ca_file(&pki, "ca.pem");
    let client = Client::spawn_at(
        server.addr,
        &["--username", "alice", "--tls", "--ca", ca.to_str().unwrap()],
        &[],
    );
    let (code, _, stderr) = client.finish().await;
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(
        stderr,
        format!(
            "tsockm-client: the TLS handshake with the server at {} failed: the server does \
             not speak TLS (a plain TCP server?)\n",
            server.addr
        )
    );
    server.stop().await;
}

/// A `--ca` file that cannot be used is a bad command line: one line that
/// names the file, exit 2, before anything else (no username prompt, no
/// connection), and a key given by mistake is never quoted.
#[tokio::test]
async fn a_bad_ca_file_exits_2_naming_the_file() {
    let pki = TestPki::new();
    let missing = pki.dir().join("missing.pem");
    let key_text = std::fs::read_to_string(&pki.key_path).unwrap();
    let cases = [
        (
            missing.clone(),
            format!(
                "tsockm-client: cannot read the CA file {}: No such file or directory (os error 2)\n",
                missing.display()
            ),
        ),
        (
            pki.key_path.clone(),
            format!(
                "tsockm-client: the CA file {} holds no certificate (a PEM CERTIFICATE section)\n",
                pki.key_path.display()
            ),
        ),
    ];
    // Nothing listens there; it must not matter.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
    for (path, expected) in cases {
        let path: &OsStr = path.as_os_str();
        let client = Client::spawn_at(nowhere, &["--ca", path.to_str().unwrap()], &[]);
        let (code, rest, stderr) = client.finish().await;
        assert_eq!(code, 2, "stderr: {stderr}");
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(stderr, expected);
        assert!(!stderr.contains(&key_text[40..80]));
    }
}
