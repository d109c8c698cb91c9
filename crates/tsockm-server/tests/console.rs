//! The operator console, driven in-process: every command of section 7.

mod common;

use std::time::Duration;

use common::{config, start, start_with};
use tsockm_proto::{Action, Frame, Kind, Status};
use tsockm_server::Config;

#[tokio::test]
async fn list_shows_every_peer_with_its_state() {
    let server = start().await;
    assert_eq!(server.console_line(":list").await, "no peers");
    let mut alice = server.joined("alice", 0).await;
    let bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let bob_addr = bob.local_addr().to_string();
    let bob_id = bob.id.clone();
    drop(bob);
    server
        .wait_for_peers("bob away", |peers| peers.iter().any(|p| !p.online))
        .await;
    for command in [":list", ":ls"] {
        let text = server.console_line(command).await;
        let alice_line = text
            .lines()
            .find(|l| l.contains(&alice.id))
            .expect("alice listed");
        assert!(
            alice_line.contains("alice") && alice_line.contains(" online "),
            "{alice_line}"
        );
        assert!(
            alice_line.contains(&alice.local_addr().to_string()),
            "{alice_line}"
        );
        let bob_line = text
            .lines()
            .find(|l| l.contains(&bob_id))
            .expect("bob listed");
        assert!(
            bob_line.contains("bob") && bob_line.contains(" away "),
            "{bob_line}"
        );
        assert!(
            bob_line.contains(&bob_addr),
            "an away peer shows its last address: {bob_line}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn kill_removes_one_peer_with_comm_end_and_ntfy_kill() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let answer = server.console_line(&format!(":kill {}", bob.id)).await;
    assert!(answer.contains(&bob.id), "{answer}");
    let end = bob
        .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
        .await;
    assert_eq!((end.sender_id(), end.dst()), ("server", bob.id.as_str()));
    bob.expect_closed().await;
    let kill = alice
        .expect_frame(Kind::Res, Action::NtfyKill, Status::Ok)
        .await;
    assert_eq!(
        (kill.sender_id(), kill.dst(), kill.body()),
        (bob.id.as_str(), "*", "bob")
    );
    let unknown = server.console_line(":kill nobody12345").await;
    assert!(
        unknown.contains("error") && unknown.contains("nobody12345"),
        "{unknown}"
    );
    server.stop().await;
}

#[tokio::test]
async fn kill_all_removes_everyone_and_bare_kill_removes_no_one() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;

    let usage = server.console_line(":kill").await;
    assert!(
        usage.contains("error") && usage.contains("usage: :kill"),
        "{usage}"
    );
    alice.expect_silence(Duration::from_millis(100)).await;
    assert!(server.console_line(":list").await.contains("2 peer(s)"));

    server.console_line(":kill all").await;
    for client in [&mut alice, &mut bob] {
        client
            .expect_where("COMM_END", |f| f.action == Action::CommEnd)
            .await;
        client
            .expect_closed_skipping(|f| f.action == Action::NtfyKill)
            .await;
    }
    assert_eq!(server.console_line(":list").await, "no peers");
    server.stop().await;
}

#[tokio::test]
async fn info_reports_address_uptime_counts_and_traffic() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let _bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    // An answered bad frame shows the registry knows the unregistered lurker.
    let mut lurker = server.client().await;
    lurker.send_raw(b"x\n").await;
    lurker.expect_error(Action::None, Status::BadRequest).await;
    alice.send(Frame::broadcast("hi")).await;
    alice.send(Frame::get_peer(alice.id.clone())).await;
    alice
        .expect_frame(Kind::Res, Action::GetPeer, Status::Ok)
        .await;
    let info = server.console_line(":info").await;
    assert!(info.contains(&format!("address: {}", server.srv)), "{info}");
    assert!(info.contains("uptime: "), "{info}");
    assert!(
        info.contains("peers: 2 online, 0 away (1 connection(s) not registered)"),
        "{info}"
    );
    assert!(info.contains("connections: 3 open"), "{info}");
    assert!(info.contains("frames: 5 in"), "{info}");
    assert!(info.contains("bytes: "), "{info}");
    assert!(info.contains("dropped: 0 kept frame(s)"), "{info}");
    server.stop().await;
}

