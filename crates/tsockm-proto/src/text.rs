//! [`Text`]: an immutable UTF-8 string that is cheap to make and to clone.
//!
//! A frame keeps its four text fields in one of them, and the decoder
//! makes one for every line it reads. A `Text` of up to [`INLINE_BYTES`]
//! bytes keeps its bytes in place, so making one is a small copy, and
//! cloning or dropping it touches no reference count. A longer text is a
//! [`Bytes`]: the received line's own buffer, a `String`'s allocation, or a
//! `'static` string. This file must never let a `Text` hold bytes that are
//! not valid UTF-8: every public constructor starts from a `str` or
//! validates, and the crate-internal ones take bytes their callers have
//! checked.
#![allow(unsafe_code)]

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};

use bytes::Bytes;

/// The most bytes a [`Text`] keeps inline: what fits beside the length
/// byte in the 32 bytes a `Bytes` takes anyway. Peer ids, IPv4 addresses
/// and the full IPv6 loopback address (`[0:0:0:0:0:0:0:1]:6969`) fit.
pub(crate) const INLINE_BYTES: usize = 23;

/// An immutable UTF-8 string, cheap to clone.
///
/// A text of up to 23 bytes (an id, an address) is stored in the `Text`
/// itself; a longer one shares a [`Bytes`] buffer with its clones (and,
/// for a decoded BODY, with the rest of the line it came in). Either way a
/// `Text` is 32 bytes. Compares, orders and hashes like `str`.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes of `buf`; the bytes after them mean nothing
    /// and may be anything.
    Inline { len: u8, buf: [u8; INLINE_BYTES] },
    /// A shared buffer: a long text, or a `'static` string of any length.
    Shared(Bytes),
}

impl Text {
    /// An empty text.
    pub const fn new() -> Self {
        Text(Repr::Inline {
            len: 0,
            buf: [0; INLINE_BYTES],
        })
    }

    /// A text of a static string, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Text(Repr::Shared(Bytes::from_static(s.as_bytes())))
    }

    /// Wraps bytes that must be UTF-8; gives them back if they are not.
    ///
    /// Up to 23 bytes are copied into the text, so it does not keep
    /// `bytes`' buffer alive; more are shared.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, Bytes> {
        if std::str::from_utf8(&bytes).is_err() {
            return Err(bytes);
        }
        Ok(if bytes.len() <= INLINE_BYTES {
            Text::inline_checked(&bytes, bytes.len())
        } else {
            Text(Repr::Shared(bytes))
        })
    }

    /// Shares bytes the caller has already checked to be UTF-8, however
    /// short: the caller chooses when to copy.
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Text(Repr::Shared(bytes))
    }

    /// Copies the first `len` bytes (at most [`INLINE_BYTES`]) of `window`,
    /// already checked to be UTF-8, into the text itself.
    ///
    /// When `window` holds [`INLINE_BYTES`] bytes or more (the rest of a
    /// received line usually does), the copy is of that fixed size, with
    /// no loop and no call, and the bytes after `len` are junk.
    #[inline(always)]
    pub(crate) fn inline_checked(window: &[u8], len: usize) -> Self {
        debug_assert!(len <= INLINE_BYTES);
        debug_assert!(std::str::from_utf8(&window[..len]).is_ok());
        let buf = match window.first_chunk::<INLINE_BYTES>() {
            Some(chunk) => *chunk,
            None => {
                let mut buf = [0; INLINE_BYTES];
                buf[..len].copy_from_slice(&window[..len]);
                buf
            }
        };
        Text(Repr::Inline {
            len: len as u8,
            buf,
        })
    }

    /// The text as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Text` starts from a `str` or a
        // `String`, or takes bytes checked with `std::str::from_utf8` (see
        // `from_utf8`) or checked by the parser (the callers of
        // `from_checked` and `inline_checked`); the bytes
        // are immutable afterwards, and `as_bytes` gives exactly them back
        // (for an inline text, the first `len`, never the junk after).
        unsafe { std::str::from_utf8_unchecked(self.as_bytes()) }
    }

    /// The text's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The bytes in `range` as a text of their own: copied if short, else
    /// sharing this text's buffer. `range` must lie on character
    /// boundaries.
    pub(crate) fn slice(&self, range: Range<usize>) -> Text {
        debug_assert!(self.as_str().is_char_boundary(range.start));
        debug_assert!(self.as_str().is_char_boundary(range.end));
        match &self.0 {
            Repr::Shared(bytes) if range.len() > INLINE_BYTES => {
                Text(Repr::Shared(bytes.slice(range)))
            }
            _ => {
                let len = range.len();
                Text::inline_checked(&self.as_bytes()[range.start..range.end], len)
            }
        }
    }

    /// Gives up the `Text`, keeping its bytes: the shared buffer of a long
    /// or static text, a copy of a short one.
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Orders like `str` (which orders by bytes).
impl Ord for Text {
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    #[inline]
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Hashes like the `str` it holds, as `Borrow<str>` requires.
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Keeps the string's allocation, without copying, unless the string is
/// short enough to be copied into the text (and its allocation freed).
impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() <= INLINE_BYTES {
            Text::inline_checked(s.as_bytes(), s.len())
        } else {
            Text(Repr::Shared(Bytes::from(s)))
        }
    }
}

