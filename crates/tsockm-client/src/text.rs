//! Text for people: untrusted text made safe to show, and times of day.
//!
//! Whatever came from other peers (bodies, usernames, reasons) goes through
//! [`clean`] before it reaches a terminal: control characters (Unicode
//! category Cc) and format characters (Cf: bidirectional overrides and
//! isolates, zero-width characters) are shown escaped as `\u{202e}`, so a
//! message cannot move the cursor, change colours, reorder a line or hide
//! text. Pure: no I/O.

use std::fmt::Write as _;
use std::time::SystemTime;

use jiff::tz::TimeZone;

/// How newlines in a message are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newlines {
    /// As `\n`: one event, one line (script mode).
    Escaped,
    /// As a new line indented by `indent` spaces (line mode).
    Indented(usize),
    /// Kept as `\n` (the full-screen UI splits lines itself).
    Kept,
}

/// The code points of Unicode's general category Cf (format), as of
/// Unicode 16.0 (`DerivedGeneralCategory.txt`).
const FORMAT_RANGES: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a Unicode format character (category Cf).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_RANGES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// `text` with control and format characters escaped; tabs become four
/// spaces; newlines as `newlines` says.
pub fn clean(text: &str, newlines: Newlines) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => match newlines {
                Newlines::Escaped => out.push_str("\\n"),
                Newlines::Indented(n) => {
                    out.push('\n');
                    out.extend(std::iter::repeat_n(' ', n));
                }
                Newlines::Kept => out.push('\n'),
            },
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("    "),
            c if c.is_control() || is_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A name made safe to show on one line.
pub fn clean_name(name: &str) -> String {
    clean(name, Newlines::Escaped)
}

/// `HH:MM` of `t` in the time zone `tz`.
pub fn time_of_day(t: SystemTime, tz: &TimeZone) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%H:%M").to_string(),
        Err(_) => "--:--".to_owned(),
    }
}

/// `HH:MM:SS` of `t` in the time zone `tz`.
pub fn time_of_day_secs(t: SystemTime, tz: &TimeZone) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string(),
        Err(_) => "--:--:--".to_owned(),
    }
}

/// The local time zone, or UTC when the system has none configured.
pub fn local_time_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

/// Which of `n` colours a username gets: always the same for one name.
pub fn name_colour(name: &str, n: usize) -> usize {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % n.max(1) as u64).unwrap_or(0)
}

/// Whether `text` mentions `name` (a whole word, any case).
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.match_indices(&name).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// `n` with a word, in singular or plural: `1 message`, `2 messages`.
pub fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn escapes_control_and_format_characters() {
        let cases = [
            ("plain", "plain"),
            ("\x1b[31mred", "\\u{1b}[31mred"),
            ("a\tb", "a    b"),
            ("a\rb", "a\\rb"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{2066}isolate\u{2069}", "\\u{2066}isolate\\u{2069}"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("bom\u{feff}", "bom\\u{feff}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("café ü 日本", "café ü 日本"),
        ];
        for (text, shown) in cases {
            assert_eq!(clean(text, Newlines::Escaped), shown, "{text:?}");
        }
        assert_eq!(clean("a\nb", Newlines::Escaped), "a\\nb");
        assert_eq!(clean("a\nb", Newlines::Indented(2)), "a\n  b");
        assert_eq!(clean("a\nb", Newlines::Kept), "a\nb");
        assert!(!is_format('a') && is_format('\u{200d}') && is_format('\u{61c}'));
    }

    #[test]
    fn times_of_day_in_a_zone() {
        let t = UNIX_EPOCH + Duration::from_secs(3 * 3600 + 4 * 60 + 5);
        assert_eq!(time_of_day(t, &TimeZone::UTC), "03:04");
        assert_eq!(time_of_day_secs(t, &TimeZone::UTC), "03:04:05");
        let paris = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(time_of_day(t, &paris), "04:04");
    }

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("hi alice!", "alice"));
        assert!(mentions("ALICE: look", "alice"));
        assert!(!mentions("malice", "alice"));
        assert!(!mentions("alice_b", "alice"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn name_colours_are_stable() {
        assert_eq!(name_colour("alice", 8), name_colour("alice", 8));
        assert!(name_colour("bob", 8) < 8);
        assert_eq!(count(1, "peer"), "1 peer");
        assert_eq!(count(3, "peer"), "3 peers");
    }
}
