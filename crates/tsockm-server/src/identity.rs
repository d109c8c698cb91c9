//! Peer ids and resume tokens.
//!
//! Ids are sqids of a per-process counter (never reused, at least
//! [`PEER_ID_MIN_CHARS`] letters and digits) over an alphabet shuffled at
//! start, so ids do not reveal how many peers came before. Tokens are
//! [`TOKEN_BYTES`] random bytes in URL-safe base64 and are compared in
//! constant time.

use sqids::Sqids;
use subtle::ConstantTimeEq;

/// Shortest peer id, in characters.
pub const PEER_ID_MIN_CHARS: u8 = 10;

/// Random bytes in a resume token (128 bits → 22 characters).
pub const TOKEN_BYTES: usize = 16;

/// Why an identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The operating system's random source failed.
    #[error("no randomness available: {0}")]
    Random(#[from] getrandom::Error),
    /// sqids refused to encode (it never should for a counter).
    #[error("cannot make a peer id: {0}")]
    Sqids(#[from] sqids::Error),
}

/// Makes unique peer ids and fresh resume tokens.
#[derive(Debug)]
pub struct IdentityMaker {
    sqids: Sqids,
    next_seq: u64,
}

impl IdentityMaker {
    /// A maker with a freshly shuffled alphabet.
    pub fn new() -> Result<Self, IdentityError> {
        let mut alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        // Fisher–Yates with OS randomness.
        let mut random = [0u8; 62 * 4];
        getrandom::fill(&mut random)?;
        for i in (1..alphabet.len()).rev() {
            let r = u32::from_le_bytes([
                random[i * 4],
                random[i * 4 + 1],
                random[i * 4 + 2],
                random[i * 4 + 3],
            ]);
            alphabet.swap(i, (r as usize) % (i + 1));
        }
        let sqids = Sqids::builder()
            .alphabet(alphabet)
            .min_length(PEER_ID_MIN_CHARS)
            .build()?;
        Ok(IdentityMaker { sqids, next_seq: 1 })
    }

    /// A peer id no peer of this process has had before.
    pub fn next_peer_id(&mut self) -> Result<String, IdentityError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(self.sqids.encode(&[seq])?)
    }
}

/// A fresh resume token: 22 characters of `[A-Za-z0-9_-]`.
pub fn new_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(base64url(&bytes))
}

/// Whether `given` equals `expected`, in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Unpadded URL-safe base64.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let n_chars = chunk.len() + 1;
        for i in 0..n_chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn peer_ids_are_unique_long_alphanumeric() {
        let mut maker = IdentityMaker::new().unwrap();
        let mut seen = HashSet::new();
        for _ in 0..5000 {
            let id = maker.next_peer_id().unwrap();
            assert!(id.len() >= usize::from(PEER_ID_MIN_CHARS), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
            assert!(id != "server" && id != "*");
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn tokens_are_long_url_safe_and_random() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
        assert!(token_matches(&a, &a.clone()));
        assert!(!token_matches(&a, &b));
        assert!(!token_matches(&a, ""));
    }

    #[test]
    fn base64url_known_values() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
