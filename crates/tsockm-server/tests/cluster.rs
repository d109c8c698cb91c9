//! Several nodes acting as one server through a Redis started by each test
//! (`cluster.md`): the roster, broadcasts, rooms and direct messages across
//! nodes, per-conversation order with nothing lost or doubled under load,
//! resume on another node (and taking over a session still open there),
//! a node killed, a node stopped, Redis unreachable, Redis restarted empty.
//!
//! Each test skips (with a notice) only when `redis-server` is missing and
//! `CI` is not set.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{TestClient, TestServer, config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::{ClusterConfig, Config, ConsoleReply, ConsoleRequest};
use tsockm_testkit::{RedisServer, is_message_id};

const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
const REMOVAL_DELAY: Duration = Duration::from_secs(3);

fn node_config(redis: &RedisServer, node: &str) -> Config {
    Config {
        cluster: Some(ClusterConfig {
            url: redis.url(),
            name: "test".to_owned(),
            node: node.to_owned(),
            node_timeout: NODE_TIMEOUT,
        }),
        removal_delay: REMOVAL_DELAY,
        ..config()
    }
}

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::start_with(node_config(redis, name)).await
}

fn is_msg(f: &Frame) -> bool {
    f.kind == Kind::Res && f.action == Action::Msg
}

#[tokio::test]
async fn peers_on_two_nodes_see_one_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    let join = alice
        .expect_where("bob joined", |f| f.action == Action::NtfyJoin)
        .await;
    assert_eq!((join.sender_id(), join.body()), (bob.id.as_str(), "bob"));
    assert_eq!(
        join.src(),
        a.srv.as_str(),
        "SRC is the node the client talks to"
    );
    let mut carol = a.joined("carol", 2).await;
    bob.expect_where("carol joined", |f| f.body() == "carol")
        .await;
    alice
        .expect_where("carol joined", |f| f.body() == "carol")
        .await;

    // A broadcast from node a reaches b's peers and a's others, one id.
    alice.send(Frame::broadcast("hello cluster")).await;
    let at_b = bob.expect_where("the broadcast", is_msg).await;
    let at_a = carol.expect_where("the broadcast", is_msg).await;
    assert_eq!(at_b.body(), "hello cluster");
    assert!(is_message_id(at_b.src()), "{at_b}");
    assert_eq!(at_a.src(), at_b.src());

    // A direct message across nodes, and GET_PEER of a peer on another node.
    bob.send(Frame::direct(alice.id.clone(), "psst")).await;
    let dm = alice.expect_where("the direct message", is_msg).await;
    assert_eq!((dm.dst(), dm.body()), (alice.id.as_str(), "psst"));
    bob.send(Frame::get_peer(carol.id.clone())).await;
    let found = bob
        .expect_where("GET_PEER", |f| f.action == Action::GetPeer)
        .await;
    assert_eq!(found.body(), "carol");
    bob.send(Frame::direct("nobody1234", "lost")).await;
    bob.expect_where("404", |f| {
        f.kind == Kind::Err && f.status == Status::NotFound
    })
    .await;

    // A room across nodes: roster, joins, a room message to members only.
    bob.send(Frame::join("#Ops")).await;
    let own = bob
        .expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    assert_eq!(own.dst(), "#ops");
    alice.send(Frame::join("#ops")).await;
    let roster = alice
        .expect_where("the roster", |f| f.action == Action::Join)
        .await;
    assert_eq!(roster.sender_id(), bob.id.as_str());
    let own = alice
        .expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    assert_eq!(own.sender_id(), alice.id.as_str());
    let told = bob
        .expect_where("alice joined #ops", |f| f.action == Action::Join)
        .await;
    assert_eq!(told.sender_id(), alice.id.as_str());
    alice.send(Frame::join("#ops")).await;
    alice
        .expect_where("roster again", |f| {
            f.action == Action::Join && f.sender_id() == bob.id.as_str()
        })
        .await;
    alice
        .expect_where("own JOIN again", |f| f.action == Action::Join)
        .await;
    alice
        .send(
            Frame::new(Kind::Req, Action::Msg, Status::Ok)
                .with_dst("#ops")
                .with_body("ops only"),
        )
        .await;
    let room_msg = bob.expect_where("the room message", is_msg).await;
    assert_eq!((room_msg.dst(), room_msg.body()), ("#ops", "ops only"));
    carol
        .send(
            Frame::new(Kind::Req, Action::Msg, Status::Ok)
                .with_dst("#ops")
                .with_body("x"),
        )
        .await;
    carol.expect_error(Action::Msg, Status::Forbidden).await;

    // ROOMS and HISTORY from the cluster.
    carol.send(Frame::rooms()).await;
    let rooms = carol
        .expect_where("ROOMS", |f| f.action == Action::Rooms)
        .await;
    assert_eq!(rooms.body(), "#ops 2");
    carol.send(Frame::history("*", "10")).await;
    let item = carol
        .expect_where("an item", |f| f.action == Action::History)
        .await;
    assert_eq!(item.src(), at_b.src());
    assert!(item.body().ends_with("::alice::hello cluster"), "{item}");
    let end = carol
        .expect_where("the end", |f| f.action == Action::History)
        .await;
    assert_eq!(end.body(), "end 1");

    // :list shows every peer with its node; :info the cluster.
    let listed = a.console_line(":list").await;
    assert!(
        listed.contains(&bob.id) && listed.contains("node b"),
        "{listed}"
    );
    let info = a.console_line(":info").await;
    assert!(
        info.contains("cluster: node a") && info.contains("Redis reachable"),
        "{info}"
    );

    // Leaving is announced on every node.
    carol.send(Frame::comm_end()).await;
    let kill = bob
        .expect_where("carol left", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(kill.sender_id(), carol.id.as_str());
    a.stop().await;
    b.stop().await;
}

