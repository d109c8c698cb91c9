//! Section 12's restart without anyone leaving, over TCP, on a temporary
//! SQLite file (never the default data directory): a graceful stop gives
//! every client `COMM_END server shutting down`; a server started on the
//! same file within the removal delay answers HISTORY with the old
//! messages, continues the ids (new ones differ and come after), restores
//! the peers as away (in the roster, GET_PEER, `:list`, their rooms), lets
//! them resume (with `last_msg_id`, getting what was sent to them
//! meanwhile, nobody seeing a leave or join), and removes the ones that do
//! not with NTFY_KILL after the removal delay; a start past the removal
//! delay restores nobody. After a crash (the binary killed with SIGKILL
//! during heavy writes) no session is restored, and the history is a
//! prefix of what was accepted, its ids continued.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestClient, TestServer, config, start_with};
use tokio::io::{AsyncBufReadExt, BufReader};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::{Config, StoreSpec};
use tsockm_testkit::History;

/// The removal delay of the graceful-restart test.
const REMOVAL_DELAY: Duration = Duration::from_millis(1500);

fn sqlite_config(path: &Path) -> Config {
    Config {
        store: Some(StoreSpec::Sqlite(path.to_owned())),
        removal_delay: REMOVAL_DELAY,
        ..config()
    }
}

/// Resumes `id` with `token` on a new connection, naming `last_msg_id`;
/// reads the answer and gives the client its new token.
async fn resume(server: &TestServer, id: &str, token: &str, last_msg_id: &str) -> TestClient {
    let mut client = server.client().await;
    client
        .send(Frame::resume_after(id, last_msg_id, token))
        .await;
    let welcome = client
        .expect_frame(Kind::Res, Action::Comm, Status::Ok)
        .await;
    let (resumed, new_token) = tsockm_testkit::split_welcome(&welcome);
    assert_eq!(resumed, id);
    client.id = resumed;
    client.token = new_token;
    client
}

/// `(ACTION, SENDER_ID, DST, BODY)` of each frame.
fn summary(frames: &[Frame]) -> Vec<(Action, String, String, String)> {
    frames
        .iter()
        .map(|f| {
            (
                f.action,
                f.sender_id().to_string(),
                f.dst().to_string(),
                f.body().to_string(),
            )
        })
        .collect()
}

/// Every client gets `RES::COMM_END::200::server::<srv>::<id>::server
/// shutting down...` and then the connection closes.
async fn expect_shutdown(server: &TestServer, client: &mut TestClient) {
    let end = client
        .expect_where("COMM_END", |f| f.action == Action::CommEnd)
        .await;
    let prefix = format!(
        "RES::COMM_END::200::server::{}::{}::server shutting down",
        server.srv, client.id
    );
    assert!(end.to_string().starts_with(&prefix), "{end}");
    client.expect_closed().await;
}

