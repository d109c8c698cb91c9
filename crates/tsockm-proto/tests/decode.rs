//! Table tests for the decoder: every rule and example of sections 1–3 of the
//! wire contract (`shared/design/protocol.md`), as data.
//!
//! Each case is an input stream and the items it must decode to, written one
//! per line by [`render`]. [`check`] feeds the input through a `FrameCodec`
//! whole and in every small chunk size, to imitate TCP fragmentation, and
//! requires the same items each time. At the bottom, a few tests run the
//! codec inside a real `FramedRead` to show the stream survives bad lines.

use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead};
use tsockm_proto::{
    Action, BROADCAST, DEFAULT_MAX_FRAME_BYTES, Frame, FrameCodec, FrameError, Kind, SERVER_ID,
    Status,
};

type Item = Result<Frame, FrameError>;

/// Checks `input` against `expected` with the default frame limit.
fn check(input: &[u8], expected: &str) {
    check_with_limit(DEFAULT_MAX_FRAME_BYTES, input, expected);
}

/// Decodes `input` whole and in chunks of many sizes; every way must give
/// the items `expected` describes (see [`render`]).
fn check_with_limit(limit: usize, input: &[u8], expected: &str) {
    let expected = expected.trim();
    for chunk in chunk_sizes(input.len()) {
        let items = decode_in_chunks(limit, input, chunk);
        let actual = render(&items);
        assert_eq!(
            actual,
            expected,
            "\ninput: {:?}\nlimit: {limit}, chunks of {chunk} bytes",
            String::from_utf8_lossy(input)
        );
    }
}

/// The chunk sizes to try: all small ones, a few larger, and the whole input.
fn chunk_sizes(len: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = if len <= 300 {
        (1..=len).collect()
    } else {
        vec![1, 2, 3, 5, 7, 64, 1000, 4096]
    };
    sizes.push(len.max(1));
    sizes
}

/// Feeds `input` to a fresh codec `chunk` bytes at a time, collecting every
/// item, then ends the stream. Also checks the buffer bound of codec.rs.
fn decode_in_chunks(limit: usize, input: &[u8], chunk: usize) -> Vec<Item> {
    let mut codec = FrameCodec::with_max_frame_bytes(limit);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).expect("decode never fails") {
            items.push(item);
        }
        assert!(
            buf.len() <= limit.saturating_add(1),
            "{} bytes buffered with a limit of {limit}",
            buf.len()
        );
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
        items.push(item);
    }
    items
}

/// One line per item: a frame as its seven fields, the header fields and
/// BODY quoted (so CR, LF and backslashes show); an error as the status it
/// is answered with and its message.
fn render(items: &[Item]) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|item| match item {
            Ok(f) => format!(
                "{} {} {} {:?} {:?} {:?} {:?}",
                f.kind,
                f.action,
                f.status,
                f.sender_id(),
                f.src(),
                f.dst(),
                f.body()
            ),
            Err(e) => {
                assert_eq!(e.action(), Action::None, "errors are answered with NONE");
                format!("{} {}", e.status().code(), e)
            }
        })
        .collect();
    lines.join("\n")
}

// Section 1: framing.

#[test]
fn seven_fields() {
    check(
        b"REQ::MSG::200::abcdefghij::127.0.0.1:50312::*::hello\n",
        r#"REQ MSG 200 "abcdefghij" "127.0.0.1:50312" "*" "hello""#,
    );
}

#[test]
fn the_shortest_frame() {
    check(
        b"REQ::COMM_END::200::::::::\n",
        r#"REQ COMM_END 200 "" "" "" """#,
    );
}