/// Six authors on three nodes: every recipient gets every other author's
/// messages once, in each author's order, and all recipients agree on one
/// order of the lobby.
#[tokio::test]
async fn three_nodes_deliver_everything_once_in_one_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    ];
    let mut clients = Vec::new();
    for i in 0..6 {
        let client = nodes[i % 3].joined(&format!("p{i}"), i).await;
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in i + 1..6 {
            client
                .expect_where("a later join", |f| f.action == Action::NtfyJoin)
                .await;
        }
    }
    const N: usize = 100;
    for round in 0..N {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(Frame::broadcast(format!("{i}:{round}"))).await;
        }
    }
    let mut orders: Vec<Vec<String>> = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let mut next = HashMap::new();
        let mut order = Vec::new();
        for _ in 0..5 * N {
            let f = client.expect_where("a broadcast", is_msg).await;
            let (author, n) = f.body().split_once(':').unwrap();
            let author: usize = author.parse().unwrap();
            assert_ne!(author, i, "an author got its own broadcast");
            let expected = next.entry(author).or_insert(0usize);
            assert_eq!(
                n.parse::<usize>().unwrap(),
                *expected,
                "order of author {author} at {i}"
            );
            *expected += 1;
            order.push(f.body().to_string());
        }
        orders.push(order);
    }
    // Every recipient saw the same interleaving (each without its own).
    for (i, order) in orders.iter().enumerate() {
        for (j, other) in orders.iter().enumerate() {
            let mine: Vec<&String> = order
                .iter()
                .filter(|m| !m.starts_with(&format!("{j}:")))
                .collect();
            let theirs: Vec<&String> = other
                .iter()
                .filter(|m| !m.starts_with(&format!("{i}:")))
                .collect();
            assert_eq!(mine, theirs, "recipients {i} and {j} disagree on the order");
        }
    }
    for node in nodes {
        node.stop().await;
    }
}

