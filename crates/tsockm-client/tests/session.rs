//! The session library against the real server: every event, the roster,
//! health checks, the end of a session from either side, and reconnection
//! (resume with kept frames, or registration anew) after the TCP connection
//! is cut by a proxy without `COMM_END`.

mod common;

use std::time::Duration;

use common::{Proxy, client_config, next, server_config, start, start_with, wait_for, within};
use tsockm_client::{Closed, Config, ConnectError, Conversation, Event, PeerId, Session};
use tsockm_proto::{Action, Status, Text};
use tsockm_server::{ConsoleReply, ConsoleRequest, Target};

fn text(s: &str) -> Text {
    Text::from(s)
}

/// What a message event says: where, who (id and name), what.
fn said(event: Event) -> (Conversation, PeerId, Option<Text>, Text) {
    match event {
        Event::Message(m) => (m.conversation, m.from, m.username, m.text),
        other => panic!("not a message: {other:?}"),
    }
}

/// The text of a message event.
fn text_of(event: &Event) -> Option<&str> {
    match event {
        Event::Message(m) => Some(m.text.as_str()),
        _ => None,
    }
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
        said(next(&mut bob_events).await),
        (
            Conversation::Lobby,
            alice.id(),
            Some(text("alice")),
            text(tricky)
        )
    );

    bob.direct(&alice.id(), "psst").await.unwrap();
    assert_eq!(
        said(next(&mut alice_events).await),
        (
            Conversation::Direct(bob.id()),
            bob.id(),
            Some(text("bob")),
            text("psst")
        )
    );

    // A broadcast does not come back to its author; a DM to oneself does.
    alice.broadcast("not for me").await.unwrap();
    alice.direct(&alice.id(), "note to self").await.unwrap();
    assert_eq!(
        said(next(&mut alice_events).await),
        (
            Conversation::Direct(alice.id()),
            alice.id(),
            Some(text("alice")),
            text("note to self")
        )
    );
    server.stop().await;
}

/// v2 (section 10): every frame the server sends fits its limit, so a
/// message is taken only if its relayed frame (and its history item, which
/// adds the time and the author's name) fits. With the client's own check
/// off, the server is seen to relay a long message whole and to refuse a
/// longer one with 413, which the client reports.
#[tokio::test]
async fn a_message_at_the_servers_limit_is_received_and_a_longer_one_refused() {
    let server = start().await;
    let config = Config {
        server_max_frame_bytes: usize::MAX,
        ..server.config("alice")
    };
    let (alice, mut alice_events) = within(Session::connect(config)).await.unwrap();
    let (_bob, mut bob_events) = server.connect("bob").await;
    let body = "x".repeat(16_200);
    alice.broadcast(body.as_str()).await.unwrap();
    let event = wait_for(&mut bob_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event).map(str::len), Some(body.len()));
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
    assert!(text_of(&next(&mut alice_events).await) == Some("bye all"));
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

