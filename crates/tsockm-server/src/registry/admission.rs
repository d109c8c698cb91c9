//! Admission: what a client's line asks for, or why it is refused.
//!
//! [`judge`] is the contract's order of checks (sections 9 and 14) as one
//! pure function of the line and of what the registry knows about the
//! connection ([`ConnFacts`]). It yields a typed [`Request`], a [`Refusal`]
//! that knows its action and status (so the wire status of every refusal is
//! decided here, as `FrameError::status` decides it for bad lines), or
//! [`Verdict::Drop`] for junk over the rate. The checks of step 9 that need
//! the registry's state (capacity, unknown peers, room membership) are the
//! handlers'; the ones that need only the frame (username and room syntax,
//! HISTORY queries) are made here, first, as section 14 orders them.

use tsockm_proto::{Action, BROADCAST, Frame, FrameError, Kind, Status, Text};

use crate::room::RoomName;
use crate::username::check_username;

/// Most items one HISTORY answer holds; a larger n is taken as this.
pub const HISTORY_MAX_ITEMS: usize = 500;

/// What the registry knows about a connection when judging its line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnFacts<'a> {
    /// Its peer id, once it registered or resumed.
    pub peer: Option<&'a str>,
    /// Whether the server wants a password that this connection has not given.
    pub needs_auth: bool,
    /// Whether the line found the connection's rate bucket empty.
    pub over_rate: bool,
}

/// Where a message goes, or which conversation a HISTORY is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Every peer (`*`).
    Lobby,
    /// The members of a room.
    Room(RoomName),
    /// One peer, by id (the direct messages with it, for HISTORY).
    Peer(Text),
}

/// Which side of the anchor a HISTORY query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Older messages.
    Before,
    /// Newer messages.
    After,
}

/// A HISTORY query: `<n>`, `<n> before <msg_id>` or `<n> after <msg_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryQuery {
    /// How many messages, 1 to [`HISTORY_MAX_ITEMS`].
    pub n: usize,
    /// The message to count from, and on which side; none for the latest.
    pub anchor: Option<(Side, Text)>,
}

/// What a client asks for, once its line passed every check that needs
/// nothing but the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Register as a new peer with a valid username.
    Register {
        /// The username (a copy, not a slice of the read buffer).
        username: Text,
    },
    /// Resume a session.
    Resume {
        /// The peer id (a copy, not a slice of the read buffer).
        peer_id: Text,
        /// The resume token.
        token: Text,
        /// The last message id the client received (may be empty).
        last_msg_id: Text,
    },
    /// Send a message.
    Msg {
        /// To whom.
        to: Destination,
        /// The text.
        text: Text,
    },
    /// Look a peer up.
    GetPeer {
        /// The peer id asked for.
        id: Text,
    },
    /// End the session.
    End,
    /// An answer to a health check.
    HealthAnswer,
    /// Join a room.
    Join {
        /// The room.
        room: RoomName,
    },
    /// Leave a room.
    Part {
        /// The room.
        room: RoomName,
    },
    /// List the rooms.
    Rooms,
    /// Stored messages.
    History {
        /// The conversation.
        conversation: Destination,
        /// What to answer.
        query: HistoryQuery,
    },
    /// The server password.
    Auth {
        /// What the client gave.
        password: Text,
    },
}

/// A refused line: the error frame's action, status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// ACTION of the error frame.
    pub action: Action,
    /// STATUS of the error frame.
    pub status: Status,
    /// Why, in words, for the error frame's BODY.
    pub reason: String,
}

impl Refusal {
    /// A refusal of `action` with `status`.
    pub fn new(action: Action, status: Status, reason: impl Into<String>) -> Self {
        Refusal {
            action,
            status,
            reason: reason.into(),
        }
    }

    /// The refusal of a line that is not a frame (400, 405 or 413, `NONE`).
    pub fn bad_line(error: &FrameError) -> Self {
        Refusal::new(error.action(), error.status(), error.to_string())
    }
}

