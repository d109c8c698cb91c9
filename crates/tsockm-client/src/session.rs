//! [`Session`]: one client's conversation with a TsockM server.
//!
//! [`Session::connect`] connects (to the first of its addresses that
//! answers), registers and waits for the roster; then a task owns the
//! connection. It turns every frame into a [`ServerEvent`] (one place, see
//! `server_event.rs`) and acts on it: answers health checks, keeps the
//! [`Roster`] and the rooms, drops message ids already delivered, and reports
//! typed [`Event`]s. When the connection drops, or the server shuts down, it
//! reconnects with backoff (round robin over its addresses) and resumes with
//! the last message id it got, or registers anew and joins its rooms again.
//! With [`Config::tls`] every connection, to every address, is TLS with the
//! same settings (`tls.rs`); without it, the bare TCP socket.
//!
//! Sending is paced by the client's own token bucket so that the server's
//! rate limit is not hit; each MSG is followed by a marker (a GET_PEER for
//! our own id, whose answer comes after the MSG's error if there is one),
//! and the next MSG waits for that answer, so a MSG refused with 429 is
//! known exactly and sent again after a pause, before anything typed later.
//! (One MSG in flight costs a round trip per message: thousands a second on
//! a LAN, tens over a slow WAN.)
//!
//! A user of the library must take its [`Events`]: with 256 of them
//! waiting, the task stops reading the socket (memory stays bounded), and
//! then the answers its next MSG waits for do not come either. A program
//! that sends a lot waits for [`Session::reserve`] in the same `select!` as
//! its events (as the terminal program does), not in between.
//!
//! What this file must never do: block on a full event queue while health
//! checks wait (the task stops reading the socket until the user catches up
//! but keeps answering), hold a lock across an `.await`, grow a queue without
//! bound, or log a resume token.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::Framed;
use tokio_util::either::Either;
use tracing::{Instrument, debug, info_span, warn};
use tsockm_proto::{Action, CodecError, DEFAULT_MAX_FRAME_BYTES, Frame, FrameCodec, Status, Text};

use crate::backoff::Backoff;
use crate::pacing::Pacer;
use crate::server_event::{EndReason, HistoryItem, ResumeToken, ServerEvent};
use crate::tls::{self, HandshakeFailure, Stream};
use crate::{
    Closed, ConnectError, Conversation, Event, Message, MsgId, PeerId, RoomName, Roster, Secret,
    SessionError, Tls,
};

/// The default for [`Config::max_frame_bytes`]: 1 MiB, enough for whatever a
/// server with a 16 KiB input limit (or a much larger one) relays.
pub const MAX_FRAME_FROM_SERVER_BYTES: usize = 1 << 20;

/// The default for [`Config::max_rate`]: 90% of the server's default rate
/// (1,000 frames a second), so clock drift never costs a refusal.
pub const DEFAULT_MAX_RATE: u32 = 900;

/// The default for [`Config::rate_burst`]: half the server's bucket, so
/// frames bunched up on the way still fit in it.
pub const DEFAULT_RATE_BURST: u32 = 500;

/// The most a HISTORY request asks for (the server takes at most 500).
pub const MAX_HISTORY: usize = 500;

/// Requests queued from the [`Session`] handles to the session task.
const COMMAND_CAPACITY: usize = 64;

/// Events decoded but not yet taken by the user. Past this the task stops
/// reading the socket (the server keeps frames for a slow reader up to its
/// own bound) but keeps serving requests.
const MAX_PENDING_EVENTS: usize = 256;

/// Requests waiting for a token or a connection. Past this the task stops
/// taking requests, so a handle's `send` waits: nothing is dropped.
const MAX_OUTGOING_FRAMES: usize = 256;

/// Message ids remembered to drop a message delivered twice (a resume sends
/// again what the server is not sure this client got).
const SEEN_MSG_IDS: usize = 4096;

/// The pause before a MSG refused with 429 is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How many times one MSG is sent before the refusal is reported.
const MAX_SEND_ATTEMPTS: u8 = 5;

/// Stored messages collected for one HISTORY answer, beyond which the rest
/// of that answer is dropped (the server sends at most 500).
const MAX_HISTORY_ITEMS: usize = 1000;

/// How a session connects and reconnects.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers' addresses, `host:port`: the first that answers is used;
    /// when it is lost, the others are tried in turn.
    pub addrs: Vec<String>,
    /// The username to register with.
    pub username: String,
    /// How long one attempt to connect and register (or resume) may take.
    pub connect_timeout: Duration,
    /// The base delay before the first reconnection attempt.
    pub backoff_min: Duration,
    /// The largest base delay between two reconnection attempts.
    pub backoff_max: Duration,
    /// How long to keep trying to reconnect before giving up.
    pub reconnect_for: Duration,
    /// How long to wait for the server's answer to this client's `COMM_END`.
    pub end_timeout: Duration,
    /// The longest frame accepted from the server, in bytes. Larger than
    /// any server's input limit on purpose (a v1 server relays a message
    /// longer than it took).
    pub max_frame_bytes: usize,
    /// The server's frame limit (its `--max-frame`): a message whose
    /// request, relayed frame or stored item would be longer is refused
    /// locally with [`SessionError::TooLong`].
    pub server_max_frame_bytes: usize,
    /// Frames this client sends per second at most (0: no pacing).
    pub max_rate: u32,
    /// Frames this client may send at once before pacing starts.
    pub rate_burst: u32,
    /// How many events may wait in the [`Events`] channel.
    pub event_capacity: usize,
    /// The server password, sent (AUTH) before every registration and
    /// resume; `None` for a server without one.
    pub password: Option<Secret>,
    /// TLS for every connection, to every address, with the server's
    /// certificate checked against these roots for the host part of the
    /// address (an IP address as an IP address SAN); `None` (the default)
    /// for plain TCP.
    pub tls: Option<Tls>,
}

