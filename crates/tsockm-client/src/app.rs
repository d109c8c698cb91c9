//! [`App`]: the terminal program's own state, beside the session's.
//!
//! Counters for `:info`, and the rules that turn what the user typed into a
//! peer id (`:dm alice ...`). Pure: no I/O, no clock of its own (the caller
//! passes the time), so every rule is unit tested.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Event, PeerId, Roster, State};

/// Counters kept by the terminal program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    /// Messages this client sent (broadcast and direct).
    pub n_sent: u64,
    /// Broadcast messages received.
    pub n_received: u64,
    /// Direct messages received.
    pub n_direct: u64,
    /// Errors the server answered with.
    pub n_errors: u64,
    /// Times the session was restored after a dropped connection.
    pub n_reconnects: u64,
}

/// Why a `:dm` target names no single peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Several peers have this username.
    Ambiguous {
        /// The username.
        username: String,
        /// Their ids, sorted.
        ids: Vec<PeerId>,
    },
    /// No known peer has this id or username.
    Unknown(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Ambiguous { username, ids } => {
                let ids: Vec<&str> = ids.iter().map(PeerId::as_str).collect();
                write!(
                    f,
                    "`{username}` is ambiguous: {} peers have that name, ids {}; use an id",
                    ids.len(),
                    ids.join(", ")
                )
            }
            ResolveError::Unknown(who) => {
                write!(f, "no peer with the id or username `{who}` (see :list)")
            }
        }
    }
}

impl std::error::Error for ResolveError {}

impl App {
    /// A fresh state.
    pub fn new() -> Self {
        App::default()
    }

    /// Counts what an event says.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Message { .. } => self.n_received += 1,
            Event::Direct { .. } => self.n_direct += 1,
            Event::Error { .. } => self.n_errors += 1,
            Event::Reconnected { .. } | Event::Reregistered { .. } => self.n_reconnects += 1,
            _ => {}
        }
    }

    /// Counts a message sent.
    pub fn on_sent(&mut self) {
        self.n_sent += 1;
    }

    /// The lines `:info` shows.
    pub fn info_lines(&self, state: &State, now: SystemTime) -> Vec<String> {
        let since = state.registered_at;
        let ago = now.duration_since(since).unwrap_or_default();
        let server = match state.server_addr {
            Some(addr) if addr.to_string() != state.server => {
                format!("{} ({addr})", state.server)
            }
            _ => state.server.clone(),
        };
        let status = if state.online {
            "online"
        } else {
            "reconnecting"
        };
        vec![
            format!("id:        {}", state.id),
            format!("username:  {}", state.username),
            format!("server:    {server}, {status}"),
            format!(
                "connected: since {} ({} ago)",
                utc_time_of_day(since),
                human_duration(ago)
            ),
            format!("peers:     {} known, you included", state.roster.len()),
            format!(
                "messages:  {} sent, {} received, {} direct",
                self.n_sent, self.n_received, self.n_direct
            ),
            format!(
                "other:     {} errors, {} reconnections",
                self.n_errors, self.n_reconnects
            ),
        ]
    }
}

/// Finds the one peer a `:dm` target names: an exact id first, then a
/// username that exactly one peer has.
pub fn resolve(roster: &Roster, target: &str) -> Result<PeerId, ResolveError> {
    if roster.contains(target) {
        return Ok(PeerId::new(target));
    }
    let mut ids = roster.ids_named(target);
    match ids.len() {
        0 => Err(ResolveError::Unknown(target.to_owned())),
        1 => Ok(ids.remove(0)),
        _ => Err(ResolveError::Ambiguous {
            username: target.to_owned(),
            ids,
        }),
    }
}

/// `HH:MM:SS UTC` of a point in time.
pub fn utc_time_of_day(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A duration for people: `45s`, `3m 12s`, `2h 5m`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{}h {}m", secs / 3600, secs / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsockm_proto::{Action, Status, Text};

    fn roster(peers: &[(&str, &str)]) -> Roster {
        let mut r = Roster::new();
        for (id, name) in peers {
            r.insert(PeerId::new(*id), Text::from(*name));
        }
        r
    }

    #[test]
    fn resolves_ids_then_unique_usernames() {
        let r = roster(&[
            ("id1", "alice"),
            ("id2", "bob"),
            ("id3", "bob"),
            ("bob", "eve"),
        ]);
        assert_eq!(resolve(&r, "id2"), Ok(PeerId::new("id2")));
        assert_eq!(resolve(&r, "alice"), Ok(PeerId::new("id1")));
        // An id wins over a username.
        assert_eq!(resolve(&r, "bob"), Ok(PeerId::new("bob")));
        assert_eq!(
            resolve(&r, "carol"),
            Err(ResolveError::Unknown("carol".into()))
        );
    }

    #[test]
    fn ambiguous_usernames_list_the_ids() {
        let r = roster(&[("id2", "bob"), ("id3", "bob")]);
        let e = resolve(&r, "bob").unwrap_err();
        assert_eq!(
            e,
            ResolveError::Ambiguous {
                username: "bob".into(),
                ids: vec![PeerId::new("id2"), PeerId::new("id3")],
            }
        );
        assert_eq!(
            e.to_string(),
            "`bob` is ambiguous: 2 peers have that name, ids id2, id3; use an id"
        );
    }

    #[test]
    fn counts_events() {
        let mut app = App::new();
        let from = PeerId::new("id1");
        app.on_event(&Event::Message {
            from: from.clone(),
            username: None,
            text: Text::from("hi"),
        });
        app.on_event(&Event::Direct {
            from,
            username: None,
            text: Text::from("psst"),
        });
        app.on_event(&Event::Error {
            action: Action::Msg,
            status: Status::NotFound,
            reason: Text::from("no such peer"),
        });
        app.on_event(&Event::Reconnected { kept_frames: 2 });
        app.on_sent();
        assert_eq!(
            app,
            App {
                n_sent: 1,
                n_received: 1,
                n_direct: 1,
                n_errors: 1,
                n_reconnects: 1,
            }
        );
    }

    #[test]
    fn info_shows_identity_and_counts() {
        let since = UNIX_EPOCH + Duration::from_secs(3600 * 24 * 365 + 3 * 3600 + 4 * 60 + 5);
        let state = State {
            id: PeerId::new("abcDEF1234"),
            username: Text::from("alice"),
            server: "127.0.0.1:6969".into(),
            server_addr: Some("127.0.0.1:6969".parse().unwrap()),
            registered_at: since,
            online: true,
            roster: roster(&[("abcDEF1234", "alice"), ("id2", "bob")]),
        };
        let mut app = App::new();
        app.on_sent();
        let lines = app.info_lines(&state, since + Duration::from_secs(192));
        assert_eq!(
            lines,
            [
                "id:        abcDEF1234",
                "username:  alice",
                "server:    127.0.0.1:6969, online",
                "connected: since 03:04:05 UTC (3m 12s ago)",
                "peers:     2 known, you included",
                "messages:  1 sent, 0 received, 0 direct",
                "other:     0 errors, 0 reconnections",
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m 12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h 5m");
    }
}
