//! One pass over a received line, so parsing reads each byte once after
//! the codec has found the line's end; and [`find_byte`], which finds it.
//!
//! On x86-64 both use SSE2, 16 bytes at a time (`scan_sse2.rs`); elsewhere
//! [`scan`] goes a 64-bit word at a time (this file) and [`find_byte`] is
//! `memchr`. The word-at-a-time scan also handles, on every CPU, a line
//! whose header does not fit the first [`WINDOW_BYTES`], and the tests
//! hold both scans to the byte-at-a-time definition.
//!
//! [`scan`] finds the six separators that cut a line into its seven fields
//! (the first six `::`, leftmost first and not overlapping, so `a:::b` is
//! `a`, then `:b`), and in the same pass learns whether the line is ASCII
//! (hence valid UTF-8 with no further check) and whether it holds a
//! backslash (hence may have escapes to resolve). Neither scan may change
//! which `::` count as separators, or read past the slice it is given.

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

/// How many bytes at the start of a line [`scan`] looks at as one 64-bit
/// mask, one bit per byte; nearly every header fits.
pub(crate) const WINDOW_BYTES: usize = 64;

/// Scans the line made of the first `len` bytes of `window` (the rest of
/// `window`, more of the read buffer, may be read but changes no answer);
/// if it has fewer than six separators, gives back the number of fields it
/// has (separators found + 1).
///
/// Always inlined into its one caller: returning the result through memory
/// cost more than the scan itself in the codec benchmark.
#[inline(always)]
pub(crate) fn scan(window: &[u8], len: usize) -> Result<Scan, usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return crate::scan_sse2::scan(window, len);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    scan_words(&window[..len])
}

/// The offset of the first `byte` in `haystack`.
#[inline(always)]
pub(crate) fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return crate::scan_sse2::find_byte(byte, haystack);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    memchr::memchr(byte, haystack)
}

/// [`scan`] a word at a time, on any CPU (used where SSE2 is not).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
pub(crate) fn scan_words(line: &[u8]) -> Result<Scan, usize> {
    let (words, tail) = line.as_chunks::<8>();
    let last = last_word(line, tail.len());
    let n_window_words = (WINDOW_BYTES / 8).min(words.len() + 1);
    let mut high_bits = 0u64;
    let mut backslashes = 0u64;
    // Bit `i` set when byte `i` is a colon, for the window.
    let mut colons = 0u64;
    for k in 0..n_window_words {
        let word = words.get(k).map_or(last, |w| u64::from_le_bytes(*w));
        high_bits |= word;
        backslashes |= has_zero_lane(word ^ BACKSLASHES);
        colons |= lane_bits(colon_lanes(word)) << (8 * k);
    }
    let starts = match window_separators(line, colons) {
        Ok(starts) => starts,
        Err(answer) => return answer,
    };
    Ok(finish(
        starts,
        words,
        last,
        n_window_words,
        high_bits,
        backslashes,
    ))
}

/// Where the six separators of `line` start, from `colons`, the colons of
/// its first [`WINDOW_BYTES`] (bit `i` set when byte `i` is `:`, none past
/// the line). When the window does not hold all six, gives back what
/// [`scan`] answers instead: the number of fields of a line that ends
/// within the window, else the answer of [`scan_long`].
#[inline(always)]
pub(crate) fn window_separators(
    line: &[u8],
    colons: u64,
) -> Result<[usize; N_SEPARATORS], Result<Scan, usize>> {
    // Bit `i` set when a `::` starts at byte `i` (the last one may end just
    // after the window).
    let colon_after = u64::from(line.get(WINDOW_BYTES) == Some(&b':'));
    let pairs = colons & ((colons >> 1) | (colon_after << 63));
    let mut separators = leftmost_pairs(pairs);
    if separators.count_ones() < N_SEPARATORS as u32 {
        return Err(if line.len() <= WINDOW_BYTES {
            Err(separators.count_ones() as usize + 1)
        } else {
            scan_long(line)
        });
    }
    let mut starts = [0usize; N_SEPARATORS];
    for start in &mut starts {
        *start = separators.trailing_zeros() as usize;
        separators &= separators - 1;
    }
    Ok(starts)
}

/// The [`Scan`] of a line whose separators are found, once the words from
/// `first` on (and the partial `last` one, unless already seen) are looked
/// at: only ASCII and backslashes matter there.
#[inline(always)]
fn finish(
    starts: [usize; N_SEPARATORS],
    words: &[[u8; 8]],
    last: u64,
    first: usize,
    mut high_bits: u64,
    mut backslashes: u64,
) -> Scan {
    for word in words.get(first..).unwrap_or_default() {
        let word = u64::from_le_bytes(*word);
        high_bits |= word;
        backslashes |= has_zero_lane(word ^ BACKSLASHES);
    }
    if first <= words.len() {
        high_bits |= last;
        backslashes |= has_zero_lane(last ^ BACKSLASHES);
    }
    Scan {
        starts,
        is_ascii: high_bits & HIGH_BITS == 0,
        has_backslash: backslashes & HIGH_BITS != 0,
    }
}

