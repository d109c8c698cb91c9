//! The frames the server sends, built in one place so every field follows
//! section 3 of the contract: SRC is the server's address (the message id
//! in a relayed message and a history item), SENDER_ID is `server` when the
//! server speaks for itself, DST is the recipient.

use bytes::{BufMut, Bytes, BytesMut};
use tsockm_proto::{Action, BROADCAST, Frame, Kind, SERVER_ID, Status, Text, escape_body};

/// Builds server frames with the server's listening address as SRC.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The server's address as written in SRC.
    pub srv: Text,
}

/// How every roster line starts.
const ROSTER_LINE_PREFIX: &[u8] = b"RES::NTFY_JOIN::200::";

impl Wire {
    fn server(&self, kind: Kind, action: Action, status: Status, dst: &str, body: &str) -> Frame {
        Frame::from_fields(kind, action, status, [SERVER_ID, &self.srv, dst, body])
    }

    /// `ERR::<action>::<status>::server::<srv>::<dst>::<reason>`.
    pub fn error(
        &self,
        action: Action,
        status: Status,
        dst: &Text,
        reason: impl AsRef<str>,
    ) -> Frame {
        self.server(Kind::Err, action, status, dst, reason.as_ref())
    }

    /// The registration or resume answer: `RES::COMM::200::server::<srv>::<client addr>::<id> <token>`.
    pub fn welcome(&self, client_addr: &Text, peer_id: &str, token: &str) -> Frame {
        self.server(
            Kind::Res,
            Action::Comm,
            Status::Ok,
            client_addr,
            &format!("{peer_id} {token}"),
        )
    }

    /// The answer to an accepted AUTH: `RES::AUTH::200::server::<srv>::<client addr>::OK`.
    pub fn auth_ok(&self, client_addr: &Text) -> Frame {
        self.server(Kind::Res, Action::Auth, Status::Ok, client_addr, "OK")
    }

    /// The answer to ROOMS: `RES::ROOMS::200::server::<srv>::<id>::<lines>`.
    pub fn rooms(&self, peer_id: &Text, lines: &str) -> Frame {
        self.server(Kind::Res, Action::Rooms, Status::Ok, peer_id, lines)
    }

    /// A relayed message: `RES::MSG::200::<author>::<msg_id>::<dst>::<text>`.
    pub fn relayed(&self, author: &Text, msg_id: &Text, dst: &Text, text: &Text) -> Frame {
        Frame::from_fields(
            Kind::Res,
            Action::Msg,
            Status::Ok,
            [author, msg_id, dst, text],
        )
    }

    /// One stored message answering HISTORY:
    /// `RES::HISTORY::200::<author>::<msg_id>::<conversation>::<unix ms>::<username>::<text>`.
    pub fn history_item(
        &self,
        author: &str,
        msg_id: &str,
        conversation: &Text,
        at_ms: i64,
        username: &str,
        text: &str,
    ) -> Frame {
        let body = format!("{at_ms}::{username}::{text}");
        Frame::from_fields(
            Kind::Res,
            Action::History,
            Status::Ok,
            [author, msg_id, conversation, &body],
        )
    }

    /// The end of a HISTORY answer:
    /// `RES::HISTORY::200::server::<srv>::<conversation>::end <count>[ more]`.
    pub fn history_end(&self, conversation: &Text, count: usize, more: bool) -> Frame {
        let more = if more { " more" } else { "" };
        self.server(
            Kind::Res,
            Action::History,
            Status::Ok,
            conversation,
            &format!("end {count}{more}"),
        )
    }

    /// A health check: `REQ::COMM::200::server::<srv>::<id>::check?`.
    pub fn health_check(&self, peer_id: &Text) -> Frame {
        self.server(Kind::Req, Action::Comm, Status::Ok, peer_id, "check?")
    }

    /// `RES::COMM_END::200::server::<srv>::<id>::<reason>`.
    pub fn comm_end(&self, peer_id: &Text, reason: impl AsRef<str>) -> Frame {
        self.server(
            Kind::Res,
            Action::CommEnd,
            Status::Ok,
            peer_id,
            reason.as_ref(),
        )
    }

    /// A frame speaking for a peer: `RES::<action>::200::<peer id>::<srv>::<dst>::<body>`.
    pub fn about_peer(&self, action: Action, peer_id: &Text, dst: &Text, body: &Text) -> Frame {
        Frame::from_fields(
            Kind::Res,
            action,
            Status::Ok,
            [peer_id, &self.srv, dst, body],
        )
    }

