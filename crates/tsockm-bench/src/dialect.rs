//! [`Dialect`]: the few things a benchmark client says and hears, in TsockM
//! and in IRC.
//!
//! Sending goes through `tsockm-proto`'s frame builders. Receiving has a fast
//! path for the lines that make up almost all traffic (relayed messages, join
//! notices and room joins), which looks at a few bytes instead of decoding
//! the whole frame, so that the generator is not the bottleneck; every other
//! TsockM line is decoded with [`Frame::from_line`]. This file does no I/O.
//!
//! A client talks in one conversation: the lobby (TsockM's broadcast `*`, or
//! the IRC channel [`IRC_CHANNEL`] that every fan-out client joins) or one
//! room (a TsockM v2 room or an IRC channel of that name), passed as `room`.

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use tsockm_proto::{Action, BROADCAST, Frame, Kind, Status};

/// The IRC channel every fan-out benchmark client joins.
pub const IRC_CHANNEL: &str = "#bench";

/// Which protocol the server speaks.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// TsockM v2 (see `docs/protocol.md`); rooms are joined with `JOIN`.
    Tsockm,
    /// IRC (RFC 2812): NICK/USER, JOIN one channel, PRIVMSG to it.
    Irc {
        /// `name:password` of an `[Operator]` block: the client sends OPER
        /// and sets user mode `+F` (ngircd's relaxed flood protection).
        oper: Option<(String, String)>,
        /// Whether to JOIN a channel after registering (idle runs only
        /// register, as a TsockM client does).
        join: bool,
    },
}

/// What one received line means to a benchmark client.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A relayed chat message: the conversation it was addressed to (TsockM's
    /// DST, IRC's PRIVMSG target) and its body.
    Message {
        /// `*`, a `#room` or an IRC channel.
        to: &'a [u8],
        /// The text.
        body: &'a [u8],
    },
    /// Registration accepted; for TsockM, with the peer id.
    Registered(String),
    /// The client's own join is confirmed: IRC's end of NAMES, or TsockM's
    /// own `RES::JOIN` that ends the room's roster.
    Joined,
    /// TsockM: this many other peers became known on the server (the roster
    /// and the announcements of later registrations, `NTFY_JOIN`).
    LobbyPeers(usize),
    /// This many other members of the client's channel or room became known
    /// (IRC's NAMES and JOIN, TsockM's room roster and later room joins).
    ChannelPeers(usize),
    /// The server asks for an answer (health check, PING): send these bytes.
    Reply(Bytes),
    /// The server refuses something or says goodbye; the text says what.
    Refused(String),
    /// Anything else (notices, MOTD, leave notices, ...).
    Other,
}

impl Dialect {
    /// The first bytes a client with this name sends.
    pub fn login(&self, name: &str) -> Bytes {
        match self {
            Dialect::Tsockm => encode(&Frame::register(name)),
            Dialect::Irc { .. } => {
                Bytes::from(format!("NICK {name}\r\nUSER {name} 0 * :{name}\r\n"))
            }
        }
    }

    /// What to send once registration is accepted: TsockM joins `room`, if
    /// any; IRC opers up and joins `room` or [`IRC_CHANNEL`].
    pub fn after_registration(&self, name: &str, room: Option<&str>) -> Option<Bytes> {
        match self {
            Dialect::Tsockm => room.map(|room| encode(&Frame::join(room))),
            Dialect::Irc { oper, join } => {
                let mut text = String::new();
                if let Some((user, password)) = oper {
                    text.push_str(&format!("OPER {user} {password}\r\nMODE {name} +F\r\n"));
                }
                if *join {
                    let channel = room.unwrap_or(IRC_CHANNEL);
                    text.push_str(&format!("JOIN {channel}\r\n"));
                }
                (!text.is_empty()).then(|| Bytes::from(text))
            }
        }
    }

    /// Whether a client is set up once registered, or only once its own
    /// join is confirmed (IRC's channel, TsockM's room).
    pub fn needs_join(&self, room: Option<&str>) -> bool {
        match self {
            Dialect::Tsockm => room.is_some(),
            Dialect::Irc { join, .. } => *join,
        }
    }

    /// Whether every registration is announced to every registered client
    /// (TsockM's `NTFY_JOIN`; IRC announces only channel joins).
    pub fn announces_registrations(&self) -> bool {
        matches!(self, Dialect::Tsockm)
    }

