//! [`Frame`]: the seven fields of one protocol line, parsed and encoded.
//!
//! A frame keeps its four text fields in one [`Text`], in wire order with
//! `::` between them, and where each one starts. Parsing takes that part
//! of the received line as it is: copied when short, shared when long, so
//! a frame costs at most one reference count however many fields it has.
//! Encoding writes straight into a `BytesMut`. This file does no I/O.

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

/// The four text fields of a frame with nothing in them.
const EMPTY_FIELDS: &str = "::::::";

/// One frame: `TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY`.
///
/// The first three fields are plain values. The other four are read with
/// [`Frame::sender_id`], [`Frame::src`], [`Frame::dst`] and [`Frame::body`]
/// and set with the `with_` builders: they share one buffer, so that a
/// decoded frame is one reference to the line it came in (or a copy of it,
/// if short), and a frame is small enough to move cheaply.
///
/// BODY is held *decoded* (escapes resolved); [`Frame::encode`] and
/// `Display` escape it again. `Display` writes the wire form without the
/// terminating `\n`; [`Frame::encode`] adds it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// TYPE: request, response or error.
    pub kind: Kind,
    /// ACTION.
    pub action: Action,
    /// STATUS.
    pub status: Status,
    /// SENDER_ID, SRC, DST and BODY, in this order, with `::` after each
    /// of the first three (which may themselves hold `::`: `starts`, not
    /// the separators, says where each field lies).
    fields: Text,
    /// Where SRC, DST and BODY start in `fields`. SENDER_ID starts at 0,
    /// each of the first three ends two bytes before the next starts, and
    /// BODY runs to the end.
    starts: [usize; 3],
}

impl Frame {
    /// A frame with the given first three fields and the other four empty.
    pub const fn new(kind: Kind, action: Action, status: Status) -> Self {
        Frame {
            kind,
            action,
            status,
            fields: Text::from_static(EMPTY_FIELDS),
            starts: [2, 4, 6],
        }
    }