    /// Appends one roster line for a newcomer to `out`:
    /// `RES::NTFY_JOIN::200::<peer id>::<srv>::<newcomer id>::<username>\n`.
    ///
    /// The same bytes [`Wire::about_peer`] encodes, written piecewise: a
    /// roster is one line per registered peer for every newcomer, so it is
    /// on the path of every registration. Ids and the server address are the
    /// server's own and need no checking.
    pub fn roster_line(&self, out: &mut BytesMut, peer_id: &str, username: &str, newcomer: &str) {
        out.put_slice(ROSTER_LINE_PREFIX);
        out.put_slice(peer_id.as_bytes());
        out.put_slice(b"::");
        out.put_slice(self.srv.as_bytes());
        out.put_slice(b"::");
        out.put_slice(newcomer.as_bytes());
        out.put_slice(b"::");
        escape_body(username, out);
        out.put_u8(b'\n');
    }

    /// The length of [`Wire::roster_line`]'s output when the username needs
    /// no escaping (a little more when it does).
    pub fn roster_line_len(&self, peer_id: &str, username: &str, newcomer: &str) -> usize {
        let separators = "::".len() * 3;
        let terminator = 1;
        ROSTER_LINE_PREFIX.len()
            + peer_id.len()
            + self.srv.len()
            + newcomer.len()
            + username.len()
            + separators
            + terminator
    }

    /// NTFY_JOIN / NTFY_KILL announced to everyone: DST `*`.
    pub fn announce(&self, action: Action, peer_id: &Text, username: &Text) -> Frame {
        self.about_peer(action, peer_id, &Text::from_static(BROADCAST), username)
    }
}

/// How long `text` is once written as a BODY (escapes included).
pub fn escaped_len(text: &str) -> usize {
    text.len()
        + text
            .bytes()
            .filter(|b| matches!(b, b'\\' | b'\n' | b'\r'))
            .count()
}

/// The length of a relayed message's line, terminator excluded.
pub fn relayed_len(author: &str, msg_id: &str, dst: &str, escaped_text: usize) -> usize {
    "RES::MSG::200".len() + 4 * "::".len() + author.len() + msg_id.len() + dst.len() + escaped_text
}

/// The length of a HISTORY item's line, terminator excluded.
pub fn history_item_len(
    author: &str,
    msg_id: &str,
    conversation: &str,
    escaped_username: usize,
    escaped_text: usize,
) -> usize {
    /// Unix milliseconds have 13 digits until the year 2286.
    const MS_DIGITS: usize = 13;
    "RES::HISTORY::200".len()
        + 6 * "::".len()
        + author.len()
        + msg_id.len()
        + conversation.len()
        + MS_DIGITS
        + escaped_username
        + escaped_text
}

/// Encodes a frame the server built. Server frames only carry ids, addresses
/// and `*` in their header fields, so this cannot fail unless there is a bug;
/// then the frame is logged and skipped rather than sent malformed.
pub fn encode(frame: &Frame) -> Option<Bytes> {
    match frame.to_bytes() {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(%error, %frame, "bug: the server built a frame it cannot encode");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_lengths_are_the_encoded_lengths() {
        let wire = Wire {
            srv: Text::from("127.0.0.1:6969"),
        };
        for text in ["", "plain", "two\nlines \\ and \r", "é::ü"] {
            let relayed = wire.relayed(
                &"authorID12".into(),
                &"msgID123".into(),
                &"#room".into(),
                &text.into(),
            );
            let line = relayed.to_bytes().unwrap();
            assert_eq!(
                line.len() - 1,
                relayed_len("authorID12", "msgID123", "#room", escaped_len(text)),
                "{text:?}"
            );
            let item = wire.history_item(
                "authorID12",
                "msgID123",
                &"*".into(),
                1_795_844_687_000,
                "al\\ice",
                text,
            );
            let line = item.to_bytes().unwrap();
            assert_eq!(
                line.len() - 1,
                history_item_len(
                    "authorID12",
                    "msgID123",
                    "*",
                    escaped_len("al\\ice"),
                    escaped_len(text)
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn roster_lines_are_the_encoded_frames() {
        let wire = Wire {
            srv: Text::from("127.0.0.1:6969"),
        };
        for username in ["alice", "back\\slash", "é::?"] {
            let mut out = BytesMut::new();
            wire.roster_line(&mut out, "peerA12345", username, "newB123456");
            let frame = wire.about_peer(
                Action::NtfyJoin,
                &Text::from("peerA12345"),
                &Text::from("newB123456"),
                &Text::from(username),
            );
            if !username.contains('\\') {
                assert_eq!(
                    out.len(),
                    wire.roster_line_len("peerA12345", username, "newB123456")
                );
            }
            assert_eq!(out.freeze(), frame.to_bytes().unwrap());
        }
    }
}
