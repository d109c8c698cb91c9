//! [`Frame`]: the seven fields of one protocol line, parsed and encoded.
//!
//! Parsing copies the short fields out of the received line (see [`Text`])
//! and shares the line for a long BODY; encoding writes straight into a
//! `BytesMut`. This file does no I/O.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::error::quote;
use crate::escape::{escape_fmt, escape_into, needs_escape, unescape, unescape_in_place};
use crate::scan::{N_SEPARATORS, Scan, scan};
use crate::text::INLINE_BYTES;
use crate::{Action, BROADCAST, Field, FrameError, Kind, SEPARATOR, Status, Text};

/// One frame: `TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY`.
///
/// `body` holds the *decoded* text (escapes resolved); [`Frame::encode`] and
/// `Display` escape it again. `Display` writes the wire form without the
/// terminating `\n`; [`Frame::encode`] adds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// TYPE: request, response or error.
    pub kind: Kind,
    /// ACTION.
    pub action: Action,
    /// STATUS.
    pub status: Status,
    /// SENDER_ID: who the frame speaks for (may be empty).
    pub sender_id: Text,
    /// SRC: where the frame comes from (may be empty).
    pub src: Text,
    /// DST: the recipient (may be empty).
    pub dst: Text,
    /// BODY: the text, decoded (may be empty, may contain `::` and newlines).
    pub body: Text,
}

impl Frame {
    /// A frame with the given first three fields and the other four empty.
    pub const fn new(kind: Kind, action: Action, status: Status) -> Self {
        Frame {
            kind,
            action,
            status,
            sender_id: Text::new(),
            src: Text::new(),
            dst: Text::new(),
            body: Text::new(),
        }
    }

    /// `REQ::<action>::200` with the other fields empty.
    pub const fn request(action: Action) -> Self {
        Frame::new(Kind::Req, action, Status::Ok)
    }

    /// `RES::<action>::200` with the other fields empty.
    pub const fn response(action: Action) -> Self {
        Frame::new(Kind::Res, action, Status::Ok)
    }

    /// `ERR::<action>::<status>` with `reason` as BODY.
    pub fn error(action: Action, status: Status, reason: impl Into<Text>) -> Self {
        Frame::new(Kind::Err, action, status).with_body(reason)
    }

    /// Sets SENDER_ID.
    pub fn with_sender(mut self, sender_id: impl Into<Text>) -> Self {
        self.sender_id = sender_id.into();
        self
    }

    /// Sets SRC.
    pub fn with_src(mut self, src: impl Into<Text>) -> Self {
        self.src = src.into();
        self
    }

    /// Sets DST.
    pub fn with_dst(mut self, dst: impl Into<Text>) -> Self {
        self.dst = dst.into();
        self
    }

    /// Sets BODY.
    pub fn with_body(mut self, body: impl Into<Text>) -> Self {
        self.body = body.into();
        self
    }

    // Requests a client sends.

    /// Registration: `REQ::COMM::200::::::::<username>`.
    pub fn register(username: impl Into<Text>) -> Self {
        Frame::request(Action::Comm).with_body(username)
    }

    /// Resume: `REQ::COMM::200::<peer_id>::::::<resume_token>`.
    pub fn resume(peer_id: impl Into<Text>, resume_token: impl Into<Text>) -> Self {
        Frame::request(Action::Comm)
            .with_sender(peer_id)
            .with_body(resume_token)
    }

    /// Resume naming the last message id received (v2):
    /// `REQ::COMM::200::<peer_id>::<last_msg_id>::::<resume_token>`.
    pub fn resume_after(
        peer_id: impl Into<Text>,
        last_msg_id: impl Into<Text>,
        resume_token: impl Into<Text>,
    ) -> Self {
        Frame::resume(peer_id, resume_token).with_src(last_msg_id)
    }

