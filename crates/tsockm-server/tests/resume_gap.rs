//! "Resume without a gap" (the v2 addition to section 6) over TCP: a peer
//! whose connection is half-open (the test keeps the socket but reads
//! nothing) while messages are written to it resumes on a new connection
//! naming the last message id it actually read; the messages it receives
//! across both connections (and across several resumes) are the sequence
//! one unbroken connection would have given, with no duplicate and no gap,
//! also when the socket filled up and messages were still queued, and when
//! the old connection was lost and the peer was away. Only MSG frames are
//! sent again (JOIN, PART and NTFY_* written to the old connection are
//! not); an empty SRC keeps v1's behaviour (kept frames only); an unknown
//! `last_msg_id` brings every remembered message written since the resume
//! token was issued, then the kept frames.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestClient, TestServer, config, start, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

/// Resumes `old`'s session on a new connection, naming `last_msg_id` (none
/// if empty); returns the new client, its welcome read.
async fn resume(server: &TestServer, old: &TestClient, last_msg_id: &str) -> TestClient {
    let mut new = server.client().await;
    new.send(Frame::resume_after(
        old.id.clone(),
        last_msg_id,
        old.token.clone(),
    ))
    .await;
    let welcome = new.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let (id, token) = tsockm_testkit::split_welcome(&welcome);
    assert_eq!(id, old.id);
    new.id = id;
    new.token = token;
    new
}

/// Reads `n` relayed messages.
async fn read_msgs(client: &mut TestClient, n: usize) -> Vec<Frame> {
    let mut msgs = Vec::with_capacity(n);
    while msgs.len() < n {
        msgs.push(client.expect_msg().await);
    }
    msgs
}

/// Reads until `n` relayed messages have arrived; returns them and the
/// other frames that came meanwhile.
async fn read_keeping_others(client: &mut TestClient, n: usize) -> (Vec<Frame>, Vec<Frame>) {
    let (mut msgs, mut others) = (Vec::new(), Vec::new());
    while msgs.len() < n {
        let frame = client.expect_next().await;
        if frame.action == Action::Msg {
            msgs.push(frame);
        } else {
            others.push(frame);
        }
    }
    (msgs, others)
}

/// Everything the old connection still gives, to its end.
async fn drain(mut old: TestClient) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(item) = old.next_item().await {
        frames.push(item.expect("well-formed frames on the old connection"));
    }
    frames
}

fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.action == Action::Msg)
        .map(|f| f.body().to_string())
        .collect()
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// No message id twice.
fn assert_no_duplicate(frames: &[Frame]) {
    let mut seen = HashSet::new();
    for frame in frames.iter().filter(|f| f.action == Action::Msg) {
        assert!(seen.insert(frame.src().to_string()), "{frame} twice");
    }
}

/// Alice sends `m<from>..m<to>` to the lobby, to #r and directly to bob, in
/// turn; `carol` (lobby and #r) reads hers to tell when they are relayed.
async fn send_mixed(alice: &mut TestClient, bob_id: &str, range: std::ops::Range<usize>) {
    let mut bytes = Vec::new();
    for i in range {
        let frame = match i % 3 {
            0 => Frame::broadcast(format!("m{i}")),
            1 => Frame::direct("#r", format!("m{i}")),
            _ => Frame::direct(bob_id, format!("m{i}")),
        };
        bytes.extend_from_slice(&frame.to_bytes().expect("a frame"));
    }
    alice.send_raw(&bytes).await;
    alice.sync().await;
}

