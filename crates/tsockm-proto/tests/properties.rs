//! Property tests for the codec:
//! - `decode(encode(f)) == f` for every frame whose header fields obey the
//!   contract (no `::`, CR or LF, no leading or trailing `:`), with any BODY;
//! - splitting a byte stream anywhere does not change what it decodes to;
//! - the decoder agrees with a plain line-by-line model of section 1, never
//!   panics, and never keeps more than limit + 1 bytes while it waits for
//!   more input.
//!
//! Case counts are kept modest so the whole suite stays fast.

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tokio_util::codec::{Decoder, Encoder};
use tsockm_proto::{Action, DEFAULT_MAX_FRAME_BYTES, Frame, FrameCodec, FrameError, Kind, Status};

type Item = Result<Frame, FrameError>;

/// A header field the contract allows: empty, a typical value, or pieces of
/// any text without `:`, CR or LF joined by single colons.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("server".to_owned()),
        Just("*".to_owned()),
        Just("127.0.0.1:6969".to_owned()),
        Just("[0:0:0:0:0:0:0:1]:6969".to_owned()),
        prop::collection::vec("[^:\r\n]{1,6}", 1..4).prop_map(|parts| parts.join(":")),
    ]
}

/// Any BODY: arbitrary Unicode (control characters included), or text rich
/// in backslashes, CR, LF, colons and the letters of the escapes.
fn body() -> impl Strategy<Value = String> {
    prop_oneof!["(?s).{0,60}", "[\\\\\r\n:nrt x😀é]{0,40}", any::<String>(),]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        select(Kind::ALL.to_vec()),
        select(Action::ALL.to_vec()),
        select(Status::ALL.to_vec()),
        header(),
        header(),
        header(),
        body(),
    )
        .prop_map(|(kind, action, status, sender, src, dst, body)| {
            Frame::new(kind, action, status)
                .with_sender(sender)
                .with_src(src)
                .with_dst(dst)
                .with_body(body)
        })
}

/// A piece of a stream: frames with either terminator, blank lines,
/// malformed and over-long lines, invalid UTF-8, and raw bytes (which may
/// leave a line unterminated).
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => frame().prop_map(|f| f.to_bytes().expect("valid headers").to_vec()),
        1 => frame().prop_map(|f| format!("{f}\r\n").into_bytes()),
        1 => prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec()), Just(b"\r".to_vec())],
        1 => "[A-Z_:0-9\\\\\r]{0,40}\n".prop_map(String::into_bytes),
        1 => (0usize..300).prop_map(|n| [vec![b'x'; n], b"\n".to_vec()].concat()),
        1 => Just(b"REQ::MSG::200::::::*::\xff\xfe\n".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..60),
    ]
}

/// A frame limit: mostly small, so over-long lines are common.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..160,
        1 => Just(DEFAULT_MAX_FRAME_BYTES),
        1 => Just(usize::MAX),
    ]
}

/// Feeds `input` to a fresh codec, cut at the given points (any order,
/// duplicates allowed), and ends the stream. Checks the buffer bound each
/// time the decoder asks for more input.
fn decode_split(limit: usize, input: &[u8], cuts: &[usize]) -> Vec<Item> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut codec = FrameCodec::with_max_frame_bytes(limit);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut from = 0;
    for cut in cuts {
        buf.extend_from_slice(&input[from..cut]);
        from = cut;
        while let Some(item) = codec.decode(&mut buf).expect("decode never fails") {
            items.push(item);
        }
        assert!(
            buf.len() <= limit.saturating_add(1),
            "{} bytes kept with a limit of {limit}",
            buf.len()
        );
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("decode_eof never fails") {
        items.push(item);
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
    items
}

/// Section 1 read line by line, with no buffering concerns: what the codec
/// must produce for a whole stream.
fn model(limit: usize, input: &[u8]) -> Vec<Item> {
    let too_long = || Err(FrameError::TooLong { limit });
    let mut items = Vec::new();
    let mut lines = input.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            // The unterminated rest: dropped at the end of the stream, but
            // reported if it is already too long to become a valid line.
            let could_fit =
                line.len() <= limit || (line.len() - 1 == limit && line.last() == Some(&b'\r'));
            if !could_fit {
                items.push(too_long());
            }
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.len() > limit {
            items.push(too_long());
        } else {
            items.push(Frame::from_line(bytes::Bytes::copy_from_slice(line)));
        }
    }
    items
}

