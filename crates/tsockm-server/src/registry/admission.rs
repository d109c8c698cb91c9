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
            if !frame.sender_id.is_empty() && frame.sender_id != peer {
                return refuse(
                    action,
                    Status::Forbidden,
                    format!(
                        "SENDER_ID `{}` is not this connection's peer id",
                        frame.sender_id
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
        Taken::Comm if frame.sender_id.is_empty() => {
            check_username(&frame.body).map_err(|e| bad(e.to_string()))?;
            Request::Register {
                username: Text::from(frame.body.as_str()),
            }
        }
        Taken::Comm => Request::Resume {
            peer_id: Text::from(frame.sender_id.as_str()),
            token: frame.body,
            last_msg_id: Text::from(frame.src.as_str()),
        },
        Taken::CommEnd => Request::End,
        Taken::HealthAnswer => Request::HealthAnswer,
        Taken::Msg => Request::Msg {
            to: destination(&frame.dst, true).map_err(bad)?,
            text: frame.body,
        },
        Taken::GetPeer => Request::GetPeer { id: frame.body },
        Taken::Join => Request::Join {
            room: RoomName::parse(&frame.dst).map_err(|e| bad(e.to_string()))?,
        },
        Taken::Part => Request::Part {
            room: RoomName::parse(&frame.dst).map_err(|e| bad(e.to_string()))?,
        },
        Taken::Rooms => Request::Rooms,
        Taken::History => Request::History {
            conversation: destination(&frame.dst, false).map_err(bad)?,
            query: history_query(&frame.body).map_err(bad)?,
        },
        Taken::Auth => Request::Auth {
            password: frame.body,
        },
    };
    Ok(request)
}

/// Reads a DST: `*` (or, for a message, empty) is the lobby, `#...` a room,
/// anything else a peer id.
fn destination(dst: &Text, empty_is_lobby: bool) -> Result<Destination, String> {
    if dst == BROADCAST || (dst.is_empty() && empty_is_lobby) {
        Ok(Destination::Lobby)
    } else if dst.is_empty() {
        Err("no conversation: give `*`, a #room or a peer id in DST".to_owned())
    } else if dst.starts_with('#') {
        RoomName::parse(dst)
            .map(Destination::Room)
            .map_err(|e| e.to_string())
    } else {
        Ok(Destination::Peer(dst.clone()))
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
mod tests {
    //! Section 9's order of checks, with section 14's additions, as a table:
    //! one row per step (and the rows that show one step before the next).

    use super::*;

    const ME: &str = "meMEme1234";

    fn facts(peer: Option<&'static str>, needs_auth: bool, over_rate: bool) -> ConnFacts<'static> {
        ConnFacts {
            peer,
            needs_auth,
            over_rate,
        }
    }

    /// A verdict in a few words: `ERR MSG 403`, `DROP`, or the request.
    fn render(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Refuse(r) => format!("ERR {} {}", r.action, r.status),
            Verdict::Drop => "DROP".to_owned(),
            Verdict::Accept(request) => format!("{request:?}"),
        }
    }

    fn item(line: &str) -> Result<Frame, FrameError> {
        line.parse::<Frame>()
    }

    /// The table: a name, what the registry knows of the connection, the
    /// line, and the verdict in a few words (see `render`).
    #[rustfmt::skip]
    fn rows() -> Vec<(&'static str, ConnFacts<'static>, String, &'static str)> {
        let new = facts(None, false, false);
        let new_over = facts(None, false, true);
        let locked = facts(None, true, false);
        let locked_over = facts(None, true, true);
        let me = facts(Some(ME), false, false);
        let me_over = facts(Some(ME), false, true);
        let rows = [
            // 2. Malformed; over the rate, junk is dropped without an answer.
            ("2 malformed", me, "REQ::MSG::200", "ERR NONE 400"),
            ("2 unknown type", new, "ASK::MSG::200::::::::", "ERR NONE 400"),
            ("2 unknown status", me, "REQ::MSG::201::::::*::x", "ERR NONE 400"),
            ("2 junk over the rate", me_over, "REQ::MSG", "DROP"),
            ("2 junk over the rate, unregistered", new_over, "junk", "DROP"),
            // 3. Unknown action.
            ("3 unknown action", me, "REQ::PING::200::::::::", "ERR NONE 405"),
            ("3 over the rate", me_over, "REQ::PING::200::::::::", "DROP"),
            // 4. Not taken from clients, before "not registered".
            ("4 RES::MSG", me, "RES::MSG::200::::::*::x", "ERR MSG 405"),
            ("4 ERR", me, "ERR::COMM::400::::::::x", "ERR COMM 405"),
            ("4 REQ::NTFY_JOIN", new, "REQ::NTFY_JOIN::200::::::::", "ERR NTFY_JOIN 405"),
            ("4 RES::JOIN", me, "RES::JOIN::200::::::#a::", "ERR JOIN 405"),
            ("4 before 8", me_over, "REQ::NTFY_KILL::200::::::::", "ERR NTFY_KILL 405"),
            // 5. Not registered: anything but COMM (and AUTH, section 14).
            ("5 MSG", new, "REQ::MSG::200::::::*::hi", "ERR MSG 400"),
            ("5 COMM_END", new, "REQ::COMM_END::200::::::::", "ERR COMM_END 400"),
            ("5 RES::COMM", new, "RES::COMM::200::::::::OK", "ERR COMM 400"),
            ("5 JOIN", new, "REQ::JOIN::200::::::#a::", "ERR JOIN 400"),
            ("5 HISTORY", new, "REQ::HISTORY::200::::::*::5", "ERR HISTORY 400"),
            ("5 before 8", new_over, "REQ::GET_PEER::200::::::::x", "ERR GET_PEER 400"),
            // Section 14: COMM before AUTH on a server with a password.
            ("14 COMM before AUTH", locked, "REQ::COMM::200::::::::alice", "ERR COMM 401"),
            ("14 resume before AUTH", locked, "REQ::COMM::200::id::::::tok", "ERR COMM 401"),
            ("14 401 before 8", locked_over, "REQ::COMM::200::::::::alice", "ERR COMM 401"),
            ("14 5 before 401", locked, "REQ::MSG::200::::::*::x", "ERR MSG 400"),
            ("14 AUTH before registering", locked, "REQ::AUTH::200::::::::pw", r#"Auth { password: "pw" }"#),
            ("14 AUTH over the rate", locked_over, "REQ::AUTH::200::::::::pw", "ERR AUTH 429"),
            ("14 AUTH after registering", me, "REQ::AUTH::200::::::::pw", r#"Auth { password: "pw" }"#),
            // 6. A second COMM, before the SENDER_ID check.
            ("6 second COMM", me, "REQ::COMM::200::::::::alice", "ERR COMM 400"),
            ("6 before 7", me, "REQ::COMM::200::someone::::::tok", "ERR COMM 400"),
            // 7. SENDER_ID naming someone else, health answers included.
            ("7 MSG", me, "REQ::MSG::200::someone::::*::hi", "ERR MSG 403"),
            ("7 health answer", me, "RES::COMM::200::someone::::::OK", "ERR COMM 403"),
            ("7 JOIN", me, "REQ::JOIN::200::someone::::#a::", "ERR JOIN 403"),
            ("7 before 8", me_over, "REQ::MSG::200::someone::::*::hi", "ERR MSG 403"),
            ("7 own id is fine", me, "REQ::ROOMS::200::meMEme1234::::::", "Rooms"),
            // 8. The rate.
            ("8 MSG", me_over, "REQ::MSG::200::::::*::hi", "ERR MSG 429"),
            ("8 registration", new_over, "REQ::COMM::200::::::::alice", "ERR COMM 429"),
            ("8 unsolicited health answer", me_over, "RES::COMM::200::::::::OK", "ERR COMM 429"),
            ("8 before 9", me_over, "REQ::JOIN::200::::::#a b::", "ERR JOIN 429"),
            // 9. The action's own checks that need only the frame.
            ("9 username", new, "REQ::COMM::200::::::::", "ERR COMM 400"),
            ("9 username with ::", new, "REQ::COMM::200::::::::a::b", "ERR COMM 400"),
            ("9 room syntax", me, "REQ::JOIN::200::::::#a b::", "ERR JOIN 400"),
            ("9 room without #", me, "REQ::PART::200::::::a::", "ERR PART 400"),
            ("9 room in a MSG", me, "REQ::MSG::200::::::#::x", "ERR MSG 400"),
            ("9 history query", me, "REQ::HISTORY::200::::::*::0", "ERR HISTORY 400"),
            ("9 history conversation", me, "REQ::HISTORY::200::::::#a::b::5", "ERR HISTORY 400"),
            // Accepted.
            ("register", new, "REQ::COMM::200::::::::alice", r#"Register { username: "alice" }"#),
            ("resume", new, "REQ::COMM::200::id1::m1::::tok", r#"Resume { peer_id: "id1", token: "tok", last_msg_id: "m1" }"#),
            ("broadcast", me, "REQ::MSG::200::::::*::hi", r#"Msg { to: Lobby, text: "hi" }"#),
            ("broadcast, empty DST", me, "REQ::MSG::200::::::::hi", r#"Msg { to: Lobby, text: "hi" }"#),
            ("room message", me, "REQ::MSG::200::::::#Rust::hi", r##"Msg { to: Room(RoomName("#rust")), text: "hi" }"##),
            ("direct", me, "REQ::MSG::200::::::id2::hi", r#"Msg { to: Peer("id2"), text: "hi" }"#),
            ("get peer", me, "REQ::GET_PEER::200::::::::id2", r#"GetPeer { id: "id2" }"#),
            ("COMM_END", me, "REQ::COMM_END::200::::::::", "End"),
            ("health answer", me, "RES::COMM::200::meMEme1234::::::OK", "HealthAnswer"),
            ("join", me, "REQ::JOIN::200::::::#a::", r##"Join { room: RoomName("#a") }"##),
            ("rooms", me, "REQ::ROOMS::200::::::::", "Rooms"),
            ("history", me, "REQ::HISTORY::200::::::id2::5 after m9", r#"History { conversation: Peer("id2"), query: HistoryQuery { n: 5, anchor: Some((After, "m9")) } }"#),
        ];
        rows.into_iter().map(|(name, facts, line, verdict)| (name, facts, line.to_owned(), verdict)).collect()
    }

    #[test]
    fn the_order_of_checks() {
        for (name, facts, line, expected) in rows() {
            let verdict = judge(item(&line), &facts);
            assert_eq!(render(&verdict), expected, "row `{name}`: {line}");
        }
    }

    #[test]
    fn tokens_are_taken_by_all_but_comm_end_and_solicited_health_answers() {
        let me = facts(Some(ME), false, false);
        let new = facts(None, false, false);
        let end = item("REQ::COMM_END::200::::::::");
        let answer = item("RES::COMM::200::::::::OK");
        let msg = item("REQ::MSG::200::::::*::x");
        assert!(!takes_token(&end, &me, false));
        assert!(!takes_token(&end, &new, false));
        assert!(!takes_token(&answer, &me, true));
        assert!(takes_token(&answer, &me, false));
        assert!(takes_token(&answer, &new, true));
        assert!(takes_token(&msg, &me, true));
        assert!(takes_token(&item("junk"), &me, true));
    }

    #[test]
    fn history_queries() {
        let ok = [
            ("5", 5, None),
            ("1", 1, None),
            ("500", 500, None),
            ("501", 500, None),
            ("99999999999999999999999", 500, None),
            ("  7  ", 7, None),
            ("3 before abc", 3, Some((Side::Before, "abc"))),
            ("3 after abc", 3, Some((Side::After, "abc"))),
        ];
        for (body, n, anchor) in ok {
            let query = history_query(body).unwrap();
            assert_eq!(query.n, n, "{body:?}");
            assert_eq!(
                query.anchor.as_ref().map(|(s, id)| (*s, id.as_str())),
                anchor,
                "{body:?}"
            );
        }
        for bad in [
            "",
            "0",
            "abc",
            "-5",
            "5 before",
            "5 after",
            "5 around x",
            "5 before a b",
            "1.5",
        ] {
            assert!(history_query(bad).is_err(), "{bad:?}");
        }
    }
}
