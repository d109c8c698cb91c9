//! Registration, the roster, messages, lookups and leaving, over real TCP.

mod common;

use std::collections::HashSet;

use common::{TestClient, start};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_testkit::is_message_id;

#[tokio::test]
async fn registration_answers_with_id_and_token() {
    let server = start().await;
    let mut alice = server.client().await;
    alice.send(Frame::register("alice")).await;
    let welcome = alice
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    assert_eq!(welcome.sender_id(), "server");
    assert_eq!(welcome.src(), server.srv.as_str());
    assert_eq!(welcome.dst(), alice.local_addr().to_string().as_str());
    let (id, token) = tsockm_testkit::split_welcome(&welcome);
    assert!(
        id.len() >= 10 && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert!(token.len() >= 22, "{token}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{token}"
    );
    server.stop().await;
}

#[tokio::test]
async fn ids_are_unique_and_usernames_may_repeat() {
    let server = start().await;
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for i in 0..20 {
        let client = server.joined("same", i).await;
        assert!(ids.insert(client.id.clone()), "duplicate id {}", client.id);
        clients.push(client);
    }
    server.stop().await;
}

#[tokio::test]
async fn newcomer_gets_the_roster_and_others_get_the_announcement() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let join = alice.expect_next().await;
    assert_eq!(
        join.to_string(),
        format!("RES::NTFY_JOIN::200::{}::{}::*::bob", bob.id, server.srv)
    );

    let mut carol = server.client().await;
    carol.register("carol").await;
    let first = carol
        .expect_frame(Kind::Res, Action::NtfyJoin, Status::Ok)
        .await;
    let second = carol
        .expect_frame(Kind::Res, Action::NtfyJoin, Status::Ok)
        .await;
    assert_eq!(
        first.to_string(),
        format!(
            "RES::NTFY_JOIN::200::{}::{}::{}::alice",
            alice.id, server.srv, carol.id
        )
    );
    assert_eq!(
        second.to_string(),
        format!(
            "RES::NTFY_JOIN::200::{}::{}::{}::bob",
            bob.id, server.srv, carol.id
        )
    );
    for other in [&mut alice, &mut bob] {
        let join = other.expect_next().await;
        assert_eq!(
            join.to_string(),
            format!(
                "RES::NTFY_JOIN::200::{}::{}::*::carol",
                carol.id, server.srv
            )
        );
    }
    carol
        .expect_silence(std::time::Duration::from_millis(100))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_everyone_but_the_author() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    alice
        .expect_where("bob joined", |f| f.action == Action::NtfyJoin)
        .await;
    alice
        .expect_where("carol joined", |f| f.action == Action::NtfyJoin)
        .await;
    bob.expect_where("carol joined", |f| f.action == Action::NtfyJoin)
        .await;

    alice
        .send(Frame::broadcast("hello :: all\nsecond line \\ done"))
        .await;
    let mut ids = Vec::new();
    for peer in [&mut bob, &mut carol] {
        let msg = peer.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
        assert_eq!(msg.sender_id(), alice.id.as_str());
        // v2: SRC of a relayed message is its message id, the same for
        // every recipient.
        assert!(is_message_id(msg.src()), "{msg}");
        ids.push(msg.src().to_string());
        assert_eq!(msg.dst(), "*");
        assert_eq!(msg.body(), "hello :: all\nsecond line \\ done");
    }
    assert_eq!(ids[0], ids[1]);
    // An empty DST is a broadcast too, and empty text is allowed.
    bob.send(Frame::request(Action::Msg)).await;
    let msg = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(
        (msg.sender_id(), msg.dst(), msg.body()),
        (bob.id.as_str(), "*", "")
    );
    carol.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    alice
        .expect_silence(std::time::Duration::from_millis(100))
        .await;
    bob.expect_silence(std::time::Duration::from_millis(1))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_escapes_are_relayed_escaped_properly() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    // Bob reads raw lines to see the exact bytes the server writes.
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"REQ::COMM::200::::::::bob\n")
        .await
        .unwrap();
    let next = async |lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>| {
        tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert!(next(&mut lines).await.starts_with("RES::COMM::200::"));
    assert!(next(&mut lines).await.starts_with("RES::NTFY_JOIN::200::"));
    alice
        .send_raw(b"REQ::MSG::200::::::*::tab\\there\\\n")
        .await;
    let line = next(&mut lines).await;
    let fields: Vec<&str> = line.splitn(7, "::").collect();
    assert_eq!(
        fields[..4],
        ["RES", "MSG", "200", alice.id.as_str()],
        "{line}"
    );
    assert!(is_message_id(fields[4]), "{line}");
    assert_eq!(fields[5..], ["*", "tab\\\\there\\\\"], "{line}");
    server.stop().await;
}