/// What becomes of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Do what it asks.
    Accept(Request),
    /// Answer with an error; nothing else happens.
    Refuse(Refusal),
    /// Junk over the rate: dropped without an answer, so that a flood of
    /// junk never costs more bytes out than in.
    Drop,
}

/// Whether a line takes a token from the connection's rate bucket: every
/// line does but COMM_END and, on a registered connection, the answers to
/// health checks it was sent (`solicited` says whether one is outstanding).
pub(crate) fn takes_token(
    item: &Result<Frame, FrameError>,
    facts: &ConnFacts<'_>,
    solicited: bool,
) -> bool {
    match item {
        Ok(frame) if frame.kind == Kind::Req && frame.action == Action::CommEnd => false,
        Ok(frame) if frame.kind == Kind::Res && frame.action == Action::Comm => {
            facts.peer.is_none() || !solicited
        }
        _ => true,
    }
}

/// Judges one line in the contract's order of checks.
pub(crate) fn judge(item: Result<Frame, FrameError>, facts: &ConnFacts<'_>) -> Verdict {
    // Steps 2 and 3: malformed, unknown action.
    let frame = match item {
        Ok(frame) => frame,
        Err(_) if facts.over_rate => return Verdict::Drop,
        Err(error) => return Verdict::Refuse(Refusal::bad_line(&error)),
    };
    let action = frame.action;
    // Step 4: what the server does not take from clients.
    let Some(kind) = Taken::of(&frame) else {
        return refuse(
            action,
            Status::MethodNotAllowed,
            format!(
                "the server does not take {}::{action} from clients",
                frame.kind
            ),
        );
    };
    match facts.peer {
        None => {
            // Step 5: not registered (AUTH is taken before registration).
            if !matches!(kind, Taken::Comm | Taken::Auth) {
                return refuse(
                    action,
                    Status::BadRequest,
                    "not registered: register first with REQ::COMM and a username",
                );
            }
            // Section 14: a COMM before the password.
            if kind == Taken::Comm && facts.needs_auth {
                return refuse(
                    action,
                    Status::Unauthorized,
                    "this server needs a password: send REQ::AUTH with it first",
                );
            }
        }
        Some(peer) => {
            // Step 6: a second registration.
            if kind == Taken::Comm {
                return refuse(action, Status::BadRequest, "already registered");
            }
            // Step 7: speaking for someone else.
            if !frame.sender_id().is_empty() && frame.sender_id() != peer {
                return refuse(
                    action,
                    Status::Forbidden,
                    format!(
                        "SENDER_ID `{}` is not this connection's peer id",
                        frame.sender_id()
                    ),
                );
            }
        }
    }
    // Step 8: the rate.
    if facts.over_rate {
        return Verdict::Refuse(over_rate(action));
    }
    // Step 9: the action's own checks that need only the frame.
    match request(kind, frame) {
        Ok(request) => Verdict::Accept(request),
        Err(refusal) => Verdict::Refuse(refusal),
    }
}

/// The 429 for a line over the rate.
fn over_rate(action: Action) -> Refusal {
    Refusal::new(
        action,
        Status::TooManyRequests,
        "too many requests: this one was dropped; slow down",
    )
}

fn refuse(action: Action, status: Status, reason: impl Into<String>) -> Verdict {
    Verdict::Refuse(Refusal::new(action, status, reason))
}

/// The lines the server takes from clients (section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Comm,
    CommEnd,
    Msg,
    GetPeer,
    HealthAnswer,
    Join,
    Part,
    Rooms,
    History,
    Auth,
}

impl Taken {
    fn of(frame: &Frame) -> Option<Taken> {
        let taken = match frame.kind {
            Kind::Res if frame.action == Action::Comm => Taken::HealthAnswer,
            Kind::Req => match frame.action {
                Action::Comm => Taken::Comm,
                Action::CommEnd => Taken::CommEnd,
                Action::Msg => Taken::Msg,
                Action::GetPeer => Taken::GetPeer,
                Action::Join => Taken::Join,
                Action::Part => Taken::Part,
                Action::Rooms => Taken::Rooms,
                Action::History => Taken::History,
                Action::Auth => Taken::Auth,
                _ => return None,
            },
            _ => return None,
        };
        Some(taken)
    }
}