/// Two half-open connections in a row, with JOIN, PART and NTFY_* frames
/// written to the first: the messages across the three connections are
/// the sequence, once each; the other frames are never sent again.
#[tokio::test]
async fn half_open_connections_lose_and_repeat_no_message() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    for client in [&mut alice, &mut bob] {
        client.send(Frame::join("#r")).await;
        client.sync().await;
    }
    let bob_id = bob.id.clone();
    send_mixed(&mut alice, &bob_id, 0..20).await;
    // Bob reads 8, then nothing: the rest is written to a socket he does
    // not read, as on a connection that went half-open.
    let mut got = read_msgs(&mut bob, 8).await;
    let last_read = got[7].src().to_string();
    // Frames of other kinds are written to him meanwhile.
    let mut dave = server.joined("dave", 2).await;
    dave.send(Frame::join("#r")).await;
    dave.send(Frame::part("#r")).await;
    dave.send(Frame::comm_end()).await;
    dave.expect_closed_skipping(|_| true).await;
    send_mixed(&mut alice, &bob_id, 20..40).await;

    let mut second = resume(&server, &bob, &last_read).await;
    let old = drain(bob).await;
    let end = old.last().expect("the old connection's last frame");
    assert_eq!(end.body(), "resumed elsewhere", "{end}");
    // What arrived on the second connection: messages and other frames.
    let (on_second, mut others_second) = read_keeping_others(&mut second, 32).await;
    let rest = second.sync().await;
    assert!(rest.iter().all(|f| f.action != Action::Msg), "{rest:#?}");
    others_second.extend(rest);
    // Every JOIN, PART and NTFY_* about dave arrived once, on one side.
    let about_dave = |frames: &[Frame]| -> Vec<String> {
        frames
            .iter()
            .filter(|f| f.sender_id() == dave.id.as_str())
            .map(|f| format!("{} {}", f.action, f.dst()))
            .collect()
    };
    let mut seen = about_dave(&old);
    seen.extend(about_dave(&others_second));
    seen.sort();
    assert_eq!(seen, ["JOIN #r", "NTFY_JOIN *", "NTFY_KILL *", "PART #r"]);
    got.extend(on_second);

    // The second goes half-open too, after reading 10 of 15 more.
    send_mixed(&mut alice, &bob_id, 40..55).await;
    got.extend(read_msgs(&mut second, 10).await);
    let last_read = got.last().map(|f| f.src().to_string()).unwrap_or_default();
    send_mixed(&mut alice, &bob_id, 55..60).await;
    let mut third = resume(&server, &second, &last_read).await;
    got.extend(read_msgs(&mut third, 10).await);
    assert!(third.sync().await.iter().all(|f| f.action != Action::Msg));
    assert_eq!(texts(&got), numbered("m", 0..60));
    assert_no_duplicate(&got);
    drop(second);
    server.stop().await;
}

