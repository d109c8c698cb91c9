//! Peer ids, message ids and resume tokens.
//!
//! Peer ids and message ids are sqids of counts that start from the clock
//! (never reused for the life of the store; see [`IdentityMaker`]) over an
//! alphabet shuffled once per store, so ids reveal little about how many
//! came before. Tokens are [`TOKEN_BYTES`] random bytes
//! in URL-safe base64. The server keeps only a hash of each token
//! ([`TokenHash`]) and compares hashes in constant time, so neither memory
//! dumps nor saved sessions hold a usable token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::SystemTime;

use sqids::Sqids;
use subtle::ConstantTimeEq;
use tsockm_proto::Text;

use crate::sqid::OneSqid;

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

/// Shortest message id, in characters (they are never `server`).
pub const MSG_ID_MIN_CHARS: u8 = 8;

/// How many message seqs fit in one millisecond before the count runs
/// ahead of the clock (it then simply goes on counting).
const MSG_SEQS_PER_MS: u64 = 1 << 16;

/// Makes peer ids and message ids: sqids of a count that starts from the
/// clock, over one alphabet kept in the store.
///
/// Both counts are `max(last + 1, clock)`: a peer's count is the Unix
/// millisecond, a message's the Unix millisecond times 65,536. A server
/// restarted on the same store (even after a crash that lost the last
/// messages before they were stored) starts past every count it issued
/// before, so ids are unique for the life of the store, and a later
/// message always has a larger count: ids can be ordered by decoding them.
#[derive(Debug)]
pub struct IdentityMaker {
    peer_sqids: Sqids,
    msg_sqids: Sqids,
    /// `msg_sqids`' encoder without allocation, for the ids of messages.
    msg_fast: Option<OneSqid>,
    last_peer: u64,
    last_msg: u64,
    /// In a cluster, this node's tag, part of every peer id it makes.
    node_tag: Option<u64>,
}

impl IdentityMaker {
    /// A maker over `alphabet` (62 distinct letters and digits) whose
    /// counts continue after `last_peer` and `last_msg`.
    pub fn new(alphabet: &str, last_peer: u64, last_msg: u64) -> Result<Self, IdentityError> {
        let chars: Vec<char> = alphabet.chars().collect();
        Ok(IdentityMaker {
            // No blocklist: sqids checks every id against some 500 words,
            // which cost more than the rest of relaying a message (ids
            // are at least 8 characters, so never `server` anyway).
            peer_sqids: Sqids::builder()
                .alphabet(chars.clone())
                .min_length(PEER_ID_MIN_CHARS)
                .blocklist(HashSet::new())
                .build()?,
            msg_fast: OneSqid::new(&chars, MSG_ID_MIN_CHARS),
            msg_sqids: Sqids::builder()
                .alphabet(chars)
                .min_length(MSG_ID_MIN_CHARS)
                .blocklist(HashSet::new())
                .build()?,
            last_peer,
            last_msg,
            node_tag: None,
        })
    }

    /// A maker over a freshly shuffled alphabet.
    #[cfg(test)]
    pub fn fresh() -> Result<Self, IdentityError> {
        let alphabet: String = shuffled_alphabet()?.into_iter().collect();
        IdentityMaker::new(&alphabet, 0, 0)
    }

    /// Makes peer ids with `tag` (a random number per node) beside the
    /// count, so that the nodes of a cluster never make the same id.
    pub fn with_node_tag(mut self, tag: u32) -> Self {
        self.node_tag = Some(u64::from(tag));
        self
    }

    /// A peer id no peer has had before.
    pub fn next_peer_id(&mut self) -> Result<String, IdentityError> {
        self.last_peer = (self.last_peer + 1).max(now_ms());
        match self.node_tag {
            Some(tag) => Ok(self.peer_sqids.encode(&[self.last_peer, tag])?),
            None => Ok(self.peer_sqids.encode(&[self.last_peer])?),
        }
    }

    /// Makes the next peer ids after `seq` (a server restoring the peers a
    /// previous one saved goes on after the last it made).
    pub fn continue_peers_after(&mut self, seq: u64) {
        self.last_peer = self.last_peer.max(seq);
    }

    /// The count the last peer id was made of.
    pub fn last_peer(&self) -> u64 {
        self.last_peer
    }

