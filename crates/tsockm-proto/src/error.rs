//! [`FrameError`]: everything that can be wrong with one frame.
//!
//! The messages say which field and which value, because the server sends
//! them back to the peer as the reason of its `ERR` answer. Values quoted in a
//! message are cut to [`QUOTE_MAX_CHARS`] characters so a reason stays short.

use std::fmt;

use crate::{Action, Status};

/// The longest field value, in characters, quoted in an error message.
pub(crate) const QUOTE_MAX_CHARS: usize = 40;

/// One of the seven fields of a frame, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// TYPE.
    Kind,
    /// ACTION.
    Action,
    /// STATUS.
    Status,
    /// SENDER_ID.
    SenderId,
    /// SRC.
    Src,
    /// DST.
    Dst,
    /// BODY.
    Body,
}

impl Field {
    /// The field's name in the specification, e.g. `"SENDER_ID"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Kind => "TYPE",
            Field::Action => "ACTION",
            Field::Status => "STATUS",
            Field::SenderId => "SENDER_ID",
            Field::Src => "SRC",
            Field::Dst => "DST",
            Field::Body => "BODY",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The line is longer than the maximum frame length.
    #[error("frame longer than the maximum of {limit} bytes")]
    TooLong {
        /// The maximum length in bytes, not counting the terminator.
        limit: usize,
    },
    /// The line is not valid UTF-8.
    #[error("frame is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    InvalidUtf8 {
        /// Offset of the first byte that is not part of valid UTF-8.
        valid_up_to: usize,
    },
    /// The line has fewer than seven `::`-separated fields.
    #[error("frame has {found} of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY")]
    MissingFields {
        /// How many fields the line had.
        found: usize,
    },
    /// TYPE is not `REQ`, `RES` or `ERR`.
    #[error("unknown TYPE `{0}` (expected REQ, RES or ERR)")]
    UnknownKind(String),
    /// STATUS is not one of the known codes.
    #[error(
        "unknown STATUS `{0}` (expected 200, 400, 401, 403, 404, 405, 408, 413, 429, 502 or 503)"
    )]
    UnknownStatus(String),
    /// ACTION is not one of the known actions (the frame is otherwise well formed).
    #[error(
        "unknown ACTION `{0}` (expected COMM, COMM_END, MSG, GET_PEER, NTFY_KILL, NTFY_JOIN, \
         JOIN, PART, ROOMS, HISTORY, AUTH or NONE)"
    )]
    UnknownAction(String),
    /// A header field holds something it never may (when encoding).
    #[error("{field} `{value}` {problem}")]
    InvalidField {
        /// The offending field.
        field: Field,
        /// Its value, cut to 40 characters.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl FrameError {
    /// The status the server answers this error with: 413 for an over-long
    /// line, 405 for an unknown action, 400 for anything else malformed.
    pub fn status(&self) -> Status {
        match self {
            FrameError::TooLong { .. } => Status::PayloadTooLarge,
            FrameError::UnknownAction(_) => Status::MethodNotAllowed,
            _ => Status::BadRequest,
        }
    }

    /// The ACTION of the error answer: always `NONE`, because the action of a
    /// frame that could not be decoded is unknown or not to be trusted.
    pub fn action(&self) -> Action {
        Action::None
    }
}

/// Cuts a field value for quoting in an error message.
pub(crate) fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            FrameError::TooLong { limit: 1 }.status(),
            Status::PayloadTooLarge
        );
        assert_eq!(
            FrameError::UnknownAction("X".into()).status(),
            Status::MethodNotAllowed
        );
        assert_eq!(
            FrameError::MissingFields { found: 3 }.status(),
            Status::BadRequest
        );
        assert_eq!(
            FrameError::InvalidUtf8 { valid_up_to: 0 }.status(),
            Status::BadRequest
        );
        assert_eq!(
            FrameError::UnknownKind("X".into()).status(),
            Status::BadRequest
        );
        assert_eq!(
            FrameError::UnknownStatus("X".into()).status(),
            Status::BadRequest
        );
    }

    #[test]
    fn messages_name_the_field_and_value() {
        assert_eq!(
            FrameError::UnknownKind("REQUEST".into()).to_string(),
            "unknown TYPE `REQUEST` (expected REQ, RES or ERR)"
        );
        assert_eq!(
            FrameError::MissingFields { found: 3 }.to_string(),
            "frame has 3 of the 7 fields TYPE::ACTION::STATUS::SENDER_ID::SRC::DST::BODY"
        );
        let e = FrameError::InvalidField {
            field: Field::Dst,
            value: "a::b".into(),
            problem: "contains `::`",
        };
        assert_eq!(e.to_string(), "DST `a::b` contains `::`");
    }

    #[test]
    fn quotes_are_cut() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(100);
        let q = quote(&long);
        assert_eq!(q.chars().count(), QUOTE_MAX_CHARS + 1);
        assert!(q.ends_with('…'));
    }
}
