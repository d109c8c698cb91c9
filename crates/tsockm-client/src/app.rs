//! [`App`]: the terminal program's own state, beside the session's.
//!
//! The conversations (the lobby, joined rooms, direct-message partners)
//! with their logs, unread counts and scrollback; the connection status;
//! the line being typed; the counters `:info` shows. Every mode uses it: the
//! full-screen UI draws it, the line modes print its new lines.
//!
//! Pure: no I/O and no clock of its own (the caller passes the time and the
//! session's [`State`]). What the user asks for comes back as [`Request`]s
//! for the caller to make of the session, so every rule here is tested
//! without a network.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jiff::tz::TimeZone;
use tsockm_proto::{Action, Status};

use crate::command::{self, Command};
use crate::input::Input;
use crate::text::{self, Newlines, clean_name, count};
use crate::{
    Closed, Conversation, Event, Message, MsgId, PeerId, RoomName, Roster, SessionError, State,
};

/// Lines kept per conversation; older ones are dropped (HISTORY brings
/// them back on demand).
pub const MAX_LINES_PER_CONVERSATION: usize = 5000;

/// How many stored messages are shown on start, on joining a room, and
/// fetched per step when scrolling past the top.
pub const HISTORY_STEP: usize = 50;

/// Counters kept by the terminal program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages this client sent.
    pub n_sent: u64,
    /// Messages received in the lobby and rooms.
    pub n_received: u64,
    /// Direct messages received.
    pub n_direct: u64,
    /// Errors the server answered with.
    pub n_errors: u64,
    /// Times the session was restored after a dropped connection.
    pub n_reconnects: u64,
    /// Messages that could not be sent (too long, refused, dropped).
    pub n_not_sent: u64,
}

/// What the caller must ask of the session for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Send a message; report the outcome with [`App::on_sent`].
    Send {
        /// Where.
        to: Conversation,
        /// What.
        text: String,
    },
    /// Join a room.
    Join(RoomName),
    /// Leave a room.
    Part(RoomName),
    /// List the rooms.
    Rooms,
    /// Look a peer up.
    GetPeer(PeerId),
    /// Ask for stored messages.
    History {
        /// Which conversation.
        conversation: Conversation,
        /// How many.
        n: usize,
        /// Before this message (older ones), or the latest.
        before: Option<MsgId>,
    },
    /// Clear the screen (line modes).
    Clear,
    /// End the session and quit.
    Exit,
}

/// One line of a conversation's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When it happened (for a stored message: when the server took it).
    pub time: SystemTime,
    /// What it is.
    pub kind: LineKind,
}

/// What a line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A chat message. `name` and `text` are as received: clean them
    /// ([`text::clean`]) before showing them.
    Message {
        /// The author.
        from: PeerId,
        /// The author's username (or id when unknown).
        name: String,
        /// The message.
        text: String,
        /// Whether this client wrote it.
        own: bool,
        /// Whether it came from the server's history.
        history: bool,
        /// Whether it mentions this client's username.
        mention: bool,
    },
    /// Something that happened, in words (already clean; may hold newlines).
    Notice(String),
    /// Something that went wrong, in words (already clean; may hold newlines).
    Error(String),
}

/// One conversation and what the user has seen of it.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Which conversation.
    pub conversation: Conversation,
    /// Its name in the list: `*`, `#room`, `@username`.
    pub title: String,
    /// Its log, oldest first.
    pub lines: VecDeque<Line>,
    /// Messages received since it was last shown.
    pub unread: usize,
    /// Whether one of those mentions this client (or is a direct message).
    pub highlight: bool,
    /// Lines scrolled up from the bottom (0: following new lines).
    pub scroll: usize,
    /// Whether its first line is on screen (set by the full-screen UI).
    pub top_visible: bool,
    /// Whether the server said older stored messages exist.
    pub more_before: bool,
    /// Whether older messages were asked for and not yet answered.
    pub fetching: bool,
    /// The oldest message id in the log.
    oldest: Option<MsgId>,
    /// Message ids in the log.
    ids: HashSet<MsgId>,
    /// The user's own messages in the log, which came without an id (the
    /// server does not send them back), so their stored copies are not
    /// shown twice when history is merged.
    own_without_id: HashSet<String>,
}

impl Conv {
    fn new(conversation: Conversation, title: String) -> Self {
        Conv {
            conversation,
            title,
            lines: VecDeque::new(),
            unread: 0,
            highlight: false,
            scroll: 0,
            top_visible: true,
            more_before: true,
            fetching: false,
            oldest: None,
            ids: HashSet::new(),
            own_without_id: HashSet::new(),
        }
    }

    fn push(&mut self, line: Line) {
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES_PER_CONVERSATION {
            self.lines.pop_front();
            self.more_before = true;
        }
        if self.scroll > 0 {
            // Keep the lines on screen where they are.
            self.scroll += 1;
        }
    }
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Connected since the start.
    Connected,
    /// Waiting before the next attempt to reconnect.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// When the next attempt starts.
        retry_at: SystemTime,
        /// Where it goes.
        server: String,
    },
    /// Reconnected and resumed.
    Resumed {
        /// When.
        at: SystemTime,
    },
    /// Reconnected under a new id.
    Reregistered {
        /// When.
        at: SystemTime,
    },
    /// The session is over.
    Closed,
}

/// A line just added, for the line modes to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The conversation it went to.
    pub conversation: Conversation,
    /// That conversation's name (`*`, `#room`, `@username`).
    pub title: String,
    /// The line.
    pub line: Line,
}

/// Why a HISTORY request was made, so its answer goes where it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HistoryMode {
    /// On start or on joining: merge into the log.
    Start,
    /// Scrolled past the top: put before the log.
    Older,
    /// `:history n`: show as a block.
    Show,
}

