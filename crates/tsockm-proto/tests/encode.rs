//! Table tests for the encoder: the wire form of section 1 of the contract
//! (`shared/design/protocol.md`), BODY escaping, the relay of unknown
//! escapes, and the header fields an encoder must refuse to write.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use tsockm_proto::{Action, CodecError, Field, Frame, FrameCodec, FrameError, Kind, Status};

/// Encodes `frame` through the codec and returns the line as text.
fn encode(frame: &Frame) -> String {
    let mut buf = BytesMut::new();
    FrameCodec::new()
        .encode(frame, &mut buf)
        .expect("valid headers");
    String::from_utf8(buf.to_vec()).expect("frames are UTF-8")
}

#[test]
fn the_shortest_frame() {
    assert_eq!(encode(&Frame::comm_end()), "REQ::COMM_END::200::::::::\n");
}

#[test]
fn seven_fields_and_a_bare_lf() {
    let frame = Frame::new(Kind::Res, Action::Msg, Status::Ok)
        .with_sender("abcdefghij")
        .with_src("127.0.0.1:6969")
        .with_dst("*")
        .with_body("hello");
    let line = encode(&frame);
    assert_eq!(
        line,
        "RES::MSG::200::abcdefghij::127.0.0.1:6969::*::hello\n"
    );
    // Senders emit `\n` only, never `\r\n`.
    assert!(!line.contains('\r'));
}

#[test]
fn body_escaping() {
    let cases = [
        ("", ""),
        ("plain text", "plain text"),
        ("two\nlines", "two\\nlines"),
        ("crlf\r\n", "crlf\\r\\n"),
        ("back\\slash", "back\\\\slash"),
        ("\\n is not a newline", "\\\\n is not a newline"),
        ("tab\\there", "tab\\\\there"),
        ("trailing\\", "trailing\\\\"),
        // `::` and colons at either end need no escaping: BODY is last.
        ("a::b", "a::b"),
        (":starts", ":starts"),
        ("ends:", "ends:"),
        ("::", "::"),
        ("é€😀\n", "é€😀\\n"),
    ];
    for (body, wire) in cases {
        let line = encode(&Frame::broadcast(body));
        assert_eq!(line, format!("REQ::MSG::200::::::*::{wire}\n"), "{body:?}");
        let decoded = FrameCodec::new()
            .decode(&mut BytesMut::from(line.as_bytes()))
            .expect("no I/O");
        assert_eq!(decoded, Some(Ok(Frame::broadcast(body))), "{body:?}");
    }
}

/// Section 1: the server relays the decoded BODY and encodes it again, so an
/// unknown escape arrives at other peers escaped properly.
#[test]
fn unknown_escapes_are_relayed_escaped() {
    let cases = [
        ("tab\\there", "tab\\\\there"),
        ("lone\\", "lone\\\\"),
        ("\\", "\\\\"),
        ("\\x\\n", "\\\\x\\n"),
    ];
    for (received, relayed) in cases {
        let line = format!("REQ::MSG::200::::::*::{received}\n");
        let frame = FrameCodec::new()
            .decode(&mut BytesMut::from(line.as_bytes()))
            .expect("no I/O")
            .expect("a whole line")
            .expect("a good frame");
        let relay = Frame::new(Kind::Res, Action::Msg, Status::Ok)
            .with_sender("abcdefghij")
            .with_src("127.0.0.1:6969")
            .with_dst("*")
            .with_body(frame.body());
        assert_eq!(
            encode(&relay),
            format!("RES::MSG::200::abcdefghij::127.0.0.1:6969::*::{relayed}\n"),
            "{received:?}"
        );
    }
}

#[test]
fn full_ipv6_addresses_are_written() {
    let frame = Frame::response(Action::Comm)
        .with_sender("server")
        .with_src("[0:0:0:0:0:0:0:1]:6969")
        .with_dst("[fe80:0:0:0:1:2:3:4]:50312")
        .with_body("abcdefghij token");
    assert_eq!(
        encode(&frame),
        "RES::COMM::200::server::[0:0:0:0:0:0:0:1]:6969::[fe80:0:0:0:1:2:3:4]:50312::abcdefghij token\n"
    );
}

#[test]
fn ambiguous_header_fields_are_refused() {
    let cases = [
        ("a::b", "contains `::`"),
        ("[::1]:6969", "contains `::`"),
        ("::", "contains `::`"),
        ("a\nb", "contains a line break"),
        ("a\rb", "contains a line break"),
        ("\r", "contains a line break"),
        (":a", "begins or ends with `:`"),
        ("a:", "begins or ends with `:`"),
        (":", "begins or ends with `:`"),
        // More than one problem: `::` first, then a line break.
        (":a\n::", "contains `::`"),
        (":a\r", "contains a line break"),
    ];
    let fields = [Field::SenderId, Field::Src, Field::Dst];
    for (value, problem) in cases {
        for field in fields {
            let base = Frame::broadcast("x");
            let frame = match field {
                Field::SenderId => base.with_sender(value),
                Field::Src => base.with_src(value),
                _ => base.with_dst(value),
            };
            let expected = FrameError::InvalidField {
                field,
                value: value.to_owned(),
                problem,
            };
            assert_eq!(frame.validate(), Err(expected.clone()), "{field} {value:?}");

            // Through the codec: an error, and nothing written.
            let mut buf = BytesMut::from(&b"earlier\n"[..]);
            let err = FrameCodec::new()
                .encode(&frame, &mut buf)
                .expect_err("refused");
            assert!(matches!(&err, CodecError::Frame(e) if *e == expected));
            assert_eq!(&buf[..], b"earlier\n");
            assert_eq!(
                err.to_string(),
                format!("cannot encode frame: {field} `{value}` {problem}")
            );
        }
    }
}

/// Single colons inside a header field are fine (`host:port`).
#[test]
fn single_inner_colons_are_written() {
    let frame = Frame::broadcast("x")
        .with_sender("a:b:c")
        .with_src("127.0.0.1:1");
    assert_eq!(encode(&frame), "REQ::MSG::200::a:b:c::127.0.0.1:1::*::x\n");
}

#[test]
fn display_to_bytes_and_the_codec_agree() {
    let frames = [
        Frame::comm_end(),
        Frame::register("alice"),
        Frame::broadcast("multi\nline \\ :: text\r"),
        Frame::error(Action::None, Status::PayloadTooLarge, "too long")
            .with_sender("server")
            .with_src("127.0.0.1:6969")
            .with_dst("127.0.0.1:50312"),
    ];
    for frame in frames {
        let line = encode(&frame);
        assert_eq!(line, format!("{frame}\n"));
        assert_eq!(frame.to_bytes().expect("valid"), line.as_bytes());
        // The owned-frame encoder writes the same.
        let mut buf = BytesMut::new();
        FrameCodec::new()
            .encode(frame.clone(), &mut buf)
            .expect("valid");
        assert_eq!(&buf[..], line.as_bytes());
    }
}

/// Frames are appended: encoding several into one buffer gives their lines
/// in order.
#[test]
fn frames_are_appended() {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    codec
        .encode(Frame::register("bob"), &mut buf)
        .expect("valid");
    codec
        .encode(Frame::get_peer("abc"), &mut buf)
        .expect("valid");
    assert_eq!(
        &buf[..],
        b"REQ::COMM::200::::::::bob\nREQ::GET_PEER::200::::::::abc\n"
    );
}
