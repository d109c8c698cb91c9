//! Section 10 of the contract (message ids) over TCP: the id in SRC of every
//! relayed MSG (broadcast, room, direct, a direct message to oneself), its
//! form (letters and digits, at most 32 characters, never `server`), one id
//! for every recipient of a message, ids unique, each conversation received
//! in id order (which HISTORY's order, latest, before and after, must agree
//! with), no id for a refused message, and no acknowledgement of a
//! successful MSG. The frame-length rule of section 10 is in
//! `frame_limit.rs`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestClient, config, start, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;
use tsockm_testkit::is_message_id;

/// A message to a room or a peer: `REQ::MSG::200::::::<dst>::<text>`.
fn msg_to(dst: &str, text: &str) -> Frame {
    Frame::direct(dst, text)
}

/// Joins `room` and reads the roster of `n_before` members and its own JOIN.
async fn join(client: &mut TestClient, room: &str, n_before: usize) {
    client.send(Frame::join(room)).await;
    for _ in 0..=n_before {
        client
            .expect_where("the JOIN roster", |f| f.action == Action::Join)
            .await;
    }
}

/// The encoded lines of `frames`, one after the other, to send in one write.
fn script(frames: impl IntoIterator<Item = Frame>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        bytes.extend_from_slice(&frame.to_bytes().expect("a valid frame"));
    }
    bytes
}

/// Reads relayed messages until `n` have arrived.
async fn read_msgs(client: &mut TestClient, n: usize) -> Vec<Frame> {
    let mut msgs = Vec::with_capacity(n);
    while msgs.len() < n {
        msgs.push(client.expect_msg().await);
    }
    msgs
}

fn ids(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.src().to_string()).collect()
}

#[tokio::test]
async fn every_relayed_message_carries_its_id_in_src_the_same_for_every_recipient() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    join(&mut alice, "#r", 0).await;
    join(&mut bob, "#r", 1).await;
    join(&mut carol, "#r", 2).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.sync().await;
    }
    let (a, b) = (alice.id.clone(), bob.id.clone());

    alice.send(Frame::broadcast("to all")).await;
    alice.send(msg_to("#r", "to the room")).await;
    alice.send(msg_to(&b, "to bob")).await;
    alice.send(msg_to(&a, "to myself")).await;
    // "A successful MSG is still not acknowledged to its author": before
    // the answer to her GET_PEER, alice gets only the message to herself.
    let before = alice.sync().await;
    assert_eq!(before.len(), 1, "{before:#?}");
    let to_self = &before[0];
    assert_eq!(
        to_self.to_string(),
        format!("RES::MSG::200::{a}::{}::{a}::to myself", to_self.src())
    );

    let at_bob = read_msgs(&mut bob, 3).await;
    let at_carol = read_msgs(&mut carol, 2).await;
    let expected_bob = [
        ("*", "to all"),
        ("#r", "to the room"),
        (b.as_str(), "to bob"),
    ];
    for (frame, (dst, text)) in at_bob.iter().zip(expected_bob) {
        assert_eq!(
            frame.to_string(),
            format!("RES::MSG::200::{a}::{}::{dst}::{text}", frame.src())
        );
    }
    for (frame, (dst, text)) in at_carol
        .iter()
        .zip([("*", "to all"), ("#r", "to the room")])
    {
        assert_eq!(
            frame.to_string(),
            format!("RES::MSG::200::{a}::{}::{dst}::{text}", frame.src())
        );
    }
    // "the same id for every recipient of that message".
    assert_eq!(at_bob[0].src(), at_carol[0].src());
    assert_eq!(at_bob[1].src(), at_carol[1].src());
    let all = [
        at_bob[0].src().to_string(),
        at_bob[1].src().to_string(),
        at_bob[2].src().to_string(),
        to_self.src().to_string(),
    ];
    for id in &all {
        // "letters and digits (sqids), at most 32 characters, never `server`".
        assert!(is_message_id(id), "{id:?} is not a message id");
        assert!(id.len() <= 32 && id != "server");
    }
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4, "{all:?}");
    carol.expect_silence(Duration::from_millis(50)).await;
    server.stop().await;
}