/// A client whose connection to node a drops resumes on node b with its
/// token and last message id: it gets what it missed, and nobody sees it
/// leave or join.
#[tokio::test]
async fn a_session_resumes_on_another_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    bob.send(Frame::broadcast("one")).await;
    let one = alice.expect_where("one", is_msg).await;
    let (id, token) = (alice.id.clone(), alice.token.clone());
    drop(alice);
    a.wait_for_peers("alice away", |peers| {
        peers.iter().any(|p| p.id == id && !p.online)
    })
    .await;
    bob.send(Frame::broadcast("two")).await;
    bob.send(Frame::direct(id.clone(), "three")).await;

    let mut back = TestClient::connect(b.addr).await;
    back.send(Frame::resume_after(id.clone(), one.src(), token))
        .await;
    let welcome = back.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    assert!(welcome.body().starts_with(&format!("{id} ")), "{welcome}");
    let mut bodies = Vec::new();
    for _ in 0..2 {
        bodies.push(
            back.expect_where("what it missed", is_msg)
                .await
                .body()
                .to_string(),
        );
    }
    assert_eq!(bodies, ["two", "three"]);
    // It is on node b now, and no one saw it leave or join.
    bob.send(Frame::broadcast("four")).await;
    assert_eq!(back.expect_where("four", is_msg).await.body(), "four");
    bob.expect_silence(Duration::from_millis(300)).await;
    b.wait_for_peers("alice online on b", |peers| {
        peers
            .iter()
            .any(|p| p.id == id && p.online && p.node == "b")
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// A client that stopped reading on node a is cut off there with frames
/// a kept for it; reading what its old connection still brings, then
/// resuming on node b without naming its last message, it gets every
/// message once: what a kept is not lost with the move (both nodes keep
/// more frames than the test sends, so none is dropped as the oldest).
#[tokio::test]
async fn kept_frames_follow_a_session_to_another_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = TestServer::start_with(Config {
        send_queue_bytes: 256 * 1024,
        max_rate: 1_000_000,
        kept_frames: 10_000,
        ..node_config(&redis, "a")
    })
    .await;
    let b = TestServer::start_with(Config {
        max_rate: 1_000_000,
        kept_frames: 10_000,
        ..node_config(&redis, "b")
    })
    .await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    let (id, token) = (alice.id.clone(), alice.token.clone());
    // Alice reads nothing: her socket fills, then her queue on a.
    const MESSAGES: usize = 8000;
    let padding = "x".repeat(1000);
    for i in 0..MESSAGES {
        bob.send(Frame::broadcast(format!("{i} {padding}"))).await;
    }
    a.wait_for_peers("alice cut off", |peers| {
        peers.iter().any(|p| p.id == id && !p.online)
    })
    .await;
    let number = |msg: &Frame| -> usize {
        let number = msg.body().split(' ').next().and_then(|n| n.parse().ok());
        number.expect("a numbered message")
    };
    let mut numbers = Vec::new();
    while let Some(item) = alice.next_item().await {
        if let Ok(frame) = item
            && is_msg(&frame)
        {
            numbers.push(number(&frame));
        }
    }
    let read_before = numbers.len();
    assert!(read_before < MESSAGES, "alice was cut off before the end");
    let mut back = TestClient::connect(b.addr).await;
    back.send(Frame::resume(id.clone(), token)).await;
    back.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    while numbers.last() != Some(&(MESSAGES - 1)) {
        numbers.push(number(&back.expect_where("what a kept", is_msg).await));
    }
    // The frame under way when alice was cut off may come on both.
    numbers.dedup();
    assert_eq!(
        numbers,
        (0..MESSAGES).collect::<Vec<_>>(),
        "every message once ({read_before} read before the resume)"
    );
    a.stop().await;
    b.stop().await;
}

/// A resume on node b of a session still open on node a takes it over:
/// the old connection is told `resumed elsewhere` and closed.
#[tokio::test]
async fn a_resume_elsewhere_takes_over_an_open_session() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut back = TestClient::connect(b.addr).await;
    back.send(Frame::resume(alice.id.clone(), alice.token.clone()))
        .await;
    back.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    let end = alice
        .expect_where("COMM_END", |f| f.action == Action::CommEnd)
        .await;
    assert_eq!(end.body(), "resumed elsewhere");
    alice.expect_closed().await;
    // A wrong token on any node is 404.
    let mut thief = TestClient::connect(a.addr).await;
    thief
        .send(Frame::resume(alice.id.clone(), "not-the-token"))
        .await;
    thief.expect_error(Action::Comm, Status::NotFound).await;
    a.stop().await;
    b.stop().await;
}