impl Config {
    /// The defaults: one server, backoff from 100 ms to 5 s, giving up after
    /// 60 s, paced to 900 frames a second.
    pub fn new(addr: impl Into<String>, username: impl Into<String>) -> Self {
        Config {
            addrs: vec![addr.into()],
            username: username.into(),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            reconnect_for: Duration::from_secs(60),
            end_timeout: Duration::from_secs(5),
            max_frame_bytes: MAX_FRAME_FROM_SERVER_BYTES,
            server_max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_rate: DEFAULT_MAX_RATE,
            rate_burst: DEFAULT_RATE_BURST,
            event_capacity: 256,
            password: None,
            tls: None,
        }
    }
}

/// What a session looks like right now: identity, connection, roster, rooms.
#[derive(Debug, Clone)]
pub struct State {
    /// This client's peer id (it changes if the client had to register anew).
    pub id: PeerId,
    /// This client's username.
    pub username: Text,
    /// The address of the server in use (or last used).
    pub server: String,
    /// The server's socket address on the current (or last) connection.
    pub server_addr: Option<SocketAddr>,
    /// When this client registered under its current id.
    pub registered_at: SystemTime,
    /// Whether a connection is up (false while reconnecting).
    pub online: bool,
    /// Every known peer, this client included.
    pub roster: Roster,
    /// The rooms this client is in, each with its members (id → username).
    pub rooms: BTreeMap<RoomName, BTreeMap<PeerId, Text>>,
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
    /// The server's frame limit, for refusing long messages locally.
    server_max_frame_bytes: usize,
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

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Room for one request in a session's queue, from [`Session::reserve`]:
/// whatever it is used for is queued at once, without waiting. Dropped
/// unused, it gives the room back.
#[derive(Debug)]
pub struct Permit<'a> {
    /// The reserved place in the handle → task channel.
    permit: mpsc::Permit<'a, Command>,
    /// The session, for its checks.
    session: &'a Session,
}

impl Permit<'_> {
    /// Queues a message (see [`Session::send`]); a message too long is
    /// refused with [`SessionError::TooLong`] and the room given back.
    pub fn send(self, to: &Conversation, text: impl Into<Text>) -> Result<(), SessionError> {
        let frame = self.session.message(to, text)?;
        self.request(frame);
        Ok(())
    }

    /// Queues a lookup (see [`Session::get_peer`]).
    pub fn get_peer(self, id: &PeerId) -> Result<(), SessionError> {
        let frame = lookup(id)?;
        self.request(frame);
        Ok(())
    }

    /// Queues a JOIN (see [`Session::join`]).
    pub fn join(self, room: &RoomName) {
        self.request(Frame::join(room.as_text().clone()));
    }

    /// Queues a PART (see [`Session::part`]).
    pub fn part(self, room: &RoomName) {
        self.request(Frame::part(room.as_text().clone()));
    }

    /// Queues a ROOMS request (see [`Session::rooms`]).
    pub fn rooms(self) {
        self.request(Frame::rooms());
    }

    /// Queues a HISTORY request (see [`Session::history`]).
    pub fn history(self, conversation: &Conversation, n: usize, before: Option<&MsgId>) {
        let n = n.clamp(1, MAX_HISTORY);
        let query = match before {
            Some(id) => format!("{n} before {id}"),
            None => n.to_string(),
        };
        self.request(Frame::history(conversation.wire(), query));
    }

    /// Ends the session (see [`Session::end`]).
    pub fn end(self) {
        self.permit.send(Command::End);
    }

    fn request(self, frame: Frame) {
        self.permit.send(Command::Send(frame));
    }
}

/// A GET_PEER frame for an id that can be one.
fn lookup(id: &PeerId) -> Result<Frame, SessionError> {
    if id.as_str().is_empty() {
        return Err(SessionError::InvalidPeerId { id: id.to_string() });
    }
    Ok(Frame::get_peer(id.as_text().clone()))
}

/// A request from a handle to the session task.
#[derive(Debug)]
enum Command {
    /// Send this frame (or keep it while disconnected).
    Send(Frame),
    /// End the session with `COMM_END`.
    End,
}

/// A framed connection to the server.
type Conn = Framed<Stream, FrameCodec>;

