//! One word-at-a-time pass over a received line, so parsing reads each byte
//! once after the codec has found the line's end.
//!
//! [`scan`] finds the six separators that cut a line into its seven fields
//! (the first six `::`, leftmost first and not overlapping, so `a:::b` is
//! `a`, then `:b`), and in the same pass learns whether the line is ASCII
//! (hence valid UTF-8 with no further check) and whether it holds a
//! backslash (hence may have escapes to resolve). This file must never read
//! past the line or change which `::` count as separators.

/// The number of separators that split a line into its seven fields.
pub(crate) const N_SEPARATORS: usize = 6;

/// What [`scan`] learnt about a line with all six separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Start offset of each separator.
    pub(crate) starts: [usize; N_SEPARATORS],
    /// Whether every byte of the line is ASCII.
    pub(crate) is_ascii: bool,
    /// Whether the line holds a `\` anywhere (in a header field too, so
    /// this may be a false alarm for BODY; it is never a missed one).
    pub(crate) has_backslash: bool,
}

/// A byte of `0x01` in each lane of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// The high bit of each byte lane of a word.
const HIGH_BITS: u64 = ONES * 0x80;
/// `:` in each byte lane of a word.
const COLONS: u64 = ONES * b':' as u64;
/// `\` in each byte lane of a word.
const BACKSLASHES: u64 = ONES * b'\\' as u64;

/// Scans `line`; if it has fewer than six separators, gives back the number
/// of fields it has (separators found + 1).
pub(crate) fn scan(line: &[u8]) -> Result<Scan, usize> {
    let mut starts = [0usize; N_SEPARATORS];
    let mut n_seps = 0;
    // The first offset where a new separator may start (after the last one).
    let mut next = 0;
    let mut high_bits = 0u64;
    let mut backslashes = 0u64;

    let (words, tail) = line.as_chunks::<8>();
    let last = last_word(line, tail.len());
    // Word `k`, for `k` up to `words.len()` (the last, partial one).
    let word_at = |k: usize| words.get(k).map_or(last, |w| u64::from_le_bytes(*w));

    // The header, up to the sixth separator.
    let mut k = 0;
    while n_seps < N_SEPARATORS && k <= words.len() {
        let word = word_at(k);
        high_bits |= word;
        backslashes |= has_zero_lane(word ^ BACKSLASHES);
        // A separator may start in any lane and end in the next word's first.
        let following = if k < words.len() { word_at(k + 1) } else { 0 };
        let colons = colon_lanes(word);
        let mut pairs = colons & ((colons >> 8) | (colon_lanes(following) << 56));
        if next > 8 * k {
            // The last separator of the previous word ends in lane 0.
            pairs &= !0x80;
        }
        while pairs != 0 && n_seps < N_SEPARATORS {
            let lowest = pairs & pairs.wrapping_neg();
            let at = 8 * k + (lowest.trailing_zeros() / 8) as usize;
            starts[n_seps] = at;
            n_seps += 1;
            next = at + 2;
            // A pair starting in the next lane overlaps this one.
            pairs &= !(lowest | (lowest << 8));
        }
        k += 1;
    }
    if n_seps < N_SEPARATORS {
        return Err(n_seps + 1);
    }
    // The rest of BODY: only ASCII and backslashes matter.
    for word in words.get(k..).unwrap_or_default() {
        let word = u64::from_le_bytes(*word);
        high_bits |= word;
        backslashes |= has_zero_lane(word ^ BACKSLASHES);
    }
    if k <= words.len() {
        high_bits |= last;
        backslashes |= has_zero_lane(last ^ BACKSLASHES);
    }
    Ok(Scan {
        starts,
        is_ascii: high_bits & HIGH_BITS == 0,
        has_backslash: backslashes & HIGH_BITS != 0,
    })
}

/// The last `tail_len` (0 to 7) bytes of `line` as a word, in its low lanes,
/// the other lanes zero (no colon, no backslash, no high bit, so this
/// padding changes no answer).
fn last_word(line: &[u8], tail_len: usize) -> u64 {
    if tail_len == 0 {
        return 0;
    }
    match line.last_chunk::<8>() {
        // The line's last eight bytes, shifted so only the tail is left.
        Some(end) => u64::from_le_bytes(*end) >> (8 * (8 - tail_len)),
        // A line shorter than a word.
        None => line
            .iter()
            .rev()
            .fold(0u64, |word, &b| (word << 8) | u64::from(b)),
    }
}

