//! [`ServerEvent`]: every frame the server sends, turned into one typed value
//! in one place ([`ServerEvent::from_frame`]), so that the session never
//! matches `(Kind, Action)` pairs or compares reason strings itself.
//!
//! Pure: no I/O, no session state. What a frame means *to this client* (is
//! this JOIN ours? is this GET_PEER answer a marker?) is the session's
//! business; this file only says what the server said.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tsockm_proto::{Action, Frame, Kind, SERVER_ID, Status, Text, reason};

use crate::{Conversation, MsgId, PeerId, RoomName};

/// The secret that lets a client resume its session; never shown or logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ResumeToken(pub(crate) Text);

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(***)")
    }
}

/// Why the server ended the session (`RES::COMM_END`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The server is shutting down (it may come back and restore sessions).
    ShuttingDown(Text),
    /// Another connection resumed this session.
    ResumedElsewhere(Text),
    /// Anything else: the answer to our own COMM_END, or `:kill`.
    Other(Text),
}

/// One stored message from a HISTORY answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryItem {
    pub author: PeerId,
    pub id: Option<MsgId>,
    pub conversation: Conversation,
    pub time: SystemTime,
    pub username: Text,
    pub text: Text,
}

/// What one frame from the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerEvent {
    /// `REQ::COMM`: a health check, to be answered at once.
    HealthCheck,
    /// `RES::COMM`: registered or resumed, with the id and a new token.
    Registered { id: PeerId, token: ResumeToken },
    /// `RES::COMM` whose body is not `<peer_id> <resume_token>`.
    BadRegistration,
    /// `RES::AUTH`: the server password was taken.
    AuthOk,
    /// `RES::MSG`: a relayed message.
    Message {
        from: PeerId,
        id: Option<MsgId>,
        dst: Text,
        text: Text,
    },
    /// `RES::NTFY_JOIN`: a peer registered (or a roster line, DST = us).
    PeerJoined {
        id: PeerId,
        dst: Text,
        username: Text,
    },
    /// `RES::NTFY_KILL`: a peer left or was removed.
    PeerLeft { id: PeerId, username: Text },
    /// `RES::GET_PEER`: a lookup's answer.
    PeerFound { id: PeerId, username: Text },
    /// `RES::JOIN`: a peer is in a room.
    RoomJoin {
        member: PeerId,
        room: RoomName,
        username: Text,
    },
    /// `RES::PART`: a peer left a room.
    RoomPart {
        member: PeerId,
        room: RoomName,
        username: Text,
    },
    /// `RES::ROOMS`: every room with its member count.
    Rooms(Vec<(RoomName, usize)>),
    /// `RES::HISTORY` item.
    HistoryItem(HistoryItem),
    /// `RES::HISTORY` end frame.
    HistoryEnd {
        conversation: Conversation,
        count: usize,
        more: bool,
    },
    /// `RES::COMM_END`: the server ended the session (or confirmed ours).
    Ended(EndReason),
    /// An `ERR` frame: a request refused, or the server giving up on us.
    Refused {
        action: Action,
        status: Status,
        reason: Text,
    },
    /// Anything else (a frame the client has no use for).
    Ignored,
}