/// Copies the string: into the text itself if short, else into a new
/// buffer.
impl From<&str> for Text {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE_BYTES {
            Text::inline_checked(s.as_bytes(), s.len())
        } else {
            Text(Repr::Shared(Bytes::copy_from_slice(s.as_bytes())))
        }
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn behaves_like_str() {
        let t = Text::from("héllo");
        assert_eq!(t, "héllo");
        assert_eq!(t.len(), 6);
        assert_eq!(t.chars().count(), 5);
        assert_eq!(format!("{t}"), "héllo");
        assert_eq!(format!("{t:?}"), "\"héllo\"");
        let mut set = HashSet::new();
        set.insert(t.clone());
        assert!(set.contains("héllo"));
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_err());
        assert_eq!(
            Text::from_utf8(Bytes::from_static(b"ok")).ok(),
            Some(Text::from("ok"))
        );
    }

    /// Whether `t` is stored inline.
    fn is_inline(t: &Text) -> bool {
        matches!(t.0, Repr::Inline { .. })
    }

    #[test]
    fn short_texts_are_inline_and_long_ones_shared() {
        assert_eq!(std::mem::size_of::<Text>(), 32);
        let fits = "x".repeat(INLINE_BYTES);
        let over = "x".repeat(INLINE_BYTES + 1);
        for s in ["", "*", "é€😀", "[0:0:0:0:0:0:0:1]:6969", fits.as_str()] {
            let texts = [
                Text::from(s),
                Text::from(s.to_owned()),
                Text::from_utf8(Bytes::copy_from_slice(s.as_bytes())).expect("UTF-8"),
            ];
            for t in texts {
                assert!(is_inline(&t), "{s:?}");
                assert_eq!(t, s);
                assert_eq!(t.as_bytes(), s.as_bytes());
                assert_eq!(t.clone().into_bytes(), s.as_bytes());
            }
        }
        let shared = Bytes::from(over.clone());
        let texts = [
            Text::from(over.as_str()),
            Text::from(over.clone()),
            Text::from_utf8(shared.clone()).expect("UTF-8"),
        ];
        for t in texts {
            assert!(!is_inline(&t), "{t:?}");
            assert_eq!(t, over);
            assert_eq!(t.clone().into_bytes(), over.as_bytes());
        }
        // A long text shares the buffer it was made from.
        let t = Text::from_utf8(shared.clone()).expect("UTF-8");
        assert_eq!(t.as_bytes().as_ptr(), shared.as_ptr());
        const STATIC: Text = Text::from_static("server");
        assert!(!is_inline(&STATIC));
        assert_eq!(STATIC, "server");
        assert_eq!(STATIC.into_bytes(), "server");
    }

    /// Equality, order and hash look at the text only: not at how it is
    /// stored, nor at the junk after an inline text's end.
    #[test]
    fn storage_does_not_show() {
        let inline = Text::inline_checked(b"abc::rest of the line, and more", 3);
        let other_junk = Text::inline_checked(b"abcdefghijklmnopqrstuvwxyz", 3);
        let short_window = Text::inline_checked(b"abc", 3);
        let stat = Text::from_static("abc");
        assert!(is_inline(&inline) && is_inline(&short_window) && !is_inline(&stat));
        for t in [&other_junk, &short_window, &stat] {
            assert_eq!(&inline, t);
            assert_eq!(inline.cmp(t), Ordering::Equal);
        }
        let (abd, ab) = (Text::from("abd"), Text::from("ab"));
        assert!(ab < inline && inline < abd);
        let (long, y) = (Text::from("y".repeat(40)), Text::from_static("y"));
        assert!(y < long);
        let mut set = HashSet::new();
        set.insert(inline);
        assert!(set.contains(&stat));
        assert!(set.contains("abc"));
    }
}