/// The program's state.
#[derive(Debug)]
pub struct App {
    /// Counters for `:info`.
    pub counters: Counters,
    /// The line being typed (full-screen UI).
    pub input: Input,
    /// The time zone times are shown in.
    tz: TimeZone,
    /// The conversations; the lobby is always the first.
    convs: Vec<Conv>,
    /// The one shown.
    current: usize,
    /// The connection, for the status bar.
    connection: Connection,
    /// Lines added since the last [`App::take_fresh`].
    fresh: Vec<Fresh>,
    /// HISTORY requests not yet answered, in order.
    history_asks: VecDeque<(Conversation, HistoryMode)>,
    /// False once the server answered HISTORY with 405 (a v1 server).
    history_supported: bool,
    /// Rooms seen in `:rooms`, for completion.
    known_rooms: BTreeSet<RoomName>,
    /// Rooms asked for with `:join` and not yet confirmed, in order.
    pending_joins: VecDeque<RoomName>,
    /// Whether to ring the terminal bell.
    bell: bool,
    /// Rows of the conversation view at the last draw.
    pub view_height: usize,
}

impl App {
    /// A fresh state for a session just registered; shows the welcome line.
    pub fn new(state: &State, tz: TimeZone, now: SystemTime) -> Self {
        let mut app = App {
            counters: Counters::default(),
            input: Input::new(),
            tz,
            convs: vec![Conv::new(Conversation::Lobby, "*".to_owned())],
            current: 0,
            connection: Connection::Connected,
            fresh: Vec::new(),
            history_asks: VecDeque::new(),
            history_supported: true,
            known_rooms: BTreeSet::new(),
            pending_joins: VecDeque::new(),
            bell: false,
            view_height: 20,
        };
        let others = state.roster.len().saturating_sub(1);
        app.notice(
            0,
            now,
            format!(
                "registered as {} ({}) on {}; {} here; :help for commands",
                clean_name(&state.username),
                state.id,
                state.server,
                count(others, "other peer")
            ),
        );
        app
    }

    /// What to ask for right after the start: the lobby's latest messages.
    pub fn start(&mut self) -> Vec<Request> {
        vec![self.ask_history(Conversation::Lobby, HISTORY_STEP, None, HistoryMode::Start)]
    }

    /// The time zone times are shown in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Every conversation, the lobby first.
    pub fn conversations(&self) -> &[Conv] {
        &self.convs
    }

    /// The index of the conversation shown.
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// The conversation shown.
    pub fn current(&self) -> &Conv {
        &self.convs[self.current.min(self.convs.len() - 1)]
    }

    /// The conversation shown, to update (the full-screen UI sets
    /// [`Conv::top_visible`]).
    pub fn current_mut(&mut self) -> &mut Conv {
        let i = self.current.min(self.convs.len() - 1);
        &mut self.convs[i]
    }

    /// The connection, for the status bar.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Lines added since the last call (the line modes print them).
    pub fn take_fresh(&mut self) -> Vec<Fresh> {
        std::mem::take(&mut self.fresh)
    }

