//! BODY escaping: `\` ↔ `\\`, LF ↔ `\n`, CR ↔ `\r`.
//!
//! The decoder leaves any other backslash sequence (and a lone trailing
//! backslash) as it is, so `unescape(escape(s)) == s` for every string.

use bytes::{BufMut, BytesMut};
use memchr::{memchr, memchr3};

use crate::scan::find_byte;

/// Whether `s` needs escaping at all.
pub(crate) fn needs_escape(s: &[u8]) -> bool {
    memchr3(b'\\', b'\n', b'\r', s).is_some()
}

/// Appends `s` to `dst` with `\`, LF and CR escaped.
pub(crate) fn escape_into(s: &[u8], dst: &mut BytesMut) {
    let mut rest = s;
    while let Some(i) = memchr3(b'\\', b'\n', b'\r', rest) {
        dst.put_slice(&rest[..i]);
        dst.put_slice(match rest[i] {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[i + 1..];
    }
    dst.put_slice(rest);
}

/// Appends a BODY to `dst` as it is written on the wire: `\` as `\\`, LF as
/// `\n`, CR as `\r`.
///
/// For programs that write frames piecewise (a server writing one roster
/// line per peer, say); [`Frame::encode`](crate::Frame::encode) does this
/// for whole frames.
pub fn escape_body(body: &str, dst: &mut BytesMut) {
    if needs_escape(body.as_bytes()) {
        escape_into(body.as_bytes(), dst);
    } else {
        dst.extend_from_slice(body.as_bytes());
    }
}

/// Appends `s` to `out` with `\`, LF and CR escaped (the `fmt` path).
pub(crate) fn escape_fmt(s: &str, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let mut rest = s;
    while let Some(i) = memchr3(b'\\', b'\n', b'\r', rest.as_bytes()) {
        out.write_str(&rest[..i])?;
        out.write_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            _ => "\\r",
        })?;
        rest = &rest[i + 1..];
    }
    out.write_str(rest)
}

/// Turns `\\`, `\n` and `\r` back into `\`, LF and CR.
///
/// Only ASCII bytes are replaced, so valid UTF-8 stays valid UTF-8.
pub(crate) fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut start = 0;
    let mut from = 0;
    while let Some(j) = memchr(b'\\', &bytes[from..]) {
        let i = from + j;
        let replacement = match bytes.get(i + 1) {
            Some(b'\\') => '\\',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            _ => {
                // Not an escape we know: keep the backslash and go on after it.
                from = i + 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        out.push(replacement);
        start = i + 2;
        from = start;
    }
    out.push_str(&s[start..]);
    out
}

/// Turns `\\\\`, `\\n` and `\\r` in `buf` back into `\\`, LF and CR in place;
/// returns the new length (the bytes after it are left over).
///
/// Only ASCII bytes are replaced, so valid UTF-8 stays valid UTF-8. The codec
/// uses this on the line it owns, so an escaped BODY costs no allocation.
pub(crate) fn unescape_in_place(buf: &mut [u8]) -> usize {
    let Some(first) = find_byte(b'\\', buf) else {
        return buf.len();
    };
    let mut read = first;
    let mut write = first;
    while read < buf.len() {
        // Here `buf[read]` is a backslash.
        let (replacement, used) = match buf.get(read + 1) {
            Some(b'\\') => (b'\\', 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            // Not an escape we know: keep the backslash as it is.
            _ => (b'\\', 1),
        };
        buf[write] = replacement;
        write += 1;
        read += used;
        // Copy up to the next backslash in one go.
        let run = find_byte(b'\\', &buf[read..]).unwrap_or(buf.len() - read);
        buf.copy_within(read..read + run, write);
        write += run;
        read += run;
    }
    write
}

/// Appends the escaped form of `s` to a new buffer (test helper).
#[cfg(test)]
fn escape(s: &str) -> String {
    let mut buf = BytesMut::new();
    escape_into(s.as_bytes(), &mut buf);
    String::from_utf8(buf.to_vec()).expect("escaping keeps UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("a\nb", "a\\nb"),
            ("a\r\nb", "a\\r\\nb"),
            ("back\\slash", "back\\\\slash"),
            ("\\n", "\\\\n"),
            ("\n", "\\n"),
            ("é\n€", "é\\n€"),
        ];
        for (raw, escaped) in cases {
            assert_eq!(escape(raw), escaped, "escape {raw:?}");
            assert_eq!(unescape(escaped), raw, "unescape {escaped:?}");
            let mut s = String::new();
            escape_fmt(raw, &mut s).expect("writing to a String");
            assert_eq!(s, escaped);
        }
    }

    #[test]
    fn unknown_sequences_are_kept() {
        let cases = [
            ("\\t", "\\t"),
            ("\\", "\\"),
            ("a\\", "a\\"),
            ("\\x\\n", "\\x\n"),
            ("\\\\\\", "\\\\"),
            ("\\é", "\\é"),
        ];
        for (escaped, raw) in cases {
            assert_eq!(unescape(escaped), raw, "unescape {escaped:?}");
        }
    }

    #[test]
    fn in_place_agrees_with_unescape() {
        let cases = [
            "",
            "plain",
            "a\\nb",
            "\\\\",
            "\\",
            "a\\",
            "\\t\\n\\r\\\\x",
            "\\\\\\",
            "é\\n€\\",
            "\\n\\n\\n",
            "no escapes at all here",
        ];
        for case in cases {
            let mut buf = case.as_bytes().to_vec();
            let len = unescape_in_place(&mut buf);
            assert_eq!(
                std::str::from_utf8(&buf[..len]),
                Ok(unescape(case).as_str()),
                "{case:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn in_place_agrees_with_unescape_on_any_text(s in "[\\\\nrt x\u{e9}]{0,30}") {
            let mut buf = s.as_bytes().to_vec();
            let len = unescape_in_place(&mut buf);
            let expected = unescape(&s);
            proptest::prop_assert_eq!(std::str::from_utf8(&buf[..len]), Ok(expected.as_str()));
        }
    }

    #[test]
    fn detection() {
        assert!(!needs_escape(b"hello :: world"));
        assert!(needs_escape(b"a\rb"));
    }
}
