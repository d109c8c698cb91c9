//! What the user types, parsed: a message line or a `:command`.
//!
//! Pure: no I/O, no session. A command missing its argument is an error that
//! names what is missing and carries the command's usage.

use std::fmt;

use crate::{RoomName, RoomNameError};

/// How many stored messages `:history` shows when not told.
pub const DEFAULT_HISTORY: usize = 50;

/// One line typed by the user, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A message to the current conversation: a line without a leading
    /// `:`, or `:msg <text>`.
    Say(String),
    /// `:dm <peer_id|username> <text>`.
    Direct {
        /// A peer id or a username, to be resolved against the roster.
        to: String,
        /// The message.
        text: String,
    },
    /// `:gp <peer_id>`: look a peer up.
    GetPeer(String),
    /// `:join #room`: join a room (and make it the current conversation).
    Join(RoomName),
    /// `:part [#room]`: leave a room (the current one if not named).
    Part(Option<RoomName>),
    /// `:rooms`: list the rooms on the server.
    Rooms,
    /// `:go <* | #room | peer_id | username>`: switch conversation.
    Go(String),
    /// `:history [n]`: the last n stored messages of the current conversation.
    History(usize),
    /// `:list`: who is online.
    List,
    /// `:info`: this session.
    Info,
    /// `:cc`: clear the screen.
    Clear,
    /// `:help`: the commands.
    Help,
    /// `:exit`: end the session.
    Exit,
}

/// A command's name, aliases, arguments and one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The name, with its colon, e.g. `:dm`.
    pub name: &'static str,
    /// Other names for it.
    pub aliases: &'static [&'static str],
    /// The arguments, e.g. `<peer_id|username> <text>` (empty if none).
    pub args: &'static str,
    /// What it does.
    pub help: &'static str,
}

