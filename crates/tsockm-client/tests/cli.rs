//! The `tsockm-client` binary in script mode (standard input and output are
//! pipes), against the real server: a two-user conversation, `:dm`, `:list`,
//! `:gp`, `:info`, bad commands, the username prompt, end of input, and the
//! exit codes.

mod common;

use std::process::Stdio;

use common::script::Client;
use common::{TestServer, next, start, within};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tsockm_client::{Conversation, Event, PeerId};
use tsockm_proto::Text;

async fn peer_id(server: &TestServer, username: &str) -> PeerId {
    let peers = server.peers().await;
    let peer = peers
        .iter()
        .find(|p| p.username == username)
        .unwrap_or_else(|| panic!("{username} not in {peers:?}"));
    PeerId::new(peer.id.as_str())
}

#[tokio::test]
async fn two_users_chat_with_dm_list_and_bad_commands() {
    let server = start().await;
    let mut alice = Client::joined(&server, "alice").await;
    let mut bob = Client::joined(&server, "bob").await;
    let bob_id = peer_id(&server, "bob").await;
    alice.expect(&format!("* bob joined ({bob_id})")).await;

    bob.send("hello alice").await;
    assert_eq!(alice.next_line().await, "bob: hello alice");
    // Control and format characters (a bidi override here) arrive escaped.
    bob.send("\u{202e}gnp.exe \x1b[2J").await;
    assert_eq!(alice.next_line().await, "bob: \\u{202e}gnp.exe \\u{1b}[2J");
    alice.send(":msg hi bob :)").await;
    assert_eq!(bob.next_line().await, "alice: hi bob :)");

    alice.send(":dm bob psst").await;
    assert_eq!(bob.next_line().await, "[dm] alice: psst");
    let alice_id = peer_id(&server, "alice").await;
    bob.send(&format!(":dm {alice_id} by id")).await;
    assert_eq!(alice.next_line().await, "[dm] bob: by id");

    bob.send(":list").await;
    assert_eq!(bob.next_line().await, "* 2 peers (you included):");
    // Sorted by username.
    assert_eq!(bob.next_line().await, format!("  {alice_id}  alice"));
    assert_eq!(bob.next_line().await, format!("  {bob_id}  bob (you)"));

    bob.send(":frobnicate").await;
    assert_eq!(bob.next_line().await, "! unknown command `:frobnicate`");
    assert_eq!(bob.next_line().await, "  commands:");
    bob.expect(":dm <peer_id|username> <text>").await;

    bob.send(":dm").await;
    bob.expect("! :dm: missing the peer id or username, and the message text")
        .await;
    assert_eq!(
        bob.next_line().await,
        "  usage: :dm <peer_id|username> <text>"
    );
    bob.send(":dm alice").await;
    assert_eq!(bob.next_line().await, "! :dm: missing the message text");
    assert_eq!(
        bob.next_line().await,
        "  usage: :dm <peer_id|username> <text>"
    );
    bob.send(":msg").await;
    assert_eq!(bob.next_line().await, "! :msg: missing the message text");
    assert_eq!(bob.next_line().await, "  usage: :msg <text>");
    bob.send(":gp").await;
    assert_eq!(bob.next_line().await, "! :gp: missing the peer id");
    assert_eq!(bob.next_line().await, "  usage: :gp <peer_id>");
    bob.send(":dm carol hi").await;
    assert_eq!(
        bob.next_line().await,
        "! no peer with the id or username `carol` (see :list)"
    );
    bob.send(":gp nobody1234").await;
    assert_eq!(bob.next_line().await, "! no peer has that id");

    // End of input: bob ends the session and exits 0; alice sees him leave.
    bob.send("see you").await;
    let (code, rest, stderr) = bob.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(rest.last().map(String::as_str), Some("* session ended"));
    assert_eq!(alice.next_line().await, "bob: see you");
    assert_eq!(alice.next_line().await, format!("* bob left ({bob_id})"));

    alice.send(":exit").await;
    let (code, rest, _) = alice.finish().await;
    assert_eq!(code, 0);
    assert_eq!(rest, ["* session ended"]);
    server.stop().await;
}