    /// Whether the bell should ring (a direct message or a mention came);
    /// resets it.
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.bell)
    }

    /// Adds a notice (already clean) to the conversation shown.
    pub fn note(&mut self, text: &str, now: SystemTime) {
        let i = self.current;
        self.notice(i, now, text.to_owned());
    }

    /// Adds an error (already clean) to the conversation shown.
    pub fn note_error(&mut self, text: &str, now: SystemTime) {
        self.error(now, text.to_owned());
    }

    /// Switches to conversation `index` (ignored when there is none).
    pub fn switch_to(&mut self, index: usize) {
        if index < self.convs.len() {
            self.current = index;
            let conv = &mut self.convs[index];
            conv.unread = 0;
            conv.highlight = false;
        }
    }

    /// Switches to the next (`forward`) or previous conversation.
    pub fn cycle(&mut self, forward: bool) {
        let n = self.convs.len();
        let next = if forward {
            (self.current + 1) % n
        } else {
            (self.current + n - 1) % n
        };
        self.switch_to(next);
    }

    fn index_of(&self, conversation: &Conversation) -> Option<usize> {
        self.convs
            .iter()
            .position(|c| &c.conversation == conversation)
    }

    /// The index of a conversation, made if new.
    fn conv(&mut self, conversation: &Conversation, state: &State) -> usize {
        if let Some(i) = self.index_of(conversation) {
            return i;
        }
        let title = match conversation {
            Conversation::Lobby => "*".to_owned(),
            Conversation::Room(room) => room.to_string(),
            Conversation::Direct(id) => format!(
                "@{}",
                clean_name(
                    state
                        .roster
                        .username(id.as_str())
                        .map_or(id.as_str(), |n| n.as_str())
                )
            ),
        };
        self.convs.push(Conv::new(conversation.clone(), title));
        self.convs.len() - 1
    }

    fn add(&mut self, index: usize, line: Line) {
        let conversation = self.convs[index].conversation.clone();
        let title = self.convs[index].title.clone();
        self.fresh.push(Fresh {
            conversation,
            title,
            line: line.clone(),
        });
        self.convs[index].push(line);
    }

    /// Adds a notice to conversation `index`.
    fn notice(&mut self, index: usize, time: SystemTime, text: String) {
        self.add(
            index,
            Line {
                time,
                kind: LineKind::Notice(text),
            },
        );
    }

    /// Adds an error to the conversation shown.
    fn error(&mut self, time: SystemTime, text: String) {
        let index = self.current;
        self.add(
            index,
            Line {
                time,
                kind: LineKind::Error(text),
            },
        );
    }

    fn ask_history(
        &mut self,
        conversation: Conversation,
        n: usize,
        before: Option<MsgId>,
        mode: HistoryMode,
    ) -> Request {
        self.history_asks.push_back((conversation.clone(), mode));
        Request::History {
            conversation,
            n,
            before,
        }
    }

    /// Takes in what the session reported.
    pub fn on_event(&mut self, event: Event, state: &State, now: SystemTime) -> Vec<Request> {
        let mut requests = Vec::new();
        match event {
            Event::Message(message) => self.on_message(message, state),
            Event::History {
                conversation,
                messages,
                more,
            } => self.on_history(conversation, messages, more, state, now),
            Event::Joined { id, username } => {
                self.notice(0, now, format!("{} joined ({id})", clean_name(&username)));
            }
            Event::Left { id, username } => {
                self.notice(0, now, format!("{} left ({id})", clean_name(&username)));
            }
            Event::PeerFound { id, username } => {
                let i = self.current;
                self.notice(i, now, format!("{id} is {}", clean_name(&username)));
            }
            Event::RoomJoined { room, members } => {
                let conversation = Conversation::Room(room.clone());
                self.pending_joins.retain(|r| *r != room);
                let known = self.index_of(&conversation).is_some();
                let i = self.conv(&conversation, state);
                let mut names: Vec<String> = members
                    .iter()
                    .map(|(id, name)| {
                        if *id == state.id {
                            "you".to_owned()
                        } else {
                            clean_name(name)
                        }
                    })
                    .collect();
                names.sort();
                self.notice(
                    i,
                    now,
                    format!(
                        "you joined {room}: {} ({})",
                        count(members.len(), "member"),
                        names.join(", ")
                    ),
                );
                if !known {
                    self.switch_to(i);
                }
                requests.push(self.ask_history(
                    conversation,
                    HISTORY_STEP,
                    None,
                    HistoryMode::Start,
                ));
            }
            Event::RoomJoin { room, username, .. } => {
                let i = self.conv(&Conversation::Room(room.clone()), state);
                self.notice(i, now, format!("{} joined {room}", clean_name(&username)));
            }
            Event::RoomPart { room, id, username } => {
                let conversation = Conversation::Room(room.clone());
                if id == state.id {
                    if let Some(i) = self.index_of(&conversation) {
                        self.convs.remove(i);
                        if self.current >= i {
                            self.current = self.current.saturating_sub(1).min(self.convs.len() - 1);
                        }
                    }
                    self.notice(0, now, format!("you left {room}"));
                } else if let Some(i) = self.index_of(&conversation) {
                    self.notice(i, now, format!("{} left {room}", clean_name(&username)));
                }
            }
            Event::Rooms(rooms) => {
                let i = self.current;
                if rooms.is_empty() {
                    self.notice(i, now, "no rooms yet; :join #name makes one".to_owned());
                } else {
                    let mut text = format!("{}:", count(rooms.len(), "room"));
                    for (room, n) in &rooms {
                        let mine = if state.rooms.contains_key(room) {
                            ", you among them"
                        } else {
                            ""
                        };
                        text.push_str(&format!("\n{room}  {}{mine}", count(*n, "member")));
                    }
                    self.known_rooms
                        .extend(rooms.into_iter().map(|(room, _)| room));
                    self.notice(i, now, text);
                }
            }
            Event::Error {
                action,
                status,
                reason,
            } => self.on_error(action, status, &reason, now),
            Event::Reconnecting {
                attempt,
                delay,
                server,
                reason,
            } => {
                if attempt <= 1 {
                    let i = self.current;
                    self.notice(
                        i,
                        now,
                        format!(
                            "connection lost ({}); reconnecting",
                            text::clean(&reason, Newlines::Escaped)
                        ),
                    );
                }
                self.connection = Connection::Reconnecting {
                    attempt,
                    retry_at: now + delay,
                    server,
                };
            }
            Event::Reconnected {
                kept_frames,
                server,
            } => {
                self.counters.n_reconnects += 1;
                self.connection = Connection::Resumed { at: now };
                let i = self.current;
                let kept = if kept_frames == 0 {
                    String::new()
                } else {
                    format!(" ({} while you were away)", count(kept_frames, "update"))
                };
                self.notice(
                    i,
                    now,
                    format!("back online on {server}; session resumed{kept}"),
                );
            }
            Event::Reregistered {
                old_id,
                new_id,
                server,
            } => {
                self.counters.n_reconnects += 1;
                self.connection = Connection::Reregistered { at: now };
                let i = self.current;
                self.notice(
                    i,
                    now,
                    format!(
                        "back online on {server}, but the server had forgotten your session: \
                         you are {new_id} now (were {old_id}); messages sent to you meanwhile are lost"
                    ),
                );
            }
            Event::Unsent { n_frames } => {
                self.counters.n_not_sent += n_frames as u64;
                self.error(
                    now,
                    format!(
                        "{} could not be sent before the session ended",
                        count(n_frames, "request")
                    ),
                );
            }
            Event::Closed(closed) => {
                self.connection = Connection::Closed;
                let i = self.current;
                match closed {
                    Closed::Ended => self.notice(i, now, "session ended".to_owned()),
                    other => self.error(now, closed_words(&other)),
                }
            }
        }
        requests
    }

    fn on_message(&mut self, message: Message, state: &State) {
        let index = self.conv(&message.conversation, state);
        if let Some(id) = &message.id
            && !self.convs[index].ids.insert(id.clone())
        {
            return;
        }
        let own = message.from == state.id;
        let name = message
            .username
            .as_ref()
            .map_or_else(|| message.from.to_string(), |n| n.to_string());
        let direct = matches!(message.conversation, Conversation::Direct(_)) && !own;
        let mention = !own && text::mentions(&message.text, &state.username);
        if direct {
            self.counters.n_direct += 1;
        } else {
            self.counters.n_received += 1;
        }
        let line = Line {
            time: message.time,
            kind: LineKind::Message {
                from: message.from,
                name,
                text: message.text.to_string(),
                own,
                history: false,
                mention,
            },
        };
        self.add(index, line);
        if index != self.current {
            let conv = &mut self.convs[index];
            conv.unread += 1;
            conv.highlight |= mention || direct;
        }
        if mention || direct {
            self.bell = true;
        }
    }

    fn on_history(
        &mut self,
        conversation: Conversation,
        messages: Vec<Message>,
        more: bool,
        state: &State,
        now: SystemTime,
    ) {
        let (asked, mode) = self
            .history_asks
            .pop_front()
            .unwrap_or((conversation, HistoryMode::Start));
        let index = self.conv(&asked, state);
        let lines: Vec<(Option<MsgId>, Line)> = messages
            .into_iter()
            .map(|m| {
                let own = m.from == state.id;
                let mention = !own && text::mentions(&m.text, &state.username);
                let name = m
                    .username
                    .as_ref()
                    .map_or_else(|| m.from.to_string(), |n| n.to_string());
                (
                    m.id,
                    Line {
                        time: m.time,
                        kind: LineKind::Message {
                            from: m.from,
                            name,
                            text: m.text.to_string(),
                            own,
                            history: true,
                            mention,
                        },
                    },
                )
            })
            .collect();
        let conv_name = self.convs[index].title.clone();
        match mode {
            HistoryMode::Show => {
                if lines.is_empty() {
                    self.notice(index, now, format!("no stored messages in {conv_name}"));
                } else {
                    self.notice(
                        index,
                        now,
                        format!(
                            "the last {} in {conv_name}:",
                            count(lines.len(), "stored message")
                        ),
                    );
                    for (_, line) in lines {
                        self.add(index, line);
                    }
                }
            }
            HistoryMode::Start | HistoryMode::Older => {
                let conv = &mut self.convs[index];
                conv.fetching = false;
                conv.more_before = more;
                let new: Vec<(Option<MsgId>, Line)> = lines
                    .into_iter()
                    .filter(|(id, _)| id.as_ref().is_none_or(|id| !conv.ids.contains(id)))
                    .filter(|(_, line)| match &line.kind {
                        LineKind::Message {
                            own: true, text, ..
                        } => !conv.own_without_id.remove(text),
                        _ => true,
                    })
                    .collect();
                if let Some(first) = new.iter().find_map(|(id, _)| id.clone()) {
                    conv.oldest = Some(first);
                }
                // Line modes print them as they come, marked as history.
                for (_, line) in &new {
                    self.fresh.push(Fresh {
                        conversation: self.convs[index].conversation.clone(),
                        title: self.convs[index].title.clone(),
                        line: line.clone(),
                    });
                }
                let conv = &mut self.convs[index];
                for (id, line) in new.into_iter().rev() {
                    if let Some(id) = id {
                        conv.ids.insert(id);
                    }
                    if conv.lines.len() < MAX_LINES_PER_CONVERSATION {
                        conv.lines.push_front(line);
                    }
                }
            }
        }
    }

    fn on_error(&mut self, action: Action, status: Status, reason: &str, now: SystemTime) {
        if action == Action::Join
            && let Some(room) = self.pending_joins.pop_front()
            && let Some(i) = self.index_of(&Conversation::Room(room))
        {
            self.convs.remove(i);
            if self.current >= i {
                self.current = self.current.saturating_sub(1).min(self.convs.len() - 1);
            }
        }
        if action == Action::History {
            let mode = self.history_asks.pop_front().map(|(conversation, mode)| {
                if let Some(i) = self.index_of(&conversation) {
                    self.convs[i].fetching = false;
                    self.convs[i].more_before = false;
                }
                mode
            });
            if status == Status::MethodNotAllowed {
                self.history_supported = false;
                if mode != Some(HistoryMode::Show) {
                    return;
                }
            }
        }
        self.counters.n_errors += 1;
        if action == Action::Msg {
            self.counters.n_not_sent += 1;
        }
        self.error(now, error_words(action, status, reason));
    }

    /// Records the outcome of a [`Request::Send`]: the message joins the
    /// log as the user's own, or the refusal is shown.
    pub fn on_sent(
        &mut self,
        to: &Conversation,
        text: &str,
        outcome: Result<(), SessionError>,
        state: &State,
        now: SystemTime,
    ) {
        match outcome {
            Ok(()) => {
                self.counters.n_sent += 1;
                // A direct message to oneself comes back; no need to show it twice.
                if *to == Conversation::Direct(state.id.clone()) {
                    return;
                }
                let index = self.conv(to, state);
                self.add(
                    index,
                    Line {
                        time: now,
                        kind: LineKind::Message {
                            from: state.id.clone(),
                            name: state.username.to_string(),
                            text: text.to_owned(),
                            own: true,
                            history: false,
                            mention: false,
                        },
                    },
                );
                let conv = &mut self.convs[index];
                conv.scroll = 0;
                if conv.own_without_id.len() < MAX_LINES_PER_CONVERSATION {
                    conv.own_without_id.insert(text.to_owned());
                }
            }
            Err(e) => {
                self.counters.n_not_sent += 1;
                self.error(now, e.to_string());
            }
        }
    }

    /// Handles one typed line: a message to the current conversation or a
    /// command.
    pub fn on_line(&mut self, line: &str, state: &State, now: SystemTime) -> Vec<Request> {
        let command = match command::parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return Vec::new(),
            Err(e) => {
                self.error(now, format!("{e}\n{}", e.usage()));
                return Vec::new();
            }
        };
        match command {
            Command::Say(text) => {
                let to = self.current().conversation.clone();
                vec![Request::Send { to, text }]
            }
            Command::Direct { to, text } => match resolve(&state.roster, &to) {
                Ok(id) => vec![Request::Send {
                    to: Conversation::Direct(id),
                    text,
                }],
                Err(e) => {
                    self.error(now, e.to_string());
                    Vec::new()
                }
            },
            Command::GetPeer(id) => vec![Request::GetPeer(PeerId::new(id))],
            Command::Join(room) => {
                // The room is shown at once, so that what is typed next
                // goes there (the JOIN is sent before it); a refused JOIN
                // takes it away again.
                let conversation = Conversation::Room(room.clone());
                if self.index_of(&conversation).is_none() {
                    self.pending_joins.push_back(room.clone());
                }
                let i = self.conv(&conversation, state);
                self.switch_to(i);
                vec![Request::Join(room)]
            }
            Command::Part(room) => {
                let room = room.or_else(|| self.current().conversation.room().cloned());
                match room {
                    Some(room) => vec![Request::Part(room)],
                    None => {
                        self.error(
                            now,
                            "you are not in a room here; say which: :part #room".to_owned(),
                        );
                        Vec::new()
                    }
                }
            }
            Command::Rooms => vec![Request::Rooms],
            Command::Go(to) => {
                self.go(&to, state, now);
                Vec::new()
            }
            Command::History(n) => {
                if !self.history_supported {
                    self.error(now, "this server keeps no history".to_owned());
                    return Vec::new();
                }
                let conversation = self.current().conversation.clone();
                vec![self.ask_history(conversation, n, None, HistoryMode::Show)]
            }
            Command::List => {
                let i = self.current;
                self.notice(i, now, roster_text(&state.roster, &state.id));
                Vec::new()
            }
            Command::Info => {
                let i = self.current;
                self.notice(i, now, self.info_lines(state, now).join("\n"));
                Vec::new()
            }
            Command::Clear => {
                let conv = self.current_mut();
                conv.lines.clear();
                conv.scroll = 0;
                vec![Request::Clear]
            }
            Command::Help => {
                let i = self.current;
                self.notice(i, now, command::help_text());
                Vec::new()
            }
            Command::Exit => vec![Request::Exit],
        }
    }

    /// `:go`: the lobby, a joined room, or the conversation with a peer.
    fn go(&mut self, to: &str, state: &State, now: SystemTime) {
        if to == "*" {
            self.switch_to(0);
            return;
        }
        if to.starts_with('#') {
            match RoomName::parse(to) {
                Ok(room) => match self.index_of(&Conversation::Room(room.clone())) {
                    Some(i) => self.switch_to(i),
                    None => self.error(now, format!("you are not in {room}; :join {room} first")),
                },
                Err(e) => self.error(now, e.to_string()),
            }
            return;
        }
        match resolve(&state.roster, to.trim_start_matches('@')) {
            Ok(id) => {
                let i = self.conv(&Conversation::Direct(id), state);
                self.switch_to(i);
            }
            Err(e) => self.error(now, e.to_string()),
        }
    }

    /// Handles one key of the full-screen UI.
    pub fn on_key(&mut self, key: KeyEvent, state: &State, now: SystemTime) -> Vec<Request> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Enter => {
                let line = self.input.submit();
                return self.on_line(&line, state, now);
            }
            KeyCode::Char('c') if ctrl => {
                if self.input.is_empty() {
                    let i = self.current;
                    self.notice(i, now, "to quit, type :exit or press Ctrl-D".to_owned());
                } else {
                    self.input.clear();
                }
            }
            KeyCode::Char('d') if ctrl => {
                if self.input.is_empty() {
                    return vec![Request::Exit];
                }
                self.input.delete();
            }
            KeyCode::Char('n') if ctrl => self.cycle(true),
            KeyCode::Char('p') if ctrl => self.cycle(false),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.kill_to_start(),
            KeyCode::Char('w') if ctrl => self.input.kill_word(),
            KeyCode::Char(c) if alt && ('1'..='9').contains(&c) => {
                self.switch_to(c as usize - '1' as usize);
            }
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => self.input.history_up(),
            KeyCode::Down => self.input.history_down(),
            KeyCode::Tab => {
                let candidates = |start: usize, word: &str| self.completions(start, word, state);
                let candidates = candidates(
                    self.input.word_before_cursor().0,
                    &self.input.word_before_cursor().1,
                );
                self.input.complete(|_, _| candidates);
            }
            KeyCode::PageUp => return self.page_up(),
            KeyCode::PageDown => self.page_down(),
            _ => {}
        }
        Vec::new()
    }

    /// What Tab may complete the word at `start` to: a command at the start
    /// of the line, a room after `#`, else a username.
    fn completions(&self, start: usize, word: &str, state: &State) -> Vec<String> {
        if start == 0 && word.starts_with(':') {
            return command::names().map(str::to_owned).collect();
        }
        if word.starts_with('#') {
            let mut rooms: BTreeSet<&RoomName> = state.rooms.keys().collect();
            rooms.extend(self.known_rooms.iter());
            return rooms.into_iter().map(|r| r.to_string()).collect();
        }
        state
            .roster
            .sorted()
            .into_iter()
            .filter(|(id, _)| **id != state.id)
            .map(|(_, name)| name.to_string())
            .collect()
    }

    /// Scrolls up half a page; at the top, asks for older messages.
    pub fn page_up(&mut self) -> Vec<Request> {
        let step = (self.view_height / 2).max(1);
        let history_supported = self.history_supported;
        let conv = self.current_mut();
        if conv.top_visible {
            if history_supported && conv.more_before && !conv.fetching {
                conv.fetching = true;
                let before = conv.oldest.clone();
                let conversation = conv.conversation.clone();
                let mode = if before.is_some() {
                    HistoryMode::Older
                } else {
                    HistoryMode::Start
                };
                return vec![self.ask_history(conversation, HISTORY_STEP, before, mode)];
            }
            return Vec::new();
        }
        conv.scroll = (conv.scroll + step).min(conv.lines.len().saturating_sub(1));
        Vec::new()
    }

    /// Scrolls down half a page.
    pub fn page_down(&mut self) {
        let step = (self.view_height / 2).max(1);
        let conv = self.current_mut();
        conv.scroll = conv.scroll.saturating_sub(step);
    }

    /// The lines `:info` shows.
    pub fn info_lines(&self, state: &State, now: SystemTime) -> Vec<String> {
        let since = state.registered_at;
        let ago = now.duration_since(since).unwrap_or_default();
        let server = match state.server_addr {
            Some(addr) if addr.to_string() != state.server => format!("{} ({addr})", state.server),
            _ => state.server.clone(),
        };
        let status = if state.online {
            "online"
        } else {
            "reconnecting"
        };
        let c = &self.counters;
        vec![
            format!("id:        {}", state.id),
            format!("username:  {}", clean_name(&state.username)),
            format!("server:    {server}, {status}"),
            format!(
                "connected: since {} ({} ago)",
                text::time_of_day_secs(since, &self.tz),
                human_duration(ago)
            ),
            format!("peers:     {} known, you included", state.roster.len()),
            format!("rooms:     {}", state.rooms.len()),
            format!(
                "messages:  {} sent, {} received, {} direct",
                c.n_sent, c.n_received, c.n_direct
            ),
            format!(
                "other:     {} errors, {} reconnections",
                c.n_errors, c.n_reconnects
            ),
        ]
    }
}

