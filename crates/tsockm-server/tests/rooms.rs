//! Section 11 of the contract (rooms) over TCP: room names (checked, folded
//! to lower case in every frame), JOIN (the roster, the joiner's own JOIN
//! last, the others told; JOIN again), PART (to every member, the leaver
//! included; 404 when not a member), room messages (to the members but the
//! author, DST the folded name; 403 from a non-member whether or not the
//! room exists, and after a PART), `--max-rooms-per-peer`, ROOMS (sorted,
//! `#name <count>`, LF-joined, empty when none; a room ends with its last
//! member), removal (COMM_END, `:kill`, the end of the removal delay) leaving
//! every room with NTFY_KILL and no PART, away peers staying members, the
//! console's `:rooms` and `:list`, and a room message among many peers
//! reaching its members only.

mod common;

use std::time::Duration;

use common::{TestClient, TestServer, config, start, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

/// Joins `room` and returns the JOIN frames it got: the roster and its own.
async fn join(client: &mut TestClient, room: &str) -> Vec<Frame> {
    client.send(Frame::join(room)).await;
    let id = client.id.clone();
    let mut frames = Vec::new();
    loop {
        let frame = client
            .expect_where("the JOIN roster", |f| f.action == Action::Join)
            .await;
        let own = frame.sender_id() == id.as_str();
        frames.push(frame);
        if own {
            return frames;
        }
    }
}

/// `RES::<action>::200::<peer>::<srv>::<room>::<username>`, as a string.
fn about(server: &TestServer, action: &str, peer: &TestClient, room: &str, name: &str) -> String {
    format!(
        "RES::{action}::200::{}::{}::{room}::{name}",
        peer.id, server.srv
    )
}

fn lines(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(ToString::to_string).collect()
}

/// The body of the answer to ROOMS.
async fn rooms(client: &mut TestClient) -> String {
    client.send(Frame::rooms()).await;
    let answer = client
        .expect_where("the ROOMS answer", |f| f.action == Action::Rooms)
        .await;
    assert_eq!(
        (answer.kind, answer.status, answer.sender_id()),
        (Kind::Res, Status::Ok, "server"),
        "{answer}"
    );
    assert_eq!(answer.dst(), client.id.as_str());
    answer.body().to_string()
}

#[tokio::test]
async fn invalid_room_names_get_400_in_every_request() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let long = format!("#{}", "x".repeat(33));
    for name in [
        "",
        "#",
        long.as_str(),
        "#a b",
        "a",
        "#a:b",
        "#\u{e9}",
        "##a",
    ] {
        for frame in [
            Frame::join(name),
            Frame::part(name),
            Frame::direct(name, "hi").with_dst(name),
        ] {
            let action = frame.action;
            // MSG with an empty DST is a broadcast, and without `#` a
            // peer id: only JOIN and PART take every bad name as a room.
            if action == Action::Msg && !name.starts_with('#') {
                continue;
            }
            alice.send(frame).await;
            let error = alice.expect_error(action, Status::BadRequest).await;
            assert_eq!(error.src(), server.srv.as_str());
        }
        if name.starts_with('#') {
            alice.send(Frame::history(name, "5")).await;
            alice
                .expect_error(Action::History, Status::BadRequest)
                .await;
        }
    }
    // 32 characters after `#` is a name; the whole alphabet is allowed.
    let longest = format!("#{}", "x".repeat(32));
    assert_eq!(join(&mut alice, &longest).await.len(), 1);
    assert_eq!(join(&mut alice, "#Az09_-.").await[0].dst(), "#az09_-.");
    // `#a::b` cannot be a field: by section 1 the line below has DST `#a`
    // and BODY `b::`, so it is a JOIN of `#a`, and no room `#a::b` exists.
    alice.send_raw(b"REQ::JOIN::200::::::#a::b::\n").await;
    let own = alice
        .expect_frame(Kind::Res, Action::Join, Status::Ok)
        .await;
    assert_eq!(own.dst(), "#a");
    let body = rooms(&mut alice).await;
    assert_eq!(
        body,
        format!("#a 1\n#az09_-. 1\n{longest} 1"),
        "no room but these three"
    );
    server.stop().await;
}

