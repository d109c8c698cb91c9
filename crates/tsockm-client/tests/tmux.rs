//! The `tsockm-client` binary on a real terminal: tmux runs it (full screen,
//! and `--plain`) against the real server; keys go in with `send-keys`, the
//! screen comes back with `capture-pane`. Start, a message each way, a
//! room, Ctrl-C on a half-typed line, a resize, and `:exit` (exit code 0,
//! terminal given back).
//!
//! Without tmux the test says so and passes, unless `CI` is set: there a
//! missing tmux is a failure.

mod common;

use std::time::Duration;

use common::{next, start, wait_for};
use tokio::process::Command;
use tsockm_client::Event;

/// One tmux server of our own (its own socket), with one session.
struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    /// Whether tmux can be run here; panics under CI when it cannot.
    async fn available() -> bool {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(std::env::var_os("CI").is_none(), "tmux is needed under CI");
            println!("tmux not found: the terminal test is skipped");
        }
        found
    }

    async fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let socket = format!("tsockm-test-{}-{name}", std::process::id());
        let tmux = Tmux {
            socket,
            session: "chat",
        };
        let (w, h) = (width.to_string(), height.to_string());
        // The shell reports the exit code on the screen, then stays a while
        // so the last screen can be read (tmux's remain-on-exit can lose
        // what a program writes just before it exits).
        let command = format!("{command}; echo \"exit status $?\"; sleep 60");
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            tmux.session,
            "-x",
            &w,
            "-y",
            &h,
            &command,
        ])
        .await;
        tmux
    }

    async fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .await
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", self.session]).await
    }

    async fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        self.run(&args).await;
    }

    async fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", self.session, format])
            .await
            .trim()
            .to_owned()
    }

    /// Captures the screen until `done` holds, under the test timeout.
    async fn wait(&self, what: &str, mut done: impl FnMut(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            let screen = self.screen().await;
            if done(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |screen| screen.contains(needle)).await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[tokio::test]
async fn full_screen_on_a_real_terminal() {
    if !Tmux::available().await {
        return;
    }
    let server = start().await;
    let (bob, mut bob_events) = server.connect("bob").await;
    let command = format!(
        "env -u RUST_LOG NO_COLOR= {} --addr {} --username alice",
        env!("CARGO_BIN_EXE_tsockm-client"),
        server.addr
    );
    let tmux = Tmux::start("full", &command, 100, 30).await;
    tmux.wait_for("registered as alice").await;
    let screen = tmux.wait_for("connected │ alice (").await;
    assert!(screen.contains("Chats"), "{screen}");
    assert!(matches!(next(&mut bob_events).await, Event::Joined { .. }));

    // A message each way.
    bob.broadcast("hello from bob").await.unwrap();
    tmux.wait_for("bob: hello from bob").await;
    tmux.keys(&["-l", "hi from alice"]).await;
    tmux.keys(&["Enter"]).await;
    tmux.wait_for("alice: hi from alice").await;
    let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message(_))).await;
    assert!(matches!(event, Event::Message(m) if m.text == "hi from alice"));

    // A room: joined, shown in the list, a message each way.
    tmux.keys(&["-l", ":join #ops"]).await;
    tmux.keys(&["Enter"]).await;
    tmux.wait_for("you joined #ops").await;
    let screen = tmux.wait_for("2 #ops").await;
    assert!(screen.lines().any(|r| r.starts_with("#ops>")), "{screen}");
    let ops = tsockm_client::RoomName::parse("#ops").unwrap();
    bob.join(&ops).await.unwrap();
    wait_for(&mut bob_events, |e| matches!(e, Event::RoomJoined { .. })).await;
    tmux.wait_for("bob joined #ops").await;
    let in_ops = tsockm_client::Conversation::Room(ops);
    bob.send(&in_ops, "in ops").await.unwrap();
    tmux.wait_for("bob: in ops").await;
    tmux.keys(&["-l", "ops reply"]).await;
    tmux.keys(&["Enter"]).await;
    let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message(_))).await;
    match event {
        Event::Message(m) => assert_eq!((m.conversation, m.text.as_str()), (in_ops, "ops reply")),
        other => panic!("{other:?}"),
    }

    // Ctrl-C clears a half-typed line and the client goes on.
    tmux.keys(&["-l", "half typed"]).await;
    tmux.wait_for("#ops> half typed").await;
    tmux.keys(&["C-c"]).await;
    tmux.wait("the line cleared", |s| !s.contains("half typed"))
        .await;

    // A resize: the screen is drawn again to the new size.
    tmux.run(&["resize-window", "-t", tmux.session, "-x", "60", "-y", "15"])
        .await;
    let screen = tmux
        .wait("a 60x15 layout", |s| {
            let rows: Vec<&str> = s.lines().collect();
            rows.len() >= 14 && rows.get(13).is_some_and(|r| r.starts_with(" connected"))
        })
        .await;
    assert!(screen.lines().all(|r| r.chars().count() <= 60), "{screen}");
    assert_eq!(
        tmux.format("#{window_width}x#{window_height}").await,
        "60x15"
    );

    // :exit ends the session, gives the terminal back, and exits 0.
    tmux.keys(&["-l", ":exit"]).await;
    tmux.keys(&["Enter"]).await;
    let screen = tmux.wait_for("exit status").await;
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(screen.contains("session ended"), "{screen}");
    assert!(
        !screen.contains("Chats"),
        "the alternate screen is left:\n{screen}"
    );
    assert!(matches!(
        wait_for(&mut bob_events, |e| matches!(e, Event::Left { .. })).await,
        Event::Left { username, .. } if username == "alice"
    ));
    server.stop().await;
}