#[tokio::test]
async fn direct_messages_reach_only_the_recipient() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    alice
        .expect_where("carol joined", |f| f.body() == "carol")
        .await;
    bob.expect_where("carol joined", |f| f.body() == "carol")
        .await;

    alice.send(Frame::direct(bob.id.clone(), "psst")).await;
    let dm = bob.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert!(is_message_id(dm.src()), "{dm}");
    assert_eq!(
        dm.to_string(),
        format!(
            "RES::MSG::200::{}::{}::{}::psst",
            alice.id,
            dm.src(),
            bob.id
        )
    );
    carol
        .expect_silence(std::time::Duration::from_millis(100))
        .await;
    alice
        .expect_silence(std::time::Duration::from_millis(1))
        .await;

    // To oneself: delivered to oneself.
    alice
        .send(Frame::direct(alice.id.clone(), "note to self"))
        .await;
    let own = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(
        (own.sender_id(), own.dst()),
        (alice.id.as_str(), alice.id.as_str())
    );

    // Unknown id: 404 to the author.
    alice.send(Frame::direct("nobody1234", "hello?")).await;
    let error = alice.expect_error(Action::Msg, Status::NotFound).await;
    assert_eq!(error.sender_id(), "server");
    assert_eq!(error.dst(), alice.id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn each_author_order_is_kept_and_nothing_is_lost() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    let mut carol = server.joined("carol", 2).await;
    alice
        .expect_where("carol joined", |f| f.body() == "carol")
        .await;
    bob.expect_where("carol joined", |f| f.body() == "carol")
        .await;
    const N: usize = 500;
    let send_all = async |client: &mut TestClient, tag: &str| {
        for i in 0..N {
            client.send(Frame::broadcast(format!("{tag} {i}"))).await;
        }
    };
    send_all(&mut alice, "a").await;
    send_all(&mut bob, "b").await;
    let mut next = std::collections::HashMap::new();
    for _ in 0..2 * N {
        let msg = carol.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
        let (tag, seq) = msg.body().split_once(' ').unwrap();
        let seq: usize = seq.parse().unwrap();
        let expected = next.entry(tag.to_owned()).or_insert(0);
        assert_eq!(seq, *expected, "out of order from {tag}");
        *expected += 1;
    }
    assert_eq!(next.get("a"), Some(&N));
    assert_eq!(next.get("b"), Some(&N));
    server.stop().await;
}

#[tokio::test]
async fn get_peer_finds_usernames_and_404s_unknown_ids() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    alice.send(Frame::get_peer(bob.id.clone())).await;
    let found = alice.expect_next().await;
    assert_eq!(
        found.to_string(),
        format!(
            "RES::GET_PEER::200::{}::{}::{}::bob",
            bob.id, server.srv, alice.id
        )
    );
    alice.send(Frame::get_peer("unknown123")).await;
    let missing = alice.expect_error(Action::GetPeer, Status::NotFound).await;
    assert_eq!(missing.sender_id(), "server");
    assert_eq!(missing.dst(), alice.id.as_str());
    assert!(!missing.body().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn comm_end_is_answered_closed_and_announced() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    // SENDER_ID may be the own id.
    bob.send(Frame::comm_end().with_sender(bob.id.clone()))
        .await;
    let end = bob.expect_next().await;
    assert_eq!(
        end.to_string(),
        format!("RES::COMM_END::200::server::{}::{}::OK", server.srv, bob.id)
    );
    bob.expect_closed().await;
    let kill = alice.expect_next().await;
    assert_eq!(
        kill.to_string(),
        format!("RES::NTFY_KILL::200::{}::{}::*::bob", bob.id, server.srv)
    );
    // Bob is gone for lookups and direct messages.
    alice.send(Frame::get_peer(bob.id.clone())).await;
    alice.expect_error(Action::GetPeer, Status::NotFound).await;
    server.stop().await;
}

#[tokio::test]
async fn a_frame_in_another_peers_name_has_no_effect() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;

    bob.send(Frame::comm_end().with_sender(alice.id.clone()))
        .await;
    bob.expect_error(Action::CommEnd, Status::Forbidden).await;
    bob.send(Frame::broadcast("I am alice").with_sender(alice.id.clone()))
        .await;
    let error = bob.expect_error(Action::Msg, Status::Forbidden).await;
    assert_eq!(error.dst(), bob.id.as_str());
    bob.send(Frame::get_peer(alice.id.clone()).with_sender("server"))
        .await;
    bob.expect_error(Action::GetPeer, Status::Forbidden).await;
    bob.send(Frame::health_answer(alice.id.clone())).await;
    bob.expect_error(Action::Comm, Status::Forbidden).await;
    alice
        .expect_silence(std::time::Duration::from_millis(150))
        .await;

    // Both are still there and can talk.
    bob.send(Frame::broadcast("still here")).await;
    let msg = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
    assert_eq!(msg.sender_id(), bob.id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn usernames_follow_the_rules() {
    let server = start().await;
    let mut client = server.client().await;
    let too_long = "x".repeat(33);
    for bad in [
        "",
        " alice",
        "alice ",
        "a::b",
        "tab\there",
        too_long.as_str(),
    ] {
        client.send(Frame::register(bad)).await;
        let error = client.expect_error(Action::Comm, Status::BadRequest).await;
        assert_eq!(
            error.dst(),
            client.local_addr().to_string().as_str(),
            "{bad:?}"
        );
    }
    // Control characters arrive escaped or raw; both are refused.
    client.send_raw(b"REQ::COMM::200::::::::a\\nb\n").await;
    client.expect_error(Action::Comm, Status::BadRequest).await;
    // The connection stays open for another try: 32 characters are fine.
    let longest = "é".repeat(32);
    client.register(&longest).await;
    server.stop().await;
}
