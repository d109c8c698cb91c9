//! Section 12 of the contract (HISTORY) over TCP: the latest n, `before`
//! and `after` an id, oldest first; the end frame `end <count>` with
//! ` more` exactly when more exist in the direction asked; n taken as 500
//! above 500; 400 for a malformed query, 404 for an unknown message id or a
//! peer id never registered, 403 for a room one is not in, in section 14's
//! order (field syntax, membership, unknown id); direct conversations in
//! both directions named by the other peer's id; the exact item format
//! with `::` and newlines in the text; an author gone but still named;
//! read-your-writes; `--history-max` (the latest per conversation; 0 stores
//! nothing); HISTORY before registration.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{TestClient, TestServer, config, start, start_with};
use tsockm_proto::{Action, Frame, Status};
use tsockm_server::Config;
use tsockm_testkit::{History, history_text};

/// The encoded lines of `frames`, one after the other, to send in one write.
fn script(frames: impl IntoIterator<Item = Frame>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        bytes.extend_from_slice(&frame.to_bytes().expect("a valid frame"));
    }
    bytes
}

/// Reads relayed messages until `n` have arrived; returns their ids.
async fn read_ids(client: &mut TestClient, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        ids.push(client.expect_msg().await.src().to_string());
    }
    ids
}

/// Two peers; alice sends `n` broadcasts `m0`, `m1`, ...; bob's ids of them.
async fn lobby_of(server: &TestServer, n: usize) -> (TestClient, TestClient, Vec<String>) {
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    alice
        .send_raw(&script((0..n).map(|i| Frame::broadcast(format!("m{i}")))))
        .await;
    let ids = read_ids(&mut bob, n).await;
    (alice, bob, ids)
}

/// Sends HISTORY and expects `ERR::HISTORY::<status>`.
async fn refused(client: &mut TestClient, conversation: &str, query: &str, status: Status) {
    client.send(Frame::history(conversation, query)).await;
    let error = client
        .expect_where("the refusal", |f| f.action == Action::History)
        .await;
    assert!(
        error.kind == tsockm_proto::Kind::Err && error.status == status,
        "HISTORY {conversation:?} {query:?}: expected {status}, got {error}"
    );
}