/// Section 1 with `str` methods and nothing clever: the oracle for
/// `Frame::from_line`'s word-at-a-time scans.
fn naive_from_line(line: &[u8]) -> Item {
    let s = std::str::from_utf8(line).map_err(|e| FrameError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let fields: Vec<&str> = s.splitn(7, "::").collect();
    let [kind, action, status, sender, src, dst, body] = fields[..] else {
        return Err(FrameError::MissingFields {
            found: fields.len(),
        });
    };
    let cut = |v: &str| match v.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &v[..end]),
        None => v.to_owned(),
    };
    let kind = kind
        .parse::<Kind>()
        .map_err(|_| FrameError::UnknownKind(cut(kind)))?;
    let status = status
        .parse::<Status>()
        .map_err(|_| FrameError::UnknownStatus(cut(status)))?;
    let action = action
        .parse::<Action>()
        .map_err(|_| FrameError::UnknownAction(cut(action)))?;
    let mut unescaped = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        let replacement = match (c, chars.peek()) {
            ('\\', Some('\\')) => '\\',
            ('\\', Some('n')) => '\n',
            ('\\', Some('r')) => '\r',
            _ => {
                unescaped.push(c);
                continue;
            }
        };
        chars.next();
        unescaped.push(replacement);
    }
    Ok(Frame::new(kind, action, status)
        .with_sender(sender)
        .with_src(src)
        .with_dst(dst)
        .with_body(unescaped))
}

/// A line for the oracle: frames and near-frames rich in colons,
/// backslashes, non-ASCII and invalid bytes, around the 8-byte word size.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b':'),
        2 => Just(b'\\'),
        1 => Just(b'n'),
        1 => Just(b'x'),
        1 => Just(0xc3u8),
        1 => Just(0xa9u8),
        1 => Just(0xffu8),
        1 => any::<u8>(),
    ];
    let head = select(vec![
        "REQ::MSG::200::",
        "RES::COMM::404::",
        "ERR::NONE::400::",
        "REQ::",
        "",
    ]);
    (head, prop::collection::vec(byte, 0..48))
        .prop_map(|(head, tail)| [head.as_bytes(), &tail].concat())
}

fn cuts(n: usize) -> impl Strategy<Value = Vec<Index>> {
    prop::collection::vec(any::<Index>(), 0..n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_of_encode_is_identity(frame in frame()) {
        let mut buf = BytesMut::new();
        FrameCodec::new().encode(&frame, &mut buf).expect("valid headers");
        let display = frame.to_string();
        prop_assert_eq!(&buf[..buf.len() - 1], display.as_bytes());
        let mut codec = FrameCodec::new();
        let decoded = codec.decode(&mut buf).expect("no I/O");
        prop_assert_eq!(decoded, Some(Ok(frame.clone())));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.to_string().parse::<Frame>(), Ok(frame));
    }

    #[test]
    fn a_stream_of_frames_decodes_to_the_same_frames(
        frames in prop::collection::vec(frame(), 0..12),
        cuts in cuts(8),
    ) {
        let mut stream = BytesMut::new();
        let mut codec = FrameCodec::new();
        for frame in &frames {
            codec.encode(frame, &mut stream).expect("valid headers");
        }
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let items = decode_split(DEFAULT_MAX_FRAME_BYTES, &stream, &cuts);
        let expected: Vec<Item> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(items, expected);
    }

    #[test]
    fn splitting_a_stream_does_not_change_its_items(
        limit in limit(),
        pieces in prop::collection::vec(piece(), 0..16),
        cuts in cuts(12),
    ) {
        let stream = pieces.concat();
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let whole = decode_split(limit, &stream, &[]);
        let split = decode_split(limit, &stream, &cuts);
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(whole, model(limit, &stream));
    }

    #[test]
    fn byte_at_a_time_is_the_same_as_whole(
        limit in limit(),
        pieces in prop::collection::vec(piece(), 0..8),
    ) {
        let stream = pieces.concat();
        let every_byte: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(
            decode_split(limit, &stream, &every_byte),
            model(limit, &stream)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        limit in limit(),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in cuts(16),
    ) {
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        let items = decode_split(limit, &bytes, &cuts);
        prop_assert_eq!(items, model(limit, &bytes));
    }

    #[test]
    fn validate_agrees_with_the_contract(value in "[:\r\nab]{0,6}") {
        let problem = if value.contains("::") {
            Some("contains `::`")
        } else if value.contains(['\r', '\n']) {
            Some("contains a line break")
        } else if value.starts_with(':') || value.ends_with(':') {
            Some("begins or ends with `:`")
        } else {
            None
        };
        let expected = match problem {
            Some(problem) => Err(FrameError::InvalidField {
                field: tsockm_proto::Field::Dst,
                value: value.clone(),
                problem,
            }),
            None => Ok(()),
        };
        prop_assert_eq!(Frame::broadcast("x").with_dst(value.as_str()).validate(), expected);
    }

    #[test]
    fn from_line_agrees_with_a_naive_parser(line in line()) {
        let line = bytes::Bytes::from(line);
        prop_assert_eq!(Frame::from_line(line.clone()), naive_from_line(&line));
    }

    #[test]
    fn decoded_frames_with_writable_headers_round_trip(
        pieces in prop::collection::vec(piece(), 0..8),
    ) {
        let stream = pieces.concat();
        for frame in decode_split(DEFAULT_MAX_FRAME_BYTES, &stream, &[]).into_iter().flatten() {
            if frame.validate().is_err() {
                // A peer may send header fields this side refuses to write.
                continue;
            }
            let line = frame.to_bytes().expect("validated");
            let again = FrameCodec::new()
                .decode(&mut BytesMut::from(&line[..]))
                .expect("no I/O");
            prop_assert_eq!(again, Some(Ok(frame)));
        }
    }
}