/// How the end of a session is said.
pub fn closed_words(closed: &Closed) -> String {
    match closed {
        Closed::Ended => "session ended".to_owned(),
        Closed::Kicked { reason } => format!(
            "the server ended your session: {}",
            text::clean(reason, Newlines::Escaped)
        ),
        Closed::ResumedElsewhere => {
            "your session was taken over by another connection (the same id and token)".to_owned()
        }
        Closed::ShutDown { reason } => format!(
            "the server shut down and did not come back: {}",
            text::clean(reason, Newlines::Escaped)
        ),
        Closed::Lost { reason } => format!(
            "connection lost and not restored: {}",
            text::clean(reason, Newlines::Escaped)
        ),
    }
}

/// A refused request in plain words.
pub fn error_words(action: Action, status: Status, reason: &str) -> String {
    let not_delivered = "message not delivered";
    match status {
        Status::NotFound if action == Action::Msg => format!("{not_delivered}: no such peer"),
        Status::Forbidden if action == Action::Msg => {
            format!("{not_delivered}: you are not in that room (:join it first)")
        }
        Status::PayloadTooLarge if action == Action::Msg => {
            format!("{not_delivered}: too long for the server; send it in shorter parts")
        }
        Status::TooManyRequests if action == Action::Msg => {
            format!("{not_delivered}: the server kept refusing it, messages came too fast")
        }
        Status::NotFound if action == Action::GetPeer => "no peer has that id".to_owned(),
        Status::Forbidden if action == Action::Join => {
            "you are in as many rooms as the server allows; :part one first".to_owned()
        }
        Status::BadRequest if matches!(action, Action::Join | Action::Part) => {
            "the server does not take that room name".to_owned()
        }
        Status::NotFound if action == Action::Part => "you are not in that room".to_owned(),
        Status::Forbidden if action == Action::History => {
            "join the room to see its history".to_owned()
        }
        Status::NotFound if action == Action::History => {
            "no stored messages there (unknown peer or message)".to_owned()
        }
        Status::MethodNotAllowed
            if matches!(
                action,
                Action::Join | Action::Part | Action::Rooms | Action::History
            ) =>
        {
            "this server has no rooms or history (it is an older version)".to_owned()
        }
        Status::TooManyRequests => "the server refused a request: too many, too fast".to_owned(),
        _ => format!(
            "the server refused a request (status {}): {}",
            status.code(),
            text::clean(reason, Newlines::Escaped)
        ),
    }
}