/// A node started as its own process.
struct Process {
    child: Child,
    addr: SocketAddr,
}

async fn node_process(redis: &RedisServer, name: &str) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env_remove("TSOCKM_STORE")
        .args([
            "--addr",
            "127.0.0.1:0",
            "--silent",
            "--cluster",
            &redis.url(),
        ])
        .args([
            "--cluster-name",
            "test",
            "--node-name",
            name,
            "--node-timeout",
            "1s",
        ])
        .args(["--removal-delay", "3s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap()
        .parse()
        .unwrap();
    Process { child, addr }
}

/// A node killed with SIGKILL: within the node timeout its peers are away
/// everywhere; one resumes on a live node; the other is removed after the
/// removal delay with exactly one NTFY_KILL to each peer.
#[tokio::test]
async fn a_dead_nodes_peers_resume_elsewhere_or_are_removed_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut c = node_process(&redis, "c").await;
    let mut watcher_a = a.joined("watcher-a", 0).await;
    let mut watcher_b = b.joined("watcher-b", 1).await;
    let dave = TestClient::joined(c.addr, "dave", 2).await;
    let eve = TestClient::joined(c.addr, "eve", 3).await;
    for watcher in [&mut watcher_a, &mut watcher_b] {
        watcher
            .expect_where("eve joined", |f| f.body() == "eve")
            .await;
    }
    c.child.start_kill().unwrap();
    c.child.wait().await.unwrap();
    a.wait_for_peers("dave and eve away", |peers| {
        peers.iter().filter(|p| p.node == "c" && !p.online).count() == 2
    })
    .await;
    // Dave resumes on node a.
    let mut back = TestClient::connect(a.addr).await;
    back.send(Frame::resume(dave.id.clone(), dave.token.clone()))
        .await;
    back.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
    // Eve is removed once, announced once to each peer; nobody hears of dave.
    for watcher in [&mut watcher_a, &mut watcher_b] {
        watcher.timeout = REMOVAL_DELAY + Duration::from_secs(5);
        let kill = watcher
            .expect_where("eve removed", |f| f.action == Action::NtfyKill)
            .await;
        assert_eq!(kill.sender_id(), eve.id.as_str());
        watcher.expect_silence(Duration::from_millis(1500)).await;
    }
    let kill = back
        .expect_where("eve removed", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(kill.sender_id(), eve.id.as_str());
    a.stop().await;
    b.stop().await;
}

/// A node that stops: its peers get COMM_END, the others learn at once that
/// they left.
#[tokio::test]
async fn a_stopping_nodes_peers_are_announced_gone_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    b.stop().await;
    let end = bob
        .expect_where("COMM_END", |f| f.action == Action::CommEnd)
        .await;
    assert!(end.body().starts_with("server shutting down"), "{end}");
    let kill = alice
        .expect_where("bob gone", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(kill.sender_id(), bob.id.as_str());
    a.stop().await;
}

/// Redis unreachable: MSG gets 503 (not accepted), registering does not;
/// health goes on; when it is back the nodes carry on by themselves, and
/// what was accepted before is not lost.
#[tokio::test]
async fn an_unreachable_redis_is_503_then_recovered() {
    let Some(mut redis) = RedisServer::start_persistent() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    alice.send(Frame::broadcast("before")).await;
    assert_eq!(bob.expect_where("before", is_msg).await.body(), "before");
    redis.kill();
    // Until a node notices, a message may still be taken (and then kept
    // until Redis is back); once it has, MSG is refused with 503.
    let mut refused = false;
    for i in 0..100 {
        alice.send(Frame::broadcast(format!("during {i}"))).await;
        if let Ok(Some(Ok(f))) =
            tokio::time::timeout(Duration::from_millis(100), alice.next_item()).await
            && f.kind == Kind::Err
        {
            assert_eq!(
                (f.action, f.status),
                (Action::Msg, Status::ServiceUnavailable)
            );
            refused = true;
            break;
        }
    }
    assert!(refused, "no 503 while Redis was down");
    // Registering is not refused: a newcomer is welcome at once, and gets
    // the cluster's roster once Redis is back.
    let mut carol = TestClient::connect(a.addr).await;
    carol.send(Frame::register("carol")).await;
    carol
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    redis.restart();
    // Back by itself: messages flow again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        alice.send(Frame::broadcast("after")).await;
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let f = bob.expect_where("a message", is_msg).await;
                if f.body() == "after" {
                    return;
                }
            }
        })
        .await;
        if got.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
    }
    carol
        .expect_where("bob in carol's roster", |f| {
            f.action == Action::NtfyJoin && f.body() == "bob"
        })
        .await;
    a.stop().await;
    b.stop().await;
}