fn texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[tokio::test]
async fn latest_before_and_after_oldest_first_with_more_exactly_when_more_exist() {
    let server = start().await;
    let (_alice, mut bob, ids) = lobby_of(&server, 10).await;
    let cases: [(String, std::ops::Range<usize>, &str); 12] = [
        ("3".into(), 7..10, "end 3 more"),
        ("10".into(), 0..10, "end 10"),
        ("11".into(), 0..10, "end 10"),
        (format!("3 before {}", ids[5]), 2..5, "end 3 more"),
        (format!("3 before {}", ids[3]), 0..3, "end 3"),
        (format!("3 before {}", ids[2]), 0..2, "end 2"),
        (format!("3 before {}", ids[0]), 0..0, "end 0"),
        (format!("3 after {}", ids[5]), 6..9, "end 3 more"),
        (format!("3 after {}", ids[6]), 7..10, "end 3"),
        (format!("3 after {}", ids[8]), 9..10, "end 1"),
        (format!("3 after {}", ids[9]), 10..10, "end 0"),
        (format!("9 after {}", ids[0]), 1..10, "end 9"),
    ];
    for (query, range, end) in cases {
        let history = bob.history("*", &query).await;
        assert_eq!(history.texts(), texts(range.clone()), "{query}");
        assert_eq!(history.ids(), ids[range].to_vec(), "{query}");
        assert_eq!(
            history.end.to_string(),
            format!("RES::HISTORY::200::server::{}::*::{end}", server.srv),
            "{query}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn more_than_500_is_taken_as_500() {
    const N: usize = 502;
    let server = start().await;
    let (_alice, mut bob, ids) = lobby_of(&server, N).await;
    for query in ["501", "500", "99999999999999999999999999"] {
        let history = bob.history("*", query).await;
        assert_eq!(history.ids(), ids[N - 500..].to_vec(), "{query}");
        assert_eq!(history.end.body(), "end 500 more", "{query}");
    }
    let history = bob.history("*", &format!("501 after {}", ids[0])).await;
    assert_eq!(history.ids(), ids[1..501].to_vec());
    assert_eq!(history.end.body(), "end 500 more");
    let history = bob
        .history("*", &format!("600 before {}", ids[N - 1]))
        .await;
    assert_eq!(history.ids(), ids[N - 501..N - 1].to_vec());
    assert_eq!(history.end.body(), "end 500 more");
    server.stop().await;
}

/// An answer larger than the asker's send queue reaches a peer that keeps
/// up with its queue, whole, instead of cutting it off.
#[tokio::test]
async fn an_answer_larger_than_the_send_queue_arrives_whole() {
    const N: usize = 10;
    let server = start_with(Config {
        max_frame_bytes: 32 * 1024,
        send_queue_bytes: 64 * 1024,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    let big = "x".repeat(15_000);
    let mut ids = Vec::new();
    for i in 0..N {
        // One at a time: ten at once would overflow bob's queue too.
        alice.send(Frame::broadcast(format!("{i} {big}"))).await;
        ids.extend(read_ids(&mut bob, 1).await);
    }
    // Ten items of 15 KB: about 150 KB for a queue of 64 KiB.
    let history = bob.history("*", "10").await;
    assert_eq!(history.ids(), ids);
    assert_eq!(history.end.body(), "end 10");
    // Still connected, and served.
    let again = bob.history("*", "1").await;
    assert_eq!(again.ids(), ids[N - 1..].to_vec());
    server.stop().await;
}

#[tokio::test]
async fn malformed_queries_are_400() {
    let server = start().await;
    let (_alice, mut bob, ids) = lobby_of(&server, 2).await;
    let id = &ids[0];
    for query in [
        "0".to_owned(),
        "abc".to_owned(),
        "5 before".to_owned(),
        "5 after".to_owned(),
        String::new(),
        "-1".to_owned(),
        "1.5".to_owned(),
        format!("0 before {id}"),
        format!("5 sideways {id}"),
        format!("5 before {id} {id}"),
        format!("before {id}"),
        format!("x after {id}"),
    ] {
        refused(&mut bob, "*", &query, Status::BadRequest).await;
    }
    // No conversation at all.
    refused(&mut bob, "", "5", Status::BadRequest).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_404_and_rooms_one_is_not_in_403() {
    let server = start().await;
    let (mut alice, mut bob, ids) = lobby_of(&server, 2).await;
    for query in ["5 before zzzzzzzzzzz", "5 after server", "5 after 0"] {
        refused(&mut bob, "*", query, Status::NotFound).await;
    }
    // A peer id never registered.
    refused(&mut bob, "nobody1234", "5", Status::NotFound).await;
    refused(&mut bob, "server", "5", Status::NotFound).await;
    // A room one is not in, existing or not.
    alice.send(Frame::join("#r")).await;
    alice
        .expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    alice.send(Frame::direct("#r", "in the room")).await;
    alice.sync().await;
    for room in ["#r", "#nowhere"] {
        refused(&mut bob, room, "5", Status::Forbidden).await;
    }
    // Reading chosen: a message id of another conversation is not a
    // message of this one, so it is unknown here.
    let room = alice.history("#r", "1").await;
    refused(
        &mut alice,
        "#r",
        &format!("5 before {}", ids[1]),
        Status::NotFound,
    )
    .await;
    refused(
        &mut alice,
        "*",
        &format!("5 before {}", room.ids()[0]),
        Status::NotFound,
    )
    .await;
    server.stop().await;
}

/// Section 14: "Room and conversation checks are the action's own checks
/// (step 9), in the order: field syntax 400, membership 403, unknown id
/// 404."
#[tokio::test]
async fn checks_come_in_section_14s_order() {
    let server = start().await;
    let (mut alice, mut bob, _) = lobby_of(&server, 1).await;
    alice.send(Frame::join("#r")).await;
    alice.sync().await;
    let cases = [
        ("#bad name", "abc", Status::BadRequest),
        ("#bad name", "5", Status::BadRequest),
        ("#r", "abc", Status::BadRequest),
        ("#r", "5 before", Status::BadRequest),
        ("nobody1234", "abc", Status::BadRequest),
        ("#r", "5 before zzzzzzzzzzz", Status::Forbidden),
        ("#nowhere", "5 after zzzzzzzzzzz", Status::Forbidden),
        ("nobody1234", "5 before zzzzzzzzzzz", Status::NotFound),
        ("*", "5 before zzzzzzzzzzz", Status::NotFound),
    ];
    for (conversation, query, status) in cases {
        refused(&mut bob, conversation, query, status).await;
    }
    // Section 9's step 7 (SENDER_ID naming someone else) comes first.
    let spoofed = Frame::history("#bad name", "abc").with_sender(alice.id.clone());
    bob.send(spoofed).await;
    bob.expect_error(Action::History, Status::Forbidden).await;
    server.stop().await;
}

#[tokio::test]
async fn history_before_registration_is_400() {
    let server = start().await;
    let mut stranger = server.client().await;
    stranger.send(Frame::history("*", "5")).await;
    stranger
        .expect_error(Action::History, Status::BadRequest)
        .await;
    // The connection stays usable.
    stranger.register("stranger").await;
    assert_eq!(stranger.history("*", "5").await.end.body(), "end 0");
    server.stop().await;
}

#[tokio::test]
async fn a_direct_conversation_holds_both_directions_named_by_the_other_peer() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    alice.sync().await;
    bob.sync().await;
    let (a, b) = (alice.id.clone(), bob.id.clone());
    alice.send(Frame::direct(&b, "a1")).await;
    alice.send(Frame::direct(&b, "a2")).await;
    alice.sync().await;
    bob.send(Frame::direct(&a, "b1")).await;
    bob.send(Frame::direct(&b, "to myself")).await;
    bob.sync().await;
    assert_eq!(alice.expect_msg().await.body(), "b1");
    let at_alice = alice.history(&b, "10").await;
    assert_eq!(at_alice.texts(), ["a1", "a2", "b1"]);
    assert!(at_alice.items.iter().all(|f| f.dst() == b.as_str()));
    assert_eq!(at_alice.end.dst(), b.as_str());
    let authors: Vec<&str> = at_alice.items.iter().map(|f| f.sender_id()).collect();
    assert_eq!(authors, [a.as_str(), a.as_str(), b.as_str()]);
    let at_bob = bob.history(&a, "10").await;
    assert_eq!(at_bob.ids(), at_alice.ids());
    assert!(at_bob.items.iter().all(|f| f.dst() == a.as_str()));
    assert_eq!(at_bob.end.dst(), a.as_str());
    // A message to oneself is a conversation of its own.
    let own = bob.history(&b, "10").await;
    assert_eq!(own.texts(), ["to myself"]);
    // Nobody else reads it: carol's conversations with them are empty.
    for other in [&a, &b] {
        let history = carol.history(other, "10").await;
        assert!(history.items.is_empty());
        assert_eq!(history.end.body(), "end 0");
    }
    // Bob gone, his id was registered: the conversation is still there.
    bob.send(Frame::comm_end()).await;
    bob.expect_closed_skipping(|_| true).await;
    alice
        .expect_where("bob left", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(alice.history(&b, "10").await.ids(), at_alice.ids());
    server.stop().await;
}

#[tokio::test]
async fn an_item_is_exactly_the_contracts_format() {
    let server = start().await;
    let mut alice = server.joined("al:ice \u{1D11E}", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    let text = "a::b\nsecond line :: \\ and \r done::";
    let before = now_ms();
    alice.send(Frame::broadcast(text)).await;
    let relayed = bob.expect_msg().await;
    let after = now_ms();
    let history = bob.history("*", "1").await;
    let item = &history.items[0];
    let (at_ms, rest) = item.body().split_once("::").expect("unix ms first");
    let at_ms: u128 = at_ms.parse().expect("unix ms are digits");
    assert!(
        before <= at_ms && at_ms <= after,
        "{before} <= {at_ms} <= {after}"
    );
    assert_eq!(rest, format!("al:ice \u{1D11E}::{text}"));
    assert_eq!(history_text(item), text);
    // On the wire: the text escaped as the body of a frame.
    assert_eq!(
        item.to_string(),
        format!(
            "RES::HISTORY::200::{}::{}::*::{at_ms}::al:ice \u{1D11E}::a::b\\nsecond line :: \\\\ and \\r done::",
            alice.id,
            relayed.src()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn an_author_gone_is_still_named() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    let alice_id = alice.id.clone();
    alice.send(Frame::broadcast("goodbye")).await;
    alice.send(Frame::comm_end()).await;
    alice.expect_closed_skipping(|_| true).await;
    bob.expect_where("alice left", |f| f.action == Action::NtfyKill)
        .await;
    let history = bob.history("*", "5").await;
    assert_eq!(history.items.len(), 1);
    assert_eq!(history.items[0].sender_id(), alice_id.as_str());
    assert!(history.items[0].body().contains("::alice::goodbye"));
    server.stop().await;
}

/// "An answer includes every matching message accepted before the request
/// was read, whether or not it has reached the store yet."
#[tokio::test]
async fn an_answer_includes_every_message_accepted_before_it() {
    const N: usize = 300;
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    // The burst and the request in one write.
    let mut burst = script((0..N).map(|i| Frame::broadcast(format!("m{i}"))));
    burst.extend_from_slice(&Frame::history("*", "500").to_bytes().expect("a frame"));
    alice.send_raw(&burst).await;
    let history = alice.history_answer().await;
    assert_eq!(history.texts(), texts(0..N));
    // Seen from another connection: once the last one is received.
    let ids = read_ids(&mut bob, N).await;
    assert_eq!(bob.history("*", "500").await.ids(), ids);
    server.stop().await;
}

#[tokio::test]
async fn history_max_keeps_the_latest_of_each_conversation() {
    let server = start_with(Config {
        history_max: 5,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    alice.send(Frame::join("#r")).await;
    alice
        .expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    let b = bob.id.clone();
    alice
        .send_raw(&script((0..8).flat_map(|i| {
            [
                Frame::broadcast(format!("m{i}")),
                Frame::direct(&b, format!("m{i}")),
            ]
        })))
        .await;
    alice
        .send_raw(&script(
            (0..3).map(|i| Frame::direct("#r", format!("m{i}"))),
        ))
        .await;
    let ids = read_ids(&mut bob, 16).await;
    let lobby = bob.history("*", "10").await;
    assert_eq!(lobby.texts(), texts(3..8));
    assert_eq!(lobby.end.body(), "end 5", "no more are kept");
    let direct = bob.history(&alice.id, "10").await;
    assert_eq!(direct.texts(), texts(3..8));
    assert_eq!(alice.history("#r", "10").await.texts(), texts(0..3));
    let oldest_kept = lobby.ids()[0].clone();
    assert_eq!(
        bob.history("*", &format!("5 before {oldest_kept}"))
            .await
            .end
            .body(),
        "end 0"
    );
    // Reading chosen: a message no longer kept is unknown.
    let pruned = &ids[0];
    refused(
        &mut bob,
        "*",
        &format!("5 after {pruned}"),
        Status::NotFound,
    )
    .await;
    server.stop().await;
}

/// "0 stores nothing and answers every HISTORY with an empty answer".
/// Not asserted here: a query anchored on an id the server issued
/// (`5 after <id>`) is answered `ERR::HISTORY::404` rather than `end 0`.
#[tokio::test]
async fn history_max_0_answers_the_latest_with_end_0() {
    let server = start_with(Config {
        history_max: 0,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    alice.send(Frame::join("#r")).await;
    alice
        .expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    alice.send(Frame::broadcast("not kept")).await;
    alice.send(Frame::direct(&bob.id, "not kept")).await;
    alice.send(Frame::direct("#r", "not kept")).await;
    read_ids(&mut bob, 2).await;
    alice.sync().await;
    let empty = |history: &History| history.items.is_empty() && history.end.body() == "end 0";
    assert!(empty(&bob.history("*", "5").await));
    assert!(empty(&bob.history(&alice.id, "500").await));
    assert!(empty(&alice.history("#r", "5").await));
    server.stop().await;
}
