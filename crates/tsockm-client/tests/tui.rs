//! The full-screen UI against the real server, drawn on ratatui's
//! `TestBackend`: what the screen shows (conversations, unread counts, own
//! messages, the status bar), keys (typing, Enter, Ctrl-C, Alt-digits,
//! Ctrl-D), scrollback, a resize and the reconnecting status. Each step waits
//! for the screen to show what it should, under a timeout.

mod common;

use std::time::{Duration, SystemTime};

use common::{Proxy, TestServer, client_config, start, within};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jiff::tz::TimeZone;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tsockm_client::chat::{Chat, Flow};
use tsockm_client::{Closed, Events, Session};

/// A chat drawn on a test terminal.
struct Screen {
    chat: Chat,
    events: Events,
    terminal: Terminal<TestBackend>,
}

impl Screen {
    async fn new(session: Session, events: Events, width: u16, height: u16) -> Screen {
        let mut chat = Chat::new(session, TimeZone::UTC, SystemTime::now());
        chat.start();
        chat.flush().await;
        let terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        Screen {
            chat,
            events,
            terminal,
        }
    }

    async fn connect(server: &TestServer, username: &str) -> Screen {
        let (session, events) = server.connect(username).await;
        Screen::new(session, events, 80, 20).await
    }

    /// Draws and gives back the screen, one string per row.
    fn draw(&mut self) -> Vec<String> {
        let state = self.chat.state();
        let app = &mut self.chat.app;
        self.terminal
            .draw(|frame| tsockm_client::tui::draw(frame, app, &state, SystemTime::now()))
            .unwrap();
        let buffer = self.terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    /// Takes session events and redraws until the screen shows `needle`.
    async fn wait_for(&mut self, needle: &str) -> Vec<String> {
        self.wait(
            |screen| screen.iter().any(|row| row.contains(needle)),
            needle,
        )
        .await
    }

    async fn wait(&mut self, mut done: impl FnMut(&[String]) -> bool, what: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + common::WAIT;
        loop {
            let screen = self.draw();
            if done(&screen) {
                return screen;
            }
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match event {
                Ok(Some(event)) => {
                    self.chat.event(event);
                    self.chat.flush().await;
                }
                Ok(None) => panic!("events ended waiting for {what:?}:\n{}", screen.join("\n")),
                Err(_) => panic!("timed out waiting for {what:?}:\n{}", screen.join("\n")),
            }
        }
    }

    async fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> Flow {
        let flow = self.chat.key(KeyEvent::new(code, modifiers));
        self.chat.flush().await;
        flow
    }

    async fn type_line(&mut self, line: &str) -> Flow {
        for c in line.chars() {
            self.key(KeyCode::Char(c), KeyModifiers::NONE).await;
        }
        self.key(KeyCode::Enter, KeyModifiers::NONE).await
    }
}

fn row_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
    screen
        .iter()
        .find(|row| row.contains(needle))
        .map_or("", String::as_str)
}

#[tokio::test]
async fn conversations_unread_counts_own_messages_and_the_status_bar() {
    let server = start().await;
    let mut alice = Screen::connect(&server, "alice").await;
    let (bob, mut bob_events) = server.connect("bob").await;
    let alice_id = alice.chat.state().id;

    let screen = alice.wait_for("bob joined").await;
    // The status bar: server, name and id, connection.
    let status = row_with(&screen, "connected");
    assert!(status.contains(&server.addr.to_string()), "{status}");
    assert!(status.contains(&format!("alice ({alice_id})")), "{status}");
    // The list has the lobby, selected; the input line its prompt.
    assert!(row_with(&screen, "1 *").contains("1 *"));
    assert!(screen[19].starts_with("*> "), "{}", screen[19]);

    // A message from bob, with its time; then alice's own, typed.
    bob.broadcast("hello alice").await.unwrap();
    let screen = alice.wait_for("bob: hello alice").await;
    let row = row_with(&screen, "bob: hello alice");
    assert!(
        row.contains(&format!(
            "│{}",
            tsockm_client::text::time_of_day(SystemTime::now(), &TimeZone::UTC)
        )),
        "{row}"
    );
    assert_eq!(alice.type_line("hi bob").await, Flow::Continue);
    alice.wait_for("alice: hi bob").await;
    let event = common::wait_for(&mut bob_events, |e| {
        matches!(e, tsockm_client::Event::Message(_))
    })
    .await;
    assert!(matches!(event, tsockm_client::Event::Message(m) if m.text == "hi bob"));

    // A direct message: a new conversation with an unread count, and a bell.
    bob.direct(&alice_id, "psst, alice").await.unwrap();
    let screen = alice.wait_for("@bob (1)").await;
    assert!(
        !screen.iter().any(|r| r.contains("psst")),
        "not shown in the lobby"
    );
    assert!(alice.chat.app.take_bell());
    // Alt-2 shows it and clears the count.
    alice.key(KeyCode::Char('2'), KeyModifiers::ALT).await;
    let screen = alice.wait_for("bob: psst, alice").await;
    assert!(!row_with(&screen, "2 @bob").contains("(1)"));
    assert!(screen[19].starts_with("@bob> "), "{}", screen[19]);
    // Typed here, a line goes to bob only.
    alice.type_line("just you").await;
    alice.wait_for("alice: just you").await;
    let event = common::wait_for(&mut bob_events, |e| {
        matches!(e, tsockm_client::Event::Message(_))
    })
    .await;
    match event {
        tsockm_client::Event::Message(m) => {
            assert_eq!(m.text, "just you");
            assert_eq!(
                m.conversation,
                tsockm_client::Conversation::Direct(alice_id.clone())
            );
        }
        other => panic!("{other:?}"),
    }
    // Control and format characters from others are drawn escaped.
    bob.direct(&alice_id, "evil\u{202e}gnp.exe\x1b[2J")
        .await
        .unwrap();
    alice.wait_for("bob: evil\\u{202e}gnp.exe\\u{1b}[2J").await;
    // Ctrl-N cycles back to the lobby; a mention there is highlighted.
    alice.key(KeyCode::Char('n'), KeyModifiers::CONTROL).await;
    bob.broadcast("alice, look").await.unwrap();
    alice.wait_for("bob: alice, look").await;
    assert!(alice.chat.app.take_bell(), "a mention rings");
    server.stop().await;
}

