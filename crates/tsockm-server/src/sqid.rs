//! The sqid of one number, made without allocating.
//!
//! The `sqids` crate encodes any list of numbers, and spends about 0.7 µs
//! on each id: it copies and rotates its alphabet, builds the digits with
//! `Vec::insert`, and lower-cases the id for its blocklist even when the
//! list is empty. A message id is made for every message the server
//! accepts, and in the fan-out benchmark A that was 15% of the server's
//! CPU. [`OneSqid`] writes the same id as the crate for a single number,
//! in a fixed-size buffer: one offset, then the number's digits.
//!
//! The crate stays the definition: ids are decoded with it, any case this
//! file does not handle (an id shorter than the minimum length, which the
//! crate pads) is left to it, and the tests compare both on random
//! alphabets and numbers.

/// Letters in a full alphabet of ASCII letters and digits.
const ALPHABET_LEN: usize = 62;

/// Digits in the longest number: `u64::MAX` in base 61 takes 11.
const MAX_DIGITS: usize = 11;

/// The longest id [`OneSqid::encode`] writes: the prefix and the digits.
const MAX_ID_BYTES: usize = 1 + MAX_DIGITS;

/// The sqids encoder of one number, over an alphabet of 62 ASCII letters
/// and digits and with no blocklist, as `Sqids` built with the same
/// settings would encode it.
#[derive(Debug, Clone)]
pub(crate) struct OneSqid {
    /// The alphabet as the crate keeps it: shuffled once when built.
    alphabet: [u8; ALPHABET_LEN],
    /// Ids shorter than this are padded (left to the crate).
    min_length: usize,
}

/// An id [`OneSqid::encode`] wrote: up to [`MAX_ID_BYTES`] ASCII bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqidBuf {
    bytes: [u8; MAX_ID_BYTES],
    len: usize,
}

impl SqidBuf {
    /// The id.
    pub(crate) fn as_str(&self) -> &str {
        // Every byte is one of the alphabet's, which `OneSqid::new` checked
        // is ASCII; the fallback never happens.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl OneSqid {
    /// The encoder for `alphabet` (as given to the sqids builder), or
    /// `None` unless it is 62 distinct ASCII characters.
    pub(crate) fn new(alphabet: &[char], min_length: u8) -> Option<Self> {
        let mut given = [0u8; ALPHABET_LEN];
        if alphabet.len() != ALPHABET_LEN {
            return None;
        }
        for (slot, &c) in given.iter_mut().zip(alphabet) {
            *slot = u8::try_from(c).ok().filter(u8::is_ascii)?;
        }
        let mut seen = [false; 128];
        for &b in &given {
            if std::mem::replace(&mut seen[usize::from(b)], true) {
                return None;
            }
        }
        Some(OneSqid {
            alphabet: shuffled(given),
            min_length: usize::from(min_length),
        })
    }

    /// The id of `number`, or `None` when it would need padding to the
    /// minimum length.
    ///
    /// The crate's steps for one number: an offset from the alphabet's
    /// letter at `number % 62` (its code, plus the count of numbers, 1);
    /// the alphabet rotated by it gives the prefix (its first letter),
    /// and reversed, without that first letter, the 61 digits the number
    /// is written in, most significant first.
    pub(crate) fn encode(&self, number: u64) -> Option<SqidBuf> {
        let n = ALPHABET_LEN as u64;
        let letter = self.alphabet[(number % n) as usize];
        let offset = (usize::from(letter) + 1) % ALPHABET_LEN;
        // Digit d is the reversed rotation's letter 1 + d, which is the
        // rotation's letter 60 - d, the alphabet's (offset + 60 - d) % 62.
        let digit = |d: u64| self.alphabet[(offset + 60 - d as usize) % ALPHABET_LEN];
        let mut digits = [0u8; MAX_DIGITS];
        let mut count = 0;
        let mut rest = number;
        loop {
            digits[MAX_DIGITS - 1 - count] = digit(rest % (n - 1));
            count += 1;
            rest /= n - 1;
            if rest == 0 {
                break;
            }
        }
        let len = 1 + count;
        if len < self.min_length {
            return None;
        }
        let mut bytes = [0u8; MAX_ID_BYTES];
        bytes[0] = self.alphabet[offset];
        bytes[1..len].copy_from_slice(&digits[MAX_DIGITS - count..]);
        Some(SqidBuf { bytes, len })
    }
}

/// The crate's one shuffle of the alphabet when it is built: a fixed
/// permutation that depends only on the letters.
fn shuffled(mut chars: [u8; ALPHABET_LEN]) -> [u8; ALPHABET_LEN] {
    for i in 0..ALPHABET_LEN - 1 {
        let j = ALPHABET_LEN - 1 - i;
        let r = (i * j + usize::from(chars[i]) + usize::from(chars[j])) % ALPHABET_LEN;
        chars.swap(i, r);
    }
    chars
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use sqids::Sqids;

    use super::*;

    /// What the server sends: ours, or the crate's where ours does not apply.
    fn encode_or(ours: &OneSqid, theirs: &Sqids, number: u64) -> Option<String> {
        match ours.encode(number) {
            Some(id) => Some(id.as_str().to_owned()),
            None => theirs.encode(&[number]).ok(),
        }
    }

    fn crate_sqids(alphabet: &[char], min_length: u8) -> Sqids {
        Sqids::builder()
            .alphabet(alphabet.to_vec())
            .min_length(min_length)
            .blocklist(HashSet::new())
            .build()
            .expect("a valid alphabet")
    }

    fn alphabet(seed: u64) -> Vec<char> {
        let mut chars: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut chars);
        chars
    }

    #[test]
    fn refuses_alphabets_it_cannot_encode_with() {
        let mut short = alphabet(1);
        short.pop();
        assert!(OneSqid::new(&short, 8).is_none());
        let mut repeated = alphabet(1);
        repeated[0] = repeated[1];
        assert!(OneSqid::new(&repeated, 8).is_none());
        let mut wide = alphabet(1);
        wide[0] = 'é';
        assert!(OneSqid::new(&wide, 8).is_none());
        assert!(OneSqid::new(&alphabet(1), 8).is_some());
    }

    #[test]
    fn the_edges_match_the_crate() {
        for seed in 0..50 {
            let chars = alphabet(seed);
            for min_length in [0, 8, 10] {
                let ours = OneSqid::new(&chars, min_length).expect("valid");
                let theirs = crate_sqids(&chars, min_length);
                let numbers = [
                    0,
                    1,
                    60,
                    61,
                    62,
                    3720,
                    3721,
                    1 << 40,
                    u64::MAX - 1,
                    u64::MAX,
                ];
                for number in numbers {
                    let expected = theirs.encode(&[number]).expect("encodes");
                    assert_eq!(encode_or(&ours, &theirs, number), Some(expected.clone()));
                    if let Some(id) = ours.encode(number) {
                        assert_eq!(id.as_str(), expected);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_the_crate_on_any_number(seed: u64, number: u64, min_length in 0u8..14) {
            let chars = alphabet(seed);
            let ours = OneSqid::new(&chars, min_length).expect("valid");
            let theirs = crate_sqids(&chars, min_length);
            let expected = theirs.encode(&[number]).expect("encodes");
            proptest::prop_assert_eq!(encode_or(&ours, &theirs, number), Some(expected.clone()));
            // Padding is the only case left to the crate.
            proptest::prop_assert_eq!(ours.encode(number).is_none(), expected.len() > 1 + digits(number));
        }
    }

    fn digits(mut number: u64) -> usize {
        let mut count = 1;
        while number >= 61 {
            number /= 61;
            count += 1;
        }
        count
    }
}