async fn stop_gracefully(server: TestServer, clients: &mut [&mut TestClient]) {
    server.shutdown.cancel();
    for client in clients.iter_mut() {
        expect_shutdown(&server, client).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_graceful_restart_keeps_history_ids_and_sessions() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("x.db");

    // Before: alice and bob in #r, carol in the lobby.
    let first = start_with(sqlite_config(&db)).await;
    let mut alice = first.joined("alice", 0).await;
    let mut bob = first.joined("bob", 1).await;
    let mut carol = first.joined("carol", 2).await;
    for client in [&mut alice, &mut bob] {
        client.send(Frame::join("#r")).await;
    }
    alice.sync().await;
    bob.sync().await;
    for i in 0..5 {
        alice.send(Frame::broadcast(format!("m{i}"))).await;
    }
    alice.send(Frame::direct("#r", "r0")).await;
    alice.send(Frame::direct(&bob.id, "d0")).await;
    alice.sync().await;
    carol.send(Frame::broadcast("c0")).await;
    let mut before = Vec::new();
    for _ in 0..8 {
        before.push(bob.expect_msg().await);
    }
    let last_for_bob = before[7].src().to_string();
    assert_eq!(before[7].body(), "c0");
    let last_for_alice = alice.expect_msg().await.src().to_string();
    assert_eq!(last_for_alice, last_for_bob);
    let old_lobby: Vec<String> = before
        .iter()
        .filter(|f| f.dst() == "*")
        .map(|f| f.src().to_string())
        .collect();
    stop_gracefully(first, &mut [&mut alice, &mut bob, &mut carol]).await;

    // Started again on the same store, within the removal delay.
    let started = tokio::time::Instant::now();
    let second = start_with(sqlite_config(&db)).await;
    let restored = second.peers().await;
    assert_eq!(restored.len(), 3, "{restored:#?}");
    assert!(restored.iter().all(|p| !p.online), "restored as away");
    let list = second.console_line(":list").await;
    for client in [&alice, &bob, &carol] {
        let line = list
            .lines()
            .find(|l| l.contains(&client.id))
            .unwrap_or_else(|| panic!("{} not in :list: {list}", client.id));
        assert!(line.contains("away"), "{line}");
    }
    // A newcomer sees them as peers: the roster, GET_PEER, rooms.
    let mut dave = second.joined("dave", 3).await;
    dave.send(Frame::get_peer(alice.id.clone())).await;
    let found = dave
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    assert_eq!(found.body(), "alice");
    dave.send(Frame::rooms()).await;
    assert_eq!(dave.expect_next().await.body(), "#r 2");
    let rooms = second.console_line(":rooms").await;
    assert!(
        rooms.contains("#r") && rooms.contains(&alice.id) && rooms.contains(&bob.id),
        "{rooms}"
    );
    // The old messages, with their ids.
    let lobby = dave.history("*", "10").await;
    assert_eq!(lobby.ids(), old_lobby);
    assert_eq!(lobby.texts(), ["m0", "m1", "m2", "m3", "m4", "c0"]);

    // Alice resumes naming the last message she received: nothing is sent
    // again (it was read), then what was kept for her.
    let mut alice = resume(&second, &alice.id, &alice.token, &last_for_alice).await;
    let kept = alice.sync().await;
    assert_eq!(
        summary(&kept),
        [(
            Action::NtfyJoin,
            dave.id.clone(),
            "*".to_owned(),
            "dave".to_owned()
        )]
    );
    // New ids differ from the old ones and come after them.
    alice.send(Frame::direct("#r", "after the restart")).await;
    alice.send(Frame::broadcast("n0")).await;
    let n0 = dave.expect_msg().await;
    assert!(!old_lobby.contains(&n0.src().to_string()));
    let lobby = dave.history("*", "10").await;
    assert_eq!(lobby.texts(), ["m0", "m1", "m2", "m3", "m4", "c0", "n0"]);
    let after = dave
        .history("*", &format!("5 after {}", old_lobby[5]))
        .await;
    assert_eq!(after.ids(), [n0.src().to_string()]);

    // Bob resumes: what was sent to him meanwhile, in order, and he is
    // still in #r.
    let mut bob = resume(&second, &bob.id, &bob.token, &last_for_bob).await;
    let kept = bob.sync().await;
    assert_eq!(
        summary(&kept),
        [
            (Action::NtfyJoin, dave.id.clone(), "*".into(), "dave".into()),
            (
                Action::Msg,
                alice.id.clone(),
                "#r".into(),
                "after the restart".into()
            ),
            (Action::Msg, alice.id.clone(), "*".into(), "n0".into()),
        ]
    );
    bob.send(Frame::direct("#r", "still here")).await;
    assert_eq!(alice.expect_msg().await.body(), "still here");
    // Nobody saw a leave or a join.
    for client in [&mut alice, &mut dave] {
        assert!(client.sync().await.is_empty());
    }
    // Carol did not resume: removed with NTFY_KILL after the removal delay.
    for client in [&mut alice, &mut bob, &mut dave] {
        let kill = client
            .expect_where("carol removed", |f| f.action == Action::NtfyKill)
            .await;
        assert_eq!(
            kill.to_string(),
            format!(
                "RES::NTFY_KILL::200::{}::{}::*::carol",
                carol.id, second.srv
            )
        );
    }
    assert!(
        started.elapsed() >= REMOVAL_DELAY,
        "removed {:?} after the start",
        started.elapsed()
    );
    assert_eq!(second.peers().await.len(), 3);
    stop_gracefully(second, &mut [&mut alice, &mut bob, &mut dave]).await;

    // Started long after (past the removal delay): nobody is restored, and
    // the history is still there.
    tokio::time::sleep(REMOVAL_DELAY + Duration::from_millis(100)).await;
    let third = start_with(sqlite_config(&db)).await;
    assert!(third.peers().await.is_empty());
    let mut late = third.client().await;
    late.send(Frame::resume(bob.id.clone(), bob.token.clone()))
        .await;
    late.expect_error(Action::Comm, Status::NotFound).await;
    late.register("late").await;
    let lobby = late.history("*", "10").await;
    assert_eq!(lobby.texts(), ["m0", "m1", "m2", "m3", "m4", "c0", "n0"]);
    third.stop().await;
}

/// "saves its sessions (peers, their rooms, and a hash of each resume
/// token ...)": a peer away at the shutdown keeps the frames kept for it.
#[tokio::test]
async fn frames_kept_for_an_away_peer_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("x.db");
    let first = start_with(sqlite_config(&db)).await;
    let mut alice = first.joined("alice", 0).await;
    let erin = first.joined("erin", 1).await;
    alice.sync().await;
    let (erin_id, erin_token) = (erin.id.clone(), erin.token.clone());
    drop(erin);
    first
        .wait_for_peers("erin away", |peers| {
            peers.iter().any(|p| p.id == erin_id && !p.online)
        })
        .await;
    alice.send(Frame::direct(&erin_id, "kept across")).await;
    alice.sync().await;
    stop_gracefully(first, &mut [&mut alice]).await;

    let second = start_with(sqlite_config(&db)).await;
    let mut erin = resume(&second, &erin_id, &erin_token, "").await;
    let kept = erin.sync().await;
    assert_eq!(
        summary(&kept),
        [(
            Action::Msg,
            alice.id.clone(),
            erin_id.clone(),
            "kept across".to_owned()
        )]
    );
    second.stop().await;
}