    /// A frame of all seven fields, in wire order, in one buffer: what the
    /// four `with_` builders in a row give, with one copy instead of four.
    pub fn from_fields(
        kind: Kind,
        action: Action,
        status: Status,
        [sender_id, src, dst, body]: [&str; 4],
    ) -> Self {
        let sep = SEPARATOR.len();
        let src_start = sender_id.len() + sep;
        let dst_start = src_start + src.len() + sep;
        let body_start = dst_start + dst.len() + sep;
        let mut fields = String::with_capacity(body_start + body.len());
        for header in [sender_id, src, dst] {
            fields.push_str(header);
            fields.push_str(SEPARATOR);
        }
        fields.push_str(body);
        Frame {
            kind,
            action,
            status,
            fields: Text::from(fields),
            starts: [src_start, dst_start, body_start],
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
    pub fn error(action: Action, status: Status, reason: impl AsRef<str>) -> Self {
        Frame::new(Kind::Err, action, status).with_body(reason)
    }

    /// SENDER_ID: who the frame speaks for (may be empty).
    #[inline]
    pub fn sender_id(&self) -> &str {
        &self.fields[..self.starts[0] - SEPARATOR.len()]
    }

    /// SRC: where the frame comes from (may be empty).
    #[inline]
    pub fn src(&self) -> &str {
        &self.fields[self.starts[0]..self.starts[1] - SEPARATOR.len()]
    }

    /// DST: the recipient (may be empty).
    #[inline]
    pub fn dst(&self) -> &str {
        &self.fields[self.starts[1]..self.starts[2] - SEPARATOR.len()]
    }

    /// BODY: the text, decoded (may be empty, may contain `::` and newlines).
    #[inline]
    pub fn body(&self) -> &str {
        &self.fields[self.starts[2]..]
    }

    /// BODY as a [`Text`] of its own, sharing the frame's buffer when it is
    /// long (a received message's text can be passed on without a copy).
    ///
    /// Like the frame, a shared BODY keeps alive the whole buffer the line
    /// was read into, not only its own bytes: to keep many texts for long,
    /// copy them (`Text::from(frame.body())`).
    pub fn body_text(&self) -> Text {
        self.fields.slice(self.starts[2]..self.fields.len())
    }

    /// SENDER_ID, SRC, DST and BODY.
    #[inline]
    fn texts(&self) -> [&str; 4] {
        [self.sender_id(), self.src(), self.dst(), self.body()]
    }

    /// This frame with field `k` (0 for SENDER_ID to 3 for BODY) set.
    fn with_text(self, k: usize, value: &str) -> Self {
        let mut texts = self.texts();
        texts[k] = value;
        Frame::from_fields(self.kind, self.action, self.status, texts)
    }

    /// Sets SENDER_ID.
    pub fn with_sender(self, sender_id: impl AsRef<str>) -> Self {
        self.with_text(0, sender_id.as_ref())
    }

    /// Sets SRC.
    pub fn with_src(self, src: impl AsRef<str>) -> Self {
        self.with_text(1, src.as_ref())
    }

    /// Sets DST.
    pub fn with_dst(self, dst: impl AsRef<str>) -> Self {
        self.with_text(2, dst.as_ref())
    }

    /// Sets BODY.
    pub fn with_body(self, body: impl AsRef<str>) -> Self {
        self.with_text(3, body.as_ref())
    }

    // Requests a client sends.

    /// Registration: `REQ::COMM::200::::::::<username>`.
    pub fn register(username: impl AsRef<str>) -> Self {
        Frame::request(Action::Comm).with_body(username)
    }

    /// Resume: `REQ::COMM::200::<peer_id>::::::<resume_token>`.
    pub fn resume(peer_id: impl AsRef<str>, resume_token: impl AsRef<str>) -> Self {
        Frame::resume_after(peer_id, "", resume_token)
    }

    /// Resume naming the last message id received (v2):
    /// `REQ::COMM::200::<peer_id>::<last_msg_id>::::<resume_token>`.
    pub fn resume_after(
        peer_id: impl AsRef<str>,
        last_msg_id: impl AsRef<str>,
        resume_token: impl AsRef<str>,
    ) -> Self {
        Frame::from_fields(
            Kind::Req,
            Action::Comm,
            Status::Ok,
            [
                peer_id.as_ref(),
                last_msg_id.as_ref(),
                "",
                resume_token.as_ref(),
            ],
        )
    }

    /// Broadcast message: `REQ::MSG::200::::::*::<text>`.
    pub fn broadcast(text: impl AsRef<str>) -> Self {
        Frame::direct(BROADCAST, text)
    }

    /// Direct message: `REQ::MSG::200::::::<peer_id>::<text>`.
    pub fn direct(peer_id: impl AsRef<str>, text: impl AsRef<str>) -> Self {
        Frame::request(Action::Msg).with_to(peer_id.as_ref(), text.as_ref())
    }

    /// Lookup: `REQ::GET_PEER::200::::::::<peer_id>`.
    pub fn get_peer(peer_id: impl AsRef<str>) -> Self {
        Frame::request(Action::GetPeer).with_body(peer_id)
    }

    /// Join a room (v2): `REQ::JOIN::200::::::<#room>::`.
    pub fn join(room: impl AsRef<str>) -> Self {
        Frame::request(Action::Join).with_dst(room)
    }

    /// Leave a room (v2): `REQ::PART::200::::::<#room>::`.
    pub fn part(room: impl AsRef<str>) -> Self {
        Frame::request(Action::Part).with_dst(room)
    }

    /// List the rooms (v2): `REQ::ROOMS::200::::::::`.
    pub const fn rooms() -> Self {
        Frame::request(Action::Rooms)
    }

    /// Stored messages (v2): `REQ::HISTORY::200::::::<conversation>::<query>`,
    /// the conversation `*`, a `#room` or a peer id, the query `<n>`,
    /// `<n> before <msg_id>` or `<n> after <msg_id>`.
    pub fn history(conversation: impl AsRef<str>, query: impl AsRef<str>) -> Self {
        Frame::request(Action::History).with_to(conversation.as_ref(), query.as_ref())
    }

    /// The server password (v2): `REQ::AUTH::200::::::::<password>`.
    pub fn auth(password: impl AsRef<str>) -> Self {
        Frame::request(Action::Auth).with_body(password)
    }

    /// End of session: `REQ::COMM_END::200::::::::`.
    pub const fn comm_end() -> Self {
        Frame::request(Action::CommEnd)
    }

    /// Answer to a health check: `RES::COMM::200::<peer_id>::::::OK`.
    pub fn health_answer(peer_id: impl AsRef<str>) -> Self {
        Frame::from_fields(
            Kind::Res,
            Action::Comm,
            Status::Ok,
            [peer_id.as_ref(), "", "", "OK"],
        )
    }

    /// This frame with only DST and BODY set.
    fn with_to(self, dst: &str, body: &str) -> Self {
        Frame::from_fields(self.kind, self.action, self.status, ["", "", dst, body])
    }

    /// Parses one line, without its terminator.
    ///
    /// The frame keeps the part of `line` after STATUS: a copy if it is
    /// short (see [`Text`]), else `line`'s own buffer. This is what
    /// [`FrameCodec`](crate::FrameCodec) does for each line; it does not
    /// check the length limit or treat blank lines specially. Errors are
    /// checked in the order of the contract: UTF-8, field count, TYPE,
    /// STATUS, then ACTION (so an unknown ACTION is only reported for an
    /// otherwise well-formed frame).
    pub fn from_line(mut line: Bytes) -> Result<Frame, FrameError> {
        let head = Head::parse(&line, line.len())?;
        let fields_start = head.fields_start();
        // `has_backslash` may be a false alarm from a header field.
        let body = &line[head.body_start()..];
        if head.has_backslash && memchr(b'\\', body).is_some() {
            let body = unescape(&String::from_utf8_lossy(body));
            let [sender_id, src, dst] = head
                .headers()
                .map(|range| String::from_utf8_lossy(&line[range]));
            return Ok(Frame::from_fields(
                head.kind,
                head.action,
                head.status,
                [&sender_id, &src, &dst, &body],
            ));
        }
        let fields = if line.len() - fields_start <= INLINE_BYTES {
            Text::inline_checked(&line[fields_start..], line.len() - fields_start)
        } else {
            line.advance(fields_start);
            Text::from_checked(line)
        };
        Ok(head.into_frame(fields))
    }

    /// Parses the line of `len` bytes at the start of `buf`, then removes
    /// `consumed` bytes (the line and its terminator) from `buf`, whatever
    /// the outcome.
    ///
    /// An escaped BODY is resolved in place, in `buf`. When the four text
    /// fields together fit in a [`Text`] inline (a health check, a lookup,
    /// a short message), the frame copies them and refers to no buffer: no
    /// reference count is touched. Otherwise they are split off `buf`, with
    /// one reference.
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
        let fields_start = head.fields_start();
        let mut end = len;
        if head.has_backslash {
            let body_start = head.body_start();
            end = body_start + unescape_in_place(&mut buf[body_start..len]);
        }
        let fields = if end - fields_start <= INLINE_BYTES {
            // The window runs on past the line, into whatever else is
            // buffered, so that the copy is of a fixed size more often.
            let fields = Text::inline_checked(&buf[fields_start..], end - fields_start);
            buf.advance(consumed);
            fields
        } else {
            buf.advance(fields_start);
            let fields = Text::from_checked(buf.split_to(end - fields_start).freeze());
            buf.advance(consumed - end);
            fields
        };
        Ok(head.into_frame(fields))
    }

    /// Checks that SENDER_ID, SRC and DST can be written unambiguously: no
    /// `::`, CR or LF, and no leading or trailing `:`.
    pub fn validate(&self) -> Result<(), FrameError> {
        let [sender_id, src, dst, _] = self.texts();
        check_headers([sender_id, src, dst])
    }

    /// Appends the wire form, terminated by `\n`, to `dst`.
    ///
    /// Fails, writing nothing, if [`Frame::validate`] fails.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.validate()?;
        let body = self.body().as_bytes();
        let sep = SEPARATOR.as_bytes();
        dst.reserve(self.encoded_len_estimate());
        dst.put_slice(self.kind.as_str().as_bytes());
        dst.put_slice(sep);
        dst.put_slice(self.action.as_str().as_bytes());
        dst.put_slice(sep);
        dst.put_slice(self.status.as_str().as_bytes());
        dst.put_slice(sep);
        // The three headers, each with the separator after it.
        dst.put_slice(&self.fields.as_bytes()[..self.starts[2]]);
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
        let mut buf = BytesMut::with_capacity(self.encoded_len_estimate());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// The encoded length if BODY needs no escaping (a lower bound otherwise).
    #[inline(always)]
    fn encoded_len_estimate(&self) -> usize {
        self.kind.as_str().len()
            + self.action.as_str().len()
            + self.status.as_str().len()
            + 3 * SEPARATOR.len()
            + self.fields.len()
            + 1
    }
}

/// [`Frame::validate`] of SENDER_ID, SRC and DST.
fn check_headers(headers: [&str; 3]) -> Result<(), FrameError> {
    let names = [Field::SenderId, Field::Src, Field::Dst];
    for (field, header) in names.into_iter().zip(headers) {
        if let Some(problem) = header_problem(header.as_bytes()) {
            return Err(FrameError::InvalidField {
                field,
                value: quote(header),
                problem,
            });
        }
    }
    Ok(())
}

/// Shows the seven fields by name.
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("action", &self.action)
            .field("status", &self.status)
            .field("sender_id", &self.sender_id())
            .field("src", &self.src())
            .field("dst", &self.dst())
            .field("body", &self.body())
            .finish()
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