    /// Broadcast message: `REQ::MSG::200::::::*::<text>`.
    pub fn broadcast(text: impl Into<Text>) -> Self {
        Frame::request(Action::Msg)
            .with_dst(Text::from_static(BROADCAST))
            .with_body(text)
    }

    /// Direct message: `REQ::MSG::200::::::<peer_id>::<text>`.
    pub fn direct(peer_id: impl Into<Text>, text: impl Into<Text>) -> Self {
        Frame::request(Action::Msg)
            .with_dst(peer_id)
            .with_body(text)
    }

    /// Lookup: `REQ::GET_PEER::200::::::::<peer_id>`.
    pub fn get_peer(peer_id: impl Into<Text>) -> Self {
        Frame::request(Action::GetPeer).with_body(peer_id)
    }

    /// Join a room (v2): `REQ::JOIN::200::::::<#room>::`.
    pub fn join(room: impl Into<Text>) -> Self {
        Frame::request(Action::Join).with_dst(room)
    }

    /// Leave a room (v2): `REQ::PART::200::::::<#room>::`.
    pub fn part(room: impl Into<Text>) -> Self {
        Frame::request(Action::Part).with_dst(room)
    }

    /// List the rooms (v2): `REQ::ROOMS::200::::::::`.
    pub const fn rooms() -> Self {
        Frame::request(Action::Rooms)
    }

    /// Stored messages (v2): `REQ::HISTORY::200::::::<conversation>::<query>`,
    /// the conversation `*`, a `#room` or a peer id, the query `<n>`,
    /// `<n> before <msg_id>` or `<n> after <msg_id>`.
    pub fn history(conversation: impl Into<Text>, query: impl Into<Text>) -> Self {
        Frame::request(Action::History)
            .with_dst(conversation)
            .with_body(query)
    }

    /// The server password (v2): `REQ::AUTH::200::::::::<password>`.
    pub fn auth(password: impl Into<Text>) -> Self {
        Frame::request(Action::Auth).with_body(password)
    }

    /// End of session: `REQ::COMM_END::200::::::::`.
    pub const fn comm_end() -> Self {
        Frame::request(Action::CommEnd)
    }

    /// Answer to a health check: `RES::COMM::200::<peer_id>::::::OK`.
    pub fn health_answer(peer_id: impl Into<Text>) -> Self {
        Frame::response(Action::Comm)
            .with_sender(peer_id)
            .with_body(Text::from_static("OK"))
    }

    /// Parses one line, without its terminator.
    ///
    /// Fields of up to 23 bytes are copied into the frame (see [`Text`]);
    /// longer ones share `line`'s buffer, and a long BODY without escapes
    /// keeps `line`'s own reference. This is what
    /// [`FrameCodec`](crate::FrameCodec) does for each line; it does not
    /// check the length limit or treat blank lines specially. Errors are
    /// checked in the order of the contract: UTF-8, field count, TYPE,
    /// STATUS, then ACTION (so an unknown ACTION is only reported for an
    /// otherwise well-formed frame).
    pub fn from_line(mut line: Bytes) -> Result<Frame, FrameError> {
        let head = Head::parse(&line, line.len())?;
        let [sender_id, src, dst] = head.headers();
        let (sender_id, src, dst) = (
            header_text(&line, sender_id),
            header_text(&line, src),
            header_text(&line, dst),
        );
        let body_start = head.body_start();
        // `has_backslash` may be a false alarm from a header field.
        let body = if head.has_backslash && memchr(b'\\', &line[body_start..]).is_some() {
            Text::from(unescape(&String::from_utf8_lossy(&line[body_start..])))
        } else if line.len() - body_start <= INLINE_BYTES {
            Text::inline_checked(&line[body_start..], line.len() - body_start)
        } else {
            line.advance(body_start);
            Text::from_checked(line)
        };
        Ok(head.into_frame(sender_id, src, dst, body))
    }