/// A graceful shutdown is not the end: the client reconnects with backoff
/// and resumes (a v2 server with a persistent store restores the session) or
/// registers anew, and the conversation goes on.
#[tokio::test]
async fn after_a_shutdown_the_client_comes_back_to_the_restarted_server() {
    let server = start().await;
    let addr = server.addr;
    let (alice, mut alice_events) = server.connect("alice").await;
    server.stop().await;
    match next(&mut alice_events).await {
        Event::Reconnecting {
            attempt: 1, reason, ..
        } => assert!(reason.contains("restarting"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(!alice.state().online);
    let server = start_with(tsockm_server::Config {
        addr,
        ..server_config()
    })
    .await;
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnected { .. } | Event::Reregistered { .. })
    })
    .await;
    assert!(alice.state().online);
    let (bob, _bob_events) = server.connect("bob").await;
    bob.broadcast("welcome back").await.unwrap();
    let event = wait_for(&mut alice_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event), Some("welcome back"));
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_come_back_ends_the_session_as_shut_down() {
    let server = start().await;
    let config = Config {
        reconnect_for: Duration::from_millis(800),
        ..server.config("alice")
    };
    let (_alice, mut alice_events) = within(Session::connect(config)).await.unwrap();
    server.stop().await;
    match wait_for(&mut alice_events, |e| matches!(e, Event::Closed(_))).await {
        Event::Closed(Closed::ShutDown { reason }) => {
            assert!(reason.starts_with("server shutting down"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(within(alice_events.recv()).await.is_none());
}

/// With several addresses, losing one server sends the client to the next.
#[tokio::test]
async fn a_lost_server_is_replaced_by_the_next_address() {
    let first = start().await;
    let second = start().await;
    let proxy = Proxy::start(first.addr).await;
    // Nothing listens on a port just freed: the first address is skipped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = Config {
        addrs: vec![
            dead.to_string(),
            proxy.addr.to_string(),
            second.addr.to_string(),
        ],
        ..client_config(proxy.addr, "alice")
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
    assert_eq!(server, second.addr.to_string());
    assert_eq!(alice.state().server, second.addr.to_string());
    let (bob, _bob_events) = second.connect("bob").await;
    bob.broadcast("hello over here").await.unwrap();
    let event = wait_for(&mut alice_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event), Some("hello over here"));
    first.stop().await;
    second.stop().await;
}

/// A client that does not pace itself, on a server with a low rate: every
/// message refused with 429 is sent again, and all arrive, in order.
#[tokio::test]
async fn messages_refused_for_rate_are_sent_again_in_order() {
    let server = start_with(tsockm_server::Config {
        max_rate: 40,
        ..server_config()
    })
    .await;
    let config = Config {
        max_rate: 0,
        ..server.config("alice")
    };
    let (alice, mut alice_events) = within(Session::connect(config)).await.unwrap();
    let (_bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined
    let n = 60;
    for i in 0..n {
        alice.broadcast(format!("r{i}")).await.unwrap();
    }
    for i in 0..n {
        let event = next(&mut bob_events).await;
        assert_eq!(text_of(&event), Some(format!("r{i}").as_str()), "{event:?}");
    }
    alice.end().await.unwrap();
    // Nothing was reported refused to alice.
    let mut rest = Vec::new();
    while let Some(event) = within(alice_events.recv()).await {
        rest.push(event);
    }
    assert_eq!(rest, [Event::Closed(Closed::Ended)]);
    server.stop().await;
}

/// A message whose request, relay or stored item would pass the server's
/// frame limit is refused before it is sent, with the limit in the error;
/// one byte shorter goes through.
#[tokio::test]
async fn a_message_too_long_for_the_server_is_refused_locally() {
    let server = start().await;
    let (alice, _alice_events) = server.connect("alice").await;
    let (_bob, mut bob_events) = server.connect("bob").await;
    let max_bytes = match alice.broadcast("x".repeat(20_000)).await {
        Err(tsockm_client::SessionError::TooLong { n_bytes, max_bytes }) => {
            assert_eq!(n_bytes, 20_000);
            assert!((16_000..16_384).contains(&max_bytes), "{max_bytes}");
            max_bytes
        }
        other => panic!("{other:?}"),
    };
    // Escapes count: a newline is two bytes on the wire.
    let refused = alice
        .broadcast(format!("{}\n", "y".repeat(max_bytes - 1)))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    alice.broadcast("z".repeat(max_bytes)).await.unwrap();
    let event = wait_for(&mut bob_events, |e| text_of(e).is_some()).await;
    assert_eq!(text_of(&event).map(str::len), Some(max_bytes));
    server.stop().await;
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
    assert!(text_of(&next(&mut alice_events).await) == Some("still here"));
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

    // While alice is away: a newcomer, a broadcast and a DM, all kept for her.
    let (carol, _carol_events) = server.connect("carol").await;
    bob.broadcast("while you were out").await.unwrap();
    bob.direct(&alice_id, "call me").await.unwrap();
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
            Event::Reconnected { kept_frames, .. } => break kept_frames,
            other => kept.push(other),
        }
    };
    assert_eq!(kept_frames, 3);
    assert_eq!(kept.len(), 3, "{kept:?}");
    let mut kept = kept.into_iter();
    assert_eq!(
        kept.next().unwrap(),
        Event::Joined {
            id: carol.id(),
            username: text("carol"),
        }
    );
    assert_eq!(
        said(kept.next().unwrap()),
        (
            Conversation::Lobby,
            bob.id(),
            Some(text("bob")),
            text("while you were out")
        )
    );
    assert_eq!(
        said(kept.next().unwrap()),
        (
            Conversation::Direct(bob.id()),
            bob.id(),
            Some(text("bob")),
            text("call me")
        )
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
        said(next(&mut bob_events).await),
        (
            Conversation::Lobby,
            alice_id.clone(),
            Some(text("alice")),
            text("sorry, I was away")
        )
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
        server: on,
    } = event
    else {
        unreachable!()
    };
    assert_eq!(reported_old, old_id);
    assert_ne!(new_id, old_id);
    assert_eq!(on, proxy.addr.to_string());
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
    assert!(text_of(&next(&mut alice_events).await) == Some("welcome back"));
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
    // The server takes any rate; so may bob.
    let unpaced = Config {
        max_rate: 0,
        ..server.config("bob")
    };
    let (bob, _bob_events) = within(Session::connect(unpaced)).await.unwrap();
    next(&mut alice_events).await; // bob joined

    // Far more messages than the event channel and the pending queue hold.
    let n = 2_000;
    within(async {
        for i in 0..n {
            bob.broadcast(format!("m{i}")).await.unwrap();
        }
    })
    .await;
    // Alice, not reading, can still queue requests: they never wait on events.
    within(async {
        for _ in 0..200 {
            alice.direct(&alice.id(), "self").await.unwrap();
        }
    })
    .await;
    // Bob's messages arrive complete and in order, mixed with alice's own.
    let (mut n_mine, mut next_m) = (0, 0);
    while next_m < n || n_mine < 200 {
        match next(&mut alice_events).await {
            Event::Message(m) if m.text == "self" => n_mine += 1,
            Event::Message(m) => {
                assert_eq!(m.text, format!("m{next_m}").as_str());
                next_m += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

/// Requests made while disconnected wait (the sender waits too once the
/// queue is full); none is dropped, and all are sent in order on resume.
#[tokio::test]
async fn requests_made_while_disconnected_are_all_sent_in_order() {
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
    // More than the session queues (256 requests, 64 more in its channel).
    let n = 400;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            alice.broadcast(format!("q{i}")).await.unwrap();
        }
        alice
    });
    wait_for(
        &mut alice_events,
        |e| matches!(e, Event::Reconnecting { attempt, .. } if *attempt >= 3),
    )
    .await;
    assert!(
        !sender.is_finished(),
        "the sender waits while the queue is full"
    );
    proxy.set_blocked(false);
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    let _alice = within(sender).await.unwrap();
    for i in 0..n {
        match next(&mut bob_events).await {
            Event::Message(m) => assert_eq!(m.text, format!("q{i}").as_str()),
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

/// Ending while disconnected with nothing waiting to be sent needs no
/// server: the session closes at once instead of reconnecting first.
#[tokio::test]
async fn ending_while_disconnected_with_nothing_queued_is_immediate() {
    let server = start().await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    proxy.set_blocked(true);
    proxy.cut();
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    alice.end().await.unwrap();
    // Well before the 20 s the client would keep trying.
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match alice_events.recv().await {
                Some(Event::Closed(closed)) => return closed,
                Some(_) => {}
                None => panic!("events ended without Closed"),
            }
        }
    })
    .await
    .expect("closed at once");
    assert_eq!(closed, Closed::Ended);
    server.stop().await;
}

/// A server with a password (section 13): the client sends it before
/// registering and before every resume; without it, or with a wrong one,
/// connecting fails with a typed error that never shows the password.
#[tokio::test]
async fn the_server_password_goes_before_registering_and_resuming() {
    let password = "correct horse battery";
    let server = start_with(tsockm_server::Config {
        password: Some(tsockm_server::config::Password::new(password)),
        removal_delay: Duration::from_secs(20),
        ..server_config()
    })
    .await;
    match Session::connect(server.config("alice")).await {
        Err(ConnectError::PasswordNeeded { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let wrong = Config {
        password: Some(tsockm_client::Secret::new("wrong guess")),
        ..server.config("alice")
    };
    match Session::connect(wrong).await {
        Err(e @ ConnectError::WrongPassword { .. }) => {
            assert!(!format!("{e} {e:?}").contains("wrong guess"), "{e:?}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let proxy = Proxy::start(server.addr).await;
    let right = Config {
        password: Some(tsockm_client::Secret::new(password)),
        ..client_config(proxy.addr, "alice")
    };
    assert!(!format!("{right:?}").contains(password));
    let (alice, mut alice_events) = within(Session::connect(right)).await.unwrap();
    let alice_id = alice.id();
    proxy.cut();
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert_eq!(alice.id(), alice_id, "resumed, not registered anew");
    server.stop().await;
}