/// More than the socket holds: some messages were written and not read,
/// the rest still queued at the takeover. All arrive once, in order.
#[tokio::test]
async fn a_full_half_open_socket_loses_and_repeats_no_message() {
    const N: usize = 3000;
    let server = start_with(Config {
        max_rate: 0,
        send_queue_frames: 8192,
        kept_frames: 4096,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = TestClient::connect_with_recv_buffer(server.addr, 16 * 1024).await;
    bob.register("bob").await;
    bob.expect_where("the roster", |f| f.action == Action::NtfyJoin)
        .await;
    alice.sync().await;
    let padding = "p".repeat(2000);
    let mut script = Vec::new();
    for i in 0..N {
        let frame = Frame::direct(bob.id.clone(), format!("m{i} {padding}"));
        script.extend_from_slice(&frame.to_bytes().expect("a frame"));
    }
    alice.send_raw(&script).await;
    let mut got = read_msgs(&mut bob, 100).await;
    let last_read = got[99].src().to_string();
    // A message to herself, after all of them, tells when all are relayed.
    alice.send(Frame::direct(alice.id.clone(), "relayed")).await;
    alice
        .expect_where("the marker", |f| f.body() == "relayed")
        .await;

    let mut new = resume(&server, &bob, &last_read).await;
    let old = tokio::spawn(drain(bob));
    got.extend(read_msgs(&mut new, N - 100).await);
    let body_of = |f: &Frame| f.body().split(' ').next().unwrap_or_default().to_owned();
    let received: Vec<String> = got.iter().map(body_of).collect();
    assert_eq!(received, numbered("m", 0..N));
    assert_no_duplicate(&got);
    new.expect_silence(Duration::from_millis(50)).await;
    let old = old.await.expect("the old connection is read to its end");
    assert_eq!(old.last().map(|f| f.body()), Some("resumed elsewhere"));
    // The test is only worth it if the old socket held unread messages.
    assert!(
        old.iter().filter(|f| f.action == Action::Msg).count() > 0,
        "nothing was written and left unread"
    );
    server.stop().await;
}

/// A connection lost (the client gone, its socket reset): the peer is
/// away; messages written and not read are sent again, then the kept ones.
#[tokio::test]
async fn a_lost_connection_resumed_loses_and_repeats_no_message() {
    let server = start_with(Config {
        removal_delay: Duration::from_secs(10),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    let bob_id = bob.id.clone();
    for i in 0..10 {
        alice.send(Frame::direct(&bob_id, format!("m{i}"))).await;
    }
    alice.sync().await;
    let got = read_msgs(&mut bob, 4).await;
    let (last_read, token) = (got[3].src().to_string(), bob.token.clone());
    // Closed with unread data: a reset.
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    for i in 10..15 {
        alice.send(Frame::direct(&bob_id, format!("m{i}"))).await;
    }
    alice.sync().await;
    let mut new = server.client().await;
    new.send(Frame::resume_after(bob_id.clone(), last_read, token))
        .await;
    new.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let mut all = got;
    all.extend(read_msgs(&mut new, 11).await);
    assert_eq!(texts(&all), numbered("m", 0..15));
    assert_no_duplicate(&all);
    new.expect_silence(Duration::from_millis(50)).await;
    server.stop().await;
}

/// "An empty SRC keeps v1's behaviour (kept frames only)", where naming
/// the last message read sends the unread ones again.
#[tokio::test]
async fn an_empty_src_resends_nothing_written_before() {
    let server = start_with(Config {
        removal_delay: Duration::from_secs(10),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice.sync().await;
    for i in 0..6 {
        alice.send(Frame::direct(&bob.id, format!("m{i}"))).await;
    }
    let got = read_msgs(&mut bob, 6).await;
    bob.sync().await;
    // Every frame read: closing is a clean end, and the peer is away.
    let (bob_id, token) = (bob.id.clone(), bob.token.clone());
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    alice.send(Frame::direct(&bob_id, "kept")).await;
    alice.sync().await;

    // v1: the kept frame only.
    let mut v1 = server.client().await;
    v1.send(Frame::resume(bob_id.clone(), token)).await;
    let welcome = v1.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let (_, token) = tsockm_testkit::split_welcome(&welcome);
    v1.id = bob_id.clone();
    let after = v1.sync().await;
    assert_eq!(texts(&after), ["kept"]);

    // Away again, and back naming m2, which was written to an earlier
    // connection than the last one: not remembered for the last one, so
    // every message written since that connection's token was issued.
    drop(v1);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    let mut named = server.client().await;
    named
        .send(Frame::resume_after(bob_id.clone(), got[2].src(), token))
        .await;
    named
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    named.id = bob_id.clone();
    assert_eq!(texts(&named.sync().await), ["kept"]);
    server.stop().await;
}

/// "A `last_msg_id` the server no longer remembers for this peer → ...
/// every remembered message written after the resume token was issued is
/// sent again, then the kept frames."
#[tokio::test]
async fn an_unknown_last_msg_id_resends_what_was_written_since_the_token() {
    let server = start_with(Config {
        removal_delay: Duration::from_secs(10),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut first = server.joined("bob", 1).await;
    alice.sync().await;
    let bob_id = first.id.clone();
    for i in 0..2 {
        alice.send(Frame::direct(&bob_id, format!("m{i}"))).await;
    }
    let got = read_msgs(&mut first, 2).await;
    // A resume (a new token) naming the last message: nothing again.
    let mut second = resume(&server, &first, got[1].src()).await;
    drop(first);
    assert!(second.sync().await.is_empty());
    for i in 2..4 {
        alice.send(Frame::direct(&bob_id, format!("m{i}"))).await;
    }
    assert_eq!(texts(&read_msgs(&mut second, 2).await), ["m2", "m3"]);
    second.sync().await;
    let token = second.token.clone();
    drop(second);
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;
    alice.send(Frame::direct(&bob_id, "m4")).await;
    alice.sync().await;
    let mut third = server.client().await;
    third
        .send(Frame::resume_after(bob_id.clone(), "unknown1234", token))
        .await;
    third
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    third.id = bob_id.clone();
    // m2 and m3 (written since the second token), then m4 (kept); not m0
    // or m1, written before it.
    assert_eq!(texts(&third.sync().await), ["m2", "m3", "m4"]);
    server.stop().await;
}

/// "it remembers, per peer, at least the last `--kept-frames` messages
/// written": with 5, a resume naming the 5th from last gets the 4 after it.
#[tokio::test]
async fn the_last_kept_frames_messages_written_are_remembered() {
    let server = start_with(Config {
        kept_frames: 5,
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice.sync().await;
    for i in 0..20 {
        alice.send(Frame::direct(&bob.id, format!("m{i}"))).await;
    }
    alice.sync().await;
    // Bob read none of them; their ids, from the history of the
    // conversation.
    let ids = alice.history(&bob.id, "20").await.ids();
    assert_eq!(ids.len(), 20);
    let mut new = resume(&server, &bob, &ids[15]).await;
    assert_eq!(texts(&new.sync().await), numbered("m", 16..20));
    drop(bob);
    server.stop().await;
}