    /// The next message's count and id, not yet taken: a message that is
    /// refused gets none ([`IdentityMaker::commit_msg`] takes it).
    /// `now` is the time of the message.
    pub fn peek_msg(&self, now: SystemTime) -> (u64, Text) {
        let seq = (self.last_msg + 1).max(unix_ms_unsigned(now).saturating_mul(MSG_SEQS_PER_MS));
        (seq, self.msg_id(seq))
    }

    /// Takes the count [`IdentityMaker::peek_msg`] gave.
    pub fn commit_msg(&mut self, seq: u64) {
        self.last_msg = self.last_msg.max(seq);
    }

    /// The id of the message with count `seq`.
    pub fn msg_id(&self, seq: u64) -> Text {
        match self.msg_fast.as_ref().and_then(|fast| fast.encode(seq)) {
            // Short enough to be kept inline: no allocation.
            Some(id) => Text::from(id.as_str()),
            None => Text::from(self.msg_sqids.encode(&[seq]).unwrap_or_default()),
        }
    }

    /// The count a message id was made of, if it is one this server could
    /// have issued (a canonical encoding of one count, not in the future).
    pub fn msg_seq(&self, id: &str) -> Option<u64> {
        let seq = canonical(&self.msg_sqids, id)?;
        (seq <= self.last_msg.max(now_ms().saturating_mul(MSG_SEQS_PER_MS))).then_some(seq)
    }

    /// Whether `id` is one this server could have given a peer: a canonical
    /// encoding of one count, not in the future.
    pub fn could_be_peer(&self, id: &str) -> bool {
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) || id.is_empty() {
            return false;
        }
        let numbers = self.peer_sqids.decode(id);
        let canonical = self
            .peer_sqids
            .encode(&numbers)
            .is_ok_and(|again| again == id);
        let plausible = match (numbers.as_slice(), self.node_tag) {
            ([seq], _) | ([seq, _], Some(_)) => *seq <= self.last_peer.max(now_ms()),
            _ => false,
        };
        canonical && plausible
    }
}

/// The one count `id` is the canonical encoding of.
fn canonical(sqids: &Sqids, id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match sqids.decode(id)[..] {
        [seq] if sqids.encode(&[seq]).ok()? == id => Some(seq),
        _ => None,
    }
}

/// The Unix time in milliseconds.
fn now_ms() -> u64 {
    unix_ms_unsigned(SystemTime::now())
}

/// `time` in Unix milliseconds (0 before 1970), as stored and sent.
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The same, for the ids' arithmetic (never negative).
fn unix_ms_unsigned(time: SystemTime) -> u64 {
    u64::try_from(unix_ms(time)).unwrap_or(0)
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

    #[test]
    fn peer_ids_are_unique_long_alphanumeric() {
        let mut maker = IdentityMaker::fresh().unwrap();
        let mut seen = HashSet::new();
        for _ in 0..5000 {
            let id = maker.next_peer_id().unwrap();
            assert!(id.len() >= usize::from(PEER_ID_MIN_CHARS), "{id}");
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
            assert!(id != "server" && id != "*");
            assert!(maker.could_be_peer(&id), "{id}");
            assert!(seen.insert(id));
        }
        assert!(!maker.could_be_peer("nobody"));
        assert!(!maker.could_be_peer(""));
        assert!(!maker.could_be_peer("a::b"));
    }

    #[test]
    fn message_ids_grow_decode_and_survive_a_restart() {
        let alphabet: String = shuffled_alphabet().unwrap().into_iter().collect();
        let mut maker = IdentityMaker::new(&alphabet, 0, 0).unwrap();
        let mut last = 0;
        for _ in 0..1000 {
            let (seq, id) = maker.peek_msg(SystemTime::now());
            maker.commit_msg(seq);
            assert!(seq > last);
            last = seq;
            assert!(
                id.len() >= usize::from(MSG_ID_MIN_CHARS) && id.len() <= 32,
                "{id}"
            );
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
            assert_eq!(maker.msg_seq(&id), Some(seq));
            assert_eq!(maker.msg_id(seq), id);
        }
        assert_eq!(maker.msg_seq("server"), None);
        assert_eq!(maker.msg_seq("zz"), None);
        // A server restarted on the same store (same alphabet, the largest
        // stored seq) goes on past it.
        let mut again = IdentityMaker::new(&alphabet, 0, last).unwrap();
        let (seq, id) = again.peek_msg(SystemTime::now());
        again.commit_msg(seq);
        assert!(seq > last);
        assert_eq!(again.msg_seq(&id), Some(seq));
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