#[tokio::test]
async fn plain_mode_keeps_the_typed_line_below_the_messages() {
    if !Tmux::available().await {
        return;
    }
    let server = start().await;
    let (bob, mut bob_events) = server.connect("bob").await;
    let command = format!(
        "env -u RUST_LOG {} --plain --no-color --addr {} --username alice",
        env!("CARGO_BIN_EXE_tsockm-client"),
        server.addr
    );
    let tmux = Tmux::start("plain", &command, 80, 12).await;
    tmux.wait_for("* registered as alice (").await;
    assert!(matches!(next(&mut bob_events).await, Event::Joined { .. }));
    // A message arrives while alice types: it goes above her line, which
    // stays as it was.
    tmux.keys(&["-l", "half"]).await;
    tmux.wait_for("*> half").await;
    bob.broadcast("hello from bob").await.unwrap();
    // The message is printed, then the line redrawn under it: wait for
    // both (a capture between the two would show the message last).
    let last_row = |screen: &str| {
        let last = screen.lines().rfind(|r| !r.trim().is_empty());
        last.map(|r| r.trim_end().to_owned())
    };
    let screen = tmux
        .wait("the message above the typed line", |screen| {
            screen.contains("bob: hello from bob") && last_row(screen).as_deref() == Some("*> half")
        })
        .await;
    let rows: Vec<&str> = screen.lines().filter(|r| !r.trim().is_empty()).collect();
    assert_eq!(
        rows.last().map(|r| r.trim_end()),
        Some("*> half"),
        "{screen}"
    );
    tmux.keys(&["-l", " way"]).await;
    tmux.keys(&["Enter"]).await;
    // Her own line is shown with its time, and reaches bob.
    tmux.wait("her own line", |s| {
        s.lines()
            .any(|r| r.ends_with("alice: half way") || r.contains(" alice: half way"))
    })
    .await;
    let event = wait_for(&mut bob_events, |e| matches!(e, Event::Message(_))).await;
    assert!(matches!(event, Event::Message(m) if m.text == "half way"));
    tmux.keys(&["-l", ":exit"]).await;
    tmux.keys(&["Enter"]).await;
    let screen = tmux.wait_for("exit status").await;
    assert!(screen.contains("* session ended"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    server.stop().await;
}

/// `:exit` while the server is gone and a message waits: the client keeps
/// trying to deliver it, and says so; Ctrl-C then quits at once, giving the
/// terminal back.
#[tokio::test]
async fn ctrl_c_after_exit_quits_at_once_while_reconnecting() {
    if !Tmux::available().await {
        return;
    }
    let server = start().await;
    let command = format!(
        "env -u RUST_LOG {} --addr {} --username alice --reconnect-for 60",
        env!("CARGO_BIN_EXE_tsockm-client"),
        server.addr
    );
    let tmux = Tmux::start("quit", &command, 80, 16).await;
    tmux.wait_for("connected │ alice (").await;
    server.stop().await;
    tmux.wait_for("reconnecting to").await;
    tmux.keys(&["-l", "waiting to be sent"]).await;
    tmux.keys(&["Enter"]).await;
    tmux.keys(&["-l", ":exit"]).await;
    tmux.keys(&["Enter"]).await;
    tmux.wait_for("ending the session (Ctrl-C to quit at once)")
        .await;
    tmux.keys(&["C-c"]).await;
    let screen = tmux.wait_for("exit status").await;
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(
        !screen.contains("Chats"),
        "the alternate screen is left:\n{screen}"
    );
}
