//! Fuzzes `FrameCodec`'s decoder with arbitrary bytes, limits and chunkings.
//!
//! The first byte chooses the frame limit (mostly tiny, so the over-long
//! paths are hit often), the second the chunk size that imitates TCP
//! fragmentation; the rest is the stream. The target checks, besides "never
//! panics":
//! - after every `decode` that asks for more input, the buffer holds at most
//!   limit + 1 bytes (the +1 is a `\r` that may precede the `\n`);
//! - decoding in chunks gives the same items as decoding the whole stream;
//! - every decoded frame whose header fields can be written re-encodes to a
//!   line that decodes to the same frame, and `Display` agrees with `encode`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use tsockm_proto::{DEFAULT_MAX_FRAME_BYTES, Frame, FrameCodec, FrameError};

type Item = Result<Frame, FrameError>;

fuzz_target!(|data: &[u8]| {
    let [limit_byte, chunk_byte, stream @ ..] = data else {
        return;
    };
    let limit = match limit_byte {
        0..=127 => usize::from(*limit_byte),
        128..=253 => DEFAULT_MAX_FRAME_BYTES,
        254 => usize::MAX - 1,
        255 => usize::MAX,
    };
    let chunk = usize::from(*chunk_byte) + 1;

    let whole = decode(limit, stream, stream.len().max(1));
    let chunked = decode(limit, stream, chunk);
    assert_eq!(whole, chunked, "chunks of {chunk} bytes changed the items");

    for frame in whole.iter().filter_map(|item| item.as_ref().ok()) {
        check_round_trip(frame);
    }
});

/// Decodes `stream` fed in pieces of `chunk` bytes, then ends it.
fn decode(limit: usize, stream: &[u8], chunk: usize) -> Vec<Item> {
    let mut codec = FrameCodec::with_max_frame_bytes(limit);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in stream.chunks(chunk) {
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
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
    items
}

/// A decoded frame with writable headers survives encode → decode.
fn check_round_trip(frame: &Frame) {
    let Ok(line) = frame.to_bytes() else {
        // A peer may send header fields that this side would refuse to write
        // (a CR, or a leading `:`); those cannot round-trip.
        return;
    };
    assert_eq!(&line[..line.len() - 1], frame.to_string().as_bytes());
    let mut codec = FrameCodec::with_max_frame_bytes(usize::MAX);
    let mut buf = BytesMut::from(&line[..]);
    let again = codec.decode(&mut buf).expect("decode never fails");
    assert_eq!(again, Some(Ok(frame.clone())));
    assert!(buf.is_empty());
}
