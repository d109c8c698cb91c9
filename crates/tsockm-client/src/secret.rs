//! [`Secret`]: the server password, held so that it is never shown: its
//! `Debug` is `***`, it has no `Display`, and only the session reads it, to
//! put it in an AUTH frame.

use std::fmt;

/// A server password (contract section 13).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Secret(password.into())
    }

    /// The first line of a password file's text (without its line end).
    pub fn from_file_text(text: &str) -> Self {
        Secret(text.lines().next().unwrap_or("").to_owned())
    }

    /// The password itself, for the AUTH frame.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown_and_read_from_the_first_line() {
        let secret = Secret::from_file_text("hunter2\r\nsecond line\n");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(Secret::from_file_text("").expose(), "");
    }
}
