//! [`Chat`]: the terminal program's loop body, the same for every mode: a
//! typed line, a key or a session event goes in; the [`App`] is updated and
//! what it asks for is queued here, then made of the [`Session`] as the
//! session has room for it.
//!
//! Taking input never waits on the session: requests wait in a queue of
//! their own, and the program's loop sends the next one when
//! [`Session::reserve`] gives a permit, *beside* taking events. Awaiting the
//! session inside the loop would stall both sides when the session's queue
//! is full and its events are not taken (it stops reading the socket, so
//! the answers it waits for never come).
//!
//! The binary owns the terminal and standard input and output; tests drive a
//! `Chat` against a real server and draw it on ratatui's `TestBackend`.

use std::collections::VecDeque;
use std::time::SystemTime;

use crossterm::event::KeyEvent;
use jiff::tz::TimeZone;

use crate::app::{App, Request};
use crate::{Closed, Event, Permit, Session, State};

/// Whether the program goes on reading input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// The user asked to quit: the session is ending; keep taking events
    /// until [`Event::Closed`].
    Exit,
}

/// The program's state, its session, and the requests waiting for it.
#[derive(Debug)]
pub struct Chat {
    /// What is shown.
    pub app: App,
    /// The session.
    session: Session,
    /// Requests not yet handed to the session, oldest first.
    requests: VecDeque<Request>,
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
            requests: VecDeque::new(),
            clear_requested: false,
            closed: None,
        }
    }

    /// The session's state now.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// The session (clone it to wait for a permit beside other work).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Queues what the start shows (the lobby's latest messages).
    pub fn start(&mut self) {
        let requests = self.app.start();
        self.queue(requests);
    }

    /// A line typed (or read from a script).
    pub fn line(&mut self, line: &str) -> Flow {
        let requests = self
            .app
            .on_line(line, &self.session.state(), SystemTime::now());
        self.queue(requests)
    }

    /// A key pressed in a terminal mode.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        let requests = self
            .app
            .on_key(key, &self.session.state(), SystemTime::now());
        self.queue(requests)
    }

    /// The end of input: the session ends once what was typed before is sent.
    pub fn end(&mut self) -> Flow {
        self.queue(vec![Request::Exit])
    }

    /// An event from the session.
    pub fn event(&mut self, event: Event) -> Flow {
        if let Event::Closed(closed) = &event {
            self.closed = Some(closed.clone());
            // Nothing can be sent any more.
            self.requests.clear();
        }
        let requests = self
            .app
            .on_event(event, &self.session.state(), SystemTime::now());
        self.queue(requests)
    }

    /// Whether requests wait for the session.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// How many requests wait for the session.
    pub fn n_requests(&self) -> usize {
        self.requests.len()
    }

    /// Hands the oldest waiting request to the session with `permit`.
    pub fn send_next(&mut self, permit: Permit<'_>) {
        let Some(request) = self.requests.pop_front() else {
            return;
        };
        match request {
            Request::Send { to, text } => {
                let outcome = permit.send(&to, text.as_str());
                let state = self.session.state();
                self.app
                    .on_sent(&to, &text, outcome, &state, SystemTime::now());
            }
            Request::Join(room) => permit.join(&room),
            Request::Part(room) => permit.part(&room),
            Request::Rooms => permit.rooms(),
            Request::GetPeer(id) => {
                if let Err(e) = permit.get_peer(&id) {
                    self.app.note_error(&e.to_string(), SystemTime::now());
                }
            }
            Request::History {
                conversation,
                n,
                before,
            } => permit.history(&conversation, n, before.as_ref()),
            Request::Exit => permit.end(),
            // Handled when queued.
            Request::Clear => {}
        }
    }

    /// Forgets the waiting requests (the session is closed).
    pub fn drop_requests(&mut self) {
        self.requests.clear();
    }

    /// Sends every waiting request, waiting for room as needed. For tests
    /// and simple programs: it takes no events meanwhile, so a long queue
    /// towards a busy session belongs in a `select!` with
    /// [`Chat::send_next`] instead.
    pub async fn flush(&mut self) {
        let session = self.session.clone();
        while self.has_requests() {
            match session.reserve().await {
                Ok(permit) => self.send_next(permit),
                Err(_) => self.requests.clear(),
            }
        }
    }

    /// Queues the app's requests; says whether the user asked to quit.
    fn queue(&mut self, requests: Vec<Request>) -> Flow {
        let mut flow = Flow::Continue;
        for request in requests {
            match request {
                Request::Clear => self.clear_requested = true,
                Request::Exit => {
                    flow = Flow::Exit;
                    self.requests.push_back(Request::Exit);
                }
                other => self.requests.push_back(other),
            }
        }
        flow
    }
}
