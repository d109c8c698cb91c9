//! [`Chat`]: the terminal program's loop body, the same for every mode: a
//! typed line, a key or a session event goes in; the [`App`] is updated and
//! what it asks for is done with the [`Session`].
//!
//! The binary owns the terminal and standard input and output; tests drive a
//! `Chat` against a real server and draw it on ratatui's `TestBackend`.

use std::time::SystemTime;

use crossterm::event::KeyEvent;
use jiff::tz::TimeZone;

use crate::app::{App, Request};
use crate::{Closed, Event, Session, State};

/// Whether the program goes on reading input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// The user asked to quit: the session is ending; keep taking events
    /// until [`Event::Closed`].
    Exit,
}

/// The program's state and its session.
#[derive(Debug)]
pub struct Chat {
    /// What is shown.
    pub app: App,
    /// The session.
    session: Session,
    /// Whether a line mode should clear the screen (`:cc`).
    pub clear_requested: bool,
    /// Why the session closed, once it did.
    pub closed: Option<Closed>,
}

impl Chat {
    /// A chat on a session just connected.
    pub fn new(session: Session, tz: TimeZone, now: SystemTime) -> Self {
        let app = App::new(&session.state(), tz, now);
        Chat {
            app,
            session,
            clear_requested: false,
            closed: None,
        }
    }

    /// The session's state now.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Asks for what the start shows (the lobby's latest messages).
    pub async fn start(&mut self) -> Flow {
        let requests = self.app.start();
        self.run(requests).await
    }

    /// A line typed (or read from a script).
    pub async fn line(&mut self, line: &str) -> Flow {
        let requests = self
            .app
            .on_line(line, &self.session.state(), SystemTime::now());
        self.run(requests).await
    }

    /// A key pressed in the full-screen UI.
    pub async fn key(&mut self, key: KeyEvent) -> Flow {
        let requests = self
            .app
            .on_key(key, &self.session.state(), SystemTime::now());
        self.run(requests).await
    }

    /// An event from the session.
    pub async fn event(&mut self, event: Event) -> Flow {
        if let Event::Closed(closed) = &event {
            self.closed = Some(closed.clone());
        }
        let requests = self
            .app
            .on_event(event, &self.session.state(), SystemTime::now());
        self.run(requests).await
    }

    /// Does what the app asked for.
    async fn run(&mut self, requests: Vec<Request>) -> Flow {
        let mut flow = Flow::Continue;
        for request in requests {
            // A failure here means the session is closed; its Closed event
            // says why.
            let _ = match request {
                Request::Send { to, text } => {
                    let outcome = self.session.send(&to, text.as_str()).await;
                    let state = self.session.state();
                    self.app
                        .on_sent(&to, &text, outcome, &state, SystemTime::now());
                    Ok(())
                }
                Request::Join(room) => self.session.join(&room).await,
                Request::Part(room) => self.session.part(&room).await,
                Request::Rooms => self.session.rooms().await,
                Request::GetPeer(id) => self.session.get_peer(&id).await,
                Request::History {
                    conversation,
                    n,
                    before,
                } => {
                    self.session
                        .history(&conversation, n, before.as_ref())
                        .await
                }
                Request::Clear => {
                    self.clear_requested = true;
                    Ok(())
                }
                Request::Exit => {
                    flow = Flow::Exit;
                    self.session.end().await
                }
            };
        }
        flow
    }
}