/// Redis restarted empty: the nodes notice and put their peers and rooms
/// back; a newcomer sees everyone; messages flow with new ids.
#[tokio::test]
async fn an_emptied_redis_gets_the_peers_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    bob.send(Frame::join("#r")).await;
    bob.expect_where("own JOIN", |f| f.action == Action::Join)
        .await;
    alice.send(Frame::broadcast("old")).await;
    let old = bob.expect_where("old", is_msg).await;
    redis.restart();
    // Both nodes put themselves back; then a newcomer's roster has both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let carol = loop {
        let mut carol = TestClient::connect(a.addr).await;
        carol.send(Frame::register("carol")).await;
        let answer = carol.expect_next().await;
        if answer.kind == Kind::Res {
            let mut seen = Vec::new();
            while let Ok(Some(Ok(f))) =
                tokio::time::timeout(Duration::from_millis(300), carol.next_item()).await
            {
                if f.action == Action::NtfyJoin {
                    seen.push(f.body().to_string());
                }
            }
            if seen.contains(&"alice".to_owned()) && seen.contains(&"bob".to_owned()) {
                break carol;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "peers not back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(carol);
    alice.send(Frame::broadcast("new")).await;
    let new = bob.expect_where("new", is_msg).await;
    assert_ne!(new.src(), old.src(), "ids stay unique");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_unreachable_redis_at_start_is_one_line_and_a_failure() {
    let output = Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env_remove("TSOCKM_STORE")
        .args(["--addr", "127.0.0.1:0", "--cluster", "redis://127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tsockm-server:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("cannot reach the cluster's Redis"),
        "{stderr}"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .args(["--cluster", "redis://127.0.0.1:1", "--store", "memory"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test]
async fn the_console_kills_a_peer_on_another_node() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.joined("alice", 0).await;
    let mut bob = b.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let answer = a.console_line(&format!(":kill {}", bob.id)).await;
    assert!(answer.contains(&bob.id), "{answer}");
    let end = bob
        .expect_where("COMM_END", |f| f.action == Action::CommEnd)
        .await;
    assert_eq!(end.body(), "removed by the server operator");
    let kill = alice
        .expect_where("bob gone", |f| f.action == Action::NtfyKill)
        .await;
    assert_eq!(kill.sender_id(), bob.id.as_str());
    match a.console(ConsoleRequest::List).await {
        ConsoleReply::List(peers) => assert_eq!(peers.len(), 1),
        other => panic!("{other:?}"),
    }
    a.stop().await;
    b.stop().await;
}