#[tokio::test]
async fn ping_reports_who_answered() {
    let server = start_with(Config {
        health_timeout: Duration::from_millis(1200),
        health_interval: Duration::from_secs(60),
        ..config()
    })
    .await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let alice_id = alice.id.clone();
    let answering = tokio::spawn(async move {
        let check = alice
            .expect_where("a check", |f| {
                f.kind == Kind::Req && f.action == Action::Comm
            })
            .await;
        assert_eq!(check.body(), "check?");
        alice.send(Frame::health_answer(alice.id.clone())).await;
        alice
    });
    // A blank line is a sign of life: Bob stays online without answering.
    bob.send_raw(b"\n").await;
    let report = server.console_line(":ping all").await;
    assert!(
        report.contains(&format!("{alice_id} (alice) answered")),
        "{report}"
    );
    assert!(
        report.contains(&format!("{} (bob) did not answer", bob.id)),
        "{report}"
    );
    let _alice = answering.await.unwrap();
    bob.expect_where("bob's check", |f| f.body() == "check?")
        .await;
    bob.send_raw(b"\r\n").await;
    let one = server.console_line(&format!(":ping {}", bob.id)).await;
    assert!(one.contains("did not answer"), "{one}");
    assert!(server.console_line(":ping").await.contains("usage: :ping"));
    assert!(
        server
            .console_line(":ping nobody12345")
            .await
            .contains("no peer")
    );
    server.stop().await;
}

#[tokio::test]
async fn help_mute_clear_and_unknown_commands() {
    let server = start().await;
    let help = server.console_line(":help").await;
    for command in [
        ":list",
        ":kill <peer_id>",
        ":kill all",
        ":ping",
        ":info",
        ":mute",
        ":unmute",
        ":cc",
        ":help",
        ":exit",
    ] {
        assert!(help.contains(command), "help lacks {command}");
    }
    assert_eq!(server.console_line(":mute").await, "frames muted");
    assert_eq!(server.console_line(":unmute").await, "frames unmuted");
    assert!(server.console_line(":cc").await.contains("\x1b[2J"));
    let unknown = server.console_line(":dance").await;
    assert!(
        unknown.contains("unknown command") && unknown.contains(":help"),
        "{unknown}"
    );
    assert_eq!(server.console_line("").await, "");
    server.stop().await;
}

#[tokio::test]
async fn exit_ends_every_session_without_ntfy_kill() {
    let server = start().await;
    let mut alice = server.joined("alice", 0).await;
    let mut bob = server.joined("bob", 1).await;
    alice
        .expect_where("bob joined", |f| f.body() == "bob")
        .await;
    let mut stranger = server.client().await;
    let stranger_addr = stranger.local_addr().to_string();
    // Make sure the stranger's connection is known before shutting down.
    stranger.send_raw(b"REQ::MSG::200::::::::x\n").await;
    stranger.expect_error(Action::Msg, Status::BadRequest).await;
    server.console_line(":exit").await;
    for client in [&mut alice, &mut bob] {
        let end = client
            .expect_frame(Kind::Res, Action::CommEnd, Status::Ok)
            .await;
        assert!(end.body().starts_with("server shutting down"), "{end}");
        client.expect_closed().await;
    }
    let error = stranger
        .expect_error(Action::None, Status::ServiceUnavailable)
        .await;
    assert_eq!(error.dst(), stranger_addr.as_str());
    assert_eq!(error.body(), "server shutting down");
    stranger.expect_closed().await;
    // `:exit` cancelled the shutdown token already: `run` returns.
    server.stop().await;
}