    /// Parses the line of `len` bytes at the start of `buf`, then removes
    /// `consumed` bytes (the line and its terminator) from `buf`, whatever
    /// the outcome.
    ///
    /// An escaped BODY is resolved in place, in `buf`. When every field fits
    /// in a [`Text`] inline (a health check, a lookup, any short message),
    /// the frame copies them and refers to no buffer: no reference count is
    /// touched. When only BODY is too long, the header fields are copied
    /// and BODY alone is split off `buf`, with one reference. A header
    /// field too long to copy (rare) splits off the whole line, shared by
    /// that field and BODY.
    ///
    /// Small changes to the order of the steps here have moved the codec
    /// benchmark by 10% (they change how the compiler moves the four
    /// `Text`s into the frame); measure before reordering.
    #[inline(always)]
    pub(crate) fn take_line(
        buf: &mut BytesMut,
        len: usize,
        consumed: usize,
    ) -> Result<Frame, FrameError> {
        let head = match Head::parse(buf, len) {
            Ok(head) => head,
            Err(e) => {
                buf.advance(consumed);
                return Err(e);
            }
        };
        let body_start = head.body_start();
        let mut body_end = len;
        if head.has_backslash {
            body_end = body_start + unescape_in_place(&mut buf[body_start..len]);
        }
        let [sender_id, src, dst] = head.headers();
        let fits = |range: &Range<usize>| range.len() <= INLINE_BYTES;
        let body_inline = body_end - body_start <= INLINE_BYTES;
        if fits(&sender_id) && fits(&src) && fits(&dst) {
            // Each window runs on past the line, into whatever else is
            // buffered, so that a copy is of a fixed size more often.
            let window: &[u8] = buf;
            let inline =
                |range: Range<usize>| Text::inline_checked(&window[range.start..], range.len());
            let (sender_id, src, dst) = (inline(sender_id), inline(src), inline(dst));
            if body_inline {
                let body = Text::inline_checked(&window[body_start..], body_end - body_start);
                buf.advance(consumed);
                return Ok(head.into_frame(sender_id, src, dst, body));
            }
            buf.advance(body_start);
            let body = Text::from_checked(buf.split_to(body_end - body_start).freeze());
            buf.advance(consumed - body_end);
            return Ok(head.into_frame(sender_id, src, dst, body));
        }
        let mut line = buf.split_to(consumed).freeze();
        let (sender_id, src, dst) = (
            header_text(&line, sender_id),
            header_text(&line, src),
            header_text(&line, dst),
        );
        let body = if body_inline {
            Text::inline_checked(&line[body_start..], body_end - body_start)
        } else {
            line.truncate(body_end);
            line.advance(body_start);
            Text::from_checked(line)
        };
        Ok(head.into_frame(sender_id, src, dst, body))
    }

    /// Checks that SENDER_ID, SRC and DST can be written unambiguously: no
    /// `::`, CR or LF, and no leading or trailing `:`.
    pub fn validate(&self) -> Result<(), FrameError> {
        self.check_headers(&self.header_bytes())
    }