impl Spec {
    /// The usage line, e.g. `:dm <peer_id|username> <text>`.
    pub fn usage(&self) -> String {
        if self.args.is_empty() {
            self.name.to_owned()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }

    fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// `:msg`.
pub const MSG: Spec = Spec {
    name: ":msg",
    aliases: &[],
    args: "<text>",
    help: "send to the current conversation (so does any line not starting with `:`)",
};
/// `:dm`.
pub const DM: Spec = Spec {
    name: ":dm",
    aliases: &[],
    args: "<peer_id|username> <text>",
    help: "send a direct message to one peer",
};
/// `:gp`.
pub const GP: Spec = Spec {
    name: ":gp",
    aliases: &[],
    args: "<peer_id>",
    help: "look up a peer's username",
};
/// `:join`.
pub const JOIN: Spec = Spec {
    name: ":join",
    aliases: &[":j"],
    args: "<#room>",
    help: "join a room and switch to it",
};
/// `:part`.
pub const PART: Spec = Spec {
    name: ":part",
    aliases: &[":leave"],
    args: "[#room]",
    help: "leave a room (the current one if none named)",
};
/// `:rooms`.
pub const ROOMS: Spec = Spec {
    name: ":rooms",
    aliases: &[],
    args: "",
    help: "the rooms on the server, with their members",
};
/// `:go`.
pub const GO: Spec = Spec {
    name: ":go",
    aliases: &[":g"],
    args: "<* | #room | peer_id | username>",
    help: "switch conversation: the lobby, a room, or a peer",
};
/// `:history`.
pub const HISTORY: Spec = Spec {
    name: ":history",
    aliases: &[],
    args: "[n]",
    help: "the last n (50) stored messages of the conversation",
};
/// `:list`.
pub const LIST: Spec = Spec {
    name: ":list",
    aliases: &[":ls"],
    args: "",
    help: "who is online",
};
/// `:info`.
pub const INFO: Spec = Spec {
    name: ":info",
    aliases: &[],
    args: "",
    help: "your id, username, server, connected since, counts",
};
/// `:cc`.
pub const CC: Spec = Spec {
    name: ":cc",
    aliases: &[":clear"],
    args: "",
    help: "clear the screen",
};
/// `:help`.
pub const HELP: Spec = Spec {
    name: ":help",
    aliases: &[":h", ":?"],
    args: "",
    help: "show the commands",
};
/// `:exit`.
pub const EXIT: Spec = Spec {
    name: ":exit",
    aliases: &[":quit", ":q"],
    args: "",
    help: "end the session and quit",
};

/// Every command, in the order `:help` shows them.
pub const COMMANDS: [Spec; 13] = [
    MSG, DM, JOIN, PART, GO, ROOMS, HISTORY, GP, LIST, INFO, CC, HELP, EXIT,
];

/// What is wrong with a typed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No command has this name.
    Unknown(String),
    /// A required argument is missing.
    Missing {
        /// The command.
        spec: Spec,
        /// What is missing, e.g. `the message text`.
        what: &'static str,
    },
    /// The command takes no argument but got some.
    Unexpected {
        /// The command.
        spec: Spec,
    },
    /// An argument is not what the command takes.
    Invalid {
        /// The command.
        spec: Spec,
        /// What is wrong, in words.
        problem: String,
    },
}

impl CommandError {
    /// The usage to show with the error: the command's, or every command's
    /// for an unknown one.
    pub fn usage(&self) -> String {
        match self {
            CommandError::Unknown(_) => help_text(),
            CommandError::Missing { spec, .. }
            | CommandError::Unexpected { spec }
            | CommandError::Invalid { spec, .. } => {
                format!("usage: {}", spec.usage())
            }
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(name) => write!(f, "unknown command `{name}`"),
            CommandError::Missing { spec, what } => write!(f, "{}: missing {what}", spec.name),
            CommandError::Unexpected { spec } => write!(f, "{} takes no argument", spec.name),
            CommandError::Invalid { spec, problem } => write!(f, "{}: {problem}", spec.name),
        }
    }
}

impl std::error::Error for CommandError {}

/// Every command with its usage and description, one per line.
pub fn help_text() -> String {
    let width = COMMANDS
        .iter()
        .map(|s| s.usage().chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::from("commands:");
    for spec in COMMANDS {
        out.push_str(&format!("\n  {:width$}  {}", spec.usage(), spec.help));
        if !spec.aliases.is_empty() {
            out.push_str(&format!(" (also {})", spec.aliases.join(", ")));
        }
    }
    out
}

/// Parses one typed line (without its line terminator).
///
/// A blank line is `Ok(None)`: nothing to do.
pub fn parse(line: &str) -> Result<Option<Command>, CommandError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if !line.starts_with(':') {
        return Ok(Some(Command::Say(line.to_owned())));
    }
    let (name, rest) = split_word(line);
    let Some(spec) = COMMANDS.iter().copied().find(|s| s.is_named(name)) else {
        return Err(CommandError::Unknown(name.to_owned()));
    };
    let missing = |what| CommandError::Missing { spec, what };
    let command = match spec.name {
        ":msg" => {
            if rest.is_empty() {
                return Err(missing("the message text"));
            }
            Command::Say(rest.to_owned())
        }
        ":join" => {
            let (room, extra) = split_word(rest);
            if room.is_empty() {
                return Err(missing("the room name"));
            }
            if !extra.is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            Command::Join(room_arg(spec, room)?)
        }
        ":part" => {
            let (room, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            if room.is_empty() {
                Command::Part(None)
            } else {
                Command::Part(Some(room_arg(spec, room)?))
            }
        }
        ":go" => {
            let (to, extra) = split_word(rest);
            if to.is_empty() {
                return Err(missing("where to: *, a #room, or a peer"));
            }
            if !extra.is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            Command::Go(to.to_owned())
        }
        ":history" => {
            let (n, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            if n.is_empty() {
                Command::History(DEFAULT_HISTORY)
            } else {
                match n.parse::<usize>() {
                    Ok(n) if (1..=crate::MAX_HISTORY).contains(&n) => Command::History(n),
                    _ => {
                        return Err(CommandError::Invalid {
                            spec,
                            problem: format!("give a number from 1 to {}", crate::MAX_HISTORY),
                        });
                    }
                }
            }
        }
        ":dm" => {
            let (to, text) = split_word(rest);
            if to.is_empty() {
                return Err(missing("the peer id or username, and the message text"));
            }
            if text.is_empty() {
                return Err(missing("the message text"));
            }
            Command::Direct {
                to: to.to_owned(),
                text: text.to_owned(),
            }
        }
        ":gp" => {
            let (id, extra) = split_word(rest);
            if id.is_empty() {
                return Err(missing("the peer id"));
            }
            if !extra.is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            Command::GetPeer(id.to_owned())
        }
        _ => {
            if !rest.trim().is_empty() {
                return Err(CommandError::Unexpected { spec });
            }
            match spec.name {
                ":list" => Command::List,
                ":rooms" => Command::Rooms,
                ":info" => Command::Info,
                ":cc" => Command::Clear,
                ":help" => Command::Help,
                _ => Command::Exit,
            }
        }
    };
    Ok(Some(command))
}

fn room_arg(spec: Spec, room: &str) -> Result<RoomName, CommandError> {
    RoomName::parse(room).map_err(|e: RoomNameError| CommandError::Invalid {
        spec,
        problem: e.to_string(),
    })
}

/// Every name a command can be typed with, for Tab completion.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
}

/// Splits off the first whitespace-separated word; the rest keeps its inner
/// spacing but loses the whitespace that separated it from the word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => {
            let rest = &s[i..];
            let rest = rest.trim_start();
            (&s[..i], rest)
        }
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<Option<Command>, CommandError>) {
        assert_eq!(parse(line), expected, "{line:?}");
    }

    fn bc(s: &str) -> Result<Option<Command>, CommandError> {
        Ok(Some(Command::Say(s.to_owned())))
    }

    #[test]
    fn plain_lines_are_broadcasts() {
        check("hello", bc("hello"));
        check("  hello  there ", bc("  hello  there "));
        check("a :: b", bc("a :: b"));
        check("", Ok(None));
        check("   ", Ok(None));
    }

    #[test]
    fn msg() {
        check(":msg hi there", bc("hi there"));
        check(":msg :)", bc(":)"));
        check(":msg    spaced  out", bc("spaced  out"));
        check(
            ":msg",
            Err(CommandError::Missing {
                spec: MSG,
                what: "the message text",
            }),
        );
        check(
            ":msg   ",
            Err(CommandError::Missing {
                spec: MSG,
                what: "the message text",
            }),
        );
    }

    #[test]
    fn dm() {
        check(
            ":dm alice hi  you",
            Ok(Some(Command::Direct {
                to: "alice".into(),
                text: "hi  you".into(),
            })),
        );
        check(
            ":dm",
            Err(CommandError::Missing {
                spec: DM,
                what: "the peer id or username, and the message text",
            }),
        );
        check(
            ":dm alice",
            Err(CommandError::Missing {
                spec: DM,
                what: "the message text",
            }),
        );
        check(
            ":dm alice ",
            Err(CommandError::Missing {
                spec: DM,
                what: "the message text",
            }),
        );
    }

    #[test]
    fn gp() {
        check(":gp abc123", Ok(Some(Command::GetPeer("abc123".into()))));
        check(
            ":gp",
            Err(CommandError::Missing {
                spec: GP,
                what: "the peer id",
            }),
        );
        check(":gp a b", Err(CommandError::Unexpected { spec: GP }));
    }

    #[test]
    fn no_argument_commands_and_aliases() {
        let cases = [
            (":list", Command::List),
            (":ls", Command::List),
            (":info", Command::Info),
            (":cc", Command::Clear),
            (":clear", Command::Clear),
            (":help", Command::Help),
            (":h", Command::Help),
            (":?", Command::Help),
            (":exit", Command::Exit),
            (":quit", Command::Exit),
            (":q", Command::Exit),
            (":exit  ", Command::Exit),
        ];
        for (line, command) in cases {
            check(line, Ok(Some(command)));
        }
        check(":list all", Err(CommandError::Unexpected { spec: LIST }));
    }

    #[test]
    fn rooms_and_conversations() {
        let room = |s: &str| RoomName::parse(s).unwrap();
        check(":join #Rust", Ok(Some(Command::Join(room("#rust")))));
        check(":j #a", Ok(Some(Command::Join(room("#a")))));
        check(
            ":join",
            Err(CommandError::Missing {
                spec: JOIN,
                what: "the room name",
            }),
        );
        check(
            ":join rust",
            Err(CommandError::Invalid {
                spec: JOIN,
                problem: "a room name starts with `#`, as in #general".into(),
            }),
        );
        check(":part", Ok(Some(Command::Part(None))));
        check(":part #a", Ok(Some(Command::Part(Some(room("#a"))))));
        check(":rooms", Ok(Some(Command::Rooms)));
        check(":go *", Ok(Some(Command::Go("*".into()))));
        check(":go alice", Ok(Some(Command::Go("alice".into()))));
        check(":history", Ok(Some(Command::History(DEFAULT_HISTORY))));
        check(":history 10", Ok(Some(Command::History(10))));
        check(
            ":history 0",
            Err(CommandError::Invalid {
                spec: HISTORY,
                problem: "give a number from 1 to 500".into(),
            }),
        );
        assert!(names().any(|n| n == ":leave"));
    }

    #[test]
    fn unknown_commands() {
        check(":frob", Err(CommandError::Unknown(":frob".into())));
        check(":", Err(CommandError::Unknown(":".into())));
        check(":DM a b", Err(CommandError::Unknown(":DM".into())));
    }

    #[test]
    fn errors_say_what_and_how() {
        let e = parse(":dm alice").unwrap_err();
        assert_eq!(e.to_string(), ":dm: missing the message text");
        assert_eq!(e.usage(), "usage: :dm <peer_id|username> <text>");
        let e = parse(":nope").unwrap_err();
        assert_eq!(e.to_string(), "unknown command `:nope`");
        assert!(e.usage().contains(":gp <peer_id>"));
        assert_eq!(e.usage(), help_text());
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for spec in COMMANDS {
            assert!(help.contains(&spec.usage()), "{}", spec.name);
        }
        assert_eq!(help.lines().count(), COMMANDS.len() + 1);
    }
}
