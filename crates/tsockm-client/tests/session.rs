//! The session library against the real server: every event, the roster,
//! health checks, the end of a session from either side, and reconnection
//! (resume with kept frames, or registration anew) after the TCP connection
//! is cut by a proxy without `COMM_END`.

mod common;

use std::time::Duration;

use common::{Proxy, client_config, next, server_config, start, start_with, wait_for, within};
use tsockm_client::{Closed, Config, ConnectError, Event, PeerId, Session};
use tsockm_proto::{Action, Status, Text};
use tsockm_server::{ConsoleReply, ConsoleRequest, Target};

fn text(s: &str) -> Text {
    Text::from(s)
}

#[tokio::test]
async fn registration_brings_the_roster_and_joins_are_announced() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let alice_id = alice.id();
    assert!(alice_id.as_str().len() >= 10, "{alice_id}");
    let state = alice.state();
    assert_eq!(state.username, "alice");
    assert!(state.online);
    assert_eq!(state.roster.len(), 1, "only alice herself");

    let (bob, _bob_events) = server.connect("bob").await;
    // The roster is complete as soon as connect returns.
    let roster = bob.state().roster;
    assert_eq!(roster.len(), 2);
    assert_eq!(
        roster.username(alice_id.as_str()).map(|t| t.as_str()),
        Some("alice")
    );
    assert_eq!(
        roster.username(bob.id().as_str()).map(|t| t.as_str()),
        Some("bob")
    );

    assert_eq!(
        next(&mut alice_events).await,
        Event::Joined {
            id: bob.id(),
            username: text("bob")
        }
    );
    assert!(alice.state().roster.contains(bob.id().as_str()));
    server.stop().await;
}

#[tokio::test]
async fn broadcast_and_direct_messages_carry_the_author_name() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    let tricky = "two\nlines, a \\ backslash and :: separators";
    alice.broadcast(tricky).await.unwrap();
    assert_eq!(
        next(&mut bob_events).await,
        Event::Message {
            from: alice.id(),
            username: Some(text("alice")),
            text: text(tricky),
        }
    );

    bob.direct(&alice.id(), "psst").await.unwrap();
    assert_eq!(
        next(&mut alice_events).await,
        Event::Direct {
            from: bob.id(),
            username: Some(text("bob")),
            text: text("psst"),
        }
    );

    // A broadcast does not come back to its author; a DM to oneself does.
    alice.broadcast("not for me").await.unwrap();
    alice.direct(&alice.id(), "note to self").await.unwrap();
    assert_eq!(
        next(&mut alice_events).await,
        Event::Direct {
            from: alice.id(),
            username: Some(text("alice")),
            text: text("note to self"),
        }
    );
    server.stop().await;
}

/// v2 (section 10): every frame the server sends fits its limit, so a
/// message is taken only if its relayed frame (and its history item, which
/// adds the time and the author's name) fits; the longest such message is
/// received whole, a longer one is refused with 413.
#[tokio::test]
async fn a_message_at_the_servers_limit_is_received() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (_bob, mut bob_events) = server.connect("bob").await;
    let body = "x".repeat(16_200);
    alice.broadcast(body.as_str()).await.unwrap();
    let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message { .. })).await;
    let Event::Message { text, .. } = event else {
        unreachable!()
    };
    assert_eq!(text.len(), body.len());
    alice.broadcast("x".repeat(16_340)).await.unwrap();
    let refused = wait_for(&mut alice_events, |e| matches!(e, Event::Error { .. })).await;
    let Event::Error { action, status, .. } = refused else {
        unreachable!()
    };
    assert_eq!((action, status), (Action::Msg, Status::PayloadTooLarge));
    server.stop().await;
}