impl ServerEvent {
    /// What `frame` says.
    pub(crate) fn from_frame(frame: Frame) -> ServerEvent {
        let (kind, action, status) = (frame.kind, frame.action, frame.status);
        let sender_id = Text::from(frame.sender_id());
        let src = Text::from(frame.src());
        let dst = Text::from(frame.dst());
        let body = frame.body_text();
        match kind {
            Kind::Err => {
                return ServerEvent::Refused {
                    action,
                    status,
                    reason: body,
                };
            }
            Kind::Req if action == Action::Comm => return ServerEvent::HealthCheck,
            Kind::Res => {}
            _ => return ServerEvent::Ignored,
        }
        match action {
            Action::Comm => match body.split_once(' ') {
                Some((id, token)) if !id.is_empty() && !token.is_empty() => {
                    ServerEvent::Registered {
                        id: PeerId::new(id),
                        token: ResumeToken(Text::from(token)),
                    }
                }
                _ => ServerEvent::BadRegistration,
            },
            Action::Msg => ServerEvent::Message {
                from: PeerId::new(sender_id),
                id: MsgId::from_src(&src),
                dst,
                text: body,
            },
            Action::NtfyJoin => ServerEvent::PeerJoined {
                id: PeerId::new(sender_id),
                dst,
                username: body,
            },
            Action::NtfyKill => ServerEvent::PeerLeft {
                id: PeerId::new(sender_id),
                username: body,
            },
            Action::GetPeer => ServerEvent::PeerFound {
                id: PeerId::new(sender_id),
                username: body,
            },
            Action::Join | Action::Part => {
                let Ok(room) = RoomName::parse(&dst) else {
                    return ServerEvent::Ignored;
                };
                let (member, username) = (PeerId::new(sender_id), body);
                if action == Action::Join {
                    ServerEvent::RoomJoin {
                        member,
                        room,
                        username,
                    }
                } else {
                    ServerEvent::RoomPart {
                        member,
                        room,
                        username,
                    }
                }
            }
            Action::Rooms => ServerEvent::Rooms(parse_rooms(&body)),
            Action::Auth => ServerEvent::AuthOk,
            Action::History if sender_id.as_str() == SERVER_ID => {
                let (count, more) = parse_history_end(&body);
                ServerEvent::HistoryEnd {
                    conversation: Conversation::from_wire(&dst),
                    count,
                    more,
                }
            }
            Action::History => match parse_history_item(sender_id, &src, &dst, &body) {
                Some(item) => ServerEvent::HistoryItem(item),
                None => ServerEvent::Ignored,
            },
            Action::CommEnd => ServerEvent::Ended(if body.starts_with(reason::SHUTTING_DOWN) {
                EndReason::ShuttingDown(body)
            } else if body.as_str() == reason::RESUMED_ELSEWHERE {
                EndReason::ResumedElsewhere(body)
            } else {
                EndReason::Other(body)
            }),
            _ => ServerEvent::Ignored,
        }
    }
}

/// `#name <count>` lines.
fn parse_rooms(body: &str) -> Vec<(RoomName, usize)> {
    body.lines()
        .filter_map(|line| {
            let (name, count) = line.split_once(' ')?;
            Some((RoomName::parse(name).ok()?, count.trim().parse().ok()?))
        })
        .collect()
}

/// `end <count>[ more]`.
fn parse_history_end(body: &str) -> (usize, bool) {
    let mut words = body.split_whitespace().skip(1);
    let count = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    (count, words.next() == Some("more"))
}