/// "the server folds them to lower case and always writes the folded name".
#[tokio::test]
async fn room_names_are_folded_in_every_frame_the_server_writes() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    let own = join(&mut alice, "#RuSt").await;
    assert_eq!(
        lines(&own),
        [about(&server, "JOIN", &alice, "#rust", "alice")]
    );
    let at_bob = join(&mut bob, "#rUST").await;
    assert_eq!(
        lines(&at_bob),
        [
            about(&server, "JOIN", &alice, "#rust", "alice"),
            about(&server, "JOIN", &bob, "#rust", "bob"),
        ]
    );
    let told = alice.expect_next().await;
    assert_eq!(
        told.to_string(),
        about(&server, "JOIN", &bob, "#rust", "bob")
    );
    alice.send(Frame::direct("#RUST", "hello")).await;
    let msg = bob.expect_msg().await;
    assert_eq!(
        msg.to_string(),
        format!("RES::MSG::200::{}::{}::#rust::hello", alice.id, msg.src())
    );
    assert_eq!(rooms(&mut bob).await, "#rust 2");
    let history = bob.history("#Rust", "5").await;
    assert_eq!(history.items[0].dst(), "#rust");
    assert_eq!(history.end.dst(), "#rust");
    // An error's reason names the room folded too.
    alice.send(Frame::direct("#OTHER", "hi")).await;
    let error = alice.expect_error(Action::Msg, Status::Forbidden).await;
    assert!(
        error.body().contains("#other") && !error.body().contains("#OTHER"),
        "{error}"
    );
    let console = server.console_line(":rooms").await;
    assert!(
        console.contains("#rust") && !console.contains("#RuSt"),
        "{console}"
    );
    let list = server.console_line(":list").await;
    assert!(list.contains("rooms #rust"), "{list}");
    bob.send(Frame::part("#RUST")).await;
    let part = about(&server, "PART", &bob, "#rust", "bob");
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.expect_next().await.to_string(), part);
    }
    server.stop().await;
}

#[tokio::test]
async fn join_sends_the_roster_then_its_own_join_and_the_members_are_told() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    let mut dave = server.joined("dave", 3).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }
    let a_join = about(&server, "JOIN", &alice, "#r", "alice");
    let b_join = about(&server, "JOIN", &bob, "#r", "bob");
    let d_join = about(&server, "JOIN", &dave, "#r", "dave");
    assert_eq!(lines(&join(&mut alice, "#r").await), [a_join.as_str()]);
    assert!(alice.sync().await.is_empty());
    assert_eq!(
        lines(&join(&mut bob, "#r").await),
        [a_join.clone(), b_join.clone()]
    );
    assert_eq!(lines(&alice.sync().await), [b_join.as_str()]);
    // The roster holds every member already there; the joiner's own JOIN
    // ends it.
    let at_dave = lines(&join(&mut dave, "#r").await);
    assert_eq!(at_dave.len(), 3);
    assert!(at_dave[..2].contains(&a_join) && at_dave[..2].contains(&b_join));
    assert_eq!(at_dave[2], d_join);
    assert_eq!(lines(&alice.sync().await), [d_join.as_str()]);
    assert_eq!(lines(&bob.sync().await), [d_join.as_str()]);
    // Not a member: told nothing.
    assert!(carol.sync().await.is_empty());

    // "A JOIN for a room the peer is already in sends it the roster again
    // (its own JOIN last) and nothing to the others."
    let again = lines(&join(&mut bob, "#r").await);
    assert_eq!(again.len(), 3, "{again:#?}");
    assert!(again[..2].contains(&a_join) && again[..2].contains(&d_join));
    assert_eq!(again[2], b_join);
    for client in [&mut alice, &mut carol, &mut dave] {
        assert!(client.sync().await.is_empty());
    }
    assert_eq!(rooms(&mut carol).await, "#r 3");
    server.stop().await;
}

#[tokio::test]
async fn part_reaches_every_member_the_leaver_included() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    let mut dave = server.joined("dave", 3).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        join(client, "#r").await;
    }
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        client.sync().await;
    }
    bob.send(Frame::part("#r")).await;
    let part = about(&server, "PART", &bob, "#r", "bob");
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(lines(&client.sync().await), [part.as_str()]);
    }
    assert!(dave.sync().await.is_empty());
    // Not a member (any more, or never, or no such room): 404.
    for room in ["#r", "#never"] {
        bob.send(Frame::part(room)).await;
        bob.expect_error(Action::Part, Status::NotFound).await;
        dave.send(Frame::part(room)).await;
        dave.expect_error(Action::Part, Status::NotFound).await;
    }
    assert_eq!(rooms(&mut dave).await, "#r 2");
    server.stop().await;
}

