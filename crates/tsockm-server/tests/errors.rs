//! Bad frames, refused requests and limits: each answered as the contract
//! says, and the connection stays usable unless the contract closes it.

mod common;

use std::time::Duration;

use common::{config, start, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

/// Sends `line` raw and expects `ERR::<action>::<status>` addressed to `dst`.
async fn refused(
    client: &mut common::TestClient,
    line: &[u8],
    action: Action,
    status: Status,
) -> Frame {
    client.send_raw(line).await;
    let error = client.expect_next().await;
    assert!(
        error.kind == Kind::Err && error.action == action && error.status == status,
        "{} answered with {error}, expected ERR::{action}::{status}",
        String::from_utf8_lossy(line).trim_end()
    );
    assert_eq!(error.sender_id(), "server");
    assert!(!error.body().is_empty(), "an error has a reason");
    error
}

#[tokio::test]
async fn malformed_frames_get_400_with_action_none() {
    let server = start().await;
    let mut client = server.joined("alice", 0).await;
    let cases: &[&[u8]] = &[
        b"hello\n",
        b"REQ::MSG::200::::::\n",           // six fields
        b"REQUEST::MSG::200::::::::x\n",    // unknown TYPE
        b"REQ::MSG::201::::::::x\n",        // unknown STATUS
        b"REQ::MSG::OK::::::::x\n",         // STATUS by name
        b"REQ::FOO::999::::::::x\n",        // unknown status beats unknown action
        b"REQ::MSG::200::::::::\xff\xfe\n", // invalid UTF-8
    ];
    for line in cases {
        let error = refused(&mut client, line, Action::None, Status::BadRequest).await;
        assert_eq!(error.dst(), client.id.as_str());
        assert_eq!(error.src(), server.srv.as_str());
    }
    // Still usable.
    client.send(Frame::get_peer(client.id.clone())).await;
    client
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_actions_get_405_none_and_untaken_frames_405_their_action() {
    let server = start().await;
    let mut client = server.joined("alice", 0).await;
    refused(
        &mut client,
        b"REQ::PING::200::::::::\n",
        Action::None,
        Status::MethodNotAllowed,
    )
    .await;
    refused(
        &mut client,
        b"REQ::msg::200::::::::\n",
        Action::None,
        Status::MethodNotAllowed,
    )
    .await;
    for (line, action) in [
        (&b"RES::MSG::200::::::::x\n"[..], Action::Msg),
        (b"ERR::COMM::400::::::::x\n", Action::Comm),
        (b"REQ::NTFY_KILL::200::::::::\n", Action::NtfyKill),
        (b"REQ::NTFY_JOIN::200::::::::\n", Action::NtfyJoin),
        (b"REQ::NONE::200::::::::\n", Action::None),
        (b"RES::GET_PEER::200::::::::\n", Action::GetPeer),
    ] {
        refused(&mut client, line, action, Status::MethodNotAllowed).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn requests_before_registration_get_400_and_the_connection_stays_open() {
    let server = start().await;
    let mut client = server.client().await;
    let addr = client.local_addr().to_string();
    for (line, action) in [
        (&b"REQ::MSG::200::::::*::hi\n"[..], Action::Msg),
        (b"REQ::GET_PEER::200::::::::x\n", Action::GetPeer),
        (b"REQ::COMM_END::200::::::::\n", Action::CommEnd),
    ] {
        let error = refused(&mut client, line, action, Status::BadRequest).await;
        assert_eq!(
            error.dst(),
            addr.as_str(),
            "errors before registration go to the client address"
        );
    }
    // A 405 comes before "not registered".
    refused(
        &mut client,
        b"REQ::NTFY_KILL::200::::::::\n",
        Action::NtfyKill,
        Status::MethodNotAllowed,
    )
    .await;
    client.register("alice").await;
    refused(
        &mut client,
        b"REQ::COMM::200::::::::again\n",
        Action::Comm,
        Status::BadRequest,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn blank_lines_are_ignored_and_crlf_is_accepted() {
    let server = start().await;
    let mut client = server.client().await;
    client.send_raw(b"\n\r\n\n").await;
    client.send_raw(b"REQ::COMM::200::::::::alice\r\n").await;
    let welcome = client.expect_next().await;
    assert_eq!((welcome.kind, welcome.action), (Kind::Res, Action::Comm));
    client.send_raw(b"\r\n").await;
    client.expect_silence(Duration::from_millis(150)).await;
    server.stop().await;
}

#[tokio::test]
async fn over_long_frames_get_413_and_the_next_frame_works() {
    let server = start_with(Config {
        max_frame_bytes: 100,
        ..config()
    })
    .await;
    let mut client = server.joined("alice", 0).await;
    let mut long = b"REQ::MSG::200::::::*::".to_vec();
    long.resize(5000, b'x');
    long.push(b'\n');
    let error = refused(&mut client, &long, Action::None, Status::PayloadTooLarge).await;
    assert_eq!(error.dst(), client.id.as_str());
    // Exactly one 413 per line, then the connection is usable.
    client.send(Frame::get_peer(client.id.clone())).await;
    client
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;

    // A line of exactly the limit is fine, with CRLF too.
    let mut exact = b"REQ::GET_PEER::200::::::::".to_vec();
    exact.resize(100, b'y');
    exact.extend(b"\r\n");
    client.send_raw(&exact).await;
    client.expect_error(Action::GetPeer, Status::NotFound).await;
    let mut one_more = exact.clone();
    one_more.insert(30, b'y');
    refused(
        &mut client,
        &one_more,
        Action::None,
        Status::PayloadTooLarge,
    )
    .await;
    client.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_answers_503_and_closes_after_checking_the_username() {
    let server = start_with(Config {
        max_peers: 2,
        ..config()
    })
    .await;
    let _alice = server.joined("alice", 0).await;
    let _bob = server.joined("bob", 1).await;
    let mut carol = server.client().await;
    refused(
        &mut carol,
        b"REQ::COMM::200::::::::\n",
        Action::Comm,
        Status::BadRequest,
    )
    .await;
    let error = refused(
        &mut carol,
        b"REQ::COMM::200::::::::carol\n",
        Action::Comm,
        Status::ServiceUnavailable,
    )
    .await;
    assert_eq!(error.dst(), carol.local_addr().to_string().as_str());
    carol.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_and_drops_the_excess() {
    let server = start_with(Config {
        max_rate: 5,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    // Registration took one token; a burst of 20 more is mostly refused.
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(format!("REQ::MSG::200::::::*::{i}\n").into_bytes());
    }
    bob.send_raw(&burst).await;
    let mut n_refused = 0;
    let mut delivered = Vec::new();
    // Every frame is either relayed to Alice or refused to Bob.
    for _ in 0..20 {
        tokio::select! {
            f = bob.expect_next() => {
                assert_eq!((f.kind, f.action, f.status), (Kind::Err, Action::Msg, Status::TooManyRequests), "{f}");
                n_refused += 1;
            }
            f = alice.expect_next() => delivered.push(f.body().to_string()),
        }
    }
    assert!(n_refused >= 10, "only {n_refused} refused");
    assert!(delivered.len() >= 4, "{delivered:?}");
    // v2: an unsolicited health-check answer takes a token like any frame,
    // so a burst of them is mostly refused.
    let answers = format!("RES::COMM::200::{}::::::OK\n", bob.id).repeat(10);
    bob.send_raw(answers.as_bytes()).await;
    let first = bob
        .expect_error(Action::Comm, Status::TooManyRequests)
        .await;
    assert_eq!(first.dst(), bob.id.as_str());
    // Only answers to health checks the server sent are exempt: with the
    // bucket empty, the answer to a `:ping` is still taken.
    let ping = format!(":ping {}", bob.id);
    let (report, ()) = tokio::join!(server.console_line(&ping), async {
        bob.expect_where("the health check", |f| {
            f.kind == Kind::Req && f.action == Action::Comm
        })
        .await;
        bob.send(Frame::health_answer(bob.id.clone())).await;
    });
    assert!(report.contains("answered"), "{report}");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_registers_gets_408_and_is_closed() {
    let server = start_with(Config {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut lazy = server.client().await;
    let started = tokio::time::Instant::now();
    // Failed attempts do not extend the deadline.
    lazy.send(Frame::register("")).await;
    lazy.expect_error(Action::Comm, Status::BadRequest).await;
    let error = lazy
        .expect_error(Action::Comm, Status::RequestTimeout)
        .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(error.dst(), lazy.local_addr().to_string().as_str());
    lazy.expect_closed().await;
    // One that registers in time is not affected.
    let mut quick = server.joined("quick", 0).await;
    quick.expect_silence(Duration::from_millis(500)).await;
    server.stop().await;
}