    /// Where SENDER_ID starts: the four text fields run from here to the
    /// end of the line.
    #[inline(always)]
    fn fields_start(&self) -> usize {
        self.seps[2] + SEPARATOR.len()
    }

    /// The frame of these first three fields and `fields`, the line from
    /// [`Head::fields_start`] on (with BODY decoded).
    #[inline(always)]
    fn into_frame(self, fields: Text) -> Frame {
        // Separators 3, 4 and 5 end SENDER_ID, SRC and DST.
        let start = self.fields_start() - SEPARATOR.len();
        let [sender_id_end, src_end, dst_end] = [self.seps[3], self.seps[4], self.seps[5]];
        Frame {
            kind: self.kind,
            action: self.action,
            status: self.status,
            fields,
            starts: [sender_id_end - start, src_end - start, dst_end - start],
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
            "{}::{}::{}::{}",
            self.kind,
            self.action,
            self.status,
            &self.fields[..self.starts[2]]
        )?;
        escape_fmt(self.body(), f)
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

    /// The builders set one field each, in any order, and the fields read
    /// back as set, even a header holding `::` (which `encode` refuses).
    #[test]
    fn fields_read_back_as_set() {
        let texts = ["", "s::rc", "d", "b::ody"];
        let frame = Frame::new(Kind::Err, Action::Msg, Status::NotFound)
            .with_body(texts[3])
            .with_dst(texts[2])
            .with_src(texts[1])
            .with_sender(texts[0]);
        assert_eq!(frame.texts(), texts);
        let whole = Frame::from_fields(Kind::Err, Action::Msg, Status::NotFound, texts);
        assert_eq!(frame, whole);
        assert_eq!(frame.body_text(), "b::ody");
        assert!(frame.validate().is_err());

        let long = "é".repeat(30);
        let frame = frame.with_sender("id").with_body(&long);
        assert_eq!(frame.texts(), ["id", "s::rc", "d", long.as_str()]);
        assert_eq!(frame.body_text(), long);
        assert_eq!(
            format!("{frame:?}"),
            format!(
                "Frame {{ kind: Err, action: Msg, status: NotFound, sender_id: \"id\", \
                 src: \"s::rc\", dst: \"d\", body: {long:?} }}"
            )
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

    /// A frame whose four text fields are short is a copy that keeps no
    /// buffer alive; a longer one shares the line it came in, all four
    /// fields in one buffer.
    #[test]
    fn short_frames_are_copied_and_long_ones_shared() {
        use tokio_util::codec::Decoder;
        let long = "x".repeat(100);
        let short_input = "REQ::GET_PEER::200::::::::abcdefghij\n";
        let long_input = format!("RES::MSG::200::abcdefghij::127.0.0.1:6969::*::{long}\n");
        for (input, shared) in [(short_input, false), (long_input.as_str(), true)] {
            let line = Bytes::copy_from_slice(input.trim_end().as_bytes());
            let within = |text: &str| line.as_ptr_range().contains(&text.as_ptr());
            let frame = Frame::from_line(line.clone()).expect("valid");
            assert_eq!(within(frame.sender_id()), shared, "{input}");
            assert_eq!(within(frame.body()), shared, "{input}");

            let mut buf = BytesMut::from(input.as_bytes());
            let received = buf.as_ptr_range();
            let within = |text: &str| received.contains(&text.as_ptr());
            let decoded = crate::FrameCodec::new()
                .decode(&mut buf)
                .expect("no I/O")
                .expect("a line")
                .expect("valid");
            assert_eq!(within(decoded.sender_id()), shared, "{input}");
            assert_eq!(within(decoded.body()), shared, "{input}");
            assert_eq!(decoded, frame);
        }
        assert!(std::mem::size_of::<Frame>() <= 64);
    }
}
