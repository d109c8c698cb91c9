//! How the terminal program shows events and answers: one [`Ui`] renders
//! every line, with or without colours.
//!
//! Rendering is pure (it returns strings); writing them is the binary's job.
//! Text that came from other peers is never written raw: control characters
//! are escaped so a message cannot move the cursor, change colours or forge a
//! line of its own.

use std::fmt::Write as _;

use crate::{Closed, Event, Roster, State};

/// ANSI styles, applied only when colours are on.
mod style {
    pub const NAME: &str = "\x1b[1;36m";
    pub const DM: &str = "\x1b[1;35m";
    pub const NOTICE: &str = "\x1b[33m";
    pub const ERROR: &str = "\x1b[1;31m";
    pub const DIM: &str = "\x1b[2m";
    pub const RESET: &str = "\x1b[0m";
}

/// Clears the screen and moves the cursor home.
pub const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// Renders lines for a terminal or a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ui {
    /// Whether to use ANSI colours.
    colour: bool,
    /// Whether a message's newlines may start new (indented) lines; when
    /// false, every event is exactly one line and newlines show as `\n`.
    multiline: bool,
}

/// Whether colours should be used: only on a terminal, and never when the
/// `NO_COLOR` environment variable is set to anything non-empty.
pub fn colour_wanted(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

impl Ui {
    /// For a person at a terminal: multi-line messages, colours if `colour`.
    pub fn terminal(colour: bool) -> Self {
        Ui {
            colour,
            multiline: true,
        }
    }

    /// For a script: one line per event, no colours.
    pub fn script() -> Self {
        Ui {
            colour: false,
            multiline: false,
        }
    }

    /// Whether this is the terminal flavour (clearing the screen makes sense).
    pub fn is_terminal(&self) -> bool {
        self.multiline
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.colour {
            format!("{style}{text}{}", style::RESET)
        } else {
            text.to_owned()
        }
    }

    /// Escapes control characters; newlines become indented lines (terminal)
    /// or `\n` (script).
    fn clean(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '\n' if self.multiline => out.push_str("\n    "),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("    "),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out
    }

    fn notice(&self, text: &str) -> String {
        self.paint(style::NOTICE, &format!("* {text}"))
    }

    /// An error line: `! <text>`.
    pub fn error(&self, text: &str) -> String {
        self.paint(style::ERROR, &format!("! {}", self.clean(text)))
    }

    /// An error followed by the usage that fixes it.
    pub fn error_with_usage(&self, text: &str, usage: &str) -> String {
        let usage: Vec<String> = usage.lines().map(|l| format!("  {l}")).collect();
        format!("{}\n{}", self.error(text), usage.join("\n"))
    }

    /// How an event is shown.
    pub fn event(&self, event: &Event) -> String {
        let name = |username: &Option<tsockm_proto::Text>, id: &crate::PeerId| {
            self.clean(username.as_deref().unwrap_or(id.as_str()))
        };
        match event {
            Event::Message {
                from,
                username,
                text,
            } => format!(
                "{}: {}",
                self.paint(style::NAME, &name(username, from)),
                self.clean(text)
            ),
            Event::Direct {
                from,
                username,
                text,
            } => format!(
                "{} {}: {}",
                self.paint(style::DM, "[dm]"),
                self.paint(style::DM, &name(username, from)),
                self.clean(text)
            ),
            Event::Joined { id, username } => {
                self.notice(&format!("{} joined ({id})", self.clean(username)))
            }
            Event::Left { id, username } => {
                self.notice(&format!("{} left ({id})", self.clean(username)))
            }
            Event::PeerFound { id, username } => {
                self.notice(&format!("{id} is {}", self.clean(username)))
            }
            Event::Error {
                action,
                status,
                reason,
            } => self.error(&format!(
                "error {status} {} ({action}): {reason}",
                status.name()
            )),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } if *attempt <= 1 => self.notice(&format!(
                "connection lost: {}; reconnecting in {} ms",
                self.clean(reason),
                delay.as_millis()
            )),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } => self.notice(&format!(
                "reconnection attempt {} failed: {}; retrying in {} ms",
                attempt - 1,
                self.clean(reason),
                delay.as_millis()
            )),
            Event::Reconnected { kept_frames } => self.notice(&format!(
                "reconnected; {kept_frames} frame{} kept while you were away delivered",
                plural(*kept_frames)
            )),
            Event::Reregistered {
                old_id,
                new_id,
                reason,
            } => self.notice(&format!(
                "reconnected, but the server no longer knew your session ({}); \
                 registered anew as {new_id} (was {old_id})",
                self.clean(reason)
            )),
            Event::Unsent { n_frames } => self.error(&format!(
                "{n_frames} request{} dropped: too many waiting while disconnected",
                plural(*n_frames)
            )),
            Event::Closed(closed) => self.closed(closed),
        }
    }

    /// How the end of a session is shown.
    pub fn closed(&self, closed: &Closed) -> String {
        match closed {
            Closed::Ended => self.notice("session ended"),
            Closed::Kicked { reason } => self.error(&format!("kicked by the server: {reason}")),
            Closed::ShutDown { reason } => self.error(&format!("the server closed: {reason}")),
            Closed::Lost { reason } => self.error(&format!("connection lost for good: {reason}")),
        }
    }

    /// The greeting once registered.
    pub fn welcome(&self, state: &State) -> String {
        let others = state.roster.len().saturating_sub(1);
        self.notice(&format!(
            "registered as {} ({}) on {}; {others} other peer{} here; :help for commands",
            self.clean(&state.username),
            state.id,
            state.server,
            plural(others)
        ))
    }

    /// `:list`: a header line, then one line per peer.
    pub fn roster(&self, roster: &Roster, own_id: &crate::PeerId) -> String {
        let mut out = self.notice(&format!(
            "{} peer{} (you included):",
            roster.len(),
            plural(roster.len())
        ));
        for (id, username) in roster.sorted() {
            let you = if id == own_id { " (you)" } else { "" };
            let _ = write!(
                out,
                "\n  {}  {}{you}",
                self.paint(style::DIM, id.as_str()),
                self.paint(style::NAME, &self.clean(username))
            );
        }
        out
    }

    /// Plain informational lines (`:info`, `:help`), indented after the first.
    pub fn lines(&self, lines: &[String]) -> String {
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
                out.push_str("  ");
            }
            out.push_str(line);
        }
        self.notice(&out)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::ffi::OsStr;
    use std::time::Duration;
    use tsockm_proto::{Action, Status, Text};

    fn msg(username: Option<&str>, text: &str) -> Event {
        Event::Message {
            from: PeerId::new("id1"),
            username: username.map(Text::from),
            text: Text::from(text),
        }
    }

    #[test]
    fn colour_only_on_terminals_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }

    #[test]
    fn script_lines() {
        let ui = Ui::script();
        let cases = [
            (msg(Some("alice"), "hi"), "alice: hi"),
            (msg(None, "hi"), "id1: hi"),
            (msg(Some("alice"), "two\nlines"), "alice: two\\nlines"),
            (msg(Some("alice"), "\x1b[31mred"), "alice: \\u{1b}[31mred"),
            (
                Event::Direct {
                    from: PeerId::new("id1"),
                    username: Some(Text::from("bob")),
                    text: Text::from("psst"),
                },
                "[dm] bob: psst",
            ),
            (
                Event::Joined {
                    id: PeerId::new("id2"),
                    username: Text::from("carol"),
                },
                "* carol joined (id2)",
            ),
            (
                Event::Left {
                    id: PeerId::new("id2"),
                    username: Text::from("carol"),
                },
                "* carol left (id2)",
            ),
            (
                Event::PeerFound {
                    id: PeerId::new("id2"),
                    username: Text::from("carol"),
                },
                "* id2 is carol",
            ),
            (
                Event::Error {
                    action: Action::Msg,
                    status: Status::NotFound,
                    reason: Text::from("no peer `x`"),
                },
                "! error 404 NOT_FOUND (MSG): no peer `x`",
            ),
            (
                Event::Reconnecting {
                    attempt: 1,
                    delay: Duration::from_millis(80),
                    reason: "reset".into(),
                },
                "* connection lost: reset; reconnecting in 80 ms",
            ),
            (
                Event::Reconnecting {
                    attempt: 3,
                    delay: Duration::from_millis(150),
                    reason: "refused".into(),
                },
                "* reconnection attempt 2 failed: refused; retrying in 150 ms",
            ),
            (
                Event::Reconnected { kept_frames: 1 },
                "* reconnected; 1 frame kept while you were away delivered",
            ),
            (Event::Closed(Closed::Ended), "* session ended"),
            (
                Event::Closed(Closed::Kicked {
                    reason: Text::from("bye"),
                }),
                "! kicked by the server: bye",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(ui.event(&event), line, "{event:?}");
        }
    }

    #[test]
    fn terminal_lines_are_coloured_and_multiline() {
        let ui = Ui::terminal(true);
        let line = ui.event(&msg(Some("alice"), "a\nb"));
        assert_eq!(line, "\x1b[1;36malice\x1b[0m: a\n    b");
        let plain = Ui::terminal(false);
        assert_eq!(plain.event(&msg(Some("alice"), "hi")), "alice: hi");
    }

    #[test]
    fn roster_marks_you() {
        let mut r = Roster::new();
        r.insert(PeerId::new("id1"), Text::from("alice"));
        r.insert(PeerId::new("id2"), Text::from("bob"));
        let out = Ui::script().roster(&r, &PeerId::new("id2"));
        assert_eq!(
            out,
            "* 2 peers (you included):\n  id1  alice\n  id2  bob (you)"
        );
    }

    #[test]
    fn errors_with_usage() {
        let out = Ui::script().error_with_usage(":dm: missing text", "usage: :dm <a> <b>");
        assert_eq!(out, "! :dm: missing text\n  usage: :dm <a> <b>");
    }
}
