//! Where a message belongs: [`Conversation`] (the lobby `*`, a room, or the
//! direct messages with one peer), [`RoomName`] (validated and case-folded
//! as the server writes it) and [`MsgId`] (the server's opaque message id).
//!
//! Pure data and validation. Message ids are compared for equality only,
//! never for order: the contract makes them opaque strings.

use std::fmt;

use tsockm_proto::{BROADCAST, Text};

use crate::PeerId;

/// The longest room name after the `#`, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 32;

/// A room name: `#` then 1 to 32 of `A-Z a-z 0-9 _ - .`, folded to lower
/// case (the server folds it the same way and always writes it folded).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Text);

/// Why a typed room name is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// It does not start with `#`.
    #[error("a room name starts with `#`, as in #general")]
    NoHash,
    /// Nothing after the `#`, or more than 32 characters.
    #[error("a room name has 1 to {MAX_ROOM_NAME_CHARS} characters after the `#`")]
    Length,
    /// A character other than letters, digits, `_`, `-` and `.`.
    #[error("a room name holds only letters, digits, `_`, `-` and `.`, not `{0}`")]
    Character(char),
}

impl RoomName {
    /// Checks and folds a room name as typed (`#Rust` → `#rust`).
    pub fn parse(name: &str) -> Result<RoomName, RoomNameError> {
        let Some(rest) = name.strip_prefix('#') else {
            return Err(RoomNameError::NoHash);
        };
        let n_chars = rest.chars().count();
        if n_chars == 0 || n_chars > MAX_ROOM_NAME_CHARS {
            return Err(RoomNameError::Length);
        }
        if let Some(c) = rest
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(RoomNameError::Character(c));
        }
        Ok(RoomName(Text::from(name.to_ascii_lowercase())))
    }

    /// The name with its `#`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The name as a [`Text`], for building frames.
    pub fn as_text(&self) -> &Text {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A message id as the server made it: opaque, compared only for equality.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MsgId(Text);

impl MsgId {
    /// Wraps an id received from the server.
    pub fn new(id: impl Into<Text>) -> Self {
        MsgId(id.into())
    }

    /// Reads a message id from the SRC of a relayed message or history item:
    /// letters and digits, at most 32 (a v1 server writes its own address
    /// there, which is no message id).
    pub fn from_src(src: &Text) -> Option<MsgId> {
        let ok = !src.is_empty()
            && src.len() <= 32
            && src.bytes().all(|b| b.is_ascii_alphanumeric())
            && src.as_str() != tsockm_proto::SERVER_ID;
        ok.then(|| MsgId(src.clone()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id as a [`Text`], for building frames.
    pub fn as_text(&self) -> &Text {
        &self.0
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One conversation: the lobby, a room, or the direct messages with a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// Everyone (`*`).
    Lobby,
    /// A room.
    Room(RoomName),
    /// The direct messages between this client and that peer.
    Direct(PeerId),
}

impl Conversation {
    /// How the conversation is written in DST (and in a HISTORY request).
    pub fn wire(&self) -> Text {
        match self {
            Conversation::Lobby => Text::from_static(BROADCAST),
            Conversation::Room(room) => room.as_text().clone(),
            Conversation::Direct(id) => id.as_text().clone(),
        }
    }

    /// Reads a conversation from a DST or a HISTORY answer: `*` (or empty)
    /// is the lobby, `#...` a room, anything else a peer id.
    pub fn from_wire(field: &Text) -> Conversation {
        if field.is_empty() || field.as_str() == BROADCAST {
            Conversation::Lobby
        } else if field.starts_with('#') {
            match RoomName::parse(field) {
                Ok(room) => Conversation::Room(room),
                // The server writes folded, valid names; keep what it sent.
                Err(_) => Conversation::Room(RoomName(field.clone())),
            }
        } else {
            Conversation::Direct(PeerId::new(field.clone()))
        }
    }

    /// The room, if this is one.
    pub fn room(&self) -> Option<&RoomName> {
        match self {
            Conversation::Room(room) => Some(room),
            _ => None,
        }
    }
}

impl fmt::Display for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conversation::Lobby => f.write_str(BROADCAST),
            Conversation::Room(room) => f.write_str(room.as_str()),
            Conversation::Direct(id) => write!(f, "@{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked_and_folded() {
        assert_eq!(
            RoomName::parse("#Rust-Lang.2_x").unwrap().as_str(),
            "#rust-lang.2_x"
        );
        assert_eq!(RoomName::parse("rust"), Err(RoomNameError::NoHash));
        assert_eq!(RoomName::parse("#"), Err(RoomNameError::Length));
        assert!(RoomName::parse(&format!("#{}", "a".repeat(32))).is_ok());
        assert_eq!(
            RoomName::parse(&format!("#{}", "a".repeat(33))),
            Err(RoomNameError::Length)
        );
        assert_eq!(RoomName::parse("#a b"), Err(RoomNameError::Character(' ')));
        assert_eq!(RoomName::parse("#café"), Err(RoomNameError::Character('é')));
        assert_eq!(RoomName::parse("#a::b"), Err(RoomNameError::Character(':')));
    }

    #[test]
    fn message_ids_only_from_letters_and_digits() {
        assert_eq!(MsgId::from_src(&Text::from("aB3")).unwrap().as_str(), "aB3");
        assert!(MsgId::from_src(&Text::from("127.0.0.1:6969")).is_none());
        assert!(MsgId::from_src(&Text::from("")).is_none());
        assert!(MsgId::from_src(&Text::from("server")).is_none());
        assert!(MsgId::from_src(&Text::from("a".repeat(33))).is_none());
    }

    #[test]
    fn conversations_on_the_wire() {
        for (wire, conv) in [
            ("*", Conversation::Lobby),
            (
                "#rust",
                Conversation::Room(RoomName::parse("#rust").unwrap()),
            ),
            (
                "abcDEF1234",
                Conversation::Direct(PeerId::new("abcDEF1234")),
            ),
        ] {
            assert_eq!(Conversation::from_wire(&Text::from(wire)), conv);
            assert_eq!(conv.wire(), wire);
        }
        assert_eq!(Conversation::from_wire(&Text::new()), Conversation::Lobby);
    }
}