    /// Appends the wire form, terminated by `\n`, to `dst`.
    ///
    /// Fails, writing nothing, if [`Frame::validate`] fails.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        // Each field's bytes are looked up once, for the checks, the length
        // and the copy.
        let headers = self.header_bytes();
        let body = self.body.as_bytes();
        self.check_headers(&headers)?;
        let sep = SEPARATOR.as_bytes();
        dst.reserve(self.encoded_len_estimate(&headers, body));
        dst.put_slice(self.kind.as_str().as_bytes());
        dst.put_slice(sep);
        dst.put_slice(self.action.as_str().as_bytes());
        dst.put_slice(sep);
        dst.put_slice(self.status.as_str().as_bytes());
        for header in headers {
            dst.put_slice(sep);
            dst.put_slice(header);
        }
        dst.put_slice(sep);
        if needs_escape(body) {
            escape_into(body, dst);
        } else {
            dst.put_slice(body);
        }
        dst.put_u8(b'\n');
        Ok(())
    }

    /// The wire form, terminated by `\n`, in a buffer of its own.
    ///
    /// The server encodes a broadcast once with this and hands clones of the
    /// result to every recipient.
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let headers = self.header_bytes();
        let estimate = self.encoded_len_estimate(&headers, self.body.as_bytes());
        let mut buf = BytesMut::with_capacity(estimate);
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// SENDER_ID, SRC and DST as bytes.
    #[inline(always)]
    fn header_bytes(&self) -> [&[u8]; 3] {
        [
            self.sender_id.as_bytes(),
            self.src.as_bytes(),
            self.dst.as_bytes(),
        ]
    }

    /// [`Frame::validate`] of this frame's `headers` (from
    /// [`Frame::header_bytes`]).
    #[inline(always)]
    fn check_headers(&self, headers: &[&[u8]; 3]) -> Result<(), FrameError> {
        for (k, header) in headers.iter().enumerate() {
            if let Some(problem) = header_problem(header) {
                let (field, value) = [
                    (Field::SenderId, &self.sender_id),
                    (Field::Src, &self.src),
                    (Field::Dst, &self.dst),
                ][k];
                return Err(FrameError::InvalidField {
                    field,
                    value: quote(value),
                    problem,
                });
            }
        }
        Ok(())
    }

    /// The encoded length if BODY needs no escaping (a lower bound otherwise).
    #[inline(always)]
    fn encoded_len_estimate(&self, headers: &[&[u8]; 3], body: &[u8]) -> usize {
        self.kind.as_str().len()
            + self.action.as_str().len()
            + self.status.as_str().len()
            + headers.iter().map(|header| header.len()).sum::<usize>()
            + body.len()
            + 6 * SEPARATOR.len()
            + 1
    }
}

/// The first three fields of a line that has all seven, and where the
/// others lie.
struct Head {
    kind: Kind,
    action: Action,
    status: Status,
    /// Start offset of each separator.
    seps: [usize; N_SEPARATORS],
    /// Whether the line may hold an escape (a `\` anywhere in it).
    has_backslash: bool,
}

impl Head {
    /// Splits `line` and reads its first three fields; the first error in
    /// the contract's order if it cannot.
    #[inline(always)]
    fn parse(window: &[u8], len: usize) -> Result<Head, FrameError> {
        let scan = scan(window, len);
        let line = &window[..len];
        let is_ascii = matches!(scan, Ok(Scan { is_ascii: true, .. }));
        if !is_ascii {
            // Invalid UTF-8 is reported before a missing field.
            check_utf8(line)?;
        }
        let scan = scan.map_err(|found| FrameError::MissingFields { found })?;
        // From here on every byte of the line is known to be UTF-8.
        let seps = scan.starts;
        let field = |k: usize| &line[field_range(&seps, k)];
        let quoted = |k: usize| quote(&String::from_utf8_lossy(field(k)));
        let kind = Kind::from_wire(field(0)).ok_or_else(|| FrameError::UnknownKind(quoted(0)))?;
        let status =
            Status::from_wire(field(2)).ok_or_else(|| FrameError::UnknownStatus(quoted(2)))?;
        let action =
            Action::from_wire(field(1)).ok_or_else(|| FrameError::UnknownAction(quoted(1)))?;
        Ok(Head {
            kind,
            action,
            status,
            seps,
            has_backslash: scan.has_backslash,
        })
    }

    /// Where SENDER_ID, SRC and DST lie.
    #[inline(always)]
    fn headers(&self) -> [Range<usize>; 3] {
        [
            field_range(&self.seps, 3),
            field_range(&self.seps, 4),
            field_range(&self.seps, 5),
        ]
    }

    /// Where BODY starts (it runs to the end of the line).
    fn body_start(&self) -> usize {
        self.seps[N_SEPARATORS - 1] + SEPARATOR.len()
    }

