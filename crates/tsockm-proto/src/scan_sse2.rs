//! The line scan and the byte search of `scan.rs` with SSE2, 16 bytes per
//! instruction, for x86-64 (every x86-64 CPU has SSE2).
//!
//! The answers are exactly those of the portable versions: the tests of
//! `scan.rs` hold the scan to the byte-at-a-time definition and the search
//! to `memchr`. Every load is a safe read of a 16-byte array, never past
//! the slice given. The only `unsafe` is each call into a
//! `#[target_feature(enable = "sse2")]` function, which Rust requires even
//! though this file is only compiled where SSE2 is enabled (see its `mod`
//! line in `lib.rs`).

use std::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
};

use crate::scan::{Scan, WINDOW_BYTES, window_separators};

/// Scans the line of the first `len` bytes of `window` as
/// [`crate::scan::scan`] does; bytes of `window` past the line (more of the
/// read buffer) may be read but change no answer.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn scan(window: &[u8], len: usize) -> Result<Scan, usize> {
    // SAFETY: `scan_sse2` needs only SSE2, which every build of this file
    // has (the `cfg` on its `mod` line); it touches memory only through
    // safe slices.
    unsafe { scan_sse2(window, len) }
}

/// The 16 bytes of `chunk` as a vector.
#[target_feature(enable = "sse2")]
#[inline]
fn load(chunk: &[u8; 16]) -> __m128i {
    let (low, high) = chunk.split_at(8);
    let word = |half: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(half);
        i64::from_le_bytes(bytes)
    };
    _mm_set_epi64x(word(high), word(low))
}

/// Bit `i` set when lane `i` of `lanes` has its high bit set.
#[target_feature(enable = "sse2")]
#[inline]
fn bits(lanes: __m128i) -> u64 {
    u64::from(_mm_movemask_epi8(lanes) as u16)
}

/// See [`scan`]. A window shorter than [`WINDOW_BYTES`] (the end of the
/// read buffer) is copied into a zeroed one first.
#[target_feature(enable = "sse2")]
#[inline]
fn scan_sse2(window: &[u8], len: usize) -> Result<Scan, usize> {
    let line = &window[..len];
    let colon = _mm_set1_epi8(b':' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let mut padded = [0u8; WINDOW_BYTES];
    let first: &[u8; WINDOW_BYTES] = match window.first_chunk::<WINDOW_BYTES>() {
        Some(first) => first,
        None => {
            padded[..len].copy_from_slice(line);
            &padded
        }
    };
    let mut colons = 0u64;
    let mut backslashes = 0u64;
    let mut high = 0u64;
    for (k, chunk) in first.as_chunks::<16>().0.iter().enumerate() {
        let v = load(chunk);
        colons |= bits(_mm_cmpeq_epi8(v, colon)) << (16 * k);
        backslashes |= bits(_mm_cmpeq_epi8(v, backslash)) << (16 * k);
        high |= bits(v) << (16 * k);
    }
    if len < WINDOW_BYTES {
        let in_line = (1u64 << len) - 1;
        colons &= in_line;
        backslashes &= in_line;
        high &= in_line;
    }
    let starts = match window_separators(line, colons) {
        Ok(starts) => starts,
        Err(answer) => return answer,
    };
    let mut has_backslash = backslashes != 0;
    let mut is_ascii = high == 0;
    if let Some(rest) = line.get(WINDOW_BYTES..) {
        // OR-ing over overlapping chunks is harmless, so the last partial
        // chunk is read as the line's last 16 bytes.
        let (chunks, tail) = rest.as_chunks::<16>();
        let last = if tail.is_empty() {
            None
        } else {
            line.last_chunk::<16>()
        };
        let mut seen_high = _mm_set1_epi8(0);
        let mut seen_backslash = _mm_set1_epi8(0);
        for chunk in chunks.iter().chain(last) {
            let v = load(chunk);
            seen_high = _mm_or_si128(seen_high, v);
            seen_backslash = _mm_or_si128(seen_backslash, _mm_cmpeq_epi8(v, backslash));
        }
        is_ascii &= bits(seen_high) == 0;
        has_backslash |= bits(seen_backslash) != 0;
    }
    Ok(Scan {
        starts,
        is_ascii,
        has_backslash,
    })
}

/// The offset of the first `byte` in `haystack`, as `memchr` finds it.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    // SAFETY: as in `scan`.
    unsafe { find_byte_sse2(byte, haystack) }
}

/// See [`find_byte`]: 32 bytes per step, then 16, then the last 16 bytes
/// again for the tail (or one byte at a time in a haystack shorter than 16).
#[target_feature(enable = "sse2")]
#[inline]
fn find_byte_sse2(byte: u8, haystack: &[u8]) -> Option<usize> {
    let needle = _mm_set1_epi8(byte as i8);
    let (pairs, _) = haystack.as_chunks::<32>();
    for (k, pair) in pairs.iter().enumerate() {
        let (halves, _) = pair.as_chunks::<16>();
        let found = bits(_mm_cmpeq_epi8(load(&halves[0]), needle))
            | bits(_mm_cmpeq_epi8(load(&halves[1]), needle)) << 16;
        if found != 0 {
            return Some(32 * k + found.trailing_zeros() as usize);
        }
    }
    let (chunks, tail) = haystack.as_chunks::<16>();
    for (k, chunk) in chunks.iter().enumerate().skip(2 * pairs.len()) {
        let found = bits(_mm_cmpeq_epi8(load(chunk), needle));
        if found != 0 {
            return Some(16 * k + found.trailing_zeros() as usize);
        }
    }
    if tail.is_empty() {
        return None;
    }
    let checked = haystack.len() - tail.len();
    match haystack.last_chunk::<16>() {
        // The last 16 bytes, of which only the tail is still unchecked.
        Some(last) => {
            let found = bits(_mm_cmpeq_epi8(load(last), needle)) >> (16 - tail.len());
            (found != 0).then(|| checked + found.trailing_zeros() as usize)
        }
        None => tail.iter().position(|&b| b == byte),
    }
}