#[test]
fn empty_fields() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"REQ::MSG::200::::::::hello\n",
            r#"REQ MSG 200 "" "" "" "hello""#,
        ),
        (b"REQ::MSG::200::id::::::\n", r#"REQ MSG 200 "id" "" "" """#),
        (
            b"REQ::MSG::200::::src::::\n",
            r#"REQ MSG 200 "" "src" "" """#,
        ),
        (
            b"REQ::MSG::200::::::dst::\n",
            r#"REQ MSG 200 "" "" "dst" """#,
        ),
        (
            b"RES::COMM::200::a::b::c::\n",
            r#"RES COMM 200 "a" "b" "c" """#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn body_is_everything_after_the_sixth_separator() {
    let cases: &[(&[u8], &str)] = &[
        // BODY holding `::`.
        (
            b"REQ::MSG::200::::::*::a::b::c\n",
            r#"REQ MSG 200 "" "" "*" "a::b::c""#,
        ),
        (
            b"REQ::MSG::200::::::*::::\n",
            r#"REQ MSG 200 "" "" "*" "::""#,
        ),
        (
            b"REQ::MSG::200::::::*::a::\n",
            r#"REQ MSG 200 "" "" "*" "a::""#,
        ),
        // BODY starting with `:`: the leftmost `::` is the separator.
        (
            b"REQ::MSG::200::::::*:::hi\n",
            r#"REQ MSG 200 "" "" "*" ":hi""#,
        ),
        (
            b"REQ::MSG::200:::::::::hi\n",
            r#"REQ MSG 200 "" "" "" ":hi""#,
        ),
        (b"REQ::MSG::200::::::*:::\n", r#"REQ MSG 200 "" "" "*" ":""#),
        (
            b"REQ::MSG::200::::::*:::::\n",
            r#"REQ MSG 200 "" "" "*" ":::""#,
        ),
        // Single colons are not separators, in any field.
        (
            b"REQ::MSG::200::a:b::1.2.3.4:5::c:d::e:f\n",
            r#"REQ MSG 200 "a:b" "1.2.3.4:5" "c:d" "e:f""#,
        ),
        // A body that looks like a whole frame is just text.
        (
            b"RES::MSG::200::id::src::*::REQ::COMM_END::200::::::::\n",
            r#"RES MSG 200 "id" "src" "*" "REQ::COMM_END::200::::::::""#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn body_escapes() {
    let cases: &[(&[u8], &str)] = &[
        // `\n`, `\r` and `\\` are turned back.
        (
            b"REQ::MSG::200::::::*::two\\nlines\n",
            r#"REQ MSG 200 "" "" "*" "two\nlines""#,
        ),
        (
            b"REQ::MSG::200::::::*::crlf\\r\\n\n",
            r#"REQ MSG 200 "" "" "*" "crlf\r\n""#,
        ),
        (
            b"REQ::MSG::200::::::*::back\\\\slash\n",
            r#"REQ MSG 200 "" "" "*" "back\\slash""#,
        ),
        // `\\n` is a backslash and an `n`, not a newline.
        (
            b"REQ::MSG::200::::::*::\\\\n\n",
            r#"REQ MSG 200 "" "" "*" "\\n""#,
        ),
        (
            b"REQ::MSG::200::::::*::\\\\\\n\n",
            r#"REQ MSG 200 "" "" "*" "\\\n""#,
        ),
        // Unknown sequences and a lone trailing backslash are kept as they are.
        (
            b"REQ::MSG::200::::::*::tab\\there\n",
            r#"REQ MSG 200 "" "" "*" "tab\\there""#,
        ),
        (
            b"REQ::MSG::200::::::*::trailing\\\n",
            r#"REQ MSG 200 "" "" "*" "trailing\\""#,
        ),
        (
            b"REQ::MSG::200::::::*::\\\n",
            r#"REQ MSG 200 "" "" "*" "\\""#,
        ),
        (
            b"REQ::MSG::200::::::*::\\\\\\\n",
            r#"REQ MSG 200 "" "" "*" "\\\\""#,
        ),
        (
            "REQ::MSG::200::::::*::\\é\\x\\\n".as_bytes(),
            r#"REQ MSG 200 "" "" "*" "\\é\\x\\""#,
        ),
        // A trailing `\` before `\r\n`: the CR belongs to the terminator.
        (
            b"REQ::MSG::200::::::*::end\\\r\n",
            r#"REQ MSG 200 "" "" "*" "end\\""#,
        ),
        // Escapes are a BODY thing: header fields are taken literally.
        (
            b"REQ::MSG::200::a\\nb::c\\\\d::e\\rf::g\\nh\n",
            r#"REQ MSG 200 "a\\nb" "c\\\\d" "e\\rf" "g\nh""#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn crlf_is_accepted() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"REQ::COMM_END::200::::::::\r\n",
            r#"REQ COMM_END 200 "" "" "" """#,
        ),
        (
            b"REQ::MSG::200::::::*::hi\r\nREQ::MSG::200::::::*::lf\nREQ::MSG::200::::::*::crlf\r\n",
            r#"
REQ MSG 200 "" "" "*" "hi"
REQ MSG 200 "" "" "*" "lf"
REQ MSG 200 "" "" "*" "crlf"
"#,
        ),
        // Only one CR is part of the terminator; another one is BODY.
        (
            b"REQ::MSG::200::::::*::x\r\r\n",
            r#"REQ MSG 200 "" "" "*" "x\r""#,
        ),
        // A CR that is not right before the LF is kept.
        (
            b"REQ::MSG::200::::::*::a\rb\n",
            r#"REQ MSG 200 "" "" "*" "a\rb""#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn blank_lines_are_skipped_without_an_item() {
    let cases: &[(&[u8], &str)] = &[
        (b"\n", ""),
        (b"\r\n", ""),
        (b"\n\n\r\n\n\r\n", ""),
        (
            b"\n\r\nREQ::COMM_END::200::::::::\n\r\n\nREQ::COMM_END::200::::::::\r\n\n",
            r#"
REQ COMM_END 200 "" "" "" ""
REQ COMM_END 200 "" "" "" ""
"#,
        ),
        // Blank means empty after removing one CR: two CRs are a malformed line.
        (
            b"\r\r\n",
            "400 frame has 1 of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY",
        ),
        // So is a line of spaces.
        (
            b" \n",
            "400 frame has 1 of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn an_unterminated_last_line_is_dropped() {
    let cases: &[(&[u8], &str)] = &[
        (b"REQ::COMM_END::200::::::::", ""),
        (b"REQ::COMM_END::200::::::::\r", ""),
        (
            b"REQ::MSG::200::::::*::one\nREQ::MSG::200::::::*::tw",
            r#"REQ MSG 200 "" "" "*" "one""#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn bracketed_full_ipv6_addresses() {
    check(
        b"RES::COMM::200::server::[0:0:0:0:0:0:0:1]:6969::[fe80:0:0:0:1:2:3:4]:50312::abcdefghij tok\n",
        r#"RES COMM 200 "server" "[0:0:0:0:0:0:0:1]:6969" "[fe80:0:0:0:1:2:3:4]:50312" "abcdefghij tok""#,
    );
    check(
        b"REQ::MSG::200::::[2001:db8:0:0:0:0:0:1]:1::*::hi\r\n",
        r#"REQ MSG 200 "" "[2001:db8:0:0:0:0:0:1]:1" "*" "hi""#,
    );
}

/// Why the contract forbids `::` zero compression: `[::1]` is split apart,
/// and the fields after it shift (this decodes, but not as meant).
#[test]
fn compressed_ipv6_shifts_the_fields() {
    check(
        b"REQ::MSG::200::::[::1]:6969::*::hi\n",
        r#"REQ MSG 200 "" "[" "1]:6969" "*::hi""#,
    );
}

// The length limit.

#[test]
fn a_line_of_exactly_the_limit_is_accepted() {
    let frame = b"REQ::MSG::200::::::*::0123456789";
    let limit = frame.len();
    let mut lf = frame.to_vec();
    lf.push(b'\n');
    let mut crlf = frame.to_vec();
    crlf.extend_from_slice(b"\r\n");
    let expected = r#"REQ MSG 200 "" "" "*" "0123456789""#;
    check_with_limit(limit, &lf, expected);
    check_with_limit(limit, &crlf, expected);
    check_with_limit(
        limit,
        &[lf.as_slice(), &crlf, &lf].concat(),
        &[expected; 3].join("\n"),
    );
}

#[test]
fn a_line_of_exactly_the_default_limit_is_accepted() {
    let head = "REQ::MSG::200::::::*::";
    let body = "x".repeat(DEFAULT_MAX_FRAME_BYTES - head.len());
    let line = format!("{head}{body}");
    assert_eq!(line.len(), DEFAULT_MAX_FRAME_BYTES);
    let expected = format!(r#"REQ MSG 200 "" "" "*" "{body}""#);
    check(format!("{line}\n").as_bytes(), &expected);
    check(format!("{line}\r\n").as_bytes(), &expected);
    // One byte more is too long.
    check(
        format!("{line}x\r\n").as_bytes(),
        "413 frame longer than the maximum of 16384 bytes",
    );
}

#[test]
fn an_over_long_line_is_one_error_and_the_next_line_is_read() {
    let limit = 32;
    let too_long = "413 frame longer than the maximum of 32 bytes";
    // 26 bytes: short enough for the limit.
    let end = "REQ::COMM_END::200::::::::";
    let good = r#"REQ COMM_END 200 "" "" "" """#;
    let x32 = "x".repeat(32);
    let x200 = "x".repeat(200);
    let cases = [
        // One byte over, with either terminator.
        (format!("{x32}y\n{end}\n"), format!("{too_long}\n{good}")),
        (
            format!("{x32}y\r\n{end}\r\n"),
            format!("{too_long}\n{good}"),
        ),
        // 32 bytes and a CR of the content, then the terminator's CR:
        // 33 bytes once the terminator is removed.
        (format!("{x32}\r\r\n{end}\n"), format!("{too_long}\n{good}")),
        // Many times the limit.
        (format!("{x200}\n{end}\n"), format!("{too_long}\n{good}")),
        // Repeated discards: one error per over-long line.
        (
            format!("{x200}\n{x200}\r\n\n{x32}y\n{end}\n"),
            format!("{too_long}\n{too_long}\n{too_long}\n{good}"),
        ),
        // Over-long lines around a short bad one and a blank one.
        (
            format!("{x200}\nREQ::MSG\n\r\n{x200}\n{end}\n"),
            format!(
                "{too_long}\n400 frame has 2 of the 7 fields \
                 TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY\n{too_long}\n{good}"
            ),
        ),
        // An over-long line that never ends is still reported, once.
        (format!("{end}\n{x200}"), format!("{good}\n{too_long}")),
    ];
    for (input, expected) in cases {
        check_with_limit(limit, input.as_bytes(), &expected);
    }
}

/// The error comes as soon as the limit is passed, before the terminator
/// arrives, and the buffer is emptied at once.
#[test]
fn an_over_long_line_is_reported_before_its_end() {
    let mut codec = FrameCodec::with_max_frame_bytes(32);
    let mut buf = BytesMut::from(&[b'x'; 34][..]);
    let item = codec.decode(&mut buf).expect("decode never fails");
    assert_eq!(item, Some(Err(FrameError::TooLong { limit: 32 })));
    assert!(buf.is_empty());
    // The rest of that line brings no second error.
    buf.extend_from_slice(&[b'x'; 100]);
    assert_eq!(codec.decode(&mut buf).expect("no I/O"), None);
    assert!(buf.is_empty());
    buf.extend_from_slice(b" end\nREQ::COMM_END::200::::::::\n");
    let item = codec.decode(&mut buf).expect("no I/O");
    assert_eq!(item, Some(Ok(Frame::comm_end())));
    assert_eq!(codec.decode(&mut buf).expect("no I/O"), None);
}

/// A limit-long line waiting for its `\n` after a `\r` is not over the limit
/// yet; anything else after the `\r` makes it so.
#[test]
fn a_cr_at_the_limit_waits_for_the_next_byte() {
    let mut codec = FrameCodec::with_max_frame_bytes(4);
    let mut buf = BytesMut::from(&b"abcd\r"[..]);
    assert_eq!(codec.decode(&mut buf).expect("no I/O"), None);
    assert_eq!(buf.len(), 5);
    buf.extend_from_slice(b"x");
    assert_eq!(
        codec.decode(&mut buf).expect("no I/O"),
        Some(Err(FrameError::TooLong { limit: 4 }))
    );
}

/// Regression (found by the fuzzer): a limit of `usize::MAX`, the natural
/// way to ask for "no limit", overflowed `limit + 1` in the check for an
/// unterminated line (a panic in debug builds; in release builds every
/// partial line was reported as too long).
#[test]
fn no_overflow_with_the_largest_limit() {
    for limit in [usize::MAX, usize::MAX - 1] {
        check_with_limit(
            limit,
            b"REQ::COMM_END::200::::::::\n\xf5G\xf5",
            r#"REQ COMM_END 200 "" "" "" """#,
        );
    }
}

/// With a limit of zero every line but a blank one is too long.
#[test]
fn a_limit_of_zero() {
    check_with_limit(
        0,
        b"\n\r\nx\n\r\n",
        "413 frame longer than the maximum of 0 bytes",
    );
}

// Bad lines: each is one error item, and the next line is read.

#[test]
fn invalid_utf8_then_a_good_line() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"REQ::MSG::200::::::*::\xff\nREQ::COMM_END::200::::::::\n",
            r#"
400 frame is not valid UTF-8 (invalid byte at offset 22)
REQ COMM_END 200 "" "" "" ""
"#,
        ),
        // In a header field.
        (
            b"REQ::MSG::200::\xc3\x28::::*::hi\r\nREQ::COMM_END::200::::::::\r\n",
            r#"
400 frame is not valid UTF-8 (invalid byte at offset 15)
REQ COMM_END 200 "" "" "" ""
"#,
        ),
        // A multi-byte character cut by the end of the line.
        (
            b"REQ::MSG::200::::::*::\xe2\x82\nREQ::COMM_END::200::::::::\n",
            r#"
400 frame is not valid UTF-8 (invalid byte at offset 22)
REQ COMM_END 200 "" "" "" ""
"#,
        ),
        // Invalid UTF-8 beats every other problem.
        (
            b"\xffXX::NOPE\n",
            "400 frame is not valid UTF-8 (invalid byte at offset 0)",
        ),
        // Valid multi-byte text is fine.
        (
            "REQ::MSG::200::::::*::héllo € 😀\n".as_bytes(),
            r#"REQ MSG 200 "" "" "*" "héllo € 😀""#,
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn fewer_than_seven_fields() {
    let cases: &[(&[u8], &str)] = &[
        (b"hello\n", "1"),
        (b"REQ::MSG\n", "2"),
        (b"REQ::MSG::200::::::*\n", "6"),
        // Six separators needed; the shortest frame minus its last one.
        (b"REQ::COMM_END::200::::::\n", "6"),
        // `:::` is one separator and a colon, not two separators.
        (b"REQ:::MSG:::200\n", "3"),
        // An unknown action does not matter when fields are missing.
        (b"REQ::PING::200\n", "3"),
    ];
    for (input, found) in cases {
        let expected = format!(
            "400 frame has {found} of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY\n\
             REQ COMM_END 200 \"\" \"\" \"\" \"\""
        );
        let input = [*input, b"REQ::COMM_END::200::::::::\n"].concat();
        check(&input, &expected);
    }
}

#[test]
fn unknown_type_status_and_action() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"REQUEST::MSG::200::::::*::hi\n",
            "400 unknown TYPE `REQUEST` (expected REQ, RES or ERR)",
        ),
        (
            b"req::MSG::200::::::*::hi\n",
            "400 unknown TYPE `req` (expected REQ, RES or ERR)",
        ),
        (
            b"::MSG::200::::::*::hi\n",
            "400 unknown TYPE `` (expected REQ, RES or ERR)",
        ),
        (
            b"REQ::MSG::201::::::*::hi\n",
            "400 unknown STATUS `201` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)",
        ),
        (
            b"REQ::MSG::OK::::::*::hi\n",
            "400 unknown STATUS `OK` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)",
        ),
        (
            b"REQ::MSG::0200::::::*::hi\n",
            "400 unknown STATUS `0200` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)",
        ),
        (
            b"REQ::MSG:: 200::::::*::hi\n",
            "400 unknown STATUS ` 200` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)",
        ),
        (
            b"REQ::PING::200::::::*::hi\n",
            "405 unknown ACTION `PING` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, JOIN, PART, ROOMS, HISTORY, AUTH or NONE)",
        ),
        (
            b"REQ::msg::200::::::*::hi\n",
            "405 unknown ACTION `msg` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, JOIN, PART, ROOMS, HISTORY, AUTH or NONE)",
        ),
        (
            b"REQ::::200::::::*::hi\n",
            "405 unknown ACTION `` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, JOIN, PART, ROOMS, HISTORY, AUTH or NONE)",
        ),
        // Precedence: a malformed frame (400) beats an unknown action (405).
        (
            b"REQ::PING::999::::::*::hi\n",
            "400 unknown STATUS `999` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)",
        ),
        (
            b"XXX::PING::200::::::*::hi\n",
            "400 unknown TYPE `XXX` (expected REQ, RES or ERR)",
        ),
        // TYPE is checked before STATUS.
        (
            b"XXX::MSG::999::::::*::hi\n",
            "400 unknown TYPE `XXX` (expected REQ, RES or ERR)",
        ),
    ];
    for (input, expected) in cases {
        let input = [*input, b"REQ::COMM_END::200::::::::\n"].concat();
        let expected = format!("{expected}\nREQ COMM_END 200 \"\" \"\" \"\" \"\"");
        check(&input, &expected);
    }
}

/// A long unknown value is quoted cut short, so an error reason stays small.
#[test]
fn long_values_are_cut_in_messages() {
    let input = format!("REQ::{}::200::::::::\n", "A".repeat(100));
    check(
        input.as_bytes(),
        &format!(
            "405 unknown ACTION `{}…` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, JOIN, PART, ROOMS, HISTORY, AUTH or NONE)",
            "A".repeat(40)
        ),
    );
}

// Section 2: the vocabulary. Every TYPE, ACTION and STATUS decodes.

#[test]
fn every_type_action_and_status() {
    let mut input = String::new();
    let mut expected = Vec::new();
    for kind in Kind::ALL {
        for action in Action::ALL {
            for status in Status::ALL {
                input.push_str(&format!("{kind}::{action}::{status}::::::::\n"));
                expected.push(format!(r#"{kind} {action} {status} "" "" "" """#));
            }
        }
    }
    assert_eq!(expected.len(), 3 * 12 * 11);
    check(input.as_bytes(), &expected.join("\n"));
}

#[test]
fn the_vocabulary_of_the_contract() {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["REQ", "RES", "ERR"]);
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "COMM",
            "COMM_END",
            "MSG",
            "GET_PEER",
            "NTFY_KILL",
            "NTFY_JOIN",
            "JOIN",
            "PART",
            "ROOMS",
            "HISTORY",
            "AUTH",
            "NONE"
        ]
    );
    let statuses: Vec<(u16, &str)> = Status::ALL.iter().map(|s| (s.code(), s.name())).collect();
    assert_eq!(
        statuses,
        [
            (200, "OK"),
            (400, "BAD_REQUEST"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (404, "NOT_FOUND"),
            (405, "METHOD_NOT_ALLOWED"),
            (408, "REQUEST_TIMEOUT"),
            (413, "PAYLOAD_TOO_LARGE"),
            (429, "TOO_MANY_REQUESTS"),
            (502, "BAD_GATEWAY"),
            (503, "SERVICE_UNAVAILABLE"),
        ]
    );
}

// Section 3: field conventions, as frames the server and clients send.

#[test]
fn frames_of_a_session() {
    assert_eq!(SERVER_ID, "server");
    assert_eq!(BROADCAST, "*");
    let srv = "127.0.0.1:6969";
    let input = format!(
        "REQ::COMM::200::::127.0.0.1:50312::{srv}::alice\n\
         RES::COMM::200::server::{srv}::127.0.0.1:50312::Xk3mP9qLzA 0123456789abcdefghij_-\n\
         RES::NTFY_JOIN::200::Xk3mP9qLzA::{srv}::*::alice\n\
         REQ::MSG::200::Xk3mP9qLzA::::*::hi all\n\
         RES::MSG::200::Xk3mP9qLzA::{srv}::*::hi all\n\
         RES::MSG::200::Xk3mP9qLzA::{srv}::Qw8rT2yUio::just you\n\
         REQ::GET_PEER::200::::::::Qw8rT2yUio\n\
         RES::GET_PEER::200::Qw8rT2yUio::{srv}::Xk3mP9qLzA::bob\n\
         ERR::GET_PEER::404::server::{srv}::Xk3mP9qLzA::no peer with id `nope`\n\
         REQ::COMM::200::server::{srv}::Xk3mP9qLzA::check?\n\
         RES::COMM::200::Xk3mP9qLzA::::::OK\n\
         ERR::NONE::400::server::{srv}::127.0.0.1:50312::frame has 1 of the 7 fields\n\
         REQ::COMM_END::200::::::::\n\
         RES::COMM_END::200::server::{srv}::Xk3mP9qLzA::OK\n\
         RES::NTFY_KILL::200::Xk3mP9qLzA::{srv}::*::alice\n"
    );
    check(
        input.as_bytes(),
        r#"
REQ COMM 200 "" "127.0.0.1:50312" "127.0.0.1:6969" "alice"
RES COMM 200 "server" "127.0.0.1:6969" "127.0.0.1:50312" "Xk3mP9qLzA 0123456789abcdefghij_-"
RES NTFY_JOIN 200 "Xk3mP9qLzA" "127.0.0.1:6969" "*" "alice"
REQ MSG 200 "Xk3mP9qLzA" "" "*" "hi all"
RES MSG 200 "Xk3mP9qLzA" "127.0.0.1:6969" "*" "hi all"
RES MSG 200 "Xk3mP9qLzA" "127.0.0.1:6969" "Qw8rT2yUio" "just you"
REQ GET_PEER 200 "" "" "" "Qw8rT2yUio"
RES GET_PEER 200 "Qw8rT2yUio" "127.0.0.1:6969" "Xk3mP9qLzA" "bob"
ERR GET_PEER 404 "server" "127.0.0.1:6969" "Xk3mP9qLzA" "no peer with id `nope`"
REQ COMM 200 "server" "127.0.0.1:6969" "Xk3mP9qLzA" "check?"
RES COMM 200 "Xk3mP9qLzA" "" "" "OK"
ERR NONE 400 "server" "127.0.0.1:6969" "127.0.0.1:50312" "frame has 1 of the 7 fields"
REQ COMM_END 200 "" "" "" ""
RES COMM_END 200 "server" "127.0.0.1:6969" "Xk3mP9qLzA" "OK"
RES NTFY_KILL 200 "Xk3mP9qLzA" "127.0.0.1:6969" "*" "alice"
"#,
    );
}

/// The builders produce what the decoder reads back.
#[test]
fn builders_decode_to_themselves() {
    let frames = [
        Frame::register("alice"),
        Frame::resume("Xk3mP9qLzA", "0123456789abcdefghij_-"),
        Frame::broadcast("hi\nthere \\ :: :"),
        Frame::direct("Qw8rT2yUio", ":starts with a colon"),
        Frame::get_peer("Qw8rT2yUio"),
        Frame::comm_end(),
        Frame::health_answer("Xk3mP9qLzA"),
        Frame::error(Action::None, Status::BadRequest, "bad")
            .with_sender(SERVER_ID)
            .with_src("127.0.0.1:6969")
            .with_dst("127.0.0.1:50312"),
    ];
    let mut input = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut input).expect("valid headers");
    }
    let items = decode_in_chunks(DEFAULT_MAX_FRAME_BYTES, &input, 3);
    let expected: Vec<Item> = frames.iter().cloned().map(Ok).collect();
    assert_eq!(items, expected);
}

/// `FromStr` follows the same rules as the codec for one line.
#[test]
fn from_str_agrees_with_the_codec() {
    let lines = [
        "REQ::COMM_END::200::::::::",
        "REQ::COMM_END::200::::::::\n",
        "REQ::COMM_END::200::::::::\r\n",
        "REQ::MSG::200::::::*:::a\\nb\\t",
        "REQ::PING::200::::::::",
        "REQ::MSG::201::::::::",
        "REQ::MSG",
    ];
    for line in lines {
        let mut buf = BytesMut::from(line.as_bytes());
        if !line.ends_with('\n') {
            buf.extend_from_slice(b"\n");
        }
        let from_codec = FrameCodec::new().decode(&mut buf).expect("no I/O");
        assert_eq!(from_codec, Some(line.parse::<Frame>()), "{line:?}");
    }
}

// Through a real `FramedRead`: bad lines are items, and the stream goes on.

/// Waits at most this long for the next item from a stream.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn framed_read_over_a_slice_keeps_going_after_bad_lines() {
    let input: &[u8] = b"REQ::MSG::200::::::*::one\n\
        \xff\xfe\n\
        \r\n\
        REQ::PING::200::::::::\n\
        nonsense\n\
        0123456789012345678901234567890123456789012345678901234567890123456789\n\
        REQ::MSG::200::::::*::two\r\n\
        REQ::MSG::200::::::*::unterminated";
    let reader = FramedRead::new(input, FrameCodec::with_max_frame_bytes(64));
    let items: Vec<Item> = reader
        .map(|item| item.expect("no I/O error from a slice"))
        .collect()
        .await;
    assert_eq!(
        render(&items),
        r#"
REQ MSG 200 "" "" "*" "one"
400 frame is not valid UTF-8 (invalid byte at offset 0)
405 unknown ACTION `PING` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, JOIN, PART, ROOMS, HISTORY, AUTH or NONE)
400 frame has 1 of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY
413 frame longer than the maximum of 64 bytes
REQ MSG 200 "" "" "*" "two"
"#
        .trim()
    );
}

#[tokio::test]
async fn framed_read_over_a_duplex_pipe_keeps_going_after_bad_lines() {
    // The pipe holds more than this test ever writes, so no write waits for
    // the reader.
    let (mut client, server) = tokio::io::duplex(4096);
    let mut reader = FramedRead::new(server, FrameCodec::with_max_frame_bytes(32));

    async fn next(reader: &mut FramedRead<tokio::io::DuplexStream, FrameCodec>) -> Option<Item> {
        tokio::time::timeout(STEP_TIMEOUT, reader.next())
            .await
            .expect("an item in time")
            .map(|item| item.expect("no I/O error"))
    }

    // A frame cut in two writes.
    client.write_all(b"REQ::COMM_END::").await.expect("write");
    client.write_all(b"200::::::::\n").await.expect("write");
    assert_eq!(next(&mut reader).await, Some(Ok(Frame::comm_end())));

    // An over-long line, written in pieces: reported once, before its end.
    client.write_all(&[b'x'; 40]).await.expect("write");
    assert_eq!(
        next(&mut reader).await,
        Some(Err(FrameError::TooLong { limit: 32 }))
    );
    client.write_all(&[b'x'; 100]).await.expect("write");
    client.write_all(b"\n").await.expect("write");

    // Invalid UTF-8, a blank line, then a good frame.
    client.write_all(b"\xc0\n\r\n").await.expect("write");
    assert!(matches!(
        next(&mut reader).await,
        Some(Err(FrameError::InvalidUtf8 { valid_up_to: 0 }))
    ));
    client
        .write_all(b"REQ::MSG::200::::::*::a\\nb\r\n")
        .await
        .expect("write");
    assert_eq!(next(&mut reader).await, Some(Ok(Frame::broadcast("a\nb"))));

    // End of stream: an unterminated line is dropped and the stream ends.
    client
        .write_all(b"REQ::MSG::200::::::*::cut")
        .await
        .expect("write");
    drop(client);
    assert_eq!(next(&mut reader).await, None);
}