    /// Where the messages of a client in `room` (or in the lobby) are
    /// addressed, as relayed messages show it.
    pub fn conversation<'a>(&self, room: Option<&'a str>) -> &'a str {
        match (self, room) {
            (_, Some(room)) => room,
            (Dialect::Tsockm, None) => BROADCAST,
            (Dialect::Irc { .. }, None) => IRC_CHANNEL,
        }
    }

    /// Appends one message carrying `body` to `room` (or to the lobby) to
    /// `out`.
    pub fn message(&self, room: Option<&str>, body: &str, out: &mut BytesMut) {
        match self {
            Dialect::Tsockm => {
                // Empty SENDER_ID and SRC, DST `*` or a valid room name
                // always validate.
                let frame = match room {
                    Some(room) => Frame::direct(room, body),
                    None => Frame::broadcast(body),
                };
                let _ = frame.encode(out);
            }
            Dialect::Irc { .. } => {
                out.extend_from_slice(b"PRIVMSG ");
                out.extend_from_slice(self.conversation(room).as_bytes());
                out.extend_from_slice(b" :");
                out.extend_from_slice(body.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The polite goodbye.
    pub fn quit(&self) -> Bytes {
        match self {
            Dialect::Tsockm => encode(&Frame::comm_end()),
            Dialect::Irc { .. } => Bytes::from_static(b"QUIT :bench done\r\n"),
        }
    }

    /// Interprets one line (without its `\n`; a trailing `\r` is allowed).
    /// `me` is the client's own peer id (TsockM) or nick (IRC).
    pub fn classify<'a>(&self, line: &'a [u8], me: &str) -> Event<'a> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Dialect::Tsockm => classify_tsockm(line, me),
            Dialect::Irc { .. } => classify_irc(line, me),
        }
    }
}

fn encode(frame: &Frame) -> Bytes {
    // The frames built here have valid headers; an empty buffer would only
    // make the server answer 400, which the run then reports.
    frame.to_bytes().unwrap_or_default()
}

/// TsockM: relayed messages, join notices and room joins by prefix, the
/// rest decoded.
fn classify_tsockm<'a>(line: &'a [u8], me: &str) -> Event<'a> {
    if let Some(rest) = line.strip_prefix(b"RES::MSG::200::") {
        // `<author>::<msg_id>::<dst>::<body>`. BODY is the last field and
        // benchmark bodies contain no ':'; neither does DST (`*`, a peer id
        // or a room name).
        let Some(i) = memchr::memrchr(b':', rest) else {
            return Event::Other;
        };
        let head = &rest[..i.saturating_sub(1)];
        let to = memchr::memrchr(b':', head).map_or(head, |j| &head[j + 1..]);
        return Event::Message {
            to,
            body: &rest[i + 1..],
        };
    }
    if line.starts_with(b"RES::NTFY_JOIN::") {
        return Event::LobbyPeers(1);
    }
    if let Some(rest) = line.strip_prefix(b"RES::JOIN::200::") {
        // `<joiner id>::<srv>::<#room>::<username>`: the client's own JOIN
        // ends its roster.
        let joiner = memmem::find(rest, b"::").map_or(rest, |i| &rest[..i]);
        return if joiner == me.as_bytes() {
            Event::Joined
        } else {
            Event::ChannelPeers(1)
        };
    }
    let frame = match Frame::from_line(Bytes::copy_from_slice(line)) {
        Ok(frame) => frame,
        Err(e) => return Event::Refused(format!("undecodable line from server: {e}")),
    };
    match (frame.kind, frame.action, frame.status) {
        (Kind::Res, Action::Comm, Status::Ok) if frame.sender_id() == "server" => {
            let peer_id = frame.body().split(' ').next().unwrap_or_default();
            Event::Registered(peer_id.to_owned())
        }
        (Kind::Req, Action::Comm, Status::Ok) => {
            let id = if me.is_empty() { frame.dst() } else { me };
            Event::Reply(encode(&Frame::health_answer(id)))
        }
        (Kind::Err, _, status) => Event::Refused(format!(
            "ERR {} {}: {}",
            frame.action,
            status.as_str(),
            frame.body()
        )),
        (Kind::Res, Action::CommEnd, _) => Event::Refused(format!("COMM_END: {}", frame.body())),
        _ => Event::Other,
    }
}