/// The rest of a binary's standard output, line by line.
type Stdout = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The server binary on the store at `db`, its address read from its
/// first line of standard output.
async fn spawn_binary(
    db: &Path,
    extra_args: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr, Stdout) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tsockm-server"))
        .env("TSOCKM_STORE", format!("sqlite:{}", db.display()))
        .args(["--addr", "127.0.0.1:0", "--silent", "--max-rate", "1000000"])
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let stdout = child.stdout.take().expect("its standard output");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the server starts in time")
        .expect("read its standard output")
        .expect("a first line");
    let addr = first
        .strip_prefix("tsockm-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("an address");
    (child, addr, lines)
}

/// Every stored lobby message, oldest first, read page by page.
async fn whole_lobby(client: &mut TestClient) -> Vec<(String, String)> {
    let pair =
        |h: &History| -> Vec<(String, String)> { h.ids().into_iter().zip(h.texts()).collect() };
    let mut page = client.history("*", "500").await;
    let mut all = pair(&page);
    for _ in 0..1000 {
        if !page.end.body().ends_with(" more") {
            return all;
        }
        page = client
            .history("*", &format!("500 before {}", all[0].0))
            .await;
        let mut older = pair(&page);
        older.extend(all);
        all = older;
    }
    panic!("more than 500,000 messages?");
}

