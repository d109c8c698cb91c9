//! [`Session`]: one client's conversation with a TsockM server.
//!
//! [`Session::connect`] connects, registers and waits for the roster; then a
//! task owns the connection. It answers health checks itself, keeps the
//! [`Roster`] from `NTFY_JOIN` / `NTFY_KILL`, turns incoming frames into typed
//! [`Event`]s, and, when the connection drops without `COMM_END`, reconnects
//! with exponential backoff and resumes (or registers anew if the server
//! forgot the session). A `COMM_END` from the server is final.
//!
//! What this file must never do: block on a full event queue while requests
//! wait (the task keeps serving requests and simply stops reading the socket
//! until the user catches up), hold a lock across an `.await`, grow a queue
//! without bound, or log a resume token.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::Framed;
use tracing::{Instrument, debug, info_span, warn};
use tsockm_proto::{Action, BROADCAST, CodecError, Frame, FrameCodec, Kind, Status, Text};

use crate::backoff::Backoff;
use crate::{Closed, ConnectError, Event, PeerId, Roster, SessionError};

/// The default for [`Config::max_frame_bytes`]: 1 MiB, enough for whatever a
/// server with a 16 KiB input limit (or a much larger one) relays.
pub const MAX_FRAME_FROM_SERVER_BYTES: usize = 1 << 20;

/// Requests queued from the [`Session`] handles to the session task.
const COMMAND_CAPACITY: usize = 64;

/// Events decoded but not yet taken by the user. Past this the task stops
/// reading the socket (the server keeps frames for a slow reader up to its
/// own bound) but keeps serving requests.
const MAX_PENDING_EVENTS: usize = 256;

/// Requests kept while disconnected, sent once the session is resumed. Past
/// this further requests are dropped and reported with [`Event::Unsent`].
const MAX_OUTBOX_FRAMES: usize = 256;

/// How a session connects and reconnects.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's address, `host:port`.
    pub addr: String,
    /// The username to register with.
    pub username: String,
    /// How long one attempt to connect and register (or resume) may take.
    pub connect_timeout: Duration,
    /// The base delay before the first reconnection attempt.
    pub backoff_min: Duration,
    /// The largest base delay between two reconnection attempts.
    pub backoff_max: Duration,
    /// How long to keep trying to reconnect before giving up with
    /// [`Closed::Lost`].
    pub reconnect_for: Duration,
    /// How long to wait for the server's answer to this client's `COMM_END`.
    pub end_timeout: Duration,
    /// The longest frame accepted from the server, in bytes. Larger than
    /// any server's input limit on purpose: a relayed message gains the
    /// author's id and the server's address, and re-escaping can double a
    /// body, so a message the server accepted comes back longer.
    pub max_frame_bytes: usize,
    /// How many events may wait in the [`Events`] channel.
    pub event_capacity: usize,
}

impl Config {
    /// The defaults: backoff from 100 ms to 5 s, giving up after 60 s.
    pub fn new(addr: impl Into<String>, username: impl Into<String>) -> Self {
        Config {
            addr: addr.into(),
            username: username.into(),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            reconnect_for: Duration::from_secs(60),
            end_timeout: Duration::from_secs(5),
            max_frame_bytes: MAX_FRAME_FROM_SERVER_BYTES,
            event_capacity: 256,
        }
    }
}

/// What a session looks like right now: identity, connection, roster.
#[derive(Debug, Clone)]
pub struct State {
    /// This client's peer id (it changes if the client had to register anew).
    pub id: PeerId,
    /// This client's username.
    pub username: Text,
    /// The server's address as configured.
    pub server: String,
    /// The server's socket address on the current (or last) connection.
    pub server_addr: Option<SocketAddr>,
    /// When this client registered under its current id.
    pub registered_at: SystemTime,
    /// Whether a connection is up (false while reconnecting).
    pub online: bool,
    /// Every known peer, this client included.
    pub roster: Roster,
}

/// A handle to a running session: send requests, read its [`State`].
///
/// Clones share the session. When every handle is dropped the session ends
/// as if [`Session::end`] had been called, without waiting for the answer.
#[derive(Debug, Clone)]
pub struct Session {
    /// Requests to the session task.
    cmd_tx: mpsc::Sender<Command>,
    /// The task's latest state.
    state_rx: watch::Receiver<State>,
}

