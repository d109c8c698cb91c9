//! How the line modes show what happens: `--plain` on a terminal (times of
//! day, colours unless turned off) and script mode (standard input not a
//! terminal: one event a line, no colours, no times on live lines).
//!
//! Pure: [`LineStyle::render`] returns the text; writing it is the binary's
//! job. Text from other peers goes through [`text::clean`] first.

use crossterm::style::{Color, Stylize};
use jiff::tz::TimeZone;

use crate::Conversation;
use crate::app::{Fresh, LineKind};
use crate::text::{self, Newlines};

/// The colours names are drawn in (a name always gets the same one).
pub const NAME_COLOURS: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Magenta,
    Color::Blue,
    Color::DarkYellow,
    Color::DarkCyan,
];

/// How lines are rendered.
#[derive(Debug, Clone)]
pub struct LineStyle {
    /// Whether ANSI colours are used.
    colour: bool,
    /// Script mode: no times on live lines, newlines as `\n`, own messages
    /// not repeated.
    script: bool,
    /// The time zone of the times shown.
    tz: TimeZone,
}

impl LineStyle {
    /// For a person at a terminal (`--plain`).
    pub fn terminal(colour: bool, tz: TimeZone) -> Self {
        LineStyle {
            colour,
            script: false,
            tz,
        }
    }

    /// For a script: one line per event, no colours.
    pub fn script(tz: TimeZone) -> Self {
        LineStyle {
            colour: false,
            script: true,
            tz,
        }
    }

    fn paint(&self, text: &str, colour: Color, bold: bool) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let styled = text.with(colour);
        if bold {
            styled.bold().to_string()
        } else {
            styled.to_string()
        }
    }

    /// A block of text with a one-character mark (`*` or `!`): the first
    /// line after the mark, the others indented by two.
    fn block(&self, mark: &str, text: &str, colour: Color) -> String {
        let text = text.replace('\n', "\n  ");
        self.paint(&format!("{mark} {text}"), colour, mark == "!")
    }

    /// A one-line error (`! text`), outside any conversation.
    pub fn error(&self, text: &str) -> String {
        self.block("!", text, Color::Red)
    }

    /// How a new line of a conversation is shown (`None`: not at all).
    pub fn render(&self, fresh: &Fresh) -> Option<String> {
        let line = &fresh.line;
        match &line.kind {
            LineKind::Notice(text) => Some(self.block("*", text, Color::Yellow)),
            LineKind::Error(text) => Some(self.block("!", text, Color::Red)),
            LineKind::Message {
                name,
                text,
                own,
                history,
                mention,
                ..
            } => {
                if *own && self.script && !history {
                    return None;
                }
                let newlines = if self.script {
                    Newlines::Escaped
                } else {
                    Newlines::Indented(4)
                };
                let where_ = match &fresh.conversation {
                    Conversation::Lobby => String::new(),
                    Conversation::Room(room) => format!("[{room}] "),
                    Conversation::Direct(_) if *own => {
                        format!("[dm to {}] ", fresh.title.trim_start_matches('@'))
                    }
                    Conversation::Direct(_) => "[dm] ".to_owned(),
                };
                let when = if *history {
                    format!("[history {}] ", text::time_of_day(line.time, &self.tz))
                } else if self.script {
                    String::new()
                } else {
                    format!("{} ", text::time_of_day(line.time, &self.tz))
                };
                let colour = NAME_COLOURS[text::name_colour(name, NAME_COLOURS.len())];
                let name = self.paint(&text::clean_name(name), colour, *own);
                let mut body = text::clean(text, newlines);
                if *mention && self.colour {
                    body = body.reverse().to_string();
                }
                let where_ = if where_.is_empty() {
                    where_
                } else {
                    self.paint(&where_, Color::Magenta, false)
                };
                let when = if when.is_empty() {
                    when
                } else {
                    self.paint(&when, Color::DarkGrey, false)
                };
                Some(format!("{when}{where_}{name}: {body}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Line;
    use crate::{PeerId, RoomName};
    use std::time::{Duration, UNIX_EPOCH};

    fn fresh(conversation: Conversation, kind: LineKind) -> Fresh {
        Fresh {
            title: "@bob".into(),
            conversation,
            line: Line {
                time: UNIX_EPOCH + Duration::from_secs(3600 + 120),
                kind,
            },
        }
    }

    fn msg(text: &str, own: bool, history: bool) -> LineKind {
        LineKind::Message {
            from: PeerId::new("id1"),
            name: "bob".into(),
            text: text.into(),
            own,
            history,
            mention: false,
        }
    }

    #[test]
    fn script_lines() {
        let style = LineStyle::script(TimeZone::UTC);
        let room = Conversation::Room(RoomName::parse("#rust").unwrap());
        let dm = Conversation::Direct(PeerId::new("id1"));
        let cases = [
            (
                fresh(Conversation::Lobby, msg("hi", false, false)),
                Some("bob: hi"),
            ),
            (
                fresh(Conversation::Lobby, msg("two\nlines", false, false)),
                Some("bob: two\\nlines"),
            ),
            (
                fresh(
                    Conversation::Lobby,
                    msg("\x1b[31mred\u{202e}", false, false),
                ),
                Some("bob: \\u{1b}[31mred\\u{202e}"),
            ),
            (
                fresh(room.clone(), msg("hi", false, false)),
                Some("[#rust] bob: hi"),
            ),
            (
                fresh(dm.clone(), msg("psst", false, false)),
                Some("[dm] bob: psst"),
            ),
            (fresh(Conversation::Lobby, msg("mine", true, false)), None),
            (
                fresh(room, msg("old", false, true)),
                Some("[history 01:02] [#rust] bob: old"),
            ),
            (
                fresh(Conversation::Lobby, LineKind::Notice("a\nb".into())),
                Some("* a\n  b"),
            ),
            (
                fresh(Conversation::Lobby, LineKind::Error("no".into())),
                Some("! no"),
            ),
        ];
        for (fresh, shown) in cases {
            assert_eq!(style.render(&fresh).as_deref(), shown, "{fresh:?}");
        }
    }

    #[test]
    fn plain_lines_have_times_and_colours() {
        let style = LineStyle::terminal(false, TimeZone::UTC);
        let dm = Conversation::Direct(PeerId::new("id1"));
        assert_eq!(
            style
                .render(&fresh(Conversation::Lobby, msg("a\nb", false, false)))
                .as_deref(),
            Some("01:02 bob: a\n    b")
        );
        assert_eq!(
            style
                .render(&fresh(dm, msg("psst", true, false)))
                .as_deref(),
            Some("01:02 [dm to bob] bob: psst")
        );
        let coloured = LineStyle::terminal(true, TimeZone::UTC);
        let line = coloured
            .render(&fresh(Conversation::Lobby, msg("hi", false, false)))
            .unwrap();
        assert!(line.contains("\x1b["), "{line:?}");
    }
}