#[tokio::test]
async fn room_messages_reach_the_members_but_the_author_and_only_from_members() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    let mut dave = server.joined("dave", 3).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        join(client, "#r").await;
    }
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        client.sync().await;
    }
    alice.send(Frame::direct("#r", "to the room")).await;
    assert!(alice.sync().await.is_empty(), "not back to the author");
    for client in [&mut bob, &mut carol] {
        let msg = client.expect_msg().await;
        assert_eq!(
            msg.to_string(),
            format!(
                "RES::MSG::200::{}::{}::#r::to the room",
                alice.id,
                msg.src()
            )
        );
    }
    assert!(dave.sync().await.is_empty());
    // From a non-member: 403, whether or not the room exists.
    for room in ["#r", "#nowhere"] {
        dave.send(Frame::direct(room, "let me in")).await;
        dave.expect_error(Action::Msg, Status::Forbidden).await;
    }
    // After a PART, a room message is refused.
    bob.send(Frame::part("#r")).await;
    bob.expect_where("the PART", |f| f.action == Action::Part)
        .await;
    bob.send(Frame::direct("#r", "still here?")).await;
    bob.expect_error(Action::Msg, Status::Forbidden).await;
    carol.send(Frame::direct("#r", "after bob left")).await;
    let msg = alice.expect_msg().await;
    assert_eq!(msg.body(), "after bob left");
    assert!(
        bob.sync().await.is_empty(),
        "a peer that left the room got its message"
    );
    let history = alice.history("#r", "10").await;
    assert_eq!(history.texts(), ["to the room", "after bob left"]);
    server.stop().await;
}

