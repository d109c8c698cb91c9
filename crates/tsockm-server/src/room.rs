//! Room names (section 11 of the contract): `#` and 1 to 32 characters of
//! `A-Z a-z 0-9 _ - .`, case-insensitive, always written folded to lower
//! case.

use std::fmt;

use tsockm_proto::Text;

/// Longest room name, in characters after the `#`.
pub const ROOM_NAME_MAX_CHARS: usize = 32;

/// A valid room name, folded to lower case, `#` included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Text);

/// Why a room name was refused; the message is sent back as the 400 reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// It does not start with `#`.
    #[error("invalid room name `{0}`: it must start with `#`")]
    NoHash(String),
    /// Nothing after the `#`.
    #[error("invalid room name: nothing after `#` (give 1 to 32 characters)")]
    Empty,
    /// Too long.
    #[error("invalid room name: {0} characters after `#`, at most 32 are allowed")]
    TooLong(usize),
    /// A character outside `A-Z a-z 0-9 _ - .`.
    #[error("invalid room name `{0}`: only letters A-Z, digits, `_`, `-` and `.` may follow `#`")]
    BadCharacter(String),
}

impl RoomName {
    /// Checks and folds a room field.
    pub fn parse(field: &str) -> Result<RoomName, RoomNameError> {
        let quoted = || field.chars().take(40).collect::<String>();
        let Some(name) = field.strip_prefix('#') else {
            return Err(RoomNameError::NoHash(quoted()));
        };
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(RoomNameError::BadCharacter(quoted()));
        }
        // Every character is ASCII now, so bytes are characters.
        if name.len() > ROOM_NAME_MAX_CHARS {
            return Err(RoomNameError::TooLong(name.len()));
        }
        Ok(RoomName(Text::from(field.to_ascii_lowercase())))
    }

    /// The name as written on the wire, `#` included.
    pub fn as_text(&self) -> &Text {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (field, folded) in [
            ("#a", "#a"),
            ("#Rust", "#rust"),
            ("#A-b_c.9", "#a-b_c.9"),
            (
                &format!("#{}", "x".repeat(32)),
                &format!("#{}", "x".repeat(32)),
            ),
        ] {
            assert_eq!(
                RoomName::parse(field).map(|r| r.to_string()),
                Ok(folded.to_owned())
            );
        }
        let bad = [
            ("", RoomNameError::NoHash(String::new())),
            ("a", RoomNameError::NoHash("a".into())),
            ("#", RoomNameError::Empty),
            ("#a b", RoomNameError::BadCharacter("#a b".into())),
            ("#a::b", RoomNameError::BadCharacter("#a::b".into())),
            ("#é", RoomNameError::BadCharacter("#é".into())),
            ("##a", RoomNameError::BadCharacter("##a".into())),
        ];
        for (field, error) in bad {
            assert_eq!(RoomName::parse(field), Err(error), "{field:?}");
        }
        let long = format!("#{}", "x".repeat(33));
        assert_eq!(RoomName::parse(&long), Err(RoomNameError::TooLong(33)));
    }
}