#[tokio::test]
async fn end_of_input_sends_everything_then_ends() {
    let server = start().await;
    let (alice, mut alice_events) = server.connect("alice").await;
    let mut bob = Client::spawn(&server, &["--username", "bob"]);
    // The whole script at once, then end of input.
    let script = "one\n:dm alice two\n\n:msg three\n";
    let stdin = bob.stdin.as_mut().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    bob.close_stdin();
    let (code, rest, stderr) = bob.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(rest[0].starts_with("* registered as bob ("), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("* session ended"));

    let bob_id = match next(&mut alice_events).await {
        Event::Joined { id, .. } => id,
        other => panic!("{other:?}"),
    };
    let mut got = Vec::new();
    for _ in 0..3 {
        match next(&mut alice_events).await {
            Event::Message(m) => {
                assert_eq!((&m.from, m.username.as_deref()), (&bob_id, Some("bob")));
                got.push((m.conversation, m.text.to_string()));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got,
        [
            (Conversation::Lobby, "one".to_owned()),
            (Conversation::Direct(bob_id.clone()), "two".to_owned()),
            (Conversation::Lobby, "three".to_owned()),
        ]
    );
    assert_eq!(
        next(&mut alice_events).await,
        Event::Left {
            id: bob_id,
            username: Text::from("bob"),
        }
    );
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn asks_for_a_username_until_the_server_takes_one() {
    let server = start().await;
    let (_watcher, mut watcher_events) = server.connect("watcher").await;
    let mut client = Client::spawn(&server, &[]);
    client.send("a::b").await;
    client.send("alice").await;
    client.expect("* registered as alice (").await;
    client.send("hi").await;
    let (code, _, stderr) = client.finish().await;
    assert_eq!(code, 0);
    assert_eq!(
        stderr.matches("Enter your username:").count(),
        2,
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("! the server refused the username: "),
        "{stderr}"
    );
    assert!(
        matches!(next(&mut watcher_events).await, Event::Joined { username, .. } if username == "alice")
    );
    assert!(matches!(next(&mut watcher_events).await, Event::Message(m) if m.text == "hi"));
    server.stop().await;
}

#[tokio::test]
async fn dm_to_a_shared_username_lists_the_ids() {
    let server = start().await;
    let (sam1, mut sam1_events) = server.connect("sam").await;
    let (sam2, _sam2_events) = server.connect("sam").await;
    let mut carol = Client::joined(&server, "carol").await;
    let mut ids = [sam1.id().to_string(), sam2.id().to_string()];
    ids.sort();

    carol.send(":dm sam hello").await;
    assert_eq!(
        carol.next_line().await,
        format!(
            "! `sam` is ambiguous: 2 peers have that name, ids {}, {}; use an id",
            ids[0], ids[1]
        )
    );
    carol
        .send(&format!(":dm {} hello sam one", sam1.id()))
        .await;
    let event = wait_for_direct(&mut sam1_events).await;
    assert_eq!(event, "hello sam one");

    carol.send(&format!(":gp {}", sam2.id())).await;
    assert_eq!(carol.next_line().await, format!("* {} is sam", sam2.id()));

    carol.send(":info").await;
    assert!(carol.next_line().await.starts_with("* id:        "));
    assert_eq!(carol.next_line().await, "  username:  carol");
    carol
        .expect("  messages:  1 sent, 0 received, 0 direct")
        .await;
    assert_eq!(
        carol.next_line().await,
        "  other:     0 errors, 0 reconnections"
    );

    carol.send(":help").await;
    assert_eq!(carol.next_line().await, "* commands:");
    carol.expect(":exit").await;
    carol.send(":cc").await; // nothing to clear in a script
    carol.send(":bogus").await;
    assert_eq!(carol.next_line().await, "! unknown command `:bogus`");

    let (code, _, _) = carol.finish().await;
    assert_eq!(code, 0);
    server.stop().await;
}

async fn wait_for_direct(events: &mut tsockm_client::Events) -> String {
    let direct = |e: &Event| matches!(e, Event::Message(m) if matches!(m.conversation, Conversation::Direct(_)));
    match common::wait_for(events, direct).await {
        Event::Message(m) => m.text.to_string(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn unreachable_server_exits_non_zero_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let output = within(
        Command::new(env!("CARGO_BIN_EXE_tsockm-client"))
            .args(["--addr", &addr.to_string(), "--username", "alice"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn kicked_client_exits_non_zero_with_the_reason() {
    let server = start().await;
    let mut bob = Client::joined(&server, "bob").await;
    server.kill(&peer_id(&server, "bob").await).await;
    bob.expect("! the server ended your session: ").await;
    let (code, _, stderr) = bob.finish().await;
    assert_eq!(code, 3);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the server ended your session"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_shuts_down_for_good_exits_3_after_trying_to_reconnect() {
    let server = start().await;
    let mut alice = Client::spawn(&server, &["--username", "alice", "--reconnect-for", "1"]);
    alice.expect("* registered as alice (").await;
    server.stop().await;
    // One line while reconnecting, not one per attempt.
    alice
        .expect("* connection lost (the server is restarting or shutting down); reconnecting")
        .await;
    alice
        .expect("! the server shut down and did not come back: server shutting down")
        .await;
    let (code, rest, stderr) = alice.finish().await;
    assert_eq!(code, 3);
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("server shutting down"), "{stderr}");
}

/// `seq 1 3000 | tsockm-client --username flood`: the client paces itself
/// under the server's default rate, so every line arrives, in order, and
/// the client exits 0.
#[tokio::test]
async fn three_thousand_lines_arrive_complete_and_in_order() {
    let server = start().await;
    let (_watcher, mut watcher_events) = server.connect("watcher").await;
    let mut flood = Client::spawn(&server, &["--username", "flood"]);
    let script: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    let stdin = flood.stdin.as_mut().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    flood.close_stdin();
    assert!(matches!(
        next(&mut watcher_events).await,
        Event::Joined { .. }
    ));
    for i in 1..=3000 {
        match next(&mut watcher_events).await {
            Event::Message(m) => assert_eq!(m.text, i.to_string().as_str()),
            other => panic!("line {i}: {other:?}"),
        }
    }
    let (code, rest, stderr) = flood.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(rest.last().map(String::as_str), Some("* session ended"));
    assert!(!rest.iter().any(|l| l.starts_with('!')), "{rest:?}");
    assert!(stderr.is_empty(), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn a_refused_username_in_script_mode_exits_2_with_the_reason() {
    let server = start().await;
    let client = Client::spawn(&server, &["--username", "a::b"]);
    let (code, rest, stderr) = client.finish().await;
    assert_eq!(code, 2);
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the server refused the username: "),
        "{stderr}"
    );
    // No name at all before the end of input is a usage error too.
    let client = Client::spawn(&server, &[]);
    let (code, _, stderr) = client.finish().await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no username given"), "{stderr}");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_address_is_a_bad_command_line() {
    for bad in [
        "nonsense",
        "127.0.0.1",
        "127.0.0.1:http",
        ":6969",
        "host:99999",
    ] {
        let output = within(
            Command::new(env!("CARGO_BIN_EXE_tsockm-client"))
                .args(["--addr", bad, "--username", "alice"])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not host:port"), "{bad}: {stderr}");
    }
}

/// A line longer than the server takes is refused before it is sent, in
/// plain words; the rest of the script goes on, and the exit code says that
/// not everything was delivered.
#[tokio::test]
async fn a_line_too_long_is_refused_in_plain_words_and_exits_4() {
    let server = start().await;
    let (_watcher, mut watcher_events) = server.connect("watcher").await;
    let mut bob = Client::joined(&server, "bob").await;
    bob.send(&"x".repeat(20_000)).await;
    let refused = bob.next_line().await;
    assert!(
        refused.starts_with("! message not sent: it is 20000 bytes long"),
        "{refused}"
    );
    for word in ["frame", "BODY", "NONE", "413"] {
        assert!(!refused.contains(word), "{refused}");
    }
    bob.send("short").await;
    let (code, _, stderr) = bob.finish().await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("1 message not delivered"), "{stderr}");
    assert!(matches!(
        next(&mut watcher_events).await,
        Event::Joined { .. }
    ));
    match next(&mut watcher_events).await {
        Event::Message(m) => assert_eq!(m.text, "short"),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A script floods while others talk to it: the client keeps taking in
/// what arrives while it waits to send, so neither side stalls.
#[tokio::test]
async fn a_script_that_floods_while_others_talk_finishes() {
    let server = start().await;
    let (_watcher, mut watcher_events) = server.connect("watcher").await;
    let (chatter, mut chatter_events) = server.connect("chatter").await;
    // A session's sending needs its events taken (see Session::reserve).
    let drain = tokio::spawn(async move { while chatter_events.recv().await.is_some() {} });
    let mut flood = Client::spawn(&server, &["--username", "flood"]);
    flood.expect("* registered as flood (").await;
    let talk = tokio::spawn(async move {
        for i in 0..1500 {
            chatter.broadcast(format!("talk {i}")).await.unwrap();
        }
        chatter
    });
    let script: String = (1..=1500).map(|i| format!("{i}\n")).collect();
    let stdin = flood.stdin.as_mut().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    flood.close_stdin();
    let mut next_line = 1;
    while next_line <= 1500 {
        match next(&mut watcher_events).await {
            Event::Message(m) if m.username.as_deref() == Some("flood") => {
                assert_eq!(m.text, next_line.to_string().as_str());
                next_line += 1;
            }
            _ => {}
        }
    }
    let (code, _, stderr) = flood.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    // The chatter's queued messages go before its end.
    let chatter = within(talk).await.unwrap();
    chatter.end().await.unwrap();
    within(drain).await.unwrap();
    server.stop().await;
}

/// A slow script (its own rate set low) in a busy lobby: far more arrives
/// than it sends, and it still finishes; waiting to send never keeps it
/// from taking in what arrives.
#[tokio::test]
async fn a_slow_script_in_a_busy_lobby_finishes() {
    let server = start().await;
    let (_watcher, mut watcher_events) = server.connect("watcher").await;
    let (chatter, mut chatter_events) = server.connect("chatter").await;
    let drain = tokio::spawn(async move { while chatter_events.recv().await.is_some() {} });
    let mut slow = Client::spawn(&server, &["--username", "slow", "--max-rate", "400"]);
    slow.expect("* registered as slow (").await;
    let talk = tokio::spawn(async move {
        for i in 0..1000 {
            chatter.broadcast(format!("talk {i}")).await.unwrap();
        }
        chatter
    });
    // Sent at 200 a second while 450 a second arrive.
    let script: String = (1..=200).map(|i| format!("{i}\n")).collect();
    let stdin = slow.stdin.as_mut().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    slow.close_stdin();
    let mut next_line = 1;
    while next_line <= 200 {
        match next(&mut watcher_events).await {
            Event::Message(m) if m.username.as_deref() == Some("slow") => {
                assert_eq!(m.text, next_line.to_string().as_str());
                next_line += 1;
            }
            _ => {}
        }
    }
    let (code, _, stderr) = slow.finish().await;
    assert_eq!(code, 0, "stderr: {stderr}");
    // The chatter's queued messages go before its end.
    let chatter = within(talk).await.unwrap();
    chatter.end().await.unwrap();
    within(drain).await.unwrap();
    server.stop().await;
}

/// `--password-file`: the first line is the password; a wrong one (or a
/// missing file) exits 2 with one line that does not show the password.
#[tokio::test]
async fn the_password_file_opens_a_server_with_a_password() {
    let password = "open sesame 42";
    let server = common::start_with(tsockm_server::Config {
        password: Some(tsockm_server::config::Password::new(password)),
        ..common::server_config()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("tsockm-client-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let right = dir.join("right");
    let wrong = dir.join("wrong");
    std::fs::write(&right, format!("{password}\n")).unwrap();
    std::fs::write(&wrong, "not it\n").unwrap();

    let right_arg = right.display().to_string();
    let mut alice = Client::spawn(
        &server,
        &["--username", "alice", "--password-file", &right_arg],
    );
    alice.expect("* registered as alice (").await;
    let (code, _, _) = alice.finish().await;
    assert_eq!(code, 0);

    let wrong_arg = wrong.display().to_string();
    let missing_arg = dir.join("missing").display().to_string();
    for (file, says) in [
        (wrong_arg.as_str(), "refused the password"),
        (missing_arg.as_str(), "cannot read the password file"),
    ] {
        let client = Client::spawn(&server, &["--username", "bob", "--password-file", file]);
        let (code, rest, stderr) = client.finish().await;
        assert_eq!(code, 2, "{stderr}");
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("not it") && !stderr.contains(password),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.stop().await;
}
