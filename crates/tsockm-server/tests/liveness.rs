//! Section 6 over real TCP with short timers: health checks, delayed
//! removal, resume and takeover, slow peers.

mod common;

use std::time::Duration;

use common::{TestClient, config, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

fn is_check(frame: &Frame) -> bool {
    frame.kind == Kind::Req && frame.action == Action::Comm
}

#[tokio::test]
async fn health_checks_are_sent_and_silent_peers_time_out() {
    let server = start_with(Config {
        health_interval: Duration::from_millis(100),
        health_timeout: Duration::from_millis(400),
        removal_delay: Duration::from_secs(30),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;

    // Alice answers every check for a while and stays online.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1000);
    let mut n_checks = 0;
    while tokio::time::Instant::now() < deadline {
        let check = alice.expect_where("a health check", is_check).await;
        assert_eq!(
            check.to_string(),
            format!(
                "REQ::COMM::200::server::{}::{}::check?",
                server.srv, alice.id
            )
        );
        n_checks += 1;
        alice.send(Frame::health_answer(alice.id.clone())).await;
    }
    assert!(n_checks >= 5, "{n_checks} checks in a second");

    // Bob never answered: 408, closed, and away (not removed).
    let error = bob.expect_where("the 408", |f| f.kind == Kind::Err).await;
    assert_eq!(
        error.to_string(),
        format!(
            "ERR::COMM::408::server::{}::{}::health check timed out",
            server.srv, bob.id
        )
    );
    bob.expect_closed_skipping(is_check).await;
    let bob_id = bob.id.clone();
    server
        .wait_for_peers("bob away, alice online", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
                && peers.iter().any(|p| p.username == "alice" && p.online)
        })
        .await;
    server.stop().await;
}

/// A sign of life is a frame, not a byte: trickling an unfinished line
/// does not keep a peer alive, while a blank line does.
#[tokio::test]
async fn a_trickled_partial_frame_is_no_sign_of_life() {
    let server = start_with(Config {
        health_interval: Duration::from_millis(100),
        health_timeout: Duration::from_millis(400),
        removal_delay: Duration::from_secs(30),
        ..config()
    })
    .await;
    let mut blank = server.joined("blank", 0).await;
    let mut trickle = server.joined("trickle", 1).await;
    blank
        .expect_where("trickle joined", |f| f.body() == "trickle")
        .await;
    // Bounded: 24 ticks of 50 ms, three health timeouts.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut timed_out = None;
    for _ in 0..24 {
        tick.tick().await;
        blank.send_raw(b"\n").await;
        if timed_out.is_some() {
            continue; // Closed by now: writing could meet a reset.
        }
        trickle.send_raw(b"R").await;
        // What the server sent since (health checks, then the 408).
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_millis(10), trickle.next_item()).await
        {
            if frame.kind == Kind::Err {
                timed_out = Some(frame);
                break;
            }
        }
    }
    let error = timed_out.expect("the trickling peer timed out");
    assert_eq!(
        (error.action, error.status, error.body()),
        (
            Action::Comm,
            Status::RequestTimeout,
            "health check timed out"
        )
    );
    let (blank_id, trickle_id) = (blank.id.clone(), trickle.id.clone());
    server
        .wait_for_peers("trickle away, blank online", |peers| {
            peers.iter().any(|p| p.id == trickle_id && !p.online)
                && peers.iter().any(|p| p.id == blank_id && p.online)
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn a_lost_connection_is_away_until_the_delay_then_removed_once() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(600),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let bob_id = bob.id.clone();
    let dropped_at = tokio::time::Instant::now();
    drop(bob); // EOF without COMM_END.
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    // An away peer is still a peer.
    alice.send(Frame::get_peer(bob_id.clone())).await;
    alice
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    let kill = alice
        .expect_frame(Kind::Res, Action::NtfyKill, Status::Ok)
        .await;
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(550),
        "removed too early"
    );
    assert_eq!(
        kill.to_string(),
        format!("RES::NTFY_KILL::200::{bob_id}::{}::*::bob", server.srv)
    );
    alice.expect_silence(Duration::from_millis(300)).await;
    server
        .wait_for_peers("bob removed", |peers| peers.len() == 1)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn resume_delivers_kept_frames_in_order_with_a_new_token() {
    let server = start_with(Config {
        removal_delay: Duration::from_secs(10),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let (bob_id, bob_token) = (bob.id.clone(), bob.token.clone());
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;

    alice.send(Frame::broadcast("one")).await;
    alice.send(Frame::direct(bob_id.clone(), "two")).await;
    // A round trip: both are handled before Carol joins on another connection.
    alice.send(Frame::get_peer(bob_id.clone())).await;
    alice
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    let carol = server.joined("carol", 2).await;
    alice
        .expect_where("carol joined", |f| f.body() == "carol")
        .await;
    let carol_id = carol.id.clone();
    drop(carol);
    alice.send(Frame::broadcast("three")).await;

    let mut bob = server.client().await;
    // Wrong token and unknown id: 404, the connection stays open.
    bob.send(Frame::resume(bob_id.clone(), "not-the-token-at-all-xx"))
        .await;
    bob.expect_error(Action::Comm, Status::NotFound).await;
    bob.send(Frame::resume("unknown1234", bob_token.clone()))
        .await;
    bob.expect_error(Action::Comm, Status::NotFound).await;

    bob.send(Frame::resume(bob_id.clone(), bob_token.clone()))
        .await;
    let welcome = bob.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let (id, new_token) = tsockm_testkit::split_welcome(&welcome);
    assert_eq!(id, bob_id);
    assert_ne!(new_token, bob_token);
    assert_eq!(welcome.dst(), bob.local_addr().to_string().as_str());
    let kept: Vec<String> = [
        bob.expect_next().await,
        bob.expect_next().await,
        bob.expect_next().await,
        bob.expect_next().await,
    ]
    .iter()
    .map(|f| format!("{}:{}:{}", f.action, f.dst(), f.body()))
    .collect();
    assert_eq!(
        kept,
        [
            "MSG:*:one".to_owned(),
            format!("MSG:{bob_id}:two"),
            "NTFY_JOIN:*:carol".to_owned(),
            "MSG:*:three".to_owned(),
        ]
    );
    let _ = carol_id;
    // Alice saw no leave or join of Bob.
    alice.expect_silence(Duration::from_millis(100)).await;
    // The resumed session works, and the old token is dead.
    bob.send(Frame::broadcast("back")).await;
    alice
        .expect_where("bob's message", |f| f.body() == "back")
        .await;
    let mut thief = server.client().await;
    thief.send(Frame::resume(bob_id.clone(), bob_token)).await;
    thief.expect_error(Action::Comm, Status::NotFound).await;
    server.stop().await;
}

#[tokio::test]
async fn resume_after_removal_is_404_and_registering_anew_works() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    let (bob_id, bob_token) = (bob.id.clone(), bob.token.clone());
    drop(bob);
    alice
        .expect_where("bob removed", |f| f.action == Action::NtfyKill)
        .await;
    let mut bob = server.client().await;
    bob.send(Frame::resume(bob_id.clone(), bob_token)).await;
    bob.expect_error(Action::Comm, Status::NotFound).await;
    let (new_id, _) = bob.register("bob").await;
    assert_ne!(new_id, bob_id, "ids are never reused");
    server.stop().await;
}

#[tokio::test]
async fn kept_frames_are_bounded_oldest_dropped_first() {
    let server = start_with(Config {
        kept_frames: 3,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let (bob_id, bob_token) = (bob.id.clone(), bob.token.clone());
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    for i in 0..10 {
        alice.send(Frame::broadcast(format!("m{i}"))).await;
    }
    // Wait until the registry has handled all ten (a round trip orders it).
    alice.send(Frame::get_peer(alice.id.clone())).await;
    alice
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    let mut bob = server.client().await;
    bob.send(Frame::resume(bob_id, bob_token)).await;
    bob.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    for expected in ["m7", "m8", "m9"] {
        assert_eq!(bob.expect_next().await.body(), expected);
    }
    bob.expect_silence(Duration::from_millis(100)).await;
    let info = server.console_line(":info").await;
    assert!(info.contains("dropped: 7 kept frame(s)"), "{info}");
    server.stop().await;
}

/// Takeover of a connection whose socket is full: every frame the old
/// socket did not take arrives on the new connection, in order, none lost.
/// The old one gets what its socket held (at most the frame it was part-way
/// through comes on both), then `resumed elsewhere`.
#[tokio::test]
async fn takeover_hands_over_every_frame_the_old_socket_did_not_take() {
    const N: usize = 3000;
    let server = start_with(Config {
        max_rate: 0,
        send_queue_frames: 8192,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut old = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    // Bob stops reading; alice sends him far more than sockets buffer.
    let padding = "p".repeat(1500);
    let mut script = Vec::new();
    for i in 0..N {
        let frame = Frame::direct(old.id.clone(), format!("m{i} {padding}"));
        script.extend_from_slice(&frame.to_bytes().unwrap());
    }
    alice.send_raw(&script).await;
    // A frame alice sends after all of them, echoed to herself, tells when
    // the server has relayed everything.
    alice.send(Frame::direct(alice.id.clone(), "relayed")).await;
    alice
        .expect_where("the marker", |f| f.body() == "relayed")
        .await;

    let mut new = server.client().await;
    new.send(Frame::resume(old.id.clone(), old.token.clone()))
        .await;
    // The old connection must be read now: it has 2 s to finish writing.
    let old_frames = tokio::spawn(async move {
        let mut seqs = Vec::new();
        let mut last = None;
        while let Some(item) = old.next_item().await {
            let frame = item.expect("well-formed frames on the old connection");
            if frame.action == Action::Msg {
                seqs.push(seq_of(&frame));
            } else {
                last = Some(frame);
            }
        }
        (seqs, last)
    });
    new.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let mut new_seqs = Vec::new();
    while new_seqs.last() != Some(&(N - 1)) {
        let frame = new
            .expect_where("a handed-over message", |f| f.action == Action::Msg)
            .await;
        new_seqs.push(seq_of(&frame));
    }
    let (old_seqs, last) = old_frames.await.unwrap();
    let end = last.expect("a closing frame on the old connection");
    assert_eq!(end.body(), "resumed elsewhere", "{end}");
    assert_eq!(
        old_seqs,
        (0..old_seqs.len()).collect::<Vec<_>>(),
        "old in order"
    );
    let first_new = new_seqs[0];
    assert_eq!(new_seqs, (first_new..N).collect::<Vec<_>>(), "new in order");
    assert!(
        first_new <= old_seqs.len() && old_seqs.len() <= first_new + 1,
        "old got m0..m{}, new from m{first_new}: a gap or more than one frame twice",
        old_seqs.len()
    );
    assert!(
        first_new > 0 && first_new < N - 1,
        "the test needs frames on both sides"
    );
    server.stop().await;
}

fn seq_of(frame: &Frame) -> usize {
    let word = frame.body().split(' ').next().unwrap_or_default();
    word.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered message: {frame}"))
}

#[tokio::test]
async fn resume_of_an_online_peer_takes_over() {
    let server = start_with(config()).await;
    let mut alice = server.joined("alice", 0).await;
    let mut old = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let mut new = server.client().await;
    new.send(Frame::resume(old.id.clone(), old.token.clone()))
        .await;
    let welcome = new.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    assert!(welcome.body().starts_with(old.id.as_str()));
    let end = old.expect_next().await;
    assert_eq!(
        end.to_string(),
        format!(
            "RES::COMM_END::200::server::{}::{}::resumed elsewhere",
            server.srv, old.id
        )
    );
    old.expect_closed().await;
    alice.send(Frame::broadcast("hi bob")).await;
    new.expect_where("the message", |f| f.body() == "hi bob")
        .await;
    alice.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn resume_works_when_the_server_is_full() {
    let server = start_with(Config {
        max_peers: 2,
        ..config()
    })
    .await;
    let _alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    let (id, token) = (bob.id.clone(), bob.token.clone());
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == id && !p.online)
        })
        .await;
    let mut bob = server.client().await;
    bob.send(Frame::resume(id, token)).await;
    bob.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_cut_off_and_slows_nobody() {
    let server = start_with(Config {
        send_queue_frames: 64,
        max_rate: 0,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut reader = server.joined("reader", 1).await;
    // The sleeper registers and never reads again.
    let sleeper = server.joined("sleeper", 2).await;
    alice
        .expect_where("reader joined", |f| f.body() == "reader")
        .await;
    alice
        .expect_where("sleeper joined", |f| f.body() == "sleeper")
        .await;
    reader
        .expect_where("sleeper joined", |f| f.body() == "sleeper")
        .await;
    let sleeper_id = sleeper.id.clone();
    // 48 MB in all: far more than the sleeper's socket buffers and queue.
    let body = "x".repeat(16_000);
    const WINDOW: usize = 50;
    const N: usize = 3000;
    for start in (0..N).step_by(WINDOW) {
        for i in start..start + WINDOW {
            alice.send(Frame::broadcast(format!("{i} {body}"))).await;
        }
        // The reader keeps up within one window and must get everything.
        for i in start..start + WINDOW {
            let msg = reader
                .expect_where("the next message", |f| f.action == Action::Msg)
                .await;
            assert!(
                msg.body().starts_with(&format!("{i} ")),
                "message {i} out of order or lost"
            );
        }
    }
    server
        .wait_for_peers("the sleeper away", |peers| {
            peers.iter().any(|p| p.id == sleeper_id && !p.online)
                && peers.iter().filter(|p| p.online).count() == 2
        })
        .await;
    let info = server.console_line(":info").await;
    assert!(info.contains("1 peer(s) cut off"), "{info}");
    drop(sleeper);
    server.stop().await;
}

#[tokio::test]
async fn half_sent_frames_do_not_stop_others_from_registering() {
    let server = start_with(Config {
        handshake_timeout: Duration::from_secs(2),
        ..config()
    })
    .await;
    // One address holds as many unregistered connections as it may (16 by
    // default); past that it is turned away at once with 503.
    let per_ip = tsockm_server::config::DEFAULT_MAX_UNREGISTERED_PER_IP;
    let mut loris = Vec::new();
    for _ in 0..per_ip {
        let mut client = TestClient::connect(server.addr).await;
        client.send_raw(b"REQ::COMM::200::::::::half-a-na").await;
        loris.push(client);
    }
    for _ in 0..20 {
        let mut turned = TestClient::connect(server.addr).await;
        turned
            .expect_error(Action::None, Status::ServiceUnavailable)
            .await;
        turned.expect_closed().await;
    }
    // Someone at another address signs up at once.
    let mut alice = TestClient::connect_from(server.addr, [127, 0, 0, 2].into()).await;
    alice.register("alice").await;
    alice.send(Frame::get_peer(alice.id.clone())).await;
    alice
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    for client in &mut loris {
        client
            .expect_error(Action::Comm, Status::RequestTimeout)
            .await;
        client.expect_closed().await;
    }
    server.stop().await;
}