/// The stream of [`Event`]s of one session; ends after [`Event::Closed`].
#[derive(Debug)]
pub struct Events {
    /// Events from the session task.
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` once the session is over and every event
    /// has been taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// A request from a handle to the session task.
#[derive(Debug)]
enum Command {
    /// Send this frame (or keep it while disconnected).
    Send(Frame),
    /// End the session with `COMM_END`.
    End,
}

/// The secret that lets this client resume its session; never logged.
#[derive(Clone)]
struct ResumeToken(Text);

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

/// A framed connection to the server.
type Conn = Framed<TcpStream, FrameCodec>;

impl Session {
    /// Connects, registers with `config.username`, and waits until the
    /// roster the server sends a newcomer has arrived.
    ///
    /// On [`ConnectError::UsernameRefused`] the caller may try again with
    /// another username.
    pub async fn connect(config: Config) -> Result<(Session, Events), ConnectError> {
        let addr = config.addr.clone();
        let limit = config.connect_timeout;
        let timed_out = || ConnectError::Timeout {
            addr: addr.clone(),
            timeout: limit,
        };
        let mut conn = timeout(limit, open(&config))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| ConnectError::Unreachable {
                addr: addr.clone(),
                source,
            })?;
        let server_addr = conn.get_ref().peer_addr().ok();
        let answer = timeout(
            limit,
            comm(&mut conn, Frame::register(config.username.as_str())),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| e.into_connect_error(&addr))?;
        let (id, token) = match answer {
            Answer::Registered { id, token } => (id, token),
            Answer::Refused {
                status: Status::BadRequest,
                action: Action::Comm,
                reason,
            } => return Err(ConnectError::UsernameRefused { reason }),
            Answer::Refused {
                action,
                status,
                reason,
            } => {
                return Err(ConnectError::Refused {
                    action,
                    status,
                    reason,
                });
            }
        };

        let username = Text::from(config.username.as_str());
        let mut roster = Roster::new();
        roster.insert(id.clone(), username.clone());
        let state = State {
            id: id.clone(),
            username,
            server: config.addr.clone(),
            server_addr,
            registered_at: SystemTime::now(),
            online: true,
            roster,
        };
        let (state_tx, state_rx) = watch::channel(state);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity.max(1));
        let backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let mut task = Task {
            config,
            conn: Some(conn),
            id,
            token,
            cmd_rx,
            event_tx,
            state_tx,
            pending: VecDeque::new(),
            events_closed: false,
            outbox: VecDeque::new(),
            sync: None,
            ending: None,
            backoff,
        };
        // The roster frames come right after the answer; a GET_PEER for our
        // own id is answered after them, so its answer marks their end.
        timeout(limit, task.initial_sync())
            .await
            .map_err(|_| timed_out())?
            .map_err(|reason| ConnectError::Closed {
                addr: addr.clone(),
                reason,
            })?;
        let span = info_span!("session", peer = %task.id, addr = %addr);
        tokio::spawn(task.run().instrument(span));
        Ok((Session { cmd_tx, state_rx }, Events { rx: event_rx }))
    }

    /// The session's current state (a snapshot).
    pub fn state(&self) -> State {
        self.state_rx.borrow().clone()
    }

    /// This client's current peer id.
    pub fn id(&self) -> PeerId {
        self.state_rx.borrow().id.clone()
    }

    /// Sends a message to every other peer.
    pub async fn broadcast(&self, text: impl Into<Text>) -> Result<(), SessionError> {
        self.send(Frame::broadcast(text)).await
    }

    /// Sends a message to one peer.
    pub async fn direct(&self, to: &PeerId, text: impl Into<Text>) -> Result<(), SessionError> {
        let frame = Frame::direct(to.as_text().clone(), text);
        if let Err(e) = frame.validate() {
            return Err(SessionError::InvalidPeerId {
                id: to.to_string(),
                problem: e.to_string(),
            });
        }
        self.send(frame).await
    }

    /// Asks the server for a peer's username; the answer comes as
    /// [`Event::PeerFound`] or [`Event::Error`].
    pub async fn get_peer(&self, id: &PeerId) -> Result<(), SessionError> {
        self.send(Frame::get_peer(id.as_text().clone())).await
    }

    /// Ends the session with `COMM_END`. Events keep coming until
    /// [`Event::Closed`] (with [`Closed::Ended`]) once the server answered.
    pub async fn end(&self) -> Result<(), SessionError> {
        self.cmd_tx
            .send(Command::End)
            .await
            .map_err(|_| SessionError::Closed)
    }

    async fn send(&self, frame: Frame) -> Result<(), SessionError> {
        self.cmd_tx
            .send(Command::Send(frame))
            .await
            .map_err(|_| SessionError::Closed)
    }
}

/// Opens a TCP connection to the configured address.
async fn open(config: &Config) -> io::Result<Conn> {
    let stream = TcpStream::connect(config.addr.as_str()).await?;
    stream.set_nodelay(true)?;
    Ok(Framed::new(
        stream,
        FrameCodec::with_max_frame_bytes(config.max_frame_bytes),
    ))
}

/// The server's answer to a `REQ::COMM` (registration or resume).
#[derive(Debug)]
enum Answer {
    /// `RES::COMM`: the id and a fresh resume token.
    Registered { id: PeerId, token: ResumeToken },
    /// An `ERR` frame.
    Refused {
        action: Action,
        status: Status,
        reason: Text,
    },
}

/// Why a handshake could not be completed.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Eof,
    #[error("{0}")]
    Protocol(String),
}

impl HandshakeError {
    fn into_connect_error(self, addr: &str) -> ConnectError {
        match self {
            HandshakeError::Protocol(s) => ConnectError::Protocol(s),
            other => ConnectError::Closed {
                addr: addr.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// Sends a `REQ::COMM` and reads until its answer.
async fn comm(conn: &mut Conn, request: Frame) -> Result<Answer, HandshakeError> {
    send_frame(conn, request).await?;
    loop {
        let frame = match conn.next().await {
            None => return Err(HandshakeError::Eof),
            Some(Err(e)) => return Err(HandshakeError::Io(e)),
            Some(Ok(Err(e))) => {
                warn!(error = %e, "malformed frame from the server");
                continue;
            }
            Some(Ok(Ok(frame))) => frame,
        };
        match frame.kind {
            Kind::Res if frame.action == Action::Comm => {
                let Some((id, token)) = frame.body.split_once(' ') else {
                    return Err(HandshakeError::Protocol(format!(
                        "registration answer without `<peer_id> <resume_token>`: {frame}"
                    )));
                };
                if id.is_empty() || token.is_empty() {
                    return Err(HandshakeError::Protocol(format!(
                        "registration answer with an empty id or token: {frame}"
                    )));
                }
                return Ok(Answer::Registered {
                    id: PeerId::new(id),
                    token: ResumeToken(Text::from(token)),
                });
            }
            Kind::Err => {
                return Ok(Answer::Refused {
                    action: frame.action,
                    status: frame.status,
                    reason: frame.body,
                });
            }
            _ => debug!(%frame, "ignored before registration"),
        }
    }
}

/// Writes one frame; an I/O failure is returned, an unencodable frame is
/// logged and skipped (requests are validated before they get here).
async fn send_frame(conn: &mut Conn, frame: Frame) -> io::Result<()> {
    match conn.send(frame).await {
        Ok(()) => Ok(()),
        Err(CodecError::Io(e)) => Err(e),
        Err(e) => {
            warn!(error = %e, "frame not sent");
            Ok(())
        }
    }
}

/// What a reconnection attempt achieved.
#[derive(Debug)]
enum Restored {
    /// The session was resumed with a new token.
    Resumed { token: ResumeToken },
    /// The server refused the resume; a new registration succeeded.
    Reregistered {
        id: PeerId,
        token: ResumeToken,
        reason: Text,
    },
}

/// Connects and resumes (or, if the server forgot the session, registers
/// anew). Owns everything it needs so it can run while the task serves
/// requests.
async fn restore(
    config: Config,
    id: PeerId,
    token: ResumeToken,
) -> Result<(Conn, Restored), String> {
    let attempt = async {
        let mut conn = open(&config).await.map_err(|e| e.to_string())?;
        let resume = Frame::resume(id.as_text().clone(), token.0.clone());
        match comm(&mut conn, resume).await.map_err(|e| e.to_string())? {
            Answer::Registered { id: new_id, token } => {
                if new_id != id {
                    return Err(format!("resumed as `{new_id}` instead of `{id}`"));
                }
                Ok((conn, Restored::Resumed { token }))
            }
            Answer::Refused {
                action: Action::Comm,
                status: Status::NotFound,
                reason,
            } => {
                let register = Frame::register(config.username.as_str());
                match comm(&mut conn, register).await.map_err(|e| e.to_string())? {
                    Answer::Registered { id, token } => {
                        Ok((conn, Restored::Reregistered { id, token, reason }))
                    }
                    Answer::Refused { status, reason, .. } => Err(format!(
                        "registration refused ({status} {}): {reason}",
                        status.name()
                    )),
                }
            }
            Answer::Refused { status, reason, .. } => Err(format!(
                "resume refused ({status} {}): {reason}",
                status.name()
            )),
        }
    };
    match timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", config.connect_timeout)),
    }
}

/// What the task waits for after the registration answer.
#[derive(Debug, Clone, Copy)]
enum Marker {
    /// The end of the roster sent to a newcomer.
    Initial,
    /// The end of the frames kept while away, counting them.
    Resume { n_kept: usize },
}

/// How the connected phase ended.
#[derive(Debug)]
enum Step {
    /// The connection dropped without `COMM_END`: reconnect.
    Lost(String),
    /// The session is over.
    Closed(Closed),
}

/// The session task: owns the connection and every piece of session state.
#[derive(Debug)]
struct Task {
    /// How to (re)connect.
    config: Config,
    /// The connection; `None` while reconnecting.
    conn: Option<Conn>,
    /// This client's peer id.
    id: PeerId,
    /// The token for the next resume.
    token: ResumeToken,
    /// Requests from the handles.
    cmd_rx: mpsc::Receiver<Command>,
    /// Events to the user.
    event_tx: mpsc::Sender<Event>,
    /// The state the handles read.
    state_tx: watch::Sender<State>,
    /// Events decoded and not yet delivered (bounded by `MAX_PENDING_EVENTS`
    /// through reading less).
    pending: VecDeque<Event>,
    /// Whether the user dropped the [`Events`] receiver.
    events_closed: bool,
    /// Requests made while disconnected (bounded by `MAX_OUTBOX_FRAMES`).
    outbox: VecDeque<Frame>,
    /// The marker the task waits for, if any.
    sync: Option<Marker>,
    /// When to stop waiting for the answer to our `COMM_END`, once sent.
    ending: Option<Instant>,
    /// Delays between reconnection attempts.
    backoff: Backoff,
}

impl Task {
    /// Reads until the answer to the roster marker.
    async fn initial_sync(&mut self) -> Result<(), String> {
        self.sync = Some(Marker::Initial);
        self.send(Frame::get_peer(self.id.as_text().clone()))
            .await
            .map_err(|e| e.to_string())?;
        while self.sync.is_some() {
            let Some(conn) = self.conn.as_mut() else {
                return Err("not connected".to_owned());
            };
            match conn.next().await {
                None => return Err("the server closed the connection".to_owned()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(Err(e))) => warn!(error = %e, "malformed frame from the server"),
                Some(Ok(Ok(frame))) => match self.handle_frame(frame).await {
                    None => {}
                    Some(Step::Lost(reason)) => return Err(reason),
                    Some(Step::Closed(closed)) => return Err(format!("{closed:?}")),
                },
            }
        }
        Ok(())
    }

    /// The life of the session after registration.
    async fn run(mut self) {
        let closed = loop {
            match self.connected().await {
                Step::Closed(closed) => break closed,
                Step::Lost(reason) => {
                    if let Err(closed) = self.reconnect(reason).await {
                        break closed;
                    }
                }
            }
        };
        self.finish(closed).await;
    }

    /// Serves requests and the connection until it drops or the session ends.
    async fn connected(&mut self) -> Step {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Step::Lost("not connected".to_owned());
            };
            let can_read = self.pending.len() < MAX_PENDING_EVENTS;
            let can_deliver = !self.pending.is_empty() && !self.events_closed;
            let ending = self.ending;
            let event_tx = self.event_tx.clone();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Send(frame)) => {
                        if self.ending.is_none()
                            && let Err(e) = self.send(frame).await
                        {
                            return self.lost(e.to_string());
                        }
                    }
                    Some(Command::End) => {
                        if self.ending.is_none() {
                            if let Err(e) = self.send(Frame::comm_end()).await {
                                debug!(error = %e, "COMM_END not sent");
                                return Step::Closed(Closed::Ended);
                            }
                            self.ending = Some(Instant::now() + self.config.end_timeout);
                        }
                    }
                    None => {
                        // Every handle is gone: say goodbye, do not wait.
                        if self.ending.is_none() {
                            let _ = self.send(Frame::comm_end()).await;
                        }
                        return Step::Closed(Closed::Ended);
                    }
                },
                permit = event_tx.reserve_owned(), if can_deliver => self.deliver(permit),
                item = conn.next(), if can_read => match item {
                    None => return self.lost("the server closed the connection".to_owned()),
                    Some(Err(e)) => return self.lost(e.to_string()),
                    Some(Ok(Err(e))) => warn!(error = %e, "malformed frame from the server"),
                    Some(Ok(Ok(frame))) => {
                        if let Some(step) = self.handle_frame(frame).await {
                            return step;
                        }
                    }
                },
                () = sleep_until(ending.unwrap_or_else(Instant::now)), if ending.is_some() => {
                    debug!("no answer to COMM_END in time");
                    return Step::Closed(Closed::Ended);
                }
            }
        }
    }

    /// The connection dropped: reconnect, unless this client was ending anyway.
    fn lost(&self, reason: String) -> Step {
        if self.ending.is_some() {
            Step::Closed(Closed::Ended)
        } else {
            Step::Lost(reason)
        }
    }

    /// Tries to reconnect and resume until it works or time runs out; serves
    /// requests (keeping them in the outbox) and delivers events meanwhile.
    async fn reconnect(&mut self, mut reason: String) -> Result<(), Closed> {
        self.conn = None;
        self.sync = None;
        self.state_tx.send_modify(|s| s.online = false);
        self.backoff.reset();
        let started = Instant::now();
        loop {
            let delay = self.backoff.next_delay();
            if started.elapsed() + delay > self.config.reconnect_for {
                return Err(Closed::Lost { reason });
            }
            debug!(attempt = self.backoff.n_attempts(), ?delay, %reason, "reconnecting");
            self.push(Event::Reconnecting {
                attempt: self.backoff.n_attempts(),
                delay,
                reason: reason.clone(),
            });
            let config = self.config.clone();
            let (id, token) = (self.id.clone(), self.token.clone());
            let attempt = async move {
                sleep(delay).await;
                restore(config, id, token).await
            };
            tokio::pin!(attempt);
            let outcome = loop {
                let can_deliver = !self.pending.is_empty() && !self.events_closed;
                let event_tx = self.event_tx.clone();
                tokio::select! {
                    outcome = &mut attempt => break outcome,
                    cmd = self.cmd_rx.recv() => match cmd {
                        Some(Command::Send(frame)) => self.keep(frame),
                        Some(Command::End) | None => return Err(Closed::Ended),
                    },
                    permit = event_tx.reserve_owned(), if can_deliver => self.deliver(permit),
                }
            };
            match outcome {
                Ok((conn, restored)) => match self.restored(conn, restored).await {
                    Ok(()) => return Ok(()),
                    Err(e) => reason = e,
                },
                Err(e) => reason = e,
            }
        }
    }

    /// Takes up a restored connection: marker, outbox, state.
    async fn restored(&mut self, conn: Conn, restored: Restored) -> Result<(), String> {
        let server_addr = conn.get_ref().peer_addr().ok();
        self.conn = Some(conn);
        match restored {
            Restored::Resumed { token } => {
                self.token = token;
                // The kept frames follow the answer; a GET_PEER for our own
                // id is answered after them, so its answer marks their end.
                self.sync = Some(Marker::Resume { n_kept: 0 });
                self.send(Frame::get_peer(self.id.as_text().clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Restored::Reregistered { id, token, reason } => {
                let old_id = std::mem::replace(&mut self.id, id.clone());
                self.token = token;
                self.state_tx.send_modify(|s| {
                    s.id = id.clone();
                    s.registered_at = SystemTime::now();
                    s.roster.clear();
                    s.roster.insert(id.clone(), s.username.clone());
                });
                self.push(Event::Reregistered {
                    old_id,
                    new_id: id,
                    reason,
                });
            }
        }
        while let Some(frame) = self.outbox.pop_front() {
            self.send(frame).await.map_err(|e| e.to_string())?;
        }
        self.state_tx.send_modify(|s| {
            s.online = true;
            s.server_addr = server_addr;
        });
        Ok(())
    }

    /// Keeps a request made while disconnected.
    fn keep(&mut self, frame: Frame) {
        if self.outbox.len() < MAX_OUTBOX_FRAMES {
            self.outbox.push_back(frame);
        } else if let Some(Event::Unsent { n_frames }) = self.pending.back_mut() {
            *n_frames += 1;
        } else {
            self.push(Event::Unsent { n_frames: 1 });
        }
    }

    /// Queues an event for the user, unless nobody listens any more.
    ///
    /// While connected, reading stops once `MAX_PENDING_EVENTS` wait; only
    /// the task's own notices (one per reconnection attempt) can come on
    /// top, and past twice the bound even those are dropped.
    fn push(&mut self, event: Event) {
        if self.events_closed {
            return;
        }
        if self.pending.len() >= 2 * MAX_PENDING_EVENTS {
            warn!("event dropped: the user does not read events");
            return;
        }
        self.pending.push_back(event);
    }

    /// Hands the oldest pending event to the user.
    fn deliver(&mut self, permit: Result<mpsc::OwnedPermit<Event>, mpsc::error::SendError<()>>) {
        match permit {
            Ok(permit) => {
                if let Some(event) = self.pending.pop_front() {
                    permit.send(event);
                }
            }
            Err(_) => {
                // Nobody listens any more; the session still serves requests.
                self.events_closed = true;
                self.pending.clear();
            }
        }
    }

    /// Reports the end and delivers every event still pending.
    async fn finish(mut self, closed: Closed) {
        debug!(?closed, "session closed");
        self.pending.push_back(Event::Closed(closed));
        self.conn = None;
        self.state_tx.send_modify(|s| s.online = false);
        while let Some(event) = self.pending.pop_front() {
            if self.event_tx.send(event).await.is_err() {
                break;
            }
        }
    }

    /// Writes one frame on the current connection.
    async fn send(&mut self, frame: Frame) -> io::Result<()> {
        match self.conn.as_mut() {
            Some(conn) => send_frame(conn, frame).await,
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }

    /// Acts on one frame from the server; `Some` when the connected phase ends.
    async fn handle_frame(&mut self, frame: Frame) -> Option<Step> {
        match (frame.kind, frame.action) {
            (Kind::Req, Action::Comm) => {
                // A health check: answered here, never by the user.
                let answer = Frame::health_answer(self.id.as_text().clone());
                if let Err(e) = self.send(answer).await {
                    return Some(self.lost(e.to_string()));
                }
            }
            (Kind::Res, Action::Msg) => {
                self.count_kept();
                let from = PeerId::new(frame.sender_id);
                let username = self.username_of(&from);
                let text = frame.body;
                let event = if frame.dst.is_empty() || frame.dst == BROADCAST {
                    Event::Message {
                        from,
                        username,
                        text,
                    }
                } else {
                    Event::Direct {
                        from,
                        username,
                        text,
                    }
                };
                self.push(event);
            }
            (Kind::Res, Action::NtfyJoin) => {
                self.count_kept();
                let id = PeerId::new(frame.sender_id);
                let username = frame.body;
                let to_us = frame.dst == self.id.as_str();
                let is_us = id == self.id;
                self.state_tx.send_modify(|s| {
                    s.roster.insert(id.clone(), username.clone());
                });
                // One of the roster frames sent to a newcomer is no news.
                if !to_us && !is_us {
                    self.push(Event::Joined { id, username });
                }
            }
            (Kind::Res, Action::NtfyKill) => {
                self.count_kept();
                let id = PeerId::new(frame.sender_id);
                let mut known = None;
                self.state_tx
                    .send_modify(|s| known = s.roster.remove(id.as_str()));
                let username = if frame.body.is_empty() {
                    known.unwrap_or_default()
                } else {
                    frame.body
                };
                if id != self.id {
                    self.push(Event::Left { id, username });
                }
            }
            (Kind::Res | Kind::Err, Action::GetPeer) if self.sync.is_some() => {
                // The answer to the marker: everything before it has arrived.
                if let Some(Marker::Resume { n_kept }) = self.sync.take() {
                    self.push(Event::Reconnected {
                        kept_frames: n_kept,
                    });
                }
            }
            (Kind::Res, Action::GetPeer) => {
                let id = PeerId::new(frame.sender_id);
                self.push(Event::PeerFound {
                    id,
                    username: frame.body,
                });
            }
            (Kind::Res, Action::CommEnd) => {
                if self.ending.is_some() {
                    return Some(Step::Closed(Closed::Ended));
                }
                let reason = frame.body;
                let closed = if reason.starts_with("server shutting down") {
                    Closed::ShutDown { reason }
                } else {
                    Closed::Kicked { reason }
                };
                return Some(Step::Closed(closed));
            }
            (Kind::Err, action) => {
                self.push(Event::Error {
                    action,
                    status: frame.status,
                    reason: frame.body,
                });
            }
            _ => debug!(%frame, "ignored frame"),
        }
        None
    }

    /// Counts a frame kept by the server while this client was away.
    fn count_kept(&mut self) {
        if let Some(Marker::Resume { n_kept }) = &mut self.sync {
            *n_kept += 1;
        }
    }

    fn username_of(&self, id: &PeerId) -> Option<Text> {
        self.state_tx.borrow().roster.username(id.as_str()).cloned()
    }
}
