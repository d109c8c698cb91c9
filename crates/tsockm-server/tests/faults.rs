//! Faults over real TCP: a client killed mid-frame, a client that
//! half-closes, and the server shutting down under load.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{config, start_with};
use futures::SinkExt;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::{Framed, FramedRead};
use tsockm_proto::{Action, Frame, FrameCodec, Kind, Status};
use tsockm_server::Config;
use tsockm_testkit::split_welcome;

/// A client killed by the kernel mid-frame: part of a line, then the socket
/// closes. The partial frame is never delivered, and the peer goes away and
/// is removed after the delay like any lost connection.
#[tokio::test]
async fn a_client_killed_mid_frame_delivers_nothing_and_goes_away() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    for abrupt in [false, true] {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let mut bob = Framed::new(stream, FrameCodec::new());
        bob.send(Frame::register("bob")).await.unwrap();
        let welcome = tokio::time::timeout(Duration::from_secs(5), bob.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .unwrap();
        let (bob_id, _) = split_welcome(&welcome);
        alice
            .expect_where("bob joined", |f| f.body() == "bob")
            .await;
        let stream = bob.get_mut();
        stream
            .write_all(b"REQ::MSG::200::::::*::complete\nREQ::MSG::200::::::*::half a fra")
            .await
            .unwrap();
        if abrupt {
            // As when the process is killed with data in flight: a reset.
            stream.set_zero_linger().unwrap();
        }
        drop(bob);
        let complete = alice
            .expect_where("the complete message", |f| f.action == Action::Msg)
            .await;
        assert_eq!(complete.body(), "complete");
        assert_eq!(complete.sender_id(), bob_id);
        server
            .wait_for_peers("bob away", |peers| {
                peers.iter().any(|p| p.id == bob_id && !p.online)
            })
            .await;
        // The next frame alice gets is bob's removal: the half frame was
        // dropped with the connection.
        let kill = alice.expect_next().await;
        assert_eq!(
            (kill.kind, kill.action, kill.sender_id()),
            (Kind::Res, Action::NtfyKill, bob_id.as_str()),
            "got {kill}"
        );
        server
            .wait_for_peers("only alice left", |peers| peers.len() == 1)
            .await;
    }
    server.stop().await;
}

/// Half-close (shutdown of the write side) is EOF without COMM_END: what
/// was sent before it is relayed, the peer is away (no NTFY_KILL yet), it
/// can resume within the delay, and is removed once after it.
#[tokio::test]
async fn a_half_closed_client_is_away_then_can_resume_or_is_removed() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(800),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    bob.send(Frame::broadcast("last words")).await;
    bob.shutdown_write().await;
    let words = alice
        .expect_where("bob's message", |f| f.action == Action::Msg)
        .await;
    assert_eq!(words.body(), "last words");
    // The server ends the session's connection; bob reads EOF.
    bob.expect_closed().await;
    let bob_id = bob.id.clone();
    server
        .wait_for_peers("bob away", |peers| {
            peers.iter().any(|p| p.id == bob_id && !p.online)
        })
        .await;

    // Resume within the delay: nobody hears of it, and kept frames follow.
    alice
        .send(Frame::direct(bob_id.clone(), "still there?"))
        .await;
    let mut again = server.client().await;
    again
        .send(Frame::resume(bob_id.clone(), bob.token.clone()))
        .await;
    let welcome = again
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    assert_eq!(split_welcome(&welcome).0, bob_id);
    let kept = again.expect_next().await;
    assert_eq!(kept.body(), "still there?");

    // Half-close again and stay away: removed once, after the delay.
    again.shutdown_write().await;
    again.expect_closed().await;
    let kill = alice.expect_next().await;
    assert_eq!(
        (kill.action, kill.sender_id()),
        (Action::NtfyKill, bob_id.as_str())
    );
    alice.expect_silence(Duration::from_millis(300)).await;
    server.stop().await;
}

/// The way `printf ... | nc` talks: every request in one write, then a
/// half-close. The server still answers every request sent before the EOF
/// (the socket can still be written), then closes; the peer goes away and
/// is removed after the delay like any connection that ended without
/// COMM_END. Repeated, since the EOF races the answers being written.
#[tokio::test]
async fn requests_sent_before_a_half_close_are_all_answered() {
    let server = start_with(Config {
        removal_delay: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    for round in 0..10 {
        let mut nc = server.client().await;
        let lookups = 3;
        let mut script = Frame::register(format!("nc{round}"))
            .to_bytes()
            .unwrap()
            .to_vec();
        for _ in 0..lookups {
            script.extend_from_slice(&Frame::get_peer(alice.id.clone()).to_bytes().unwrap());
        }
        script.extend_from_slice(&Frame::broadcast("bye").to_bytes().unwrap());
        nc.send_raw(&script).await;
        nc.shutdown_write().await;
        let welcome = nc.expect_frame(Kind::Res, Action::Comm, Status::Ok).await;
        let (nc_id, _) = split_welcome(&welcome);
        let roster = nc
            .expect_frame(Kind::Res, Action::NtfyJoin, Status::Ok)
            .await;
        assert_eq!(roster.sender_id(), alice.id, "round {round}: {roster}");
        for _ in 0..lookups {
            let found = nc
                .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
                .await;
            assert_eq!(found.body(), "alice", "round {round}");
        }
        nc.expect_closed().await;
        alice
            .expect_where("the join", |f| f.action == Action::NtfyJoin)
            .await;
        let bye = alice.expect_frame(Kind::Res, Action::Msg, Status::Ok).await;
        assert_eq!((bye.sender_id(), bye.body()), (nc_id.as_str(), "bye"));
        let kill = alice
            .expect_frame(Kind::Res, Action::NtfyKill, Status::Ok)
            .await;
        assert_eq!(kill.sender_id(), nc_id, "round {round}");
    }
    server.stop().await;
}

/// A raw client for the load test: a read half decoded on its own task.
struct Loaded {
    id: String,
    write: tokio::net::tcp::OwnedWriteHalf,
    frames: tokio::task::JoinHandle<Vec<Frame>>,
}

/// Counts messages received by all loaded clients, and wakes the test once
/// the count reaches `target`.
struct Progress {
    received: AtomicUsize,
    target: usize,
    reached: Notify,
}

impl Progress {
    fn count_one(&self) {
        if self.received.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.reached.notify_one();
        }
    }
}

/// Connects, registers, and collects every frame until EOF, counting the
/// messages in `progress`.
async fn loaded_client(addr: SocketAddr, name: &str, progress: Arc<Progress>) -> Loaded {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec::with_max_frame_bytes(1 << 20));
    let register = Frame::register(name).to_bytes().unwrap();
    write.write_all(&register).await.unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(5), frames.next())
        .await
        .expect("a welcome in time")
        .expect("a frame")
        .expect("readable")
        .expect("well formed");
    let (id, _) = split_welcome(&welcome);
    let frames = tokio::spawn(async move {
        let mut all = Vec::new();
        // Bounded by the server closing the connection on shutdown.
        while let Ok(Some(Ok(Ok(frame)))) =
            tokio::time::timeout(Duration::from_secs(20), frames.next()).await
        {
            if frame.action == Action::Msg {
                progress.count_one();
            }
            all.push(frame);
        }
        all
    });
    Loaded { id, write, frames }
}