#[tokio::test]
async fn keys_edit_the_line_and_ctrl_d_ends_the_session() {
    let server = start().await;
    let mut alice = Screen::connect(&server, "alice").await;
    for c in "half typed".chars() {
        alice.key(KeyCode::Char(c), KeyModifiers::NONE).await;
    }
    let screen = alice.draw();
    assert!(screen[19].starts_with("*> half typed"), "{}", screen[19]);
    // Ctrl-C clears the line, as in a shell, and does not quit.
    assert_eq!(
        alice.key(KeyCode::Char('c'), KeyModifiers::CONTROL).await,
        Flow::Continue
    );
    let screen = alice.draw();
    assert_eq!(screen[19].trim_end(), "*>");
    // A command with Tab completion: `:he` → `:help`.
    for c in ":he".chars() {
        alice.key(KeyCode::Char(c), KeyModifiers::NONE).await;
    }
    alice.key(KeyCode::Tab, KeyModifiers::NONE).await;
    assert_eq!(alice.chat.app.input.text(), ":help ");
    alice.key(KeyCode::Enter, KeyModifiers::NONE).await;
    alice.wait_for(":exit").await;
    // Ctrl-D on an empty line ends the session.
    assert_eq!(
        alice.key(KeyCode::Char('d'), KeyModifiers::CONTROL).await,
        Flow::Exit
    );
    alice.wait_for("session ended").await;
    assert_eq!(alice.chat.closed, Some(Closed::Ended));
    server.stop().await;
}

#[tokio::test]
async fn scrollback_resize_and_wrapping() {
    let server = start().await;
    let mut alice = Screen::connect(&server, "alice").await;
    let (bob, _bob_events) = server.connect("bob").await;
    for i in 0..40 {
        bob.broadcast(format!("line {i:02}")).await.unwrap();
    }
    let screen = alice.wait_for("bob: line 39").await;
    assert!(!screen.iter().any(|r| r.contains("line 00")));
    // PgUp until the first line shows; PgDn back to the newest.
    for _ in 0..10 {
        alice.key(KeyCode::PageUp, KeyModifiers::NONE).await;
        if alice.draw().iter().any(|r| r.contains("line 00")) {
            break;
        }
    }
    let screen = alice.draw();
    assert!(
        screen.iter().any(|r| r.contains("line 00")),
        "{}",
        screen.join("\n")
    );
    assert!(screen[0].contains("scrolled up"), "{}", screen[0]);
    for _ in 0..10 {
        alice.key(KeyCode::PageDown, KeyModifiers::NONE).await;
    }
    alice.wait_for("bob: line 39").await;

    // A narrower, shorter terminal: redrawn to fit, long lines wrapped.
    alice.terminal.backend_mut().resize(40, 10);
    bob.broadcast("a long message that cannot fit on one row of a narrow view")
        .await
        .unwrap();
    let screen = alice.wait_for("bob: a long").await;
    assert_eq!(screen.len(), 10);
    assert!(screen.iter().all(|r| r.chars().count() == 40));
    // Wrapped at spaces, continuation rows indented under the text.
    assert!(
        screen.iter().any(|r| r.contains("│      row of a narrow")),
        "{}",
        screen.join("\n")
    );
    assert!(screen[8].starts_with(" connected │ alice"), "{}", screen[8]);
    server.stop().await;
}

#[tokio::test]
async fn the_status_bar_counts_down_while_reconnecting() {
    let server = start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = tsockm_client::Config {
        backoff_min: Duration::from_secs(2),
        backoff_max: Duration::from_secs(4),
        ..client_config(proxy.addr, "alice")
    };
    let (session, events) = within(Session::connect(config)).await.unwrap();
    let mut alice = Screen::new(session, events, 100, 12).await;
    proxy.set_blocked(true);
    proxy.cut();
    let screen = alice.wait_for("reconnecting to").await;
    let status = row_with(&screen, "reconnecting to");
    assert!(status.contains(" s (attempt 1)"), "{status}");
    // One notice in the log, not one per attempt.
    assert_eq!(
        screen
            .iter()
            .filter(|r| r.contains("connection lost"))
            .count(),
        1
    );
    proxy.set_blocked(false);
    alice.wait_for("resumed at").await;
    alice.wait_for("session resumed").await;
    server.stop().await;
}