/// The typed request, with the checks of step 9 that need only the frame.
fn request(kind: Taken, frame: Frame) -> Result<Request, Refusal> {
    let action = frame.action;
    let bad = |reason: String| Refusal::new(action, Status::BadRequest, reason);
    let request = match kind {
        Taken::Comm if frame.sender_id().is_empty() => {
            check_username(frame.body()).map_err(|e| bad(e.to_string()))?;
            Request::Register {
                username: Text::from(frame.body()),
            }
        }
        Taken::Comm => Request::Resume {
            peer_id: Text::from(frame.sender_id()),
            token: Text::from(frame.body()),
            last_msg_id: Text::from(frame.src()),
        },
        Taken::CommEnd => Request::End,
        Taken::HealthAnswer => Request::HealthAnswer,
        Taken::Msg => Request::Msg {
            to: destination(frame.dst(), true).map_err(bad)?,
            text: frame.body_text(),
        },
        Taken::GetPeer => Request::GetPeer {
            id: Text::from(frame.body()),
        },
        Taken::Join => Request::Join {
            room: RoomName::parse(frame.dst()).map_err(|e| bad(e.to_string()))?,
        },
        Taken::Part => Request::Part {
            room: RoomName::parse(frame.dst()).map_err(|e| bad(e.to_string()))?,
        },
        Taken::Rooms => Request::Rooms,
        Taken::History => Request::History {
            conversation: destination(frame.dst(), false).map_err(bad)?,
            query: history_query(frame.body()).map_err(bad)?,
        },
        Taken::Auth => Request::Auth {
            password: Text::from(frame.body()),
        },
    };
    Ok(request)
}

/// Reads a DST: `*` (or, for a message, empty) is the lobby, `#...` a room,
/// anything else a peer id.
fn destination(dst: &str, empty_is_lobby: bool) -> Result<Destination, String> {
    if dst == BROADCAST || (dst.is_empty() && empty_is_lobby) {
        Ok(Destination::Lobby)
    } else if dst.is_empty() {
        Err("no conversation: give `*`, a #room or a peer id in DST".to_owned())
    } else if dst.starts_with('#') {
        RoomName::parse(dst)
            .map(Destination::Room)
            .map_err(|e| e.to_string())
    } else {
        Ok(Destination::Peer(Text::from(dst)))
    }
}

/// Reads a HISTORY query: `<n>`, `<n> before <msg_id>`, `<n> after <msg_id>`.
fn history_query(body: &str) -> Result<HistoryQuery, String> {
    let usage =
        "write the query as `<n>`, `<n> before <msg_id>` or `<n> after <msg_id>`, n from 1 to 500";
    let words: Vec<&str> = body.split_whitespace().collect();
    let count = |word: &str| -> Result<usize, String> {
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{}` is not a count: {usage}",
                word.chars().take(40).collect::<String>()
            ));
        }
        // A count too large for any integer is still "more than 500".
        let n = word.parse::<u64>().unwrap_or(u64::MAX);
        if n == 0 {
            return Err(format!("a count of 0 asks for nothing: {usage}"));
        }
        Ok(usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(HISTORY_MAX_ITEMS))
    };
    match words[..] {
        [n] => Ok(HistoryQuery {
            n: count(n)?,
            anchor: None,
        }),
        [n, side, id] => {
            let side = match side {
                "before" => Side::Before,
                "after" => Side::After,
                _ => return Err(format!("unknown query: {usage}")),
            };
            Ok(HistoryQuery {
                n: count(n)?,
                anchor: Some((side, Text::from(id))),
            })
        }
        [] => Err(format!("empty query: {usage}")),
        _ => Err(format!("unknown query: {usage}")),
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