/// `:list`: a header line, then one line per peer.
pub fn roster_text(roster: &Roster, own_id: &PeerId) -> String {
    let mut out = format!("{} (you included):", count(roster.len(), "peer"));
    for (id, username) in roster.sorted() {
        let you = if id == own_id { " (you)" } else { "" };
        out.push_str(&format!("\n{id}  {}{you}", clean_name(username)));
    }
    out
}

/// Why a `:dm` target names no single peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Several peers have this username.
    Ambiguous {
        /// The username.
        username: String,
        /// Their ids, sorted.
        ids: Vec<PeerId>,
    },
    /// No known peer has this id or username.
    Unknown(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Ambiguous { username, ids } => {
                let ids: Vec<&str> = ids.iter().map(PeerId::as_str).collect();
                write!(
                    f,
                    "`{}` is ambiguous: {} peers have that name, ids {}; use an id",
                    clean_name(username),
                    ids.len(),
                    ids.join(", ")
                )
            }
            ResolveError::Unknown(who) => {
                write!(
                    f,
                    "no peer with the id or username `{}` (see :list)",
                    clean_name(who)
                )
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// Finds the one peer a `:dm` target names: an exact id first, then a
/// username that exactly one peer has.
pub fn resolve(roster: &Roster, target: &str) -> Result<PeerId, ResolveError> {
    if roster.contains(target) {
        return Ok(PeerId::new(target));
    }
    let mut ids = roster.ids_named(target);
    match ids.len() {
        0 => Err(ResolveError::Unknown(target.to_owned())),
        1 => Ok(ids.remove(0)),
        _ => Err(ResolveError::Ambiguous {
            username: target.to_owned(),
            ids,
        }),
    }
}

/// A duration for people: `45s`, `3m 12s`, `2h 5m`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{}h {}m", secs / 3600, secs / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;
    use tsockm_proto::Text;

    fn roster(peers: &[(&str, &str)]) -> Roster {
        let mut r = Roster::new();
        for (id, name) in peers {
            r.insert(PeerId::new(*id), Text::from(*name));
        }
        r
    }

    fn state() -> State {
        State {
            id: PeerId::new("me00000001"),
            username: Text::from("alice"),
            server: "127.0.0.1:6969".into(),
            server_addr: None,
            registered_at: UNIX_EPOCH,
            online: true,
            roster: roster(&[("me00000001", "alice"), ("bob0000001", "bob")]),
            rooms: BTreeMap::new(),
        }
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(3600)
    }

    fn message(conversation: Conversation, from: &str, text: &str, id: Option<&str>) -> Event {
        Event::Message(Message {
            id: id.map(MsgId::new),
            conversation,
            from: PeerId::new(from),
            username: Some(Text::from("bob")),
            text: Text::from(text),
            time: t0(),
        })
    }

    #[test]
    fn resolves_ids_then_unique_usernames() {
        let r = roster(&[
            ("id1", "alice"),
            ("id2", "bob"),
            ("id3", "bob"),
            ("bob", "eve"),
        ]);
        assert_eq!(resolve(&r, "id2"), Ok(PeerId::new("id2")));
        assert_eq!(resolve(&r, "alice"), Ok(PeerId::new("id1")));
        assert_eq!(resolve(&r, "bob"), Ok(PeerId::new("bob")));
        assert_eq!(
            resolve(&r, "carol"),
            Err(ResolveError::Unknown("carol".into()))
        );
        let r = roster(&[("id2", "bob"), ("id3", "bob")]);
        assert_eq!(
            resolve(&r, "bob").unwrap_err().to_string(),
            "`bob` is ambiguous: 2 peers have that name, ids id2, id3; use an id"
        );
    }

    #[test]
    fn unread_counts_and_switching() {
        let s = state();
        let mut app = App::new(&s, TimeZone::UTC, t0());
        let dm = Conversation::Direct(PeerId::new("bob0000001"));
        app.on_event(
            message(dm.clone(), "bob0000001", "psst", Some("m1")),
            &s,
            t0(),
        );
        app.on_event(
            message(Conversation::Lobby, "bob0000001", "hi alice", Some("m2")),
            &s,
            t0(),
        );
        assert_eq!(app.conversations().len(), 2);
        let bob = &app.conversations()[1];
        assert_eq!(
            (bob.title.as_str(), bob.unread, bob.highlight),
            ("@bob", 1, true)
        );
        assert_eq!(app.conversations()[0].unread, 0, "the lobby is shown");
        assert!(app.take_bell());
        // The same id again (a resume) is dropped.
        app.on_event(message(dm, "bob0000001", "psst", Some("m1")), &s, t0());
        assert_eq!(app.conversations()[1].unread, 1);
        app.switch_to(1);
        assert_eq!(app.conversations()[1].unread, 0);
        app.cycle(true);
        assert_eq!(app.current_index(), 0);
        assert_eq!(app.counters.n_direct, 1);
        assert_eq!(app.counters.n_received, 1);
    }

    #[test]
    fn lines_go_to_the_current_conversation_and_are_logged_as_own() {
        let mut s = state();
        let mut app = App::new(&s, TimeZone::UTC, t0());
        assert_eq!(
            app.on_line("hello", &s, t0()),
            [Request::Send {
                to: Conversation::Lobby,
                text: "hello".into()
            }]
        );
        app.on_sent(&Conversation::Lobby, "hello", Ok(()), &s, t0());
        assert!(matches!(
            &app.current().lines.back().unwrap().kind,
            LineKind::Message { own: true, text, .. } if text == "hello"
        ));
        let room = RoomName::parse("#rust").unwrap();
        assert_eq!(
            app.on_line(":join #Rust", &s, t0()),
            [Request::Join(room.clone())]
        );
        s.rooms.insert(room.clone(), BTreeMap::new());
        let requests = app.on_event(
            Event::RoomJoined {
                room: room.clone(),
                members: vec![(s.id.clone(), Text::from("alice"))],
            },
            &s,
            t0(),
        );
        assert_eq!(app.current().title, "#rust");
        assert_eq!(
            requests,
            [Request::History {
                conversation: Conversation::Room(room.clone()),
                n: HISTORY_STEP,
                before: None
            }]
        );
        assert_eq!(
            app.on_line("in the room", &s, t0()),
            [Request::Send {
                to: Conversation::Room(room.clone()),
                text: "in the room".into()
            }]
        );
        assert_eq!(
            app.on_line(":part", &s, t0()),
            [Request::Part(room.clone())]
        );
        app.on_line(":go *", &s, t0());
        assert_eq!(app.current_index(), 0);
        app.on_line(":go bob", &s, t0());
        assert_eq!(app.current().title, "@bob");
        app.on_line(":go #nope", &s, t0());
        assert!(matches!(
            &app.current().lines.back().unwrap().kind,
            LineKind::Error(e) if e == "you are not in #nope; :join #nope first"
        ));
    }

    #[test]
    fn history_is_merged_once_and_older_pages_are_asked_for() {
        let s = state();
        let mut app = App::new(&s, TimeZone::UTC, t0());
        app.start();
        let stored = |id: &str, text: &str| Message {
            id: Some(MsgId::new(id)),
            conversation: Conversation::Lobby,
            from: PeerId::new("bob0000001"),
            username: Some(Text::from("bob")),
            text: Text::from(text),
            time: UNIX_EPOCH,
        };
        app.on_event(
            message(Conversation::Lobby, "bob0000001", "live", Some("m3")),
            &s,
            t0(),
        );
        app.on_event(
            Event::History {
                conversation: Conversation::Lobby,
                messages: vec![stored("m2", "old"), stored("m3", "live")],
                more: true,
            },
            &s,
            t0(),
        );
        // One's own message, shown when sent, is not shown again from history.
        app.on_sent(&Conversation::Lobby, "mine", Ok(()), &s, t0());
        app.on_event(
            Event::History {
                conversation: Conversation::Lobby,
                messages: vec![Message {
                    from: s.id.clone(),
                    ..stored("m4", "mine")
                }],
                more: true,
            },
            &s,
            t0(),
        );
        let texts: Vec<String> = app
            .current()
            .lines
            .iter()
            .filter_map(|l| match &l.kind {
                LineKind::Message { text, history, .. } => {
                    Some(format!("{text}{}", if *history { " (h)" } else { "" }))
                }
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["old (h)", "live", "mine"]);
        app.current_mut().top_visible = true;
        assert_eq!(
            app.page_up(),
            [Request::History {
                conversation: Conversation::Lobby,
                n: HISTORY_STEP,
                before: Some(MsgId::new("m2"))
            }]
        );
        assert!(app.page_up().is_empty(), "one request at a time");
        // A v1 server: HISTORY is refused with 405, and quietly so.
        app.on_event(
            Event::Error {
                action: Action::History,
                status: Status::MethodNotAllowed,
                reason: Text::from("x"),
            },
            &s,
            t0(),
        );
        assert_eq!(app.counters.n_errors, 0);
    }

    #[test]
    fn keys_edit_complete_and_switch() {
        let s = state();
        let mut app = App::new(&s, TimeZone::UTC, t0());
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        for c in ":dm b".chars() {
            app.on_key(key(KeyCode::Char(c)), &s, t0());
        }
        app.on_key(key(KeyCode::Tab), &s, t0());
        assert_eq!(app.input.text(), ":dm bob ");
        app.on_key(ctrl('c'), &s, t0());
        assert!(app.input.is_empty(), "Ctrl-C clears the line");
        assert!(
            app.on_key(ctrl('c'), &s, t0()).is_empty(),
            "and does not quit"
        );
        app.on_key(key(KeyCode::Char(':')), &s, t0());
        app.on_key(key(KeyCode::Char('h')), &s, t0());
        app.on_key(key(KeyCode::Char('i')), &s, t0());
        app.on_key(key(KeyCode::Tab), &s, t0());
        assert_eq!(app.input.text(), ":history ");
        app.input.clear();
        assert_eq!(app.on_key(ctrl('d'), &s, t0()), [Request::Exit]);
        app.on_line(":go bob", &s, t0());
        app.on_key(
            KeyEvent::new(KeyCode::Char('1'), KeyModifiers::ALT),
            &s,
            t0(),
        );
        assert_eq!(app.current_index(), 0);
        app.on_key(ctrl('n'), &s, t0());
        assert_eq!(app.current_index(), 1);
    }

    #[test]
    fn a_room_is_shown_at_once_and_taken_away_if_refused() {
        let s = state();
        let mut app = App::new(&s, TimeZone::UTC, t0());
        app.on_line(":join #ops", &s, t0());
        assert_eq!(app.current().title, "#ops");
        let room = RoomName::parse("#ops").unwrap();
        assert_eq!(
            app.on_line("first words", &s, t0()),
            [Request::Send {
                to: Conversation::Room(room),
                text: "first words".into()
            }]
        );
        app.on_event(
            Event::Error {
                action: Action::Join,
                status: Status::Forbidden,
                reason: Text::from("too many rooms"),
            },
            &s,
            t0(),
        );
        assert_eq!(app.conversations().len(), 1);
        assert_eq!(app.current().title, "*");
    }

    #[test]
    fn plain_words_for_errors() {
        assert_eq!(
            error_words(Action::Msg, Status::NotFound, "frame NONE BODY"),
            "message not delivered: no such peer"
        );
        let words = error_words(Action::None, Status::PayloadTooLarge, "frame too long");
        assert!(
            words.starts_with("the server refused a request (status 413)"),
            "{words}"
        );
        assert_eq!(
            closed_words(&Closed::Kicked {
                reason: Text::from("bye\u{202e}")
            }),
            "the server ended your session: bye\\u{202e}"
        );
    }

    #[test]
    fn info_shows_identity_and_counts() {
        let s = State {
            registered_at: UNIX_EPOCH + Duration::from_secs(3 * 3600 + 4 * 60 + 5),
            ..state()
        };
        let mut app = App::new(&s, TimeZone::UTC, t0());
        app.on_sent(&Conversation::Lobby, "x", Ok(()), &s, t0());
        let lines = app.info_lines(&s, s.registered_at + Duration::from_secs(192));
        assert_eq!(lines[0], "id:        me00000001");
        assert_eq!(lines[3], "connected: since 03:04:05 (3m 12s ago)");
        assert_eq!(lines[6], "messages:  1 sent, 0 received, 0 direct");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h 5m");
    }
}