#[tokio::test]
async fn one_room_more_than_max_rooms_per_peer_is_403() {
    let server = start_with(Config {
        max_rooms_per_peer: 3,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    for room in ["#a", "#b", "#c"] {
        join(&mut alice, room).await;
    }
    alice.send(Frame::join("#d")).await;
    alice.expect_error(Action::Join, Status::Forbidden).await;
    // A room she is in already is not one more.
    assert_eq!(join(&mut alice, "#a").await.len(), 1);
    alice.send(Frame::part("#c")).await;
    alice
        .expect_frame(Kind::Res, Action::Part, Status::Ok)
        .await;
    join(&mut alice, "#d").await;
    assert_eq!(rooms(&mut alice).await, "#a 1\n#b 1\n#d 1");
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_sorted_with_counts_and_end_with_their_last_member() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    // No rooms: an empty body.
    alice.send(Frame::rooms()).await;
    let empty = alice.expect_next().await;
    assert_eq!(
        empty.to_string(),
        format!("RES::ROOMS::200::server::{}::{}::", server.srv, alice.id)
    );
    for room in ["#b", "#ab", "#a_b", "#a0", "#a.b", "#a-b", "#A"] {
        join(&mut alice, room).await;
    }
    join(&mut bob, "#b").await;
    join(&mut bob, "#a").await;
    alice.sync().await;
    alice.send(Frame::rooms()).await;
    let answer = alice.expect_next().await;
    // One line per room sorted by name, `#name <count>`, joined by LF,
    // which the wire escapes as `\n`.
    assert_eq!(
        answer.to_string(),
        format!(
            "RES::ROOMS::200::server::{}::{}::#a 2\\n#a-b 1\\n#a.b 1\\n#a0 1\\n#a_b 1\\n#ab 1\\n#b 2",
            server.srv, alice.id
        )
    );
    // A room exists while it has members.
    for room in ["#a-b", "#a.b", "#a0", "#a_b", "#ab", "#a"] {
        alice.send(Frame::part(room)).await;
    }
    alice.sync().await;
    assert_eq!(rooms(&mut alice).await, "#a 1\n#b 2");
    bob.send(Frame::part("#a")).await;
    bob.sync().await;
    assert_eq!(rooms(&mut alice).await, "#b 2");
    alice.send(Frame::part("#b")).await;
    bob.send(Frame::part("#b")).await;
    alice.sync().await;
    bob.sync().await;
    assert_eq!(rooms(&mut alice).await, "");
    server.stop().await;
}

/// "A peer removed from the server (COMM_END, `:kill`, delayed removal
/// ended) leaves all its rooms; the other members learn it from the
/// NTFY_KILL every peer gets, with no PART."
#[tokio::test]
async fn a_removed_peer_leaves_all_its_rooms_with_ntfy_kill_and_no_part() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    join(&mut alice, "#r").await;
    for (i, how) in ["COMM_END", ":kill", "removal delay"]
        .into_iter()
        .enumerate()
    {
        let mut leaver = server.joined("leaver", 1).await;
        join(&mut leaver, "#r").await;
        join(&mut leaver, &format!("#solo{i}")).await;
        alice.sync().await;
        assert_eq!(
            rooms(&mut alice).await,
            format!("#r 2\n#solo{i} 1"),
            "{how}"
        );
        match how {
            "COMM_END" => {
                leaver.send(Frame::comm_end()).await;
                leaver.expect_closed_skipping(|_| true).await;
            }
            ":kill" => {
                let answer = server.console_line(&format!(":kill {}", leaver.id)).await;
                assert!(answer.contains(&leaver.id), "{answer}");
            }
            _ => drop(leaver),
        }
        let kill = alice
            .expect_where("NTFY_KILL", |f| f.action == Action::NtfyKill)
            .await;
        assert_eq!(kill.body(), "leaver");
        assert!(alice.sync().await.is_empty(), "{how}: more than NTFY_KILL");
        assert_eq!(rooms(&mut alice).await, "#r 1", "{how}");
        // A peer registered after it is not in its rooms.
        let mut newcomer = server.joined("newcomer", 1).await;
        alice
            .send(Frame::direct("#r", format!("after {how}")))
            .await;
        alice.sync().await;
        assert!(
            newcomer
                .sync()
                .await
                .iter()
                .all(|f| f.action != Action::Msg),
            "{how}: a newcomer got a room message"
        );
        let roster = lines(&join(&mut newcomer, "#r").await);
        assert_eq!(
            roster,
            [
                about(&server, "JOIN", &alice, "#r", "alice"),
                about(&server, "JOIN", &newcomer, "#r", "newcomer"),
            ],
            "{how}"
        );
        newcomer.send(Frame::comm_end()).await;
        newcomer.expect_closed_skipping(|_| true).await;
        alice
            .expect_where("newcomer left", |f| f.action == Action::NtfyKill)
            .await;
        alice.sync().await;
    }
    assert_eq!(rooms(&mut alice).await, "#r 1");
    server.stop().await;
}

/// "An away peer stays a member; room messages to it are kept like any
/// other frame, and after a resume it is still in its rooms."
#[tokio::test]
async fn an_away_peer_stays_a_member_and_gets_its_room_messages_on_resume() {
    let server = start_with(Config {
        removal_delay: Duration::from_secs(10),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    join(&mut alice, "#r").await;
    let (bob_id, bob_token) = (bob.id.clone(), bob.token.clone());
    let mut bob = bob;
    join(&mut bob, "#r").await;
    alice.sync().await;
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    assert_eq!(rooms(&mut carol).await, "#r 2");
    // A newcomer to the room gets the away member in its roster.
    let roster = join(&mut carol, "#r").await;
    assert_eq!(roster.len(), 3);
    assert!(roster.iter().any(|f| f.sender_id() == bob_id.as_str()));
    alice.send(Frame::direct("#r", "while you were away")).await;
    alice.sync().await;
    assert_eq!(carol.expect_msg().await.body(), "while you were away");

    let mut bob = server.client().await;
    bob.send(Frame::resume(bob_id.clone(), bob_token)).await;
    bob.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    bob.id = bob_id.clone();
    let kept = bob.sync().await;
    let kept: Vec<(Action, String, String)> = kept
        .iter()
        .map(|f| (f.action, f.dst().to_string(), f.body().to_string()))
        .collect();
    assert_eq!(
        kept,
        [
            (Action::Join, "#r".to_owned(), "carol".to_owned()),
            (
                Action::Msg,
                "#r".to_owned(),
                "while you were away".to_owned()
            ),
        ]
    );
    bob.send(Frame::direct("#r", "back")).await;
    for client in [&mut alice, &mut carol] {
        assert_eq!(client.expect_msg().await.body(), "back");
    }
    // Nobody saw bob leave or join.
    for client in [&mut alice, &mut carol] {
        assert!(client.sync().await.is_empty());
    }
    assert_eq!(rooms(&mut alice).await, "#r 3");
    server.stop().await;
}

#[tokio::test]
async fn the_console_lists_rooms_and_each_peers_rooms() {
    let server = start().await;
    assert_eq!(server.console_line(":rooms").await, "no rooms");
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    join(&mut alice, "#r").await;
    join(&mut alice, "#s").await;
    join(&mut bob, "#r").await;
    alice.sync().await;
    let answer = server.console_line(":rooms").await;
    // One line per room: its name, member count and members' ids.
    let room_lines: Vec<&str> = answer.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(room_lines.len(), 2, "{answer}");
    let r = room_lines[0];
    assert!(
        r.starts_with("#r ") && r.contains('2') && r.contains(&alice.id) && r.contains(&bob.id),
        "{answer}"
    );
    let s = room_lines[1];
    assert!(
        s.starts_with("#s ") && s.contains('1') && s.contains(&alice.id) && !s.contains(&bob.id),
        "{answer}"
    );
    let list = server.console_line(":list").await;
    let line_of = |id: &str| {
        list.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not in {list}"))
            .to_owned()
    };
    let (a, b) = (line_of(&alice.id), line_of(&bob.id));
    assert!(a.contains("#r") && a.contains("#s"), "{a}");
    assert!(b.contains("#r") && !b.contains("#s"), "{b}");
    server.stop().await;
}

/// A room message costs work for its members only, and reaches them only:
/// 5 members among 150 other peers.
#[tokio::test]
async fn a_room_message_among_many_peers_reaches_only_its_members() {
    const N_OTHERS: usize = 150;
    let server = start().await;
    let mut members = Vec::new();
    for i in 0..5 {
        let mut member = server.joined(&format!("member{i}"), i).await;
        join(&mut member, "#five").await;
        members.push(member);
    }
    let mut others = Vec::new();
    for i in 0..N_OTHERS {
        others.push(server.joined(&format!("other{i}"), 5 + i).await);
    }
    members[0]
        .send(Frame::direct("#five", "members only"))
        .await;
    members[0].send(Frame::broadcast("to everyone")).await;
    // One author's messages arrive in order: anyone who got the room
    // message got it before the broadcast.
    for member in &mut members[1..] {
        assert_eq!(member.expect_msg().await.body(), "members only");
        assert_eq!(member.expect_msg().await.body(), "to everyone");
    }
    for other in &mut others {
        assert_eq!(other.expect_msg().await.body(), "to everyone");
    }
    server.stop().await;
}

/// "A room comes into being with its first JOIN and exists while it has
/// members (online or away). Its stored history outlives it."
#[tokio::test]
async fn a_room_lives_while_it_has_members_away_included_and_its_history_outlives_it() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(400),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    join(&mut alice, "#r").await;
    alice.send(Frame::direct("#r", "before")).await;
    alice.sync().await;
    let alice_id = alice.id.clone();
    drop(alice);
    server
        .wait_for_peers("alice away", |peers| {
            peers.iter().any(|p| p.id == alice_id && !p.online)
        })
        .await;
    // Only an away member: the room is still there.
    assert_eq!(rooms(&mut bob).await, "#r 1");
    bob.expect_where("alice removed", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(rooms(&mut bob).await, "");
    // A new room of the same name: the old messages are its history.
    let roster = join(&mut bob, "#r").await;
    assert_eq!(roster.len(), 1, "a new room, bob its only member");
    let history = bob.history("#r", "5").await;
    assert_eq!(history.texts(), ["before"]);
    assert_eq!(history.items[0].sender_id(), alice_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn room_requests_before_registration_are_400() {
    let server = start().await;
    let mut stranger = server.client().await;
    for frame in [Frame::join("#r"), Frame::part("#r"), Frame::rooms()] {
        let action = frame.action;
        stranger.send(frame).await;
        stranger.expect_error(action, Status::BadRequest).await;
    }
    stranger.register("stranger").await;
    assert_eq!(rooms(&mut stranger).await, "");
    server.stop().await;
}