/// `<unix ms>::<author username>::<text>` in BODY.
fn parse_history_item(author: Text, src: &Text, dst: &Text, body: &Text) -> Option<HistoryItem> {
    let (ms, rest) = body.split_once("::")?;
    let (username, text) = rest.split_once("::")?;
    let ms: u64 = ms.parse().ok()?;
    Some(HistoryItem {
        author: PeerId::new(author),
        id: MsgId::from_src(src),
        conversation: Conversation::from_wire(dst),
        time: UNIX_EPOCH + Duration::from_millis(ms),
        username: Text::from(username),
        text: Text::from(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: ServerEvent) {
        let frame: Frame = line.parse().expect("a frame");
        assert_eq!(ServerEvent::from_frame(frame), expected, "{line}");
    }

    fn t(s: &str) -> Text {
        Text::from(s)
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).unwrap()
    }

    #[test]
    fn every_frame_a_client_gets() {
        check(
            "REQ::COMM::200::server::127.0.0.1:6969::id1::check?",
            ServerEvent::HealthCheck,
        );
        check(
            "RES::COMM::200::server::srv::addr::abcDEF1234 tok-en_1",
            ServerEvent::Registered {
                id: PeerId::new("abcDEF1234"),
                token: ResumeToken(t("tok-en_1")),
            },
        );
        check(
            "RES::COMM::200::server::srv::addr::noToken",
            ServerEvent::BadRegistration,
        );
        check(
            "RES::MSG::200::id1::m42::*::hi :: there",
            ServerEvent::Message {
                from: PeerId::new("id1"),
                id: Some(MsgId::new("m42")),
                dst: t("*"),
                text: t("hi :: there"),
            },
        );
        check(
            "RES::MSG::200::id1::127.0.0.1:6969::*::v1",
            ServerEvent::Message {
                from: PeerId::new("id1"),
                id: None,
                dst: t("*"),
                text: t("v1"),
            },
        );
        check(
            "RES::NTFY_JOIN::200::id2::srv::*::bob",
            ServerEvent::PeerJoined {
                id: PeerId::new("id2"),
                dst: t("*"),
                username: t("bob"),
            },
        );
        check(
            "RES::NTFY_KILL::200::id2::srv::*::bob",
            ServerEvent::PeerLeft {
                id: PeerId::new("id2"),
                username: t("bob"),
            },
        );
        check(
            "RES::JOIN::200::id2::srv::#Rust::bob",
            ServerEvent::RoomJoin {
                member: PeerId::new("id2"),
                room: room("#rust"),
                username: t("bob"),
            },
        );
        check(
            "RES::PART::200::id2::srv::#rust::bob",
            ServerEvent::RoomPart {
                member: PeerId::new("id2"),
                room: room("#rust"),
                username: t("bob"),
            },
        );
        check(
            "RES::ROOMS::200::server::srv::id1::#a 2\\n#b.c 10",
            ServerEvent::Rooms(vec![(room("#a"), 2), (room("#b.c"), 10)]),
        );
        check(
            "RES::ROOMS::200::server::srv::id1::",
            ServerEvent::Rooms(vec![]),
        );
        check(
            "RES::HISTORY::200::id2::m7::#rust::1700000000123::bob::a :: b",
            ServerEvent::HistoryItem(HistoryItem {
                author: PeerId::new("id2"),
                id: Some(MsgId::new("m7")),
                conversation: Conversation::Room(room("#rust")),
                time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                username: t("bob"),
                text: t("a :: b"),
            }),
        );
        check(
            "RES::HISTORY::200::server::srv::*::end 50 more",
            ServerEvent::HistoryEnd {
                conversation: Conversation::Lobby,
                count: 50,
                more: true,
            },
        );
        check(
            "RES::HISTORY::200::server::srv::id2::end 0",
            ServerEvent::HistoryEnd {
                conversation: Conversation::Direct(PeerId::new("id2")),
                count: 0,
                more: false,
            },
        );
        check(
            "RES::COMM_END::200::server::srv::id1::server shutting down (restart)",
            ServerEvent::Ended(EndReason::ShuttingDown(t("server shutting down (restart)"))),
        );
        check(
            "RES::COMM_END::200::server::srv::id1::resumed elsewhere",
            ServerEvent::Ended(EndReason::ResumedElsewhere(t("resumed elsewhere"))),
        );
        check(
            "RES::COMM_END::200::server::srv::id1::killed by the operator",
            ServerEvent::Ended(EndReason::Other(t("killed by the operator"))),
        );
        check(
            "ERR::MSG::429::server::srv::id1::too many requests",
            ServerEvent::Refused {
                action: Action::Msg,
                status: Status::TooManyRequests,
                reason: t("too many requests"),
            },
        );
        check("RES::AUTH::200::server::srv::addr::OK", ServerEvent::AuthOk);
        check("RES::NONE::200::::::::", ServerEvent::Ignored);
        check("REQ::MSG::200::::::::x", ServerEvent::Ignored);
    }

    proptest::proptest! {
        /// Whatever a server sends, reading it never panics.
        #[test]
        fn any_frame_is_read_without_panicking(
            kind in proptest::sample::select(Kind::ALL.to_vec()),
            action in proptest::sample::select(Action::ALL.to_vec()),
            sender in "[a-z0-9#*]{0,12}",
            src in "[A-Za-z0-9.:]{0,40}",
            dst in "[A-Za-z0-9#*._-]{0,40}",
            body in "\\PC{0,60}",
        ) {
            let frame = Frame::new(kind, action, Status::Ok)
                .with_sender(sender)
                .with_src(src)
                .with_dst(dst)
                .with_body(body);
            let _ = ServerEvent::from_frame(frame);
        }
    }

    #[test]
    fn tokens_never_show() {
        let token = ResumeToken(t("secret-token-value"));
        assert!(!format!("{token:?}").contains("secret"));
    }
}