    /// The frame of these first three fields and the other four.
    #[inline(always)]
    fn into_frame(self, sender_id: Text, src: Text, dst: Text, body: Text) -> Frame {
        Frame {
            kind: self.kind,
            action: self.action,
            status: self.status,
            sender_id,
            src,
            dst,
            body,
        }
    }
}

/// Where field `k` (0 to 5) lies: between separators `k - 1` and `k`.
#[inline(always)]
fn field_range(seps: &[usize; N_SEPARATORS], k: usize) -> Range<usize> {
    (if k == 0 {
        0
    } else {
        seps[k - 1] + SEPARATOR.len()
    })..seps[k]
}

/// Checks that `line` is UTF-8, naming the first invalid byte if not.
fn check_utf8(line: &[u8]) -> Result<(), FrameError> {
    match std::str::from_utf8(line) {
        Ok(_) => Ok(()),
        Err(e) => Err(FrameError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        }),
    }
}

/// A field of `line`, already checked to be UTF-8, as a [`Text`]: copied
/// if it fits inline (nearly always), else a slice sharing `line`'s buffer.
#[inline(always)]
fn header_text(line: &Bytes, range: Range<usize>) -> Text {
    if range.len() <= INLINE_BYTES {
        Text::inline_checked(&line[range.start..], range.len())
    } else {
        Text::from_checked(line.slice(range))
    }
}

/// Why a header field value cannot be written, if it cannot.
fn header_problem(bytes: &[u8]) -> Option<&'static str> {
    // One pass over the (short) value; the problems are reported in this
    // order of precedence.
    let mut has_separator = false;
    let mut has_line_break = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b':' => has_separator |= bytes.get(i + 1) == Some(&b':'),
            b'\r' | b'\n' => has_line_break = true,
            _ => {}
        }
    }
    if has_separator {
        Some("contains `::`")
    } else if has_line_break {
        Some("contains a line break")
    } else if bytes.first() == Some(&b':') || bytes.last() == Some(&b':') {
        Some("begins or ends with `:`")
    } else {
        None
    }
}

/// Writes the wire form without the terminating `\n`.
///
/// Unlike [`Frame::encode`], this does not validate the header fields.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}::{}::{}::{}::{}::{}::",
            self.kind, self.action, self.status, self.sender_id, self.src, self.dst
        )?;
        escape_fmt(&self.body, f)
    }
}

impl FromStr for Frame {
    type Err = FrameError;