/// Non-zero (in some high bit) exactly when some byte lane of `x` is zero.
///
/// As a yes/no answer this is exact; which lanes are flagged is not (a lane
/// above a zero one may be flagged too), which is why only the answer is used.
fn has_zero_lane(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGH_BITS
}

/// `0x80` in each byte lane of `word` that holds `:`, `0` in the others.
///
/// Exact (no false positives): `x` is zero exactly in the colon lanes; for
/// each lane, `(x & 0x7f) + 0x7f` sets the lane's high bit when its low seven
/// bits are not all zero, without carrying into the next lane, and `| x`
/// adds lanes whose only set bit is the high one.
fn colon_lanes(word: u64) -> u64 {
    let x = word ^ COLONS;
    let nonzero = ((x & !HIGH_BITS) + !HIGH_BITS) | x;
    !nonzero & HIGH_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one byte at a time.
    fn reference(line: &[u8]) -> Result<Scan, usize> {
        let mut starts = [0usize; N_SEPARATORS];
        let mut n_seps = 0;
        let mut i = 0;
        while i + 1 < line.len() && n_seps < N_SEPARATORS {
            if line[i] == b':' && line[i + 1] == b':' {
                starts[n_seps] = i;
                n_seps += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        if n_seps < N_SEPARATORS {
            return Err(n_seps + 1);
        }
        Ok(Scan {
            starts,
            is_ascii: line.is_ascii(),
            has_backslash: line.contains(&b'\\'),
        })
    }

    fn check(line: &[u8]) {
        assert_eq!(scan(line), reference(line), "{line:?}");
    }

    #[test]
    fn colon_lanes_are_exact() {
        for byte in 0..=255u8 {
            let word = u64::from_le_bytes([byte, b':', 0, 0x80 | b':', b':', 0xff, 0xba, byte]);
            let expected: Vec<bool> = word.to_le_bytes().iter().map(|&b| b == b':').collect();
            let lanes = colon_lanes(word).to_le_bytes();
            let actual: Vec<bool> = lanes.iter().map(|&b| b == 0x80).collect();
            assert_eq!(actual, expected, "{byte:#x}");
            assert!(lanes.iter().all(|&b| b == 0 || b == 0x80));
        }
    }

    #[test]
    fn agrees_with_the_definition() {
        let lines: &[&[u8]] = &[
            b"",
            b":",
            b"::",
            b":::",
            b"REQ::COMM_END::200::::::::",
            b"REQ::COMM_END::200::::::",
            b"RES::MSG::200::abcdefghij::127.0.0.1:6969::*::hello :: world",
            b"REQ::MSG::200::::[0:0:0:0:0:0:0:1]:6969::*:::body",
            b"a:::b:::c:::d:::e:::f:::g",
            b"::::::::::::::::::::::::::::::",
            b"1234567::::::::::::::::::::::",
            b"12345678::x::y::z::w::v::",
            "é::ü::€::😀::a::b::c".as_bytes(),
            b"REQ::MSG::200::\xff::::*::x",
            b"REQ::MSG::200::::::*::\xff\xfe",
            b"REQ::MSG::200::::::*::a\\nb",
            b"REQ::MSG::200::a\\b::::*::x",
            b"REQ::MSG::200::::::*::exactly8\\",
        ];
        for line in lines {
            check(line);
        }
    }

    /// Every line of up to nine bytes over a small alphabet, and runs of
    /// colons placed across the word boundaries.
    #[test]
    fn agrees_with_the_definition_exhaustively() {
        let alphabet = [b':', b'x', 0xc3, b'\\'];
        for len in 0..=9u32 {
            for n in 0..4usize.pow(len) {
                let mut k = n;
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[k % 4];
                        k /= 4;
                        b
                    })
                    .collect();
                check(&line);
            }
        }
        for len in 12..=40usize {
            for from in 0..len {
                let mut line = vec![b'x'; len];
                for (j, b) in line.iter_mut().enumerate().skip(from) {
                    if j % 3 != 2 {
                        *b = b':';
                    }
                }
                check(&line);
                line[from] = b':';
                check(&line);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_definition_on_any_line(
            line in proptest::collection::vec(
                proptest::sample::select(vec![b':', b':', b':', b'x', 0xc3, b'\\', 0x5b, 0x00]),
                0..80,
            )
        ) {
            check(&line);
        }
    }
}