/// Shutdown under load: several authors broadcast numbered messages as fast
/// as a millisecond timer lets them while the server is told to stop.
///
/// "Accepted" means the registry relayed it (it fans a message out to every
/// other peer at once, or to none). The invariant, for every recipient: the
/// last frame is COMM_END `server shutting down`, and for each author the
/// messages before it are exactly that author's messages `0..n`, in order,
/// with the same `n` at every recipient (nothing accepted was dropped for
/// anyone, nothing duplicated or reordered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_ends_every_session_after_everything_accepted() {
    const N_CLIENTS: usize = 8;
    let server = start_with(Config {
        max_rate: 0,
        ..config()
    })
    .await;
    // Shut down once each author's first 200 messages (or as many in all)
    // have reached the others: under load, not before it.
    let progress = Arc::new(Progress {
        received: AtomicUsize::new(0),
        target: N_CLIENTS * (N_CLIENTS - 1) * 200,
        reached: Notify::new(),
    });
    let mut clients = Vec::new();
    for i in 0..N_CLIENTS {
        clients.push(loaded_client(server.addr, &format!("c{i}"), progress.clone()).await);
    }
    server
        .wait_for_peers("every client registered", |peers| peers.len() == N_CLIENTS)
        .await;
    let ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    let mut authors = Vec::new();
    let mut readers = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let Loaded {
            id,
            mut write,
            frames,
        } = client;
        readers.push((id, frames));
        authors.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            // Bounded: ends when the server closes, or after 20,000 sends.
            for seq in 0..20_000u32 {
                tick.tick().await;
                let line = Frame::broadcast(format!("{i}:{seq}")).to_bytes().unwrap();
                if write.write_all(&line).await.is_err() {
                    return seq;
                }
            }
            20_000
        }));
    }
    // Let the load build up, then shut down while it goes on.
    tokio::time::timeout(Duration::from_secs(20), progress.reached.notified())
        .await
        .expect("the load is relayed");
    server.shutdown.cancel();
    let mut n_sent = Vec::new();
    for author in authors {
        n_sent.push(
            tokio::time::timeout(Duration::from_secs(20), author)
                .await
                .expect("authors stop when the server closes")
                .unwrap(),
        );
    }
    let mut per_author_count: HashMap<usize, usize> = HashMap::new();
    for (recipient, (id, frames)) in readers.into_iter().enumerate() {
        let frames = tokio::time::timeout(Duration::from_secs(20), frames)
            .await
            .expect("readers reach EOF")
            .unwrap();
        let (last, before) = frames.split_last().expect("at least COMM_END");
        assert_eq!(
            (last.kind, last.action, last.dst()),
            (Kind::Res, Action::CommEnd, id.as_str()),
            "the last frame of {id} is {last}"
        );
        assert!(last.body().starts_with("server shutting down"), "{last}");
        let mut next_seq = [0usize; N_CLIENTS];
        for frame in before.iter().filter(|f| f.action == Action::Msg) {
            let (author, seq) = frame.body().split_once(':').unwrap();
            let (author, seq): (usize, usize) = (author.parse().unwrap(), seq.parse().unwrap());
            assert_ne!(author, recipient, "an author got its own broadcast");
            assert_eq!(frame.sender_id(), ids[author]);
            assert_eq!(
                seq, next_seq[author],
                "{id} got message {seq} of author {author} after {}",
                next_seq[author]
            );
            next_seq[author] += 1;
        }
        for (author, &n) in next_seq.iter().enumerate() {
            if author == recipient {
                continue;
            }
            let agreed = *per_author_count.entry(author).or_insert(n);
            assert_eq!(
                n, agreed,
                "recipients disagree on how many messages of author {author} were accepted"
            );
        }
    }
    let n_relayed: usize = per_author_count.values().sum();
    println!("sent per author {n_sent:?}; {n_relayed} messages accepted and relayed to all");
    assert!(n_relayed > 0, "no load was relayed before the shutdown");
    server.stop().await;
}