    /// Parses one line; a trailing `\n` or `\r\n` is allowed and ignored.
    fn from_str(line: &str) -> Result<Frame, FrameError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        Frame::from_line(Bytes::copy_from_slice(line.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_the_fields() {
        assert_eq!(
            Frame::register("alice").to_string(),
            "REQ::COMM::200::::::::alice"
        );
        assert_eq!(
            Frame::resume("id1", "tok").to_string(),
            "REQ::COMM::200::id1::::::tok"
        );
        assert_eq!(
            Frame::broadcast("hi").to_string(),
            "REQ::MSG::200::::::*::hi"
        );
        assert_eq!(
            Frame::direct("id2", "hi").to_string(),
            "REQ::MSG::200::::::id2::hi"
        );
        assert_eq!(
            Frame::get_peer("id2").to_string(),
            "REQ::GET_PEER::200::::::::id2"
        );
        assert_eq!(Frame::comm_end().to_string(), "REQ::COMM_END::200::::::::");
        assert_eq!(
            Frame::resume_after("id1", "m1", "tok").to_string(),
            "REQ::COMM::200::id1::m1::::tok"
        );
        assert_eq!(Frame::join("#a").to_string(), "REQ::JOIN::200::::::#a::");
        assert_eq!(Frame::part("#a").to_string(), "REQ::PART::200::::::#a::");
        assert_eq!(Frame::rooms().to_string(), "REQ::ROOMS::200::::::::");
        assert_eq!(
            Frame::history("*", "5 before m1").to_string(),
            "REQ::HISTORY::200::::::*::5 before m1"
        );
        assert_eq!(Frame::auth("pw").to_string(), "REQ::AUTH::200::::::::pw");
        assert_eq!(
            Frame::health_answer("id1").to_string(),
            "RES::COMM::200::id1::::::OK"
        );
        assert_eq!(
            Frame::error(Action::None, Status::BadRequest, "bad")
                .with_sender("server")
                .to_string(),
            "ERR::NONE::400::server::::::bad"
        );
    }

    #[test]
    fn encode_refuses_ambiguous_headers() {
        let mut buf = BytesMut::new();
        for bad in ["a::b", ":a", "a:", "a\nb", "a\rb"] {
            let frame = Frame::broadcast("x").with_sender(bad);
            assert!(frame.encode(&mut buf).is_err(), "{bad:?}");
            assert!(buf.is_empty());
        }
        let ok = Frame::broadcast("x").with_src("[0:0:0:0:0:0:0:1]:6969");
        ok.encode(&mut buf).expect("a full IPv6 address is fine");
        assert_eq!(&buf[..], b"REQ::MSG::200::::[0:0:0:0:0:0:0:1]:6969::*::x\n");
    }

    #[test]
    fn display_and_to_bytes_agree() {
        let frame = Frame::broadcast("two\nlines \\ and :: more").with_sender("abc");
        let bytes = frame.to_bytes().expect("valid");
        assert_eq!(&bytes[..bytes.len() - 1], frame.to_string().as_bytes());
        assert_eq!(bytes.last(), Some(&b'\n'));
    }

    /// Fields on either side of the 23 bytes a `Text` holds inline decode
    /// the same through the codec and through `from_line`, escaped or not.
    #[test]
    fn fields_around_the_inline_size() {
        use tokio_util::codec::Decoder;
        for n in 20..=26 {
            let value = "v".repeat(n);
            let body = format!("{}\\n", "b".repeat(n.saturating_sub(2)));
            let frames = [
                Frame::broadcast(value.as_str()).with_sender(value.as_str()),
                Frame::broadcast(body.as_str()).with_src(value.as_str()),
                Frame::direct(value.as_str(), value.as_str()),
                Frame::health_answer(value.as_str()),
            ];
            for frame in frames {
                let line = frame.to_bytes().expect("valid");
                let mut buf = BytesMut::from(&line[..]);
                let decoded = crate::FrameCodec::new().decode(&mut buf).expect("no I/O");
                assert_eq!(decoded, Some(Ok(frame.clone())), "{n}");
                let line = line.slice(..line.len() - 1);
                assert_eq!(Frame::from_line(line), Ok(frame), "{n}");
            }
        }
    }

    /// Short fields are copied out of the line, so a small frame keeps no
    /// buffer alive; a long BODY shares the line it came in.
    #[test]
    fn short_fields_are_copied_and_a_long_body_shared() {
        use tokio_util::codec::Decoder;
        let long = "x".repeat(100);
        let input = format!("RES::MSG::200::abcdefghij::127.0.0.1:6969::*::{long}\n");
        let line = Bytes::from(input.trim_end().to_owned());
        let within = |text: &Text| line.as_ptr_range().contains(&text.as_ptr());
        let frame = Frame::from_line(line.clone()).expect("valid");
        assert!(!within(&frame.sender_id) && !within(&frame.src));
        assert!(within(&frame.body));

        let mut buf = BytesMut::from(input.as_bytes());
        let received = buf.as_ptr_range();
        let within = |text: &Text| received.contains(&text.as_ptr());
        let frame = crate::FrameCodec::new()
            .decode(&mut buf)
            .expect("no I/O")
            .expect("a line")
            .expect("valid");
        assert!(!within(&frame.sender_id) && !within(&frame.src) && !within(&frame.dst));
        assert!(within(&frame.body));
        assert_eq!(frame.body, long);
    }
}