#[tokio::test]
async fn get_peer_answers_and_errors_carry_status_and_reason() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, _bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    alice.get_peer(&bob.id()).await.unwrap();
    assert_eq!(
        next(&mut alice_events).await,
        Event::PeerFound {
            id: bob.id(),
            username: text("bob")
        }
    );

    alice.get_peer(&PeerId::new("nobody1234")).await.unwrap();
    match next(&mut alice_events).await {
        Event::Error {
            action: Action::GetPeer,
            status: Status::NotFound,
            reason,
        } => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }

    alice
        .direct(&PeerId::new("nobody1234"), "hello?")
        .await
        .unwrap();
    match next(&mut alice_events).await {
        Event::Error {
            action: Action::Msg,
            status: Status::NotFound,
            reason,
        } => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }

    // An id that would break the frame is refused before it is sent.
    assert!(alice.direct(&PeerId::new("a::b"), "x").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn ending_a_session_is_announced_to_the_others() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined
    let bob_id = bob.id();

    bob.broadcast("bye all").await.unwrap();
    bob.end().await.unwrap();
    assert_eq!(next(&mut bob_events).await, Event::Closed(Closed::Ended));
    assert!(
        within(bob_events.recv()).await.is_none(),
        "nothing after Closed"
    );
    assert!(bob.broadcast("too late").await.is_err());

    // Everything sent before COMM_END arrived, then the leave.
    assert!(
        matches!(next(&mut alice_events).await, Event::Message { text, .. } if text == "bye all")
    );
    assert_eq!(
        next(&mut alice_events).await,
        Event::Left {
            id: bob_id.clone(),
            username: text("bob")
        }
    );
    assert!(!alice.state().roster.contains(bob_id.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn kicked_by_the_server_is_final() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    server.kill(&bob.id()).await;
    match next(&mut bob_events).await {
        Event::Closed(Closed::Kicked { reason }) => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    // No reconnection: the stream ends.
    assert!(within(bob_events.recv()).await.is_none());
    assert!(matches!(next(&mut alice_events).await, Event::Left { id, .. } if id == bob.id()));
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn server_shutdown_ends_every_session() {
    let server = start().await;
    let (_alice, mut alice_events) = server.connect("alice").await;
    server.stop().await;
    match next(&mut alice_events).await {
        Event::Closed(Closed::ShutDown { reason }) => {
            assert!(reason.starts_with("server shutting down"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(within(alice_events.recv()).await.is_none());
}

#[tokio::test]
async fn health_checks_are_answered_by_the_library() {
    let server = start_with(tsockm_server::Config {
        health_interval: Duration::from_millis(100),
        health_timeout: Duration::from_millis(400),
        ..server_config()
    })
    .await;
    let (alice, mut alice_events) = server.connect("alice").await;
    // Checks arrive every 100 ms; a peer that did not answer them would be
    // cut off after 400 ms. Several explicit pings, each answered.
    for _ in 0..3 {
        let reply = server
            .console
            .request(ConsoleRequest::Ping(Target::Peer(alice.id().to_string())))
            .await
            .unwrap();
        match reply {
            ConsoleReply::Pinged(report) => {
                assert_eq!(report.answered.len(), 1, "{report:?}");
                assert_eq!(report.answered[0].0.id, alice.id().as_str());
            }
            other => panic!("{other:?}"),
        }
    }
    // Still the same connection: nothing but our own message comes.
    alice.direct(&alice.id(), "still here").await.unwrap();
    assert!(
        matches!(next(&mut alice_events).await, Event::Direct { text, .. } if text == "still here")
    );
    server.stop().await;
}

#[tokio::test]
async fn resumes_after_a_dropped_connection_with_the_kept_frames() {
    let server = start_with(tsockm_server::Config {
        removal_delay: Duration::from_secs(20),
        ..server_config()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    let alice_id = alice.id();
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    proxy.set_blocked(true);
    proxy.cut();
    match next(&mut alice_events).await {
        Event::Reconnecting {
            attempt: 1, reason, ..
        } => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    server.wait_peer_online(&alice_id, false).await;
    assert!(!alice.state().online);

    // While alice is away: a broadcast, a DM and a newcomer, all kept for her.
    bob.broadcast("while you were out").await.unwrap();
    bob.direct(&alice_id, "call me").await.unwrap();
    let (carol, _carol_events) = server.connect("carol").await;
    // Alice's own message, typed while disconnected, is sent after resuming.
    alice.broadcast("sorry, I was away").await.unwrap();
    // Attempts go on with backoff while the way to the server is blocked.
    wait_for(
        &mut alice_events,
        |e| matches!(e, Event::Reconnecting { attempt, .. } if *attempt >= 3),
    )
    .await;
    proxy.set_blocked(false);

    let mut kept = Vec::new();
    let kept_frames = loop {
        match next(&mut alice_events).await {
            Event::Reconnecting { .. } => {}
            Event::Reconnected { kept_frames } => break kept_frames,
            other => kept.push(other),
        }
    };
    assert_eq!(kept_frames, 3);
    assert_eq!(
        kept,
        [
            Event::Message {
                from: bob.id(),
                username: Some(text("bob")),
                text: text("while you were out"),
            },
            Event::Direct {
                from: bob.id(),
                username: Some(text("bob")),
                text: text("call me"),
            },
            Event::Joined {
                id: carol.id(),
                username: text("carol"),
            },
        ]
    );
    assert_eq!(alice.id(), alice_id, "same identity after resume");
    assert!(alice.state().online);
    assert!(alice.state().roster.contains(carol.id().as_str()));

    // Bob saw no leave and no join of alice; he gets her queued message.
    match next(&mut bob_events).await {
        Event::Joined { id, .. } => assert_eq!(id, carol.id()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next(&mut bob_events).await,
        Event::Message {
            from: alice_id.clone(),
            username: Some(text("alice")),
            text: text("sorry, I was away"),
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn registers_anew_when_the_server_forgot_the_session() {
    let server = start_with(tsockm_server::Config {
        removal_delay: Duration::from_millis(200),
        ..server_config()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    let old_id = alice.id();
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    proxy.set_blocked(true);
    proxy.cut();
    // The removal delay passes: bob sees alice leave for good.
    assert!(matches!(next(&mut bob_events).await, Event::Left { id, .. } if id == old_id));
    proxy.set_blocked(false);

    let event = wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reregistered { .. })
    })
    .await;
    let Event::Reregistered {
        old_id: reported_old,
        new_id,
        reason,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(reported_old, old_id);
    assert_ne!(new_id, old_id);
    assert!(!reason.is_empty());
    assert_eq!(alice.id(), new_id);
    assert_eq!(
        next(&mut bob_events).await,
        Event::Joined {
            id: new_id.clone(),
            username: text("alice")
        }
    );
    // The roster came again with the new registration.
    let roster = alice.state().roster;
    assert!(roster.contains(bob.id().as_str()) && roster.contains(new_id.as_str()));
    assert!(!roster.contains(old_id.as_str()));

    bob.direct(&new_id, "welcome back").await.unwrap();
    assert!(
        matches!(next(&mut alice_events).await, Event::Direct { text, .. } if text == "welcome back")
    );
    server.stop().await;
}

#[tokio::test]
async fn gives_up_when_the_server_stays_unreachable() {
    let server = start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = Config {
        reconnect_for: Duration::from_millis(800),
        ..client_config(proxy.addr, "alice")
    };
    let (_alice, mut alice_events) = within(Session::connect(config)).await.unwrap();
    proxy.set_blocked(true);
    proxy.cut();
    let event = wait_for(&mut alice_events, |e| matches!(e, Event::Closed(_))).await;
    match event {
        Event::Closed(Closed::Lost { reason }) => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(proxy.n_accepted() >= 2, "it did try again");
    assert!(within(alice_events.recv()).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Nothing listens on a port just freed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match Session::connect(client_config(addr, "alice")).await {
        Err(e @ ConnectError::Unreachable { .. }) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    let server = start().await;
    for bad in ["a::b", " alice", "", &"x".repeat(33)] {
        match Session::connect(server.config(bad)).await {
            Err(ConnectError::UsernameRefused { reason }) => assert!(!reason.is_empty()),
            other => panic!("{bad:?}: {:?}", other.map(|_| ())),
        }
    }
    let (alice, _events) = server.connect("alice").await;
    assert_eq!(alice.state().username, "alice");
    server.stop().await;
}

#[tokio::test]
async fn requests_flow_while_events_are_not_read() {
    let server = start_with(tsockm_server::Config {
        max_rate: 0,
        ..server_config()
    })
    .await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, _bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    // Far more messages than the event channel and the pending queue hold.
    let n = 2_000;
    within(async {
        for i in 0..n {
            bob.broadcast(format!("m{i}")).await.unwrap();
        }
    })
    .await;
    // Alice, not reading, can still send: her requests never wait on events.
    within(async {
        for _ in 0..200 {
            alice.direct(&alice.id(), "self").await.unwrap();
        }
    })
    .await;
    for i in 0..n {
        match next(&mut alice_events).await {
            Event::Message { text, .. } => assert_eq!(text, format!("m{i}").as_str()),
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn requests_beyond_the_outbox_are_reported_unsent() {
    let server = start().await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    let (_bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined

    proxy.set_blocked(true);
    proxy.cut();
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    // The outbox keeps 256 requests; 10 more are dropped and reported.
    for i in 0..266 {
        alice.broadcast(format!("q{i}")).await.unwrap();
    }
    let mut n_unsent = 0;
    while n_unsent < 10 {
        if let Event::Unsent { n_frames } =
            wait_for(&mut alice_events, |e| matches!(e, Event::Unsent { .. })).await
        {
            n_unsent += n_frames;
        }
    }
    assert_eq!(n_unsent, 10);
    proxy.set_blocked(false);
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    for i in 0..256 {
        match next(&mut bob_events).await {
            Event::Message { text, .. } => assert_eq!(text, format!("q{i}").as_str()),
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}
