//! The username rules of the contract (section 4).

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest username, in Unicode scalar values.
pub const USERNAME_MAX_CHARS: usize = 32;

/// Why a username was refused; the message is sent back as the 400 reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    /// Nothing was given.
    #[error("invalid username: it is empty (give 1 to 32 characters in BODY)")]
    Empty,
    /// Over the maximum length.
    #[error("invalid username: {0} characters, at most 32 are allowed")]
    TooLong(usize),
    /// Holds a control character.
    #[error("invalid username: it contains a control character")]
    Control,
    /// Holds a format character (a bidirectional control, a zero-width
    /// character), which could make it look like another name.
    #[error("invalid username: it contains an invisible formatting character (U+{0:04X})")]
    Format(u32),
    /// Holds the field separator.
    #[error("invalid username: it contains `::`")]
    Separator,
    /// Starts or ends with white space.
    #[error("invalid username: it begins or ends with white space")]
    Whitespace,
}

/// Checks a requested username against the rules.
pub fn check_username(name: &str) -> Result<(), UsernameError> {
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    let n_chars = name.chars().count();
    if n_chars > USERNAME_MAX_CHARS {
        return Err(UsernameError::TooLong(n_chars));
    }
    if name.chars().any(char::is_control) {
        return Err(UsernameError::Control);
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(UsernameError::Format(u32::from(c)));
    }
    if name.contains("::") {
        return Err(UsernameError::Separator);
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(UsernameError::Whitespace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let ok = [
            "a",
            "alice",
            "Ålesund",
            "a b",
            "a:b",
            ":a",
            "😀",
            &"é".repeat(32),
        ];
        for name in ok {
            assert_eq!(check_username(name), Ok(()), "{name:?}");
        }
        let bad = [
            ("", UsernameError::Empty),
            (&"x".repeat(33), UsernameError::TooLong(33)),
            ("a\u{7}b", UsernameError::Control),
            ("a\u{85}b", UsernameError::Control),
            ("adm\u{202e}nim", UsernameError::Format(0x202e)),
            ("a\u{200b}b", UsernameError::Format(0x200b)),
            ("\u{2066}a", UsernameError::Format(0x2066)),
            ("a\u{feff}", UsernameError::Format(0xfeff)),
            ("a\u{ad}b", UsernameError::Format(0xad)),
            ("a::b", UsernameError::Separator),
            (" a", UsernameError::Whitespace),
            ("a ", UsernameError::Whitespace),
            ("a\u{3000}", UsernameError::Whitespace),
            ("\u{a0}a", UsernameError::Whitespace),
        ];
        for (name, expected) in bad {
            assert_eq!(check_username(name), Err(expected), "{name:?}");
        }
    }
}