#[tokio::test]
async fn after_a_crash_no_session_is_restored_and_history_is_a_prefix() {
    const CHUNK: usize = 200;
    const KILL_AFTER: usize = 4000;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db: PathBuf = dir.path().join("x.db");
    // Far more history kept than the flood can send before the kill (bob's
    // socket alone holds tens of thousands of these), so that what is
    // stored is never cut at its start by `--history-max`.
    let (mut child, addr, _stdout) = spawn_binary(&db, &["--history-max", "1000000"]).await;
    let mut alice = TestClient::joined(addr, "alice", 0).await;
    let mut bob = TestClient::joined(addr, "bob", 1).await;
    alice.sync().await;
    // The first ten are surely stored: a HISTORY answer comes after the
    // writes queued before it.
    for i in 0..10 {
        alice.send(Frame::broadcast(format!("m{i}"))).await;
    }
    assert_eq!(alice.history("*", "10").await.items.len(), 10);

    // Alice floods; bob reads; the server is killed mid-flood.
    let flood = tokio::spawn(async move {
        let mut next = 10;
        loop {
            let mut bytes = Vec::new();
            for i in next..next + CHUNK {
                let frame = Frame::broadcast(format!("m{i}"));
                bytes.extend_from_slice(&frame.to_bytes().expect("a frame"));
            }
            next += CHUNK;
            if alice.try_send_raw(&bytes).await.is_err() || next > 200_000 {
                return;
            }
        }
    });
    let mut received = Vec::new();
    while received.len() < KILL_AFTER {
        let msg = bob.expect_msg().await;
        received.push((msg.src().to_string(), msg.body().to_string()));
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("the killed server is reaped");
    flood.await.expect("the flood ends when the server is gone");

    // Started again on the same file.
    let server = start_with(Config {
        history_max: 1_000_000,
        ..sqlite_config(&db)
    })
    .await;
    assert!(server.peers().await.is_empty(), "no session after a crash");
    let mut again = server.client().await;
    again
        .send(Frame::resume(bob.id.clone(), bob.token.clone()))
        .await;
    again.expect_error(Action::Comm, Status::NotFound).await;
    again.register("again").await;
    let stored = whole_lobby(&mut again).await;
    let k = stored.len();
    assert!(k >= 10, "only {k} stored");
    // A prefix of what was accepted: m0, m1, ... with no gap, and the ids
    // bob received for them.
    for (i, (_, text)) in stored.iter().enumerate() {
        assert_eq!(text, &format!("m{i}"), "not a prefix at {i}");
    }
    for (id, text) in &received {
        let at = text[1..].parse::<usize>().expect("numbered");
        if at < k {
            assert_eq!(&stored[at].0, id, "{text}");
        }
    }
    // The ids continue after the stored ones.
    let mut carol = server.joined("carol", 1).await;
    carol.send(Frame::broadcast("after the crash")).await;
    carol.sync().await;
    let new = again.expect_msg().await;
    assert!(stored.iter().all(|(id, _)| id.as_str() != new.src()));
    let after = again
        .history("*", &format!("5 after {}", stored[k - 1].0))
        .await;
    assert_eq!(after.ids(), [new.src().to_string()]);
    assert_eq!(
        again.history("*", "2").await.ids(),
        [stored[k - 1].0.clone(), new.src().to_string()]
    );
    server.stop().await;
}

/// "on a graceful shutdown (`:exit`, SIGINT, SIGTERM) a server with a
/// persistent store saves its sessions": each of the three, on the binary.
#[tokio::test]
async fn exit_sigint_and_sigterm_all_save_the_sessions() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for how in [":exit", "-INT", "-TERM"] {
        let db = dir
            .path()
            .join(format!("{}.db", how.trim_start_matches([':', '-'])));
        let (mut child, addr, mut stdout) = spawn_binary(&db, &[]).await;
        let mut alice = TestClient::joined(addr, "alice", 0).await;
        let mut stdin = child.stdin.take().expect("its standard input");
        if how == ":exit" {
            tokio::io::AsyncWriteExt::write_all(&mut stdin, b":exit\n")
                .await
                .expect("write to the console");
        } else {
            // The binary listens for signals from a task it starts after
            // it says it listens: wait until its console (started after
            // that task) answers, or the signal may find no handler yet.
            tokio::io::AsyncWriteExt::write_all(&mut stdin, b":info\n")
                .await
                .expect("write to the console");
            for _ in 0..100 {
                let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
                    .await
                    .expect("the console answers in time")
                    .expect("readable")
                    .expect("a line");
                if line.starts_with("address:") {
                    break;
                }
            }
            let pid = child.id().expect("a running child").to_string();
            let status = tokio::process::Command::new("kill")
                .args([how, &pid])
                .status()
                .await
                .expect("run kill");
            assert!(status.success());
        }
        let end = alice
            .expect_where("COMM_END", |f| f.action == Action::CommEnd)
            .await;
        assert!(
            end.body().starts_with("server shutting down"),
            "{how}: {end}"
        );
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the server exits in time")
            .expect("its status");
        assert_eq!(status.code(), Some(0), "{how}");

        let server = start_with(sqlite_config(&db)).await;
        let peers = server.peers().await;
        assert_eq!(peers.len(), 1, "{how}: {peers:?}");
        assert!(peers[0].id == alice.id && !peers[0].online, "{how}");
        resume(&server, &alice.id, &alice.token, "").await;
        server.stop().await;
    }
}
