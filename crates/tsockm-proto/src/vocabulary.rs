//! The closed vocabularies of the TYPE and ACTION fields.
//!
//! Each variant mirrors its wire spelling; `as_str` and `FromStr` sit side by
//! side and are tested to round-trip.

use std::fmt;
use std::str::FromStr;

use crate::FrameError;
use crate::error::quote;

/// The TYPE field: what kind of frame this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `REQ`: a request.
    Req,
    /// `RES`: a response, or a notification from the server.
    Res,
    /// `ERR`: an error answer.
    Err,
}

impl Kind {
    /// Every kind, in wire order of the specification.
    pub const ALL: [Kind; 3] = [Kind::Req, Kind::Res, Kind::Err];

    /// The wire spelling, e.g. `"REQ"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Req => "REQ",
            Kind::Res => "RES",
            Kind::Err => "ERR",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Kind {
    /// The kind with this exact wire spelling, given as bytes.
    pub(crate) fn from_wire(s: &[u8]) -> Option<Kind> {
        match s {
            b"REQ" => Some(Kind::Req),
            b"RES" => Some(Kind::Res),
            b"ERR" => Some(Kind::Err),
            _ => None,
        }
    }
}

impl FromStr for Kind {
    type Err = FrameError;

    /// Parses the exact wire spelling (case-sensitive).
    fn from_str(s: &str) -> Result<Self, FrameError> {
        Kind::from_wire(s.as_bytes()).ok_or_else(|| FrameError::UnknownKind(quote(s)))
    }
}

/// The ACTION field: what the frame is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// `COMM`: registration, its answer, resume, and the health check.
    Comm,
    /// `COMM_END`: end of a session, from either side.
    CommEnd,
    /// `MSG`: a chat message, broadcast or direct.
    Msg,
    /// `GET_PEER`: look up a peer's username by id.
    GetPeer,
    /// `NTFY_KILL`: a peer left or was removed.
    NtfyKill,
    /// `NTFY_JOIN`: a peer registered (also the roster sent to a newcomer).
    NtfyJoin,
    /// `JOIN` (v2): join a room; a peer is in a room.
    Join,
    /// `PART` (v2): leave a room; a peer left a room.
    Part,
    /// `ROOMS` (v2): list the rooms.
    Rooms,
    /// `HISTORY` (v2): stored messages.
    History,
    /// `AUTH` (v2): the server password.
    Auth,
    /// `NONE`: no action; used in errors about frames whose action is unknown.
    None,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 12] = [
        Action::Comm,
        Action::CommEnd,
        Action::Msg,
        Action::GetPeer,
        Action::NtfyKill,
        Action::NtfyJoin,
        Action::Join,
        Action::Part,
        Action::Rooms,
        Action::History,
        Action::Auth,
        Action::None,
    ];

    /// The wire spelling, e.g. `"GET_PEER"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Comm => "COMM",
            Action::CommEnd => "COMM_END",
            Action::Msg => "MSG",
            Action::GetPeer => "GET_PEER",
            Action::NtfyKill => "NTFY_KILL",
            Action::NtfyJoin => "NTFY_JOIN",
            Action::Join => "JOIN",
            Action::Part => "PART",
            Action::Rooms => "ROOMS",
            Action::History => "HISTORY",
            Action::Auth => "AUTH",
            Action::None => "NONE",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// The action with this exact wire spelling, given as bytes.
    pub(crate) fn from_wire(s: &[u8]) -> Option<Action> {
        match s {
            b"COMM" => Some(Action::Comm),
            b"COMM_END" => Some(Action::CommEnd),
            b"MSG" => Some(Action::Msg),
            b"GET_PEER" => Some(Action::GetPeer),
            b"NTFY_KILL" => Some(Action::NtfyKill),
            b"NTFY_JOIN" => Some(Action::NtfyJoin),
            b"JOIN" => Some(Action::Join),
            b"PART" => Some(Action::Part),
            b"ROOMS" => Some(Action::Rooms),
            b"HISTORY" => Some(Action::History),
            b"AUTH" => Some(Action::Auth),
            b"NONE" => Some(Action::None),
            _ => None,
        }
    }
}

impl FromStr for Action {
    type Err = FrameError;

    /// Parses the exact wire spelling (case-sensitive).
    fn from_str(s: &str) -> Result<Self, FrameError> {
        Action::from_wire(s.as_bytes()).ok_or_else(|| FrameError::UnknownAction(quote(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(
            "req".parse::<Kind>(),
            Err(FrameError::UnknownKind("req".into()))
        );
        assert!("".parse::<Kind>().is_err());
    }

    #[test]
    fn actions_round_trip() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
            assert_eq!(action.to_string(), action.as_str());
        }
        assert_eq!(
            "PING".parse::<Action>(),
            Err(FrameError::UnknownAction("PING".into()))
        );
        assert!("msg".parse::<Action>().is_err());
    }
}
