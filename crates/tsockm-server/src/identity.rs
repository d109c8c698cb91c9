//! Peer ids and resume tokens.
//!
//! Ids are sqids of a counter (never reused, at least [`PEER_ID_MIN_CHARS`]
//! letters and digits) over an alphabet shuffled at start, so ids do not
//! reveal how many peers came before. Tokens are [`TOKEN_BYTES`] random bytes
//! in URL-safe base64. The server keeps only a hash of each token
//! ([`TokenHash`]) and compares hashes in constant time, so neither memory
//! dumps nor saved sessions hold a usable token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqids::Sqids;
use subtle::ConstantTimeEq;

/// Shortest peer id, in characters.
pub const PEER_ID_MIN_CHARS: u8 = 10;

/// Random bytes in a resume token (128 bits → 22 characters).
pub const TOKEN_BYTES: usize = 16;

/// The SHA-256 of a resume token. A token is 128 random bits, so a plain
/// hash cannot be reversed by guessing.
pub type TokenHash = [u8; 32];

/// Why an identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The operating system's random source failed.
    #[error("no randomness available: {0}")]
    Random(#[from] getrandom::Error),
    /// sqids refused to encode (it never should for a counter).
    #[error("cannot make an id: {0}")]
    Sqids(#[from] sqids::Error),
}

/// The letters and digits ids are written with, in an order shuffled with
/// the operating system's randomness.
pub fn shuffled_alphabet() -> Result<Vec<char>, IdentityError> {
    let mut alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed)?;
    fastrand::Rng::with_seed(u64::from_le_bytes(seed)).shuffle(&mut alphabet);
    Ok(alphabet)
}

/// Makes unique peer ids.
#[derive(Debug)]
pub struct IdentityMaker {
    sqids: Sqids,
    next_seq: u64,
}

impl IdentityMaker {
    /// A maker with a freshly shuffled alphabet, counting from 1.
    pub fn new() -> Result<Self, IdentityError> {
        IdentityMaker::starting_at(1)
    }

    /// A maker with a freshly shuffled alphabet whose first id is made of
    /// `next_seq` (a server restoring saved sessions continues the count).
    pub fn starting_at(next_seq: u64) -> Result<Self, IdentityError> {
        let sqids = Sqids::builder()
            .alphabet(shuffled_alphabet()?)
            .min_length(PEER_ID_MIN_CHARS)
            .build()?;
        Ok(IdentityMaker {
            sqids,
            next_seq: next_seq.max(1),
        })
    }

    /// A peer id no peer of this process has had before.
    pub fn next_peer_id(&mut self) -> Result<String, IdentityError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(self.sqids.encode(&[seq])?)
    }

    /// The count the next id is made of.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// A fresh resume token: 22 characters of `[A-Za-z0-9_-]`.
pub fn new_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The hash the server keeps of `token`.
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `given` is the token whose hash is `expected`, in time
/// independent of where they differ.
pub fn token_matches(expected: &TokenHash, given: &str) -> bool {
    expected.ct_eq(&hash_token(given)).into()
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
        assert_eq!(maker.next_seq(), 5001);
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
        let hash = hash_token(&a);
        assert!(token_matches(&hash, &a.clone()));
        assert!(!token_matches(&hash, &b));
        assert!(!token_matches(&hash, ""));
    }

    #[test]
    fn alphabets_hold_every_letter_and_digit_once() {
        let mut alphabet = shuffled_alphabet().unwrap();
        alphabet.sort_unstable();
        let mut expected: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        expected.sort_unstable();
        assert_eq!(alphabet, expected);
    }
}
