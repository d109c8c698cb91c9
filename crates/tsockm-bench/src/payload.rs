//! The body of every benchmark message: `<author> <seq> <sent_ns> xxx...`.
//!
//! The author index, the sequence number and the send time travel inside the
//! message so that a recipient can check completeness and measure latency
//! without any side channel. The body uses only ASCII digits, spaces and `x`,
//! so it needs no escaping in TsockM and no quoting in IRC, and contains no
//! `:` (the receive fast path relies on that). This file does no I/O.

use std::fmt::Write as _;

/// What a recipient learns from one message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the client that sent the message.
    pub author: u32,
    /// Sequence number of the message for its author, from 0.
    pub seq: u32,
    /// When it was handed to the kernel, in nanoseconds since the run's epoch.
    pub sent_ns: u64,
}

/// Writes the body for `stamp`, padded with `x` to `size` bytes (a body never
/// gets shorter than its three numbers, so `size` is a minimum).
pub fn write_body(stamp: Stamp, size: usize, out: &mut String) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "{} {} {}", stamp.author, stamp.seq, stamp.sent_ns);
    if out.len() < size {
        out.push(' ');
    }
    while out.len() < size {
        out.push('x');
    }
}

/// Reads the three numbers back; `None` if the body is not one of ours.
pub fn parse_body(body: &[u8]) -> Option<Stamp> {
    let mut fields = body.split(|&b| b == b' ');
    let author = parse_u64(fields.next()?)?;
    let seq = parse_u64(fields.next()?)?;
    let sent_ns = parse_u64(fields.next()?)?;
    Some(Stamp {
        author: u32::try_from(author).ok()?,
        seq: u32::try_from(seq).ok()?,
        sent_ns,
    })
}

/// A decimal `u64` with at least one digit and nothing else.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let stamp = Stamp {
            author: 499,
            seq: 1999,
            sent_ns: 123_456_789_012,
        };
        let mut body = String::new();
        write_body(stamp, 64, &mut body);
        assert_eq!(body.len(), 64);
        assert!(!body.contains(':'));
        assert_eq!(parse_body(body.as_bytes()), Some(stamp));

        write_body(stamp, 0, &mut body);
        assert_eq!(body, "499 1999 123456789012");
        assert_eq!(parse_body(body.as_bytes()), Some(stamp));
    }

    #[test]
    fn rejects_foreign_bodies() {
        for bad in ["", "hello", "1 2", "1 2 x", "1 -2 3", "99999999999 1 1"] {
            assert_eq!(parse_body(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
