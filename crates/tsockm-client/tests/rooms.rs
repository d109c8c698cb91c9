//! Rooms, message ids and history (the contract's v2) against the real
//! server: joining (the roster, then the joiner's own JOIN), room messages,
//! a non-member refused, leaving, the room list; HISTORY of the lobby, a
//! room and a direct conversation, paged with `before`; a resume that names
//! the last message id and gets nothing twice; rooms joined again after a
//! new registration; and the same in the full-screen UI and script mode.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{Proxy, client_config, next, server_config, start, start_with, wait_for, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tsockm_client::chat::Chat;
use tsockm_client::{Conversation, Event, Message, RoomName, Session};
use tsockm_proto::{Action, Status, Text};

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

fn message(event: Event) -> Message {
    match event {
        Event::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

#[tokio::test]
async fn join_talk_part_and_list_rooms() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    let (carol, mut carol_events) = server.connect("carol").await;
    wait_for(
        &mut alice_events,
        |e| matches!(e, Event::Joined { username, .. } if username == "carol"),
    )
    .await;
    wait_for(
        &mut bob_events,
        |e| matches!(e, Event::Joined { username, .. } if username == "carol"),
    )
    .await;

    alice.join(&room("#Rust")).await.unwrap();
    match next(&mut alice_events).await {
        Event::RoomJoined {
            room: joined,
            members,
        } => {
            assert_eq!(joined, room("#rust"));
            assert_eq!(members, [(alice.id(), Text::from("alice"))]);
        }
        other => panic!("{other:?}"),
    }
    bob.join(&room("#rust")).await.unwrap();
    match next(&mut bob_events).await {
        Event::RoomJoined { members, .. } => {
            let mut names: Vec<&str> = members.iter().map(|(_, n)| n.as_str()).collect();
            names.sort();
            assert_eq!(names, ["alice", "bob"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next(&mut alice_events).await,
        Event::RoomJoin {
            room: room("#rust"),
            id: bob.id(),
            username: Text::from("bob")
        }
    );
    assert_eq!(alice.state().rooms[&room("#rust")].len(), 2);

    // A room message reaches the other members, not its author, not others.
    let in_room = Conversation::Room(room("#rust"));
    alice.send(&in_room, "in the room").await.unwrap();
    let m = message(next(&mut bob_events).await);
    assert_eq!(
        (m.conversation, m.text.as_str()),
        (in_room.clone(), "in the room")
    );
    assert!(m.id.is_some(), "a v2 server gives every message an id");
    // Someone not in the room is refused.
    carol.send(&in_room, "let me in").await.unwrap();
    match next(&mut carol_events).await {
        Event::Error {
            action: Action::Msg,
            status: Status::Forbidden,
            ..
        } => {}
        other => panic!("{other:?}"),
    }

    carol.rooms().await.unwrap();
    assert_eq!(
        next(&mut carol_events).await,
        Event::Rooms(vec![(room("#rust"), 2)])
    );

    bob.part(&room("#rust")).await.unwrap();
    assert!(matches!(next(&mut bob_events).await, Event::RoomPart { id, .. } if id == bob.id()));
    assert!(matches!(next(&mut alice_events).await, Event::RoomPart { id, .. } if id == bob.id()));
    assert!(bob.state().rooms.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn history_of_the_lobby_a_room_and_a_direct_conversation() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined
    for i in 0..5 {
        bob.broadcast(format!("lobby {i}")).await.unwrap();
    }
    bob.direct(&alice.id(), "just you").await.unwrap();
    for _ in 0..6 {
        next(&mut alice_events).await;
    }

    alice.history(&Conversation::Lobby, 3, None).await.unwrap();
    let (messages, more) = match next(&mut alice_events).await {
        Event::History {
            conversation: Conversation::Lobby,
            messages,
            more,
        } => (messages, more),
        other => panic!("{other:?}"),
    };
    let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["lobby 2", "lobby 3", "lobby 4"]);
    assert!(more);
    assert!(
        messages
            .iter()
            .all(|m| m.from == bob.id() && m.username.as_deref() == Some("bob"))
    );
    assert!(messages.iter().all(|m| m.time <= SystemTime::now()));
    // Older ones, before the oldest shown.
    let oldest = messages[0].id.clone().expect("an id");
    alice
        .history(&Conversation::Lobby, 50, Some(&oldest))
        .await
        .unwrap();
    match next(&mut alice_events).await {
        Event::History { messages, more, .. } => {
            let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(texts, ["lobby 0", "lobby 1"]);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    // The direct conversation, from bob's side: named by alice's id.
    bob.history(&Conversation::Direct(alice.id()), 10, None)
        .await
        .unwrap();
    let event = wait_for(&mut bob_events, |e| matches!(e, Event::History { .. })).await;
    match event {
        Event::History {
            conversation,
            messages,
            ..
        } => {
            assert_eq!(conversation, Conversation::Direct(alice.id()));
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].text, "just you");
        }
        other => panic!("{other:?}"),
    }
    // A room's history needs membership.
    alice
        .history(&Conversation::Room(room("#closed")), 10, None)
        .await
        .unwrap();
    match next(&mut alice_events).await {
        Event::Error {
            action: Action::History,
            status: Status::Forbidden,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// The connection is cut while messages flow; the resume names the last
/// message id received; every message arrives once, in order.
#[tokio::test]
async fn a_resume_after_a_cut_delivers_every_message_once() {
    let server = start_with(tsockm_server::Config {
        removal_delay: Duration::from_secs(20),
        ..server_config()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let (_alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    let (bob, _bob_events) = server.connect("bob").await;
    next(&mut alice_events).await; // bob joined
    let n = 300;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            bob.broadcast(format!("m{i}")).await.unwrap();
        }
        bob
    });
    let mut seen = Vec::new();
    let mut n_cuts = 0;
    while seen.len() < n {
        match next(&mut alice_events).await {
            Event::Message(m) => {
                seen.push(m.text.to_string());
                if seen.len() % 100 == 50 {
                    proxy.cut();
                    n_cuts += 1;
                }
            }
            Event::Reconnecting { .. } | Event::Reconnected { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(n_cuts, 3);
    within(sender).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn after_a_new_registration_the_rooms_are_joined_again() {
    let server = start_with(tsockm_server::Config {
        removal_delay: Duration::from_millis(200),
        ..server_config()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut alice_events) = within(Session::connect(client_config(proxy.addr, "alice")))
        .await
        .unwrap();
    alice.join(&room("#ops")).await.unwrap();
    assert!(matches!(
        next(&mut alice_events).await,
        Event::RoomJoined { .. }
    ));
    let (bob, mut bob_events) = server.connect("bob").await;
    bob.join(&room("#ops")).await.unwrap();
    wait_for(&mut bob_events, |e| matches!(e, Event::RoomJoined { .. })).await;

    proxy.set_blocked(true);
    proxy.cut();
    wait_for(&mut bob_events, |e| matches!(e, Event::Left { .. })).await;
    proxy.set_blocked(false);
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reregistered { .. })
    })
    .await;
    match wait_for(&mut alice_events, |e| matches!(e, Event::RoomJoined { .. })).await {
        Event::RoomJoined {
            room: joined,
            members,
        } => {
            assert_eq!(joined, room("#ops"));
            assert_eq!(members.len(), 2);
        }
        _ => unreachable!(),
    }
    assert!(alice.state().rooms.contains_key(&room("#ops")));
    bob.send(&Conversation::Room(room("#ops")), "welcome back")
        .await
        .unwrap();
    let m = message(wait_for(&mut alice_events, |e| matches!(e, Event::Message(_))).await);
    assert_eq!(m.text, "welcome back");
    server.stop().await;
}

/// The full-screen UI: `:join` adds the room to the list, switches to it,
/// and shows its stored messages marked as history.
#[tokio::test]
async fn a_joined_room_shows_in_the_list_with_its_history() {
    let server = start().await;
    let (bob, mut bob_events) = server.connect("bob").await;
    bob.join(&room("#ops")).await.unwrap();
    wait_for(&mut bob_events, |e| matches!(e, Event::RoomJoined { .. })).await;
    bob.send(&Conversation::Room(room("#ops")), "before you came")
        .await
        .unwrap();
    let (session, mut events) = server.connect("alice").await;
    let mut chat = Chat::new(session, jiff::tz::TimeZone::UTC, SystemTime::now());
    chat.start();
    chat.line(":join #ops");
    chat.flush().await;
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 16)).unwrap();
    let screen = within(async {
        loop {
            let state = chat.state();
            terminal
                .draw(|f| tsockm_client::tui::draw(f, &mut chat.app, &state, SystemTime::now()))
                .unwrap();
            let buffer = terminal.backend().buffer();
            let rows: Vec<String> = (0..buffer.area.height)
                .map(|y| {
                    (0..buffer.area.width)
                        .map(|x| buffer[(x, y)].symbol())
                        .collect()
                })
                .collect();
            if rows.iter().any(|r| r.contains("~ bob: before you came")) {
                return rows;
            }
            let Some(event) = events.recv().await else {
                panic!("events ended:\n{}", rows.join("\n"));
            };
            chat.event(event);
            chat.flush().await;
        }
    })
    .await;
    assert!(
        screen.iter().any(|r| r.contains("2 #ops")),
        "{}",
        screen.join("\n")
    );
    assert!(screen[15].starts_with("#ops> "), "{}", screen[15]);
    server.stop().await;
}

/// Script mode: `:join`, a room message, `:rooms`, `:part`, each one line.
#[tokio::test]
async fn rooms_in_script_mode() {
    let server = start().await;
    let (bob, mut bob_events) = server.connect("bob").await;
    bob.join(&room("#ops")).await.unwrap();
    wait_for(&mut bob_events, |e| matches!(e, Event::RoomJoined { .. })).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsockm-client"))
        .args(["--addr", &server.addr.to_string(), "--username", "alice"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = async |needle: &str| {
        within(async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("stdout ended before {needle:?}");
        })
        .await
    };
    expect("* registered as alice").await;
    stdin
        .write_all(b":join #ops\nhello ops\n:rooms\n")
        .await
        .unwrap();
    assert_eq!(
        expect("you joined #ops").await,
        "* you joined #ops: 2 members (bob, you)"
    );
    let m = message(wait_for(&mut bob_events, |e| matches!(e, Event::Message(_))).await);
    assert_eq!(
        (m.conversation, m.text.as_str()),
        (Conversation::Room(room("#ops")), "hello ops")
    );
    expect("* 1 room:").await;
    assert_eq!(expect("#ops").await, "  #ops  2 members, you among them");
    bob.send(&Conversation::Room(room("#ops")), "hi alice")
        .await
        .unwrap();
    assert_eq!(expect("bob: hi alice").await, "[#ops] bob: hi alice");
    stdin.write_all(b":part\n").await.unwrap();
    expect("* you left #ops").await;
    drop(stdin);
    let status = within(child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    server.stop().await;
}

/// A graceful restart on a persistent store: the server saves the sessions,
/// the client reconnects and resumes (same id, same rooms, no new
/// registration), and the history from before the restart is still there.
#[tokio::test]
async fn a_graceful_restart_on_a_persistent_store_resumes_the_session() {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("tsockm-client-test-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store.db");
    let config = || tsockm_server::Config {
        store: Some(tsockm_server::StoreSpec::Sqlite(store.clone())),
        removal_delay: Duration::from_secs(10),
        ..server_config()
    };
    let server = start_with(config()).await;
    let addr = server.addr;
    let (alice, mut alice_events) = server.connect("alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    let ops = Conversation::Room(room("#ops"));
    for (session, events) in [(&alice, &mut alice_events), (&bob, &mut bob_events)] {
        session.join(&room("#ops")).await.unwrap();
        wait_for(events, |e| matches!(e, Event::RoomJoined { .. })).await;
    }
    bob.send(&ops, "before the restart").await.unwrap();
    let m = message(wait_for(&mut alice_events, |e| matches!(e, Event::Message(_))).await);
    assert_eq!(m.text, "before the restart");
    let alice_id = alice.id();

    server.stop().await;
    wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    let server = start_with(tsockm_server::Config { addr, ..config() }).await;
    match wait_for(&mut alice_events, |e| {
        matches!(e, Event::Reconnected { .. } | Event::Reregistered { .. })
    })
    .await
    {
        Event::Reconnected { .. } => {}
        other => panic!("the session was not restored: {other:?}"),
    }
    assert_eq!(alice.id(), alice_id);
    assert!(alice.state().rooms.contains_key(&room("#ops")));
    wait_for(&mut bob_events, |e| matches!(e, Event::Reconnected { .. })).await;
    bob.send(&ops, "after the restart").await.unwrap();
    let m = message(wait_for(&mut alice_events, |e| matches!(e, Event::Message(_))).await);
    assert_eq!(
        (m.conversation, m.text.as_str()),
        (ops.clone(), "after the restart")
    );
    alice.history(&ops, 10, None).await.unwrap();
    match wait_for(&mut alice_events, |e| matches!(e, Event::History { .. })).await {
        Event::History { messages, .. } => {
            let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(texts, ["before the restart", "after the restart"]);
        }
        _ => unreachable!(),
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