impl Session {
    /// Connects to the first address that answers, registers with
    /// `config.username`, and waits until the roster the server sends a
    /// newcomer has arrived.
    ///
    /// On [`ConnectError::UsernameRefused`] the caller may try again with
    /// another username.
    pub async fn connect(config: Config) -> Result<(Session, Events), ConnectError> {
        let mut last_error = ConnectError::NoAddress;
        for (index, addr) in config.addrs.iter().enumerate() {
            match register(&config, addr).await {
                Ok((conn, id, token)) => {
                    return start(config.clone(), index, conn, id, token).await;
                }
                Err(
                    e @ (ConnectError::UsernameRefused { .. }
                    | ConnectError::Full { .. }
                    | ConnectError::PasswordNeeded { .. }
                    | ConnectError::WrongPassword { .. }),
                ) => {
                    return Err(e);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The session's current state (a snapshot).
    pub fn state(&self) -> State {
        self.state_rx.borrow().clone()
    }

    /// This client's current peer id.
    pub fn id(&self) -> PeerId {
        self.state_rx.borrow().id.clone()
    }

    /// Waits for room for one request in the session's queue. The queue is
    /// bounded, so a program that sends faster than the server takes waits
    /// here; one that must keep taking events meanwhile (or it would stall
    /// the session) waits for a permit beside its events, in a `select!`.
    pub async fn reserve(&self) -> Result<Permit<'_>, SessionError> {
        let permit = self
            .cmd_tx
            .reserve()
            .await
            .map_err(|_| SessionError::Closed)?;
        Ok(Permit {
            permit,
            session: self,
        })
    }

    /// Sends a message to a conversation: everyone, a room (this client must
    /// be in it), or one peer.
    ///
    /// A message longer than the server takes is refused here with
    /// [`SessionError::TooLong`] and not sent.
    pub async fn send(&self, to: &Conversation, text: impl Into<Text>) -> Result<(), SessionError> {
        let frame = self.message(to, text)?;
        self.reserve().await?.request(frame);
        Ok(())
    }

    /// Sends a message to every other peer.
    pub async fn broadcast(&self, text: impl Into<Text>) -> Result<(), SessionError> {
        self.send(&Conversation::Lobby, text).await
    }

    /// Sends a message to one peer.
    pub async fn direct(&self, to: &PeerId, text: impl Into<Text>) -> Result<(), SessionError> {
        self.send(&Conversation::Direct(to.clone()), text).await
    }

    /// Asks the server for a peer's username; the answer comes as
    /// [`Event::PeerFound`] or [`Event::Error`].
    pub async fn get_peer(&self, id: &PeerId) -> Result<(), SessionError> {
        let frame = lookup(id)?;
        self.reserve().await?.request(frame);
        Ok(())
    }

    /// Joins a room; [`Event::RoomJoined`] follows with its members.
    pub async fn join(&self, room: &RoomName) -> Result<(), SessionError> {
        self.reserve().await?.join(room);
        Ok(())
    }

    /// Leaves a room; [`Event::RoomPart`] follows.
    pub async fn part(&self, room: &RoomName) -> Result<(), SessionError> {
        self.reserve().await?.part(room);
        Ok(())
    }

    /// Asks for the list of rooms; [`Event::Rooms`] follows.
    pub async fn rooms(&self) -> Result<(), SessionError> {
        self.reserve().await?.rooms();
        Ok(())
    }

    /// Asks for the latest `n` stored messages of a conversation (at most
    /// [`MAX_HISTORY`]), or the `n` before a message; [`Event::History`]
    /// follows.
    pub async fn history(
        &self,
        conversation: &Conversation,
        n: usize,
        before: Option<&MsgId>,
    ) -> Result<(), SessionError> {
        self.reserve().await?.history(conversation, n, before);
        Ok(())
    }

    /// Ends the session with `COMM_END`. Events keep coming until
    /// [`Event::Closed`] (with [`Closed::Ended`]) once the server answered.
    /// Requests made before are sent first.
    pub async fn end(&self) -> Result<(), SessionError> {
        self.reserve().await?.end();
        Ok(())
    }

    /// The MSG frame for a message, checked.
    fn message(&self, to: &Conversation, text: impl Into<Text>) -> Result<Frame, SessionError> {
        let text = text.into();
        let frame = match to {
            Conversation::Lobby => Frame::broadcast(text),
            Conversation::Room(room) => Frame::request(Action::Msg)
                .with_dst(room.as_text().clone())
                .with_body(text),
            Conversation::Direct(id) => {
                let frame = Frame::direct(id.as_text().clone(), text);
                if frame.validate().is_err() || id.as_str().is_empty() {
                    return Err(SessionError::InvalidPeerId { id: id.to_string() });
                }
                frame
            }
        };
        self.check_length(&frame)?;
        Ok(frame)
    }

    /// Refuses a MSG whose request line, relayed frame or stored history
    /// item would be over the server's frame limit (the server refuses it
    /// with 413 otherwise, after it cost a round trip).
    fn check_length(&self, frame: &Frame) -> Result<(), SessionError> {
        let limit = self.server_max_frame_bytes;
        let (own_id, username) = {
            let state = self.state_rx.borrow();
            (state.id.as_text().clone(), state.username.clone())
        };
        let text_len = encoded_len(&Frame::request(Action::Msg).with_body(frame.body()))
            .saturating_sub(encoded_len(&Frame::request(Action::Msg)));
        // The longest message id is 32 characters; a Unix time in ms has 13
        // digits until the year 2286.
        let msg_id = "x".repeat(32);
        let conversation = if frame.dst().len() > own_id.len() {
            Text::from(frame.dst())
        } else {
            own_id.clone()
        };
        let relayed = Frame::response(Action::Msg)
            .with_sender(own_id.clone())
            .with_src(msg_id.as_str())
            .with_dst(frame.dst());
        let stored = Frame::response(Action::History)
            .with_sender(own_id)
            .with_src(msg_id.as_str())
            .with_dst(conversation)
            .with_body(format!("{}::{username}::", "9".repeat(13)));
        let overhead = [
            encoded_len(&Frame::request(Action::Msg).with_dst(frame.dst())),
            encoded_len(&relayed),
            encoded_len(&stored),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if overhead + text_len > limit {
            return Err(SessionError::TooLong {
                n_bytes: text_len,
                max_bytes: limit.saturating_sub(overhead),
            });
        }
        Ok(())
    }
}

/// The length of a frame on the wire, without its terminator.
fn encoded_len(frame: &Frame) -> usize {
    frame
        .to_bytes()
        .map(|b| b.len().saturating_sub(1))
        .unwrap_or(usize::MAX)
}

/// Opens a connection to `addr`: TCP, and the TLS handshake when the
/// session speaks TLS.
async fn open(config: &Config, addr: &str) -> Result<Conn, OpenError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(OpenError::Unreachable)?;
    tcp.set_nodelay(true).map_err(OpenError::Unreachable)?;
    let stream = match &config.tls {
        None => Either::Left(tcp),
        Some(tls) => tls.handshake(tcp, addr).await.map_err(OpenError::Tls)?,
    };
    Ok(Framed::new(
        stream,
        FrameCodec::with_max_frame_bytes(config.max_frame_bytes),
    ))
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// No TCP connection.
    #[error("{0}")]
    Unreachable(io::Error),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(HandshakeFailure),
}

impl OpenError {
    fn into_connect_error(self, addr: &str) -> ConnectError {
        let addr = addr.to_owned();
        match self {
            OpenError::Unreachable(source) => ConnectError::Unreachable { addr, source },
            OpenError::Tls(HandshakeFailure::Certificate(reason)) => {
                ConnectError::Certificate { addr, reason }
            }
            OpenError::Tls(HandshakeFailure::Other(reason)) => ConnectError::Tls { addr, reason },
        }
    }
}

/// Connects to `addr` and registers.
async fn register(
    config: &Config,
    addr: &str,
) -> Result<(Conn, PeerId, ResumeToken), ConnectError> {
    let limit = config.connect_timeout;
    let timed_out = || ConnectError::Timeout {
        addr: addr.to_owned(),
        timeout: limit,
    };
    let attempt = async {
        let mut conn = open(config, addr)
            .await
            .map_err(|e| e.into_connect_error(addr))?;
        if let Some(password) = &config.password {
            match auth(&mut conn, password)
                .await
                .map_err(|e| e.into_connect_error(addr))?
            {
                Answer::Registered { .. } => {}
                Answer::Refused {
                    status: Status::Unauthorized,
                    ..
                } => {
                    return Err(ConnectError::WrongPassword {
                        addr: addr.to_owned(),
                    });
                }
                Answer::Refused { status, reason } => {
                    return Err(ConnectError::Refused {
                        addr: addr.to_owned(),
                        status,
                        reason,
                    });
                }
            }
        }
        let answer = comm(&mut conn, Frame::register(config.username.as_str()))
            .await
            .map_err(|e| e.into_connect_error(addr))?;
        match answer {
            Answer::Registered { id, token } => Ok((conn, id, token)),
            Answer::Refused {
                status: Status::Unauthorized,
                ..
            } => Err(ConnectError::PasswordNeeded {
                addr: addr.to_owned(),
            }),
            Answer::Refused {
                status: Status::BadRequest,
                reason,
            } => Err(ConnectError::UsernameRefused { reason }),
            Answer::Refused {
                status: Status::ServiceUnavailable,
                reason,
            } => Err(ConnectError::Full {
                addr: addr.to_owned(),
                reason,
            }),
            Answer::Refused { status, reason } => Err(ConnectError::Refused {
                addr: addr.to_owned(),
                status,
                reason,
            }),
        }
    };
    timeout(limit, attempt).await.map_err(|_| timed_out())?
}

/// Starts the session task on a registered connection, once the roster is in.
async fn start(
    config: Config,
    addr_index: usize,
    conn: Conn,
    id: PeerId,
    token: ResumeToken,
) -> Result<(Session, Events), ConnectError> {
    let addr = config.addrs.get(addr_index).cloned().unwrap_or_default();
    let server_addr = tls::peer_addr(conn.get_ref()).ok();
    let username = Text::from(config.username.as_str());
    let mut roster = Roster::new();
    roster.insert(id.clone(), username.clone());
    let state = State {
        id: id.clone(),
        username,
        server: addr.clone(),
        server_addr,
        registered_at: SystemTime::now(),
        online: true,
        roster,
        rooms: BTreeMap::new(),
    };
    let (state_tx, state_rx) = watch::channel(state);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(config.event_capacity.max(1));
    let backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let pacer = Pacer::new(config.max_rate, config.rate_burst, Instant::now());
    let server_max_frame_bytes = config.server_max_frame_bytes;
    let limit = config.connect_timeout;
    let mut task = Task {
        config,
        conn: Some(conn),
        addr_index,
        id,
        token,
        cmd_rx,
        event_tx,
        state_tx,
        pending: VecDeque::new(),
        events_closed: false,
        outgoing: VecDeque::new(),
        retries: VecDeque::new(),
        markers: VecDeque::new(),
        pacer,
        paused_until: None,
        seen: SeenIds::default(),
        last_msg_id: None,
        joining: BTreeMap::new(),
        history: Vec::new(),
        synced: false,
        end_requested: None,
        ending: None,
        shut_down: None,
        backoff,
    };
    // The roster frames come right after the answer; a GET_PEER for our own
    // id is answered after them, so its answer marks their end.
    timeout(limit, task.initial_sync())
        .await
        .map_err(|_| ConnectError::Timeout {
            addr: addr.clone(),
            timeout: limit,
        })?
        .map_err(|reason| ConnectError::Closed {
            addr: addr.clone(),
            reason,
        })?;
    let span = info_span!("session", peer = %task.id, addr = %addr);
    tokio::spawn(task.run().instrument(span));
    Ok((
        Session {
            cmd_tx,
            state_rx,
            server_max_frame_bytes,
        },
        Events { rx: event_rx },
    ))
}

/// The server's answer to a `REQ::COMM` (registration or resume).
#[derive(Debug)]
enum Answer {
    /// `RES::COMM`: the id and a fresh resume token.
    Registered { id: PeerId, token: ResumeToken },
    /// `ERR::COMM` (or another error before registration).
    Refused { status: Status, reason: Text },
}

/// Why a handshake could not be completed.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("{}", tls::io_words(.0))]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Eof,
    #[error("the server's answer does not follow the protocol")]
    Protocol,
}

impl HandshakeError {
    fn into_connect_error(self, addr: &str) -> ConnectError {
        match self {
            HandshakeError::Protocol => ConnectError::Protocol {
                addr: addr.to_owned(),
            },
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
        match ServerEvent::from_frame(frame) {
            ServerEvent::Registered { id, token } => return Ok(Answer::Registered { id, token }),
            ServerEvent::BadRegistration => return Err(HandshakeError::Protocol),
            ServerEvent::Refused { status, reason, .. } => {
                return Ok(Answer::Refused { status, reason });
            }
            other => debug!(?other, "ignored before registration"),
        }
    }
}

/// Sends the server password and reads until its answer: `Registered` (with
/// an empty id) stands for `RES::AUTH`, `Refused` for an error.
async fn auth(conn: &mut Conn, password: &Secret) -> Result<Answer, HandshakeError> {
    send_frame(conn, Frame::auth(password.expose())).await?;
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
        match ServerEvent::from_frame(frame) {
            ServerEvent::AuthOk => {
                return Ok(Answer::Registered {
                    id: PeerId::new(""),
                    token: ResumeToken(Text::new()),
                });
            }
            ServerEvent::Refused { status, reason, .. } => {
                return Ok(Answer::Refused { status, reason });
            }
            _ => debug!("ignored before the password was taken"),
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
    /// The server did not know the session; a new registration succeeded.
    Reregistered { id: PeerId, token: ResumeToken },
}

/// Connects and resumes (or, if the server forgot the session, registers
/// anew). Owns everything it needs so it can run while the task serves
/// requests.
async fn restore(
    config: Config,
    addr: String,
    id: PeerId,
    token: ResumeToken,
    last_msg_id: Option<MsgId>,
) -> Result<(Conn, Restored), String> {
    let attempt = async {
        let mut conn = open(&config, &addr).await.map_err(|e| e.to_string())?;
        if let Some(password) = &config.password {
            match auth(&mut conn, password).await.map_err(|e| e.to_string())? {
                Answer::Registered { .. } => {}
                Answer::Refused { .. } => {
                    return Err("the server refused the password".to_owned());
                }
            }
        }
        let resume = match &last_msg_id {
            Some(last) => Frame::resume_after(
                id.as_text().clone(),
                last.as_text().clone(),
                token.0.clone(),
            ),
            None => Frame::resume(id.as_text().clone(), token.0.clone()),
        };
        match comm(&mut conn, resume).await.map_err(|e| e.to_string())? {
            Answer::Registered { id: new_id, token } => {
                if new_id != id {
                    return Err("the server resumed another session".to_owned());
                }
                Ok((conn, Restored::Resumed { token }))
            }
            Answer::Refused {
                status: Status::NotFound,
                ..
            } => {
                let register = Frame::register(config.username.as_str());
                match comm(&mut conn, register).await.map_err(|e| e.to_string())? {
                    Answer::Registered { id, token } => {
                        Ok((conn, Restored::Reregistered { id, token }))
                    }
                    Answer::Refused { reason, .. } => Err(format!(
                        "the server refused to register you again: {reason}"
                    )),
                }
            }
            Answer::Refused { reason, .. } => {
                Err(format!("the server refused the resume: {reason}"))
            }
        }
    };
    match timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {} s",
            config.connect_timeout.as_secs_f32()
        )),
    }
}

/// Why a GET_PEER for our own id was sent: its answer marks a point in the
/// stream of frames from the server.
#[derive(Debug)]
enum Marker {
    /// The end of the roster sent to a newcomer.
    Initial,
    /// The end of the frames kept while away, counting them.
    Resume { n_kept: usize },
    /// Not a marker: the user's own lookup.
    User,
    /// Sent right after a MSG: an error for that MSG comes before its answer.
    AfterMsg {
        /// The MSG, to be sent again if refused with 429.
        frame: Frame,
        /// How many times it has been sent.
        attempt: u8,
        /// Whether the server refused it with 429.
        refused: bool,
    },
}

/// Message ids recently delivered (bounded).
#[derive(Debug, Default)]
struct SeenIds {
    set: HashSet<MsgId>,
    order: VecDeque<MsgId>,
}

impl SeenIds {
    /// Remembers `id`; false if it was already there.
    fn insert(&mut self, id: &MsgId) -> bool {
        if !self.set.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id.clone());
        if self.order.len() > SEEN_MSG_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// How the connected phase ended.
#[derive(Debug)]
enum Step {
    /// The connection dropped without `COMM_END`, or the server is shutting
    /// down: reconnect.
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
    /// Which of `config.addrs` the connection goes to.
    addr_index: usize,
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
    /// Requests waiting for a token or a connection (bounded by
    /// `MAX_OUTGOING_FRAMES` through taking fewer requests).
    outgoing: VecDeque<Frame>,
    /// MSGs refused with 429, to be sent again before `outgoing`, with the
    /// number of times each was sent.
    retries: VecDeque<(Frame, u8)>,
    /// GET_PEER requests for our own id not yet answered, in order.
    markers: VecDeque<Marker>,
    /// The client's own rate limit.
    pacer: Pacer,
    /// No MSG is sent before this (after a 429).
    paused_until: Option<Instant>,
    /// Message ids already delivered.
    seen: SeenIds,
    /// The last message id received, for a resume without a gap.
    last_msg_id: Option<MsgId>,
    /// Rooms joined and not yet confirmed, with the roster so far.
    joining: BTreeMap<RoomName, Vec<(PeerId, Text)>>,
    /// History items of the answer being received.
    history: Vec<Message>,
    /// Whether the initial roster is complete.
    synced: bool,
    /// Set when the user asked to end the session: COMM_END goes once
    /// everything asked for before is sent and settled, or when no progress
    /// was made for `end_timeout` (each frame written and each MSG settled
    /// moves this deadline), whichever comes first.
    end_requested: Option<Instant>,
    /// When to stop waiting for the answer to our `COMM_END`, once sent.
    ending: Option<Instant>,
    /// The server's reason, if the connection was lost to its shutdown.
    shut_down: Option<Text>,
    /// Delays between reconnection attempts.
    backoff: Backoff,
}

impl Task {
    /// Reads until the answer to the roster marker.
    async fn initial_sync(&mut self) -> Result<(), String> {
        self.write_marker(Marker::Initial)
            .await
            .map_err(|e| tls::io_words(&e))?;
        while !self.synced {
            let Some(conn) = self.conn.as_mut() else {
                return Err("not connected".to_owned());
            };
            match conn.next().await {
                None => return Err("the server closed the connection".to_owned()),
                Some(Err(e)) => return Err(tls::io_words(&e)),
                Some(Ok(Err(e))) => warn!(error = %e, "malformed frame from the server"),
                Some(Ok(Ok(frame))) => match self.handle_frame(frame).await {
                    None => {}
                    Some(Step::Lost(reason)) => return Err(reason),
                    Some(Step::Closed(_)) => {
                        return Err("the server ended the session at once".to_owned());
                    }
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

    /// When the next queued frame may be written, if one waits.
    fn next_send_at(&self) -> Option<Instant> {
        let now = Instant::now();
        let (frame, _) = self.next_frame()?;
        // One MSG at a time: the next waits for the answer to the previous
        // one's marker, so a refused MSG is sent again before any later one
        // (the order holds) at the cost of a round trip per message.
        if frame.action == Action::Msg && self.msg_in_flight() {
            return None;
        }
        let need = tokens_for(frame);
        let mut at = self.pacer.ready_at(need, now);
        if frame.action == Action::Msg
            && let Some(paused) = self.paused_until
        {
            at = at.max(paused);
        }
        Some(at)
    }

    /// Whether a MSG was written and its fate is not known yet.
    fn msg_in_flight(&self) -> bool {
        self.markers
            .iter()
            .any(|m| matches!(m, Marker::AfterMsg { .. }))
    }

    /// The frame to send next: a retry first.
    fn next_frame(&self) -> Option<(&Frame, bool)> {
        match self.retries.front() {
            Some((frame, _)) => Some((frame, true)),
            None => self.outgoing.front().map(|f| (f, false)),
        }
    }

    /// Writes every queued frame the pacer allows now.
    async fn flush(&mut self) -> io::Result<()> {
        while let Some(at) = self.next_send_at() {
            let now = Instant::now();
            if at > now {
                break;
            }
            let Some((frame, _)) = self.next_frame() else {
                break;
            };
            if !self.pacer.try_take(tokens_for(frame), now) {
                break;
            }
            let (frame, attempt) = match self.retries.pop_front() {
                Some((frame, attempt)) => (frame, attempt),
                None => match self.outgoing.pop_front() {
                    Some(frame) => (frame, 0),
                    None => break,
                },
            };
            self.write(frame, attempt).await?;
        }
        Ok(())
    }

    /// Moves the end's deadline on: the queue is making progress.
    fn progressed(&mut self) {
        if let Some(at) = &mut self.end_requested {
            *at = Instant::now() + self.config.end_timeout;
        }
    }

    /// Writes one request (with its marker, for a MSG or a lookup).
    async fn write(&mut self, frame: Frame, attempt: u8) -> io::Result<()> {
        self.progressed();
        match frame.action {
            Action::Msg => {
                self.send(frame.clone()).await?;
                self.write_marker(Marker::AfterMsg {
                    frame,
                    attempt: attempt.saturating_add(1),
                    refused: false,
                })
                .await
            }
            Action::GetPeer => {
                self.markers.push_back(Marker::User);
                self.send(frame).await
            }
            Action::Join => {
                if let Ok(room) = RoomName::parse(frame.dst()) {
                    self.joining.insert(room, Vec::new());
                }
                self.send(frame).await
            }
            _ => self.send(frame).await,
        }
    }

    /// Writes a GET_PEER for our own id, remembering why.
    async fn write_marker(&mut self, marker: Marker) -> io::Result<()> {
        self.markers.push_back(marker);
        self.send(Frame::get_peer(self.id.as_text().clone())).await
    }

    /// Serves requests and the connection until it drops or the session ends.
    async fn connected(&mut self) -> Step {
        loop {
            if let Err(e) = self.flush().await {
                return self.lost(tls::io_words(&e));
            }
            // Everything asked for before the end is written, and every
            // MSG's fate known (a refused one is sent again), before COMM_END.
            let settled = !self.msg_in_flight() && self.next_frame().is_none();
            let end_due = self.end_requested.is_some_and(|at| Instant::now() >= at);
            if self.end_requested.is_some() && self.ending.is_none() && (settled || end_due) {
                if let Err(e) = self.send(Frame::comm_end()).await {
                    debug!(error = %e, "COMM_END not sent");
                    return Step::Closed(Closed::Ended);
                }
                self.ending = Some(Instant::now() + self.config.end_timeout);
            }
            let send_at = self.next_send_at();
            let Some(conn) = self.conn.as_mut() else {
                return Step::Lost("not connected".to_owned());
            };
            let can_read = self.pending.len() < MAX_PENDING_EVENTS;
            let can_deliver = !self.pending.is_empty() && !self.events_closed;
            let can_take =
                self.outgoing.len() < MAX_OUTGOING_FRAMES && self.end_requested.is_none();
            let ending = self.ending;
            let end_due = self.end_requested.filter(|_| ending.is_none());
            let event_tx = self.event_tx.clone();
            tokio::select! {
                cmd = self.cmd_rx.recv(), if can_take => match cmd {
                    Some(Command::Send(frame)) => self.outgoing.push_back(frame),
                    Some(Command::End) => {
                        self.end_requested = Some(Instant::now() + self.config.end_timeout);
                    }
                    None => {
                        // Every handle is gone: say goodbye, do not wait.
                        let _ = self.send(Frame::comm_end()).await;
                        return Step::Closed(Closed::Ended);
                    }
                },
                permit = event_tx.reserve_owned(), if can_deliver => self.deliver(permit),
                item = conn.next(), if can_read => match item {
                    None => return self.lost("the server closed the connection".to_owned()),
                    Some(Err(e)) => return self.lost(tls::io_words(&e)),
                    Some(Ok(Err(e))) => warn!(error = %e, "malformed frame from the server"),
                    Some(Ok(Ok(frame))) => {
                        if let Some(step) = self.handle_frame(frame).await {
                            return step;
                        }
                    }
                },
                () = sleep_until(send_at.unwrap_or_else(Instant::now)), if send_at.is_some() => {}
                () = sleep_until(ending.unwrap_or_else(Instant::now)), if ending.is_some() => {
                    debug!("no answer to COMM_END in time");
                    return Step::Closed(Closed::Ended);
                }
                () = sleep_until(end_due.unwrap_or_else(Instant::now)), if end_due.is_some() => {
                    debug!("ending without waiting for every message's fate");
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

    /// Tries to reconnect and resume until it works or time runs out; takes
    /// requests (up to the bound) and delivers events meanwhile.
    async fn reconnect(&mut self, mut reason: String) -> Result<(), Closed> {
        self.conn = None;
        self.synced = true;
        self.joining.clear();
        self.history.clear();
        // The fate of MSGs written just before the drop is unknown; a MSG
        // still waiting for a retry is sent on the new connection.
        for marker in std::mem::take(&mut self.markers) {
            if let Marker::AfterMsg {
                frame,
                attempt,
                refused: true,
            } = marker
            {
                self.retries.push_back((frame, attempt));
            }
        }
        self.state_tx.send_modify(|s| s.online = false);
        self.backoff.reset();
        let started = Instant::now();
        let n_addrs = self.config.addrs.len().max(1);
        loop {
            let delay = self.backoff.next_delay();
            if started.elapsed() + delay > self.config.reconnect_for {
                return Err(match self.shut_down.take() {
                    Some(reason) => Closed::ShutDown { reason },
                    None => Closed::Lost { reason },
                });
            }
            // Round robin: the first attempt goes to the server just lost.
            let index = (self.addr_index + self.backoff.n_attempts() as usize - 1) % n_addrs;
            let addr = self.config.addrs.get(index).cloned().unwrap_or_default();
            debug!(attempt = self.backoff.n_attempts(), ?delay, %reason, %addr, "reconnecting");
            self.push(Event::Reconnecting {
                attempt: self.backoff.n_attempts(),
                delay,
                server: addr.clone(),
                reason: reason.clone(),
            });
            let config = self.config.clone();
            let (id, token, last) = (
                self.id.clone(),
                self.token.clone(),
                self.last_msg_id.clone(),
            );
            let attempt_addr = addr.clone();
            let attempt = async move {
                sleep(delay).await;
                restore(config, attempt_addr, id, token, last).await
            };
            tokio::pin!(attempt);
            let outcome = loop {
                let can_deliver = !self.pending.is_empty() && !self.events_closed;
                let can_take =
                    self.outgoing.len() < MAX_OUTGOING_FRAMES && self.end_requested.is_none();
                let event_tx = self.event_tx.clone();
                tokio::select! {
                    outcome = &mut attempt => break outcome,
                    cmd = self.cmd_rx.recv(), if can_take => match cmd {
                        Some(Command::Send(frame)) => self.outgoing.push_back(frame),
                        // Nothing waits to be sent: the end needs no server.
                        Some(Command::End) if self.outgoing.is_empty() && self.retries.is_empty() => {
                            return Err(Closed::Ended);
                        }
                        // What was asked for before is sent once resumed.
                        Some(Command::End) => {
                            self.end_requested = Some(Instant::now() + self.config.reconnect_for);
                        }
                        None => return Err(Closed::Ended),
                    },
                    permit = event_tx.reserve_owned(), if can_deliver => self.deliver(permit),
                }
            };
            match outcome {
                Ok((conn, restored)) => {
                    self.addr_index = index;
                    match self.restored(conn, restored, addr).await {
                        Ok(()) => return Ok(()),
                        Err(e) => reason = e,
                    }
                }
                Err(e) => reason = e,
            }
        }
    }

    /// Takes up a restored connection: marker, rooms, state.
    async fn restored(
        &mut self,
        conn: Conn,
        restored: Restored,
        addr: String,
    ) -> Result<(), String> {
        let server_addr = tls::peer_addr(conn.get_ref()).ok();
        self.conn = Some(conn);
        self.shut_down = None;
        self.pacer = Pacer::new(self.config.max_rate, self.config.rate_burst, Instant::now());
        self.paused_until = None;
        match restored {
            Restored::Resumed { token } => {
                self.token = token;
                // The kept frames follow the answer; a GET_PEER for our own
                // id is answered after them, so its answer marks their end.
                self.write_marker(Marker::Resume { n_kept: 0 })
                    .await
                    .map_err(|e| tls::io_words(&e))?;
            }
            Restored::Reregistered { id, token } => {
                let old_id = std::mem::replace(&mut self.id, id.clone());
                self.token = token;
                self.last_msg_id = None;
                let rooms: Vec<RoomName> = self.state_tx.borrow().rooms.keys().cloned().collect();
                self.state_tx.send_modify(|s| {
                    s.id = id.clone();
                    s.registered_at = SystemTime::now();
                    s.roster.clear();
                    s.roster.insert(id.clone(), s.username.clone());
                    s.rooms.clear();
                });
                self.push(Event::Reregistered {
                    old_id,
                    new_id: id,
                    server: addr.clone(),
                });
                // The roster, then the rooms again, before anything queued.
                self.synced = false;
                self.write_marker(Marker::Initial)
                    .await
                    .map_err(|e| tls::io_words(&e))?;
                for room in rooms.into_iter().rev() {
                    self.outgoing
                        .push_front(Frame::join(room.as_text().clone()));
                }
            }
        }
        self.state_tx.send_modify(|s| {
            s.online = true;
            s.server = addr;
            s.server_addr = server_addr;
        });
        Ok(())
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
        let n_unsent = self.outgoing.len() + self.retries.len();
        if n_unsent > 0 {
            self.pending.push_back(Event::Unsent { n_frames: n_unsent });
        }
        self.pending.push_back(Event::Closed(closed));
        self.state_tx.send_modify(|s| s.online = false);
        if let Some(mut conn) = self.conn.take() {
            // Over TLS, a close_notify (bounded); plain TCP is just dropped.
            tls::close(conn.get_mut()).await;
        }
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
        match ServerEvent::from_frame(frame) {
            ServerEvent::HealthCheck => {
                // Answered here, never by the user, and never paced.
                let answer = Frame::health_answer(self.id.as_text().clone());
                if let Err(e) = self.send(answer).await {
                    return Some(self.lost(tls::io_words(&e)));
                }
            }
            ServerEvent::Message {
                from,
                id,
                dst,
                text,
            } => {
                self.count_kept();
                if let Some(id) = &id {
                    if !self.seen.insert(id) {
                        debug!(%id, "message already delivered");
                        return None;
                    }
                    self.last_msg_id = Some(id.clone());
                }
                let conversation = match Conversation::from_wire(&dst) {
                    // A direct message belongs to the conversation with its author.
                    Conversation::Direct(_) => Conversation::Direct(from.clone()),
                    other => other,
                };
                let username = self.username_of(&from);
                self.push(Event::Message(Message {
                    id,
                    conversation,
                    from,
                    username,
                    text,
                    time: SystemTime::now(),
                }));
            }
            ServerEvent::PeerJoined { id, dst, username } => {
                self.count_kept();
                let to_us = dst.as_str() == self.id.as_str();
                let is_us = id == self.id;
                self.state_tx.send_modify(|s| {
                    s.roster.insert(id.clone(), username.clone());
                });
                // One of the roster frames sent to a newcomer is no news.
                if !to_us && !is_us {
                    self.push(Event::Joined { id, username });
                }
            }
            ServerEvent::PeerLeft { id, username } => {
                self.count_kept();
                let mut known = None;
                self.state_tx.send_modify(|s| {
                    known = s.roster.remove(id.as_str());
                    for members in s.rooms.values_mut() {
                        members.remove(id.as_str());
                    }
                });
                let username = if username.is_empty() {
                    known.unwrap_or_default()
                } else {
                    username
                };
                if id != self.id {
                    self.push(Event::Left { id, username });
                }
            }
            ServerEvent::PeerFound { id, username } => {
                self.on_lookup_answer(Event::PeerFound { id, username });
            }
            ServerEvent::Refused {
                action: Action::GetPeer,
                status,
                reason,
            } => {
                self.on_lookup_answer(Event::Error {
                    action: Action::GetPeer,
                    status,
                    reason,
                });
            }
            ServerEvent::Refused {
                action: Action::Msg,
                status,
                reason,
            } => {
                if let Some(Marker::AfterMsg { refused, .. }) = self.markers.front_mut()
                    && status == Status::TooManyRequests
                {
                    *refused = true;
                } else {
                    self.push(Event::Error {
                        action: Action::Msg,
                        status,
                        reason,
                    });
                }
            }
            ServerEvent::Refused {
                action: Action::CommEnd,
                status: Status::TooManyRequests,
                ..
            } if self.ending.is_some() => {
                // The contract exempts COMM_END from the rate; ask again.
                sleep(RETRY_PAUSE).await;
                if let Err(e) = self.send(Frame::comm_end()).await {
                    return Some(self.lost(tls::io_words(&e)));
                }
            }
            ServerEvent::Refused {
                action: Action::Join,
                status,
                reason,
            } => {
                self.joining.clear();
                self.push(Event::Error {
                    action: Action::Join,
                    status,
                    reason,
                });
            }
            ServerEvent::Refused {
                action: Action::Comm,
                status: Status::RequestTimeout,
                reason,
            } => {
                // The server gave up on us (health check); the connection
                // ends next and the session resumes.
                debug!(%reason, "the server timed us out");
            }
            ServerEvent::Refused {
                action,
                status,
                reason,
            } => self.push(Event::Error {
                action,
                status,
                reason,
            }),
            ServerEvent::RoomJoin {
                member,
                room,
                username,
            } => {
                self.count_kept();
                if member == self.id {
                    let mut members = self.joining.remove(&room).unwrap_or_default();
                    members.push((member, username));
                    self.state_tx.send_modify(|s| {
                        s.rooms
                            .insert(room.clone(), members.iter().cloned().collect());
                    });
                    self.push(Event::RoomJoined { room, members });
                } else if let Some(roster) = self.joining.get_mut(&room) {
                    roster.push((member, username));
                } else {
                    let mut known = false;
                    self.state_tx.send_modify(|s| {
                        if let Some(members) = s.rooms.get_mut(&room) {
                            known = true;
                            members.insert(member.clone(), username.clone());
                        }
                    });
                    if known {
                        self.push(Event::RoomJoin {
                            room,
                            id: member,
                            username,
                        });
                    }
                }
            }
            ServerEvent::RoomPart {
                member,
                room,
                username,
            } => {
                self.count_kept();
                let is_us = member == self.id;
                self.state_tx.send_modify(|s| {
                    if is_us {
                        s.rooms.remove(&room);
                    } else if let Some(members) = s.rooms.get_mut(&room) {
                        members.remove(member.as_str());
                    }
                });
                self.push(Event::RoomPart {
                    room,
                    id: member,
                    username,
                });
            }
            ServerEvent::Rooms(rooms) => self.push(Event::Rooms(rooms)),
            ServerEvent::HistoryItem(item) => {
                if self.history.len() < MAX_HISTORY_ITEMS {
                    self.history.push(history_message(item));
                }
            }
            ServerEvent::HistoryEnd {
                conversation, more, ..
            } => {
                let messages = std::mem::take(&mut self.history);
                self.push(Event::History {
                    conversation,
                    messages,
                    more,
                });
            }
            ServerEvent::Ended(reason) => {
                if self.ending.is_some() {
                    return Some(Step::Closed(Closed::Ended));
                }
                return Some(match reason {
                    EndReason::ShuttingDown(reason) => {
                        // The server may come back (and restore sessions).
                        let words = "the server is restarting or shutting down".to_owned();
                        self.shut_down = Some(reason);
                        Step::Lost(words)
                    }
                    EndReason::ResumedElsewhere(_) => Step::Closed(Closed::ResumedElsewhere),
                    EndReason::Other(reason) => Step::Closed(Closed::Kicked { reason }),
                });
            }
            ServerEvent::Registered { .. }
            | ServerEvent::BadRegistration
            | ServerEvent::AuthOk
            | ServerEvent::Ignored => {
                debug!("ignored frame");
            }
        }
        None
    }

    /// A GET_PEER answer (found or refused): a marker's, or the user's.
    fn on_lookup_answer(&mut self, event: Event) {
        self.progressed();
        match self.markers.pop_front() {
            Some(Marker::Initial) => self.synced = true,
            Some(Marker::Resume { n_kept }) => {
                let server = self.state_tx.borrow().server.clone();
                self.push(Event::Reconnected {
                    kept_frames: n_kept,
                    server,
                });
            }
            Some(Marker::AfterMsg {
                frame,
                attempt,
                refused: true,
            }) => {
                if attempt >= MAX_SEND_ATTEMPTS {
                    self.push(Event::Error {
                        action: Action::Msg,
                        status: Status::TooManyRequests,
                        reason: Text::from("the server refused the message again and again"),
                    });
                } else {
                    let now = Instant::now();
                    if self.retries.is_empty() {
                        self.pacer.slow_down(now);
                    }
                    self.paused_until = Some(now + RETRY_PAUSE);
                    self.retries.push_back((frame, attempt));
                }
            }
            Some(Marker::AfterMsg { .. }) => {}
            Some(Marker::User) | None => self.push(event),
        }
    }

    /// Counts a frame kept by the server while this client was away.
    fn count_kept(&mut self) {
        if let Some(Marker::Resume { n_kept }) = self.markers.front_mut() {
            *n_kept += 1;
        }
    }

    fn username_of(&self, id: &PeerId) -> Option<Text> {
        self.state_tx.borrow().roster.username(id.as_str()).cloned()
    }
}

/// How many tokens a queued request takes: a MSG and its marker take two.
fn tokens_for(frame: &Frame) -> u32 {
    if frame.action == Action::Msg { 2 } else { 1 }
}

/// A history item as a [`Message`].
fn history_message(item: HistoryItem) -> Message {
    Message {
        id: item.id,
        conversation: item.conversation,
        from: item.author,
        username: Some(item.username),
        text: item.text,
        time: item.time,
    }
}