#[tokio::test]
async fn ids_are_unique_across_conversations() {
    const N: usize = 100;
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    join(&mut alice, "#r", 0).await;
    join(&mut bob, "#r", 1).await;
    alice.sync().await;
    let (a, b) = (alice.id.clone(), bob.id.clone());
    let from_alice = script((0..N).flat_map(|i| {
        [
            Frame::broadcast(format!("lobby {i}")),
            msg_to("#r", &format!("room {i}")),
            msg_to(&b, &format!("direct {i}")),
        ]
    }));
    let from_bob = script((0..N).map(|i| msg_to(&a, &format!("back {i}"))));
    tokio::join!(alice.send_raw(&from_alice), bob.send_raw(&from_bob));
    let at_bob = read_msgs(&mut bob, 3 * N).await;
    let at_alice = read_msgs(&mut alice, N).await;
    let mut seen = HashSet::new();
    for id in ids(&at_bob).into_iter().chain(ids(&at_alice)) {
        assert!(is_message_id(&id), "{id:?}");
        assert!(seen.insert(id.clone()), "the id {id} was given twice");
    }
    assert_eq!(seen.len(), 4 * N);
    server.stop().await;
}

/// "within one conversation ... every recipient receives a conversation's
/// messages in id order": the order HISTORY gives (by id) is the order in
/// which each recipient received them, for the lobby, a room and a direct
/// conversation, with several authors writing at once.
#[tokio::test]
async fn every_recipient_receives_each_conversation_in_the_order_history_gives() {
    const N: usize = 40;
    let server = start().await;
    let mut a = server.joined("a", 0).await;
    let mut b = server.joined("b", 1).await;
    let mut c = server.joined("c", 2).await;
    let mut d = server.joined("d", 3).await;
    join(&mut a, "#r", 0).await;
    join(&mut b, "#r", 1).await;
    join(&mut c, "#r", 2).await;
    join(&mut d, "#r", 3).await;
    for client in [&mut a, &mut b, &mut c, &mut d] {
        client.sync().await;
    }
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    let mixed = |who: &str, peer: Option<&str>| {
        script((0..N).flat_map(|i| {
            let mut frames = vec![
                Frame::broadcast(format!("{who} lobby {i}")),
                msg_to("#r", &format!("{who} room {i}")),
            ];
            if let Some(peer) = peer {
                frames.push(msg_to(peer, &format!("{who} direct {i}")));
            }
            frames
        }))
    };
    let (sa, sb, sc) = (
        mixed("a", Some(&b_id)),
        mixed("b", Some(&a_id)),
        mixed("c", None),
    );
    tokio::join!(a.send_raw(&sa), b.send_raw(&sb), c.send_raw(&sc));

    // What each received, per conversation.
    let mut received = Vec::new();
    for (client, n) in [
        (&mut a, 5 * N),
        (&mut b, 5 * N),
        (&mut c, 4 * N),
        (&mut d, 6 * N),
    ] {
        let msgs = read_msgs(client, n).await;
        let of = |dst: &str| -> Vec<String> {
            msgs.iter()
                .filter(|f| f.dst() == dst)
                .map(|f| f.src().to_string())
                .collect()
        };
        let direct: Vec<String> = msgs
            .iter()
            .filter(|f| f.dst() != "*" && f.dst() != "#r")
            .map(|f| f.src().to_string())
            .collect();
        received.push((client.id.clone(), of("*"), of("#r"), direct));
    }
    let lobby = d.history("*", "500").await;
    let room = d.history("#r", "500").await;
    assert_eq!(lobby.items.len(), 3 * N);
    assert_eq!(room.items.len(), 3 * N);
    let direct = a.history(&b_id, "500").await;
    assert_eq!(direct.items.len(), 2 * N);
    assert_eq!(b.history(&a_id, "500").await.ids(), direct.ids());
    let not_by = |history: &tsockm_testkit::History, me: &str| -> Vec<String> {
        history
            .items
            .iter()
            .filter(|f| f.sender_id() != me)
            .map(|f| f.src().to_string())
            .collect()
    };
    for (me, got_lobby, got_room, got_direct) in &received {
        assert_eq!(got_lobby, &not_by(&lobby, me), "lobby order at {me}");
        assert_eq!(got_room, &not_by(&room, me), "room order at {me}");
        if me == &a_id || me == &b_id {
            assert_eq!(got_direct, &not_by(&direct, me), "direct order at {me}");
        } else {
            assert!(got_direct.is_empty());
        }
    }
    // Paging forwards with `after` and backwards with `before` gives the
    // same order.
    let all = lobby.ids();
    let mut forwards = vec![all[0].clone()];
    for _ in 0..all.len() {
        let last = forwards.last().cloned().unwrap_or_default();
        let page = d.history("*", &format!("25 after {last}")).await;
        forwards.extend(page.ids());
        if !page.end.body().ends_with(" more") {
            break;
        }
    }
    assert_eq!(forwards, all);
    let mut backwards = vec![all[all.len() - 1].clone()];
    for _ in 0..all.len() {
        let first = backwards[0].clone();
        let page = d.history("*", &format!("25 before {first}")).await;
        let mut ids = page.ids();
        ids.extend(backwards);
        backwards = ids;
        if !page.end.body().ends_with(" more") {
            break;
        }
    }
    assert_eq!(backwards, all);
    server.stop().await;
}