/// Of the bits of `pairs` (each a `::` starting there), those the leftmost,
/// non-overlapping reading takes: in each run of consecutive bits (a run of
/// colons), the first, third, fifth... bit.
///
/// A run that starts at an even position is found by adding its first bit:
/// the carry clears the whole run and nothing else.
fn leftmost_pairs(pairs: u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let run_starts = pairs & !(pairs << 1);
    let even_runs = pairs & !pairs.wrapping_add(run_starts & EVEN);
    let odd_runs = pairs & !even_runs;
    (even_runs & EVEN) | (odd_runs & !EVEN)
}

/// One bit per byte lane: bit `i` of the result is the high bit of lane `i`
/// of `lanes` (whose other bits must be zero).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn lane_bits(lanes: u64) -> u64 {
    // Each lane's bit lands in the top byte at its own position, so the
    // products never carry into one another.
    ((lanes >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// [`scan`] for a line whose header does not fit the window: word by word,
/// taking one candidate pair of colons at a time.
fn scan_long(line: &[u8]) -> Result<Scan, usize> {
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
    Ok(finish(starts, words, last, k, high_bits, backslashes))
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
        assert_eq!(scan(line, line.len()), reference(line), "{line:?}");
        // Junk after the line, as in a read buffer.
        let junk: Vec<u8> = [line, &[b':'; 80][..]].concat();
        assert_eq!(scan(&junk, line.len()), reference(line), "{line:?}");
        let junk: Vec<u8> = [line, &[0xff_u8, b'\\'].repeat(40)[..]].concat();
        assert_eq!(scan(&junk, line.len()), reference(line), "{line:?}");
        assert_eq!(scan_words(line), reference(line), "{line:?}");
    }

    #[test]
    fn lane_bits_and_leftmost_pairs() {
        assert_eq!(lane_bits(0), 0);
        assert_eq!(lane_bits(HIGH_BITS), 0xff);
        assert_eq!(lane_bits(0x80 | (0x80 << 56)), 0b1000_0001);
        // Runs of 1 to 5 pairs (2 to 6 colons), starting at even and odd bits.
        assert_eq!(leftmost_pairs(0b1), 0b1);
        assert_eq!(leftmost_pairs(0b110), 0b010);
        assert_eq!(leftmost_pairs(0b111), 0b101);
        assert_eq!(leftmost_pairs(0b1111_0111), 0b0101_0101);
        assert_eq!(leftmost_pairs(0b0111_1110), 0b0010_1010);
        assert_eq!(leftmost_pairs(u64::MAX), 0x5555_5555_5555_5555);
        assert_eq!(leftmost_pairs(u64::MAX << 1), 0xaaaa_aaaa_aaaa_aaaa);
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
            // Headers around and past the 64-byte window.
            b"RES::MSG::200::0123456789012345678901234567890123456::::*::body",
            b"RES::MSG::200::01234567890123456789012345678901234567::::*::body",
            b"RES::MSG::200::012345678901234567890123456789012345678::::*::body",
            b"RES::MSG::200::0123456789012345678901234567890123456789012345::*::x",
            b"RES::MSG::200::[0:0:0:0:0:0:0:1]:6969::[0:0:0:0:0:0:0:1]:50000::abcdefghij::x",
            b"::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::",
            b"x:::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::",
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

    /// The sixth separator before, across and after the end of the window,
    /// alone or in a run of colons.
    #[test]
    fn the_window_boundary() {
        for n in 0..90 {
            for end in [
                &b"::body"[..],
                b":::body",
                b"::::body",
                b"::\xc3\xa9\\",
                b":",
            ] {
                let line = [&b"a::b::c::d::e::"[..], &vec![b'x'; n], end].concat();
                check(&line);
                let line = [&vec![b'y'; n], &b"::b::c::d::e::f"[..], end].concat();
                check(&line);
            }
        }
    }

    #[test]
    fn find_byte_agrees_with_memchr() {
        for len in 0..100 {
            let mut haystack = vec![b'x'; len];
            assert_eq!(find_byte(b'\n', &haystack), None);
            for at in 0..len {
                haystack[at] = b'\n';
                assert_eq!(find_byte(b'\n', &haystack), Some(at), "{len} {at}");
                // A second one later changes nothing.
                if at + 1 < len {
                    haystack[len - 1] = b'\n';
                    assert_eq!(find_byte(b'\n', &haystack), Some(at), "{len} {at}");
                    haystack[len - 1] = b'x';
                }
                haystack[at] = b'x';
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_definition_on_any_line(
            line in proptest::collection::vec(
                proptest::sample::select(vec![b':', b':', b':', b'x', 0xc3, b'\\', 0x5b, 0x00]),
                0..200,
            )
        ) {
            check(&line);
        }

        #[test]
        fn find_byte_agrees_with_memchr_on_any_haystack(
            haystack in proptest::collection::vec(
                proptest::sample::select(vec![b'\n', b'x', 0x8a, 0xff]),
                0..200,
            ),
            skip in 0usize..40,
        ) {
            let haystack = haystack.get(skip..).unwrap_or_default();
            proptest::prop_assert_eq!(find_byte(b'\n', haystack), memchr::memchr(b'\n', haystack));
        }
    }
}