/// IRC: `[:prefix] COMMAND params... [:trailing]`.
fn classify_irc<'a>(line: &'a [u8], me: &str) -> Event<'a> {
    let (prefix, rest) = match line.strip_prefix(b":") {
        Some(after) => match memchr::memchr(b' ', after) {
            Some(i) => (&after[..i], &after[i + 1..]),
            None => return Event::Other,
        },
        None => (&line[..0], line),
    };
    let (command, params) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[..0]),
    };
    let trailing = || match memmem::find(params, b" :") {
        Some(i) => &params[i + 2..],
        None => params.strip_prefix(b":").unwrap_or(params),
    };
    let nick = prefix.split(|&b| b == b'!').next().unwrap_or(prefix);
    match command {
        b"PRIVMSG" => Event::Message {
            to: params.split(|&b| b == b' ').next().unwrap_or(params),
            body: trailing(),
        },
        b"PING" => {
            let mut pong = b"PONG :".to_vec();
            pong.extend_from_slice(trailing());
            pong.extend_from_slice(b"\r\n");
            Event::Reply(Bytes::from(pong))
        }
        b"001" => Event::Registered(me.to_owned()),
        b"366" => Event::Joined,
        b"353" => {
            let others = trailing()
                .split(|&b| b == b' ')
                .map(|n| n.trim_ascii_start())
                .map(|n| n.strip_prefix(b"@").or(n.strip_prefix(b"+")).unwrap_or(n))
                .filter(|n| !n.is_empty() && *n != me.as_bytes())
                .count();
            Event::ChannelPeers(others)
        }
        b"JOIN" if nick != me.as_bytes() => Event::ChannelPeers(1),
        b"ERROR" => Event::Refused(format!("ERROR {}", String::from_utf8_lossy(trailing()))),
        // 4xx and 5xx numerics are errors; 433 (nick in use) is among them.
        [b'4' | b'5', b'0'..=b'9', b'0'..=b'9'] => Event::Refused(format!(
            "{} {}",
            String::from_utf8_lossy(command),
            String::from_utf8_lossy(params)
        )),
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irc() -> Dialect {
        Dialect::Irc {
            oper: None,
            join: true,
        }
    }

    #[test]
    fn tsockm_fast_path_agrees_with_the_decoder() {
        for dst in ["*", "#r42", "Xy12345678", ""] {
            let relayed = Frame::response(Action::Msg)
                .with_sender("Ab3dE6gH9k")
                .with_src("msgID77")
                .with_dst(dst)
                .with_body("3 17 123456 xxxx");
            let bytes = relayed.to_bytes().expect("valid frame");
            let line = &bytes[..bytes.len() - 1];
            let decoded = Frame::from_line(Bytes::copy_from_slice(line)).expect("decodes");
            assert_eq!(
                Dialect::Tsockm.classify(line, "me"),
                Event::Message {
                    to: decoded.dst().as_bytes(),
                    body: decoded.body().as_bytes()
                },
                "{dst:?}"
            );
        }
    }

    #[test]
    fn tsockm_room_joins() {
        let d = Dialect::Tsockm;
        // A member already there (roster), then the client's own JOIN.
        assert_eq!(
            d.classify(b"RES::JOIN::200::other12345::s::#r3::b30", "me12345678"),
            Event::ChannelPeers(1)
        );
        assert_eq!(
            d.classify(b"RES::JOIN::200::me12345678::s::#r3::b31", "me12345678"),
            Event::Joined
        );
        assert!(matches!(
            d.classify(
                b"ERR::JOIN::403::server::s::me12345678::too many rooms",
                "me"
            ),
            Event::Refused(_)
        ));
        assert_eq!(
            d.after_registration("b7", Some("#r0")),
            Some(Bytes::from_static(b"REQ::JOIN::200::::::#r0::\n"))
        );
        assert_eq!(d.after_registration("b7", None), None);
        assert!(d.needs_join(Some("#r0")) && !d.needs_join(None));
        assert_eq!(
            (d.conversation(None), d.conversation(Some("#r1"))),
            ("*", "#r1")
        );
    }

    #[test]
    fn tsockm_control_lines() {
        let d = Dialect::Tsockm;
        assert_eq!(
            d.classify(
                b"RES::COMM::200::server::127.0.0.1:1::127.0.0.1:2::Ab3dE6gH9k tok",
                ""
            ),
            Event::Registered("Ab3dE6gH9k".into())
        );
        assert_eq!(
            d.classify(b"RES::NTFY_JOIN::200::x::s::*::bob\r", "me"),
            Event::LobbyPeers(1)
        );
        assert_eq!(
            d.classify(b"REQ::COMM::200::server::s::id1::check?", "id1"),
            Event::Reply(Bytes::from_static(b"RES::COMM::200::id1::::::OK\n"))
        );
        assert!(matches!(
            d.classify(b"ERR::MSG::429::server::s::id1::slow down", "id1"),
            Event::Refused(_)
        ));
        assert_eq!(
            d.classify(b"RES::NTFY_KILL::200::x::s::*::bob", "me"),
            Event::Other
        );
    }

    #[test]
    fn tsockm_sends_through_the_builders() {
        let mut out = BytesMut::new();
        Dialect::Tsockm.message(None, "1 2 3", &mut out);
        assert_eq!(&out[..], b"REQ::MSG::200::::::*::1 2 3\n");
        out.clear();
        Dialect::Tsockm.message(Some("#r9"), "1 2 3", &mut out);
        assert_eq!(&out[..], b"REQ::MSG::200::::::#r9::1 2 3\n");
        assert_eq!(
            Dialect::Tsockm.login("b7"),
            Bytes::from_static(b"REQ::COMM::200::::::::b7\n")
        );
    }

    #[test]
    fn irc_lines() {
        let d = irc();
        assert_eq!(
            d.classify(b":b1!~b1@127.0.0.1 PRIVMSG #bench :1 2 3 xx\r", "b2"),
            Event::Message {
                to: b"#bench",
                body: b"1 2 3 xx"
            }
        );
        assert_eq!(
            d.classify(b"PING :irc.bench", "b2"),
            Event::Reply(Bytes::from_static(b"PONG :irc.bench\r\n"))
        );
        assert_eq!(
            d.classify(b":irc.bench 001 b2 :Welcome", "b2"),
            Event::Registered("b2".into())
        );
        assert_eq!(
            d.classify(b":irc.bench 353 b2 = #bench :b2 @b0 b1", "b2"),
            Event::ChannelPeers(2)
        );
        assert_eq!(
            d.classify(b":b2!~b2@127.0.0.1 JOIN :#bench", "b2"),
            Event::Other
        );
        assert_eq!(
            d.classify(b":b3!~b3@127.0.0.1 JOIN :#bench", "b2"),
            Event::ChannelPeers(1)
        );
        assert_eq!(
            d.classify(b":irc.bench 366 b2 #bench :End of NAMES list", "b2"),
            Event::Joined
        );
        assert!(matches!(
            d.classify(b":irc.bench 433 * b2 :Nickname already in use", "b2"),
            Event::Refused(_)
        ));
        let mut out = BytesMut::new();
        d.message(None, "1 2 3", &mut out);
        assert_eq!(&out[..], b"PRIVMSG #bench :1 2 3\r\n");
    }

    #[test]
    fn irc_rooms_are_channels() {
        let d = Dialect::Irc {
            oper: Some(("bench".into(), "pw".into())),
            join: true,
        };
        assert_eq!(
            d.after_registration("b4", Some("#r0")),
            Some(Bytes::from_static(
                b"OPER bench pw\r\nMODE b4 +F\r\nJOIN #r0\r\n"
            ))
        );
        assert_eq!(
            d.classify(b":b5!~b5@127.0.0.1 PRIVMSG #r0 :1 2 3", "b4"),
            Event::Message {
                to: b"#r0",
                body: b"1 2 3"
            }
        );
        let mut out = BytesMut::new();
        d.message(Some("#r0"), "1 2 3", &mut out);
        assert_eq!(&out[..], b"PRIVMSG #r0 :1 2 3\r\n");
        assert!(!d.announces_registrations() && Dialect::Tsockm.announces_registrations());
        let idle = Dialect::Irc {
            oper: None,
            join: false,
        };
        assert_eq!(idle.after_registration("b4", None), None);
        assert!(!idle.needs_join(None));
    }
}