/// "Rejected messages (403, 404, 429, ...) get no id": the refusal carries
/// the server's address in SRC, not an id, and HISTORY never shows them.
#[tokio::test]
async fn refused_messages_get_no_id_and_are_not_stored() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    join(&mut bob, "#exists", 0).await;
    alice.sync().await;
    let refused = [
        (msg_to("#nowhere", "403 no room"), Status::Forbidden),
        (msg_to("#exists", "403 not a member"), Status::Forbidden),
        (msg_to("nobody1234", "404"), Status::NotFound),
        (msg_to("#a b", "400"), Status::BadRequest),
    ];
    for (frame, status) in refused {
        alice.send(frame).await;
        let error = alice.expect_error(Action::Msg, status).await;
        assert_eq!(error.sender_id(), "server");
        assert_eq!(error.src(), server.srv.as_str(), "{error}");
    }
    alice.send(Frame::broadcast("accepted")).await;
    let accepted = bob.expect_msg().await;
    let lobby = bob.history("*", "10").await;
    assert_eq!(lobby.ids(), [accepted.src().to_string()]);
    assert_eq!(bob.history("#exists", "10").await.end.body(), "end 0");
    server.stop().await;
}

#[tokio::test]
async fn messages_over_the_rate_get_no_id_and_are_not_stored() {
    const N: usize = 8;
    let server = start_with(Config {
        max_rate: 4,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    alice
        .send_raw(&script((0..N).map(|i| Frame::broadcast(format!("m{i}")))))
        .await;
    // Wait until the burst is handled: a GET_PEER that is not refused.
    let mut n_refused = 0;
    let mut answered = false;
    for _ in 0..50 {
        alice.send(Frame::get_peer(alice.id.clone())).await;
        loop {
            let frame = alice.expect_next().await;
            match (frame.kind, frame.action) {
                (Kind::Err, Action::Msg) => {
                    assert_eq!(frame.status, Status::TooManyRequests);
                    assert_eq!(frame.src(), server.srv.as_str());
                    n_refused += 1;
                }
                (Kind::Err, Action::GetPeer) => break,
                (Kind::Res, Action::GetPeer) => {
                    answered = true;
                    break;
                }
                _ => panic!("unexpected {frame}"),
            }
        }
        if answered {
            break;
        }
        // Waiting for the bucket to refill (4 tokens a second).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the rate never let a GET_PEER through");
    let at_bob: Vec<Frame> = bob
        .sync()
        .await
        .into_iter()
        .filter(|f| f.action == Action::Msg)
        .collect();
    assert!(n_refused >= N - 4, "{n_refused} refused");
    assert_eq!(at_bob.len() + n_refused, N);
    let lobby = bob.history("*", "10").await;
    assert_eq!(lobby.ids(), ids(&at_bob));
    server.stop().await;
}
