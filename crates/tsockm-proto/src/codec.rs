//! [`FrameCodec`]: a tokio-util `Decoder` and `Encoder` for frame lines.
//!
//! Whenever the decoder asks for more input (returns `Ok(None)`), the buffer
//! holds at most the frame limit plus one byte (a possible `\r` before the
//! terminator); lines already buffered behind a returned item are left for
//! the next call. It never rescans bytes it has already searched for a
//! terminator, and never returns `Err` for a bad line: a bad line is the item
//! `Err(FrameError)`, because a `FramedRead` ends its stream after the first
//! decoder error.

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::scan::find_byte;
use crate::{DEFAULT_MAX_FRAME_BYTES, Frame, FrameError};

/// Decodes lines into frames and encodes frames into lines.
///
/// - `\n` ends a line; a `\r` right before it is dropped.
/// - A blank line (empty, or only `\r`) is skipped without an item.
/// - A line longer than the limit (not counting its terminator) yields one
///   `Err(FrameError::TooLong)` as soon as the limit is passed, and the rest
///   of it is discarded up to its terminator.
/// - At end of stream an unterminated last line is dropped: a peer that dies
///   mid-frame did not send that frame.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// Longest line accepted, in bytes, not counting the terminator.
    max_frame_bytes: usize,
    /// How far the buffer has been searched for `\n` already.
    next_index: usize,
    /// Whether the rest of an over-long line is being thrown away.
    discarding: bool,
}

/// What can go wrong while encoding or decoding a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The underlying I/O failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A frame to encode cannot be written unambiguously.
    #[error("cannot encode frame: {0}")]
    Frame(#[from] FrameError),
}

impl FrameCodec {
    /// A codec with the default limit of [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn new() -> Self {
        FrameCodec::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A codec that accepts lines of at most `max_frame_bytes` bytes.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        FrameCodec {
            max_frame_bytes,
            next_index: 0,
            discarding: false,
        }
    }

    /// The longest line accepted, in bytes, not counting the terminator.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn too_long(&self) -> FrameError {
        FrameError::TooLong {
            limit: self.max_frame_bytes,
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new()
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Frame, FrameError>;
    type Error = io::Error;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        loop {
            let newline = find_byte(b'\n', &buf[self.next_index..]).map(|i| self.next_index + i);
            let Some(end) = newline else {
                if self.discarding {
                    buf.clear();
                    self.next_index = 0;
                    return Ok(None);
                }
                // A line of exactly the limit may still be waiting for "\n"
                // after its "\r"; anything longer is over the limit for sure.
                // (`buf.len() > limit` is tested first so that no `limit + 1`
                // can overflow when the limit is `usize::MAX`.)
                let limit = self.max_frame_bytes;
                let over = buf.len() > limit && (buf.len() - limit > 1 || buf[limit] != b'\r');
                if over {
                    buf.clear();
                    self.next_index = 0;
                    self.discarding = true;
                    return Ok(Some(Err(self.too_long())));
                }
                self.next_index = buf.len();
                return Ok(None);
            };
            self.next_index = 0;
            if self.discarding {
                buf.advance(end + 1);
                self.discarding = false;
                continue;
            }
            let mut len = end;
            if len > 0 && buf[len - 1] == b'\r' {
                len -= 1;
            }
            if len == 0 {
                buf.advance(end + 1);
                continue;
            }
            if len > self.max_frame_bytes {
                buf.advance(end + 1);
                return Ok(Some(Err(self.too_long())));
            }
            return Ok(Some(Frame::take_line(buf, len, end + 1)));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None => {
                buf.clear();
                self.next_index = 0;
                self.discarding = false;
                Ok(None)
            }
        }
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst)?;
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(dst)?;
        Ok(())
    }
}
