//! The full-screen terminal UI, drawn with ratatui: the conversation list
//! on the left, the conversation on the right, a status bar, the input line.
//!
//! ```text
//! ┌Chats──────┐┌#rust─────────────────────────────┐
//! │1 *        ││12:01 bob: hi                     │
//! │2 #rust    ││12:02 alice: hello                │
//! │3 @bob (2) ││                                  │
//! └───────────┘└──────────────────────────────────┘
//!  127.0.0.1:6969 │ alice (abcDEF1234) │ connected
//! > typed text
//! ```
//!
//! [`draw`] only reads the [`App`] (and records the view's height and
//! whether the top of the log is on screen, for scrolling); it does no I/O,
//! so it is tested with ratatui's `TestBackend`. Text from other peers is
//! cleaned ([`text::clean`]) before it is drawn.

use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::State;
use crate::app::{App, Connection, Line, LineKind};
use crate::text::{self, Newlines, clean_name};

/// The colours names are drawn in (a name always gets the same one).
const NAME_COLOURS: [Color; 6] = [
    Color::Cyan,
    Color::Green,
    Color::Magenta,
    Color::LightBlue,
    Color::Yellow,
    Color::LightCyan,
];

/// Width of the conversation list, borders included.
const LIST_WIDTH: u16 = 20;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App, state: &State, now: SystemTime) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let list_width = LIST_WIDTH.min(main.width / 3);
    let [list, view] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(10)]).areas(main);
    draw_list(frame, app, list);
    draw_view(frame, app, view);
    draw_status(frame, app, state, now, status);
    draw_input(frame, app, input);
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .conversations()
        .iter()
        .enumerate()
        .map(|(i, conv)| {
            let mut label = format!("{} {}", i + 1, conv.title);
            if conv.unread > 0 {
                label.push_str(&format!(" ({})", conv.unread));
            }
            let mut style = Style::default();
            if conv.highlight {
                style = style.fg(Color::LightRed).add_modifier(Modifier::BOLD);
            } else if conv.unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            if i == app.current_index() {
                style = style.add_modifier(Modifier::REVERSED);
            }
            ListItem::new(label).style(style)
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title("Chats")),
        area,
    );
}

fn draw_view(frame: &mut Frame, app: &mut App, area: Rect) {
    let tz = app.time_zone().clone();
    let conv = app.current();
    let mut title = conv.title.clone();
    if conv.scroll > 0 {
        title.push_str(&format!(" (scrolled up {}; PgDn)", conv.scroll));
    }
    if conv.fetching {
        title.push_str(" (fetching older messages)");
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width).max(1);
    let height = usize::from(inner.height);
    // Rows from the bottom up, until the view is full.
    let end = conv.lines.len().saturating_sub(conv.scroll);
    let mut rows: Vec<TextLine> = Vec::new();
    let mut top_visible = true;
    for (i, line) in conv.lines.iter().enumerate().take(end).rev() {
        if rows.len() >= height {
            top_visible = false;
            break;
        }
        let mut wrapped = wrap(line_spans(line, &tz), width);
        wrapped.reverse();
        rows.extend(wrapped);
        if i == 0 && rows.len() > height {
            top_visible = false;
        }
    }
    rows.truncate(height);
    rows.reverse();
    let n_rows = rows.len();
    // Short logs sit at the bottom of the view, as in a terminal.
    let top = inner.y + u16::try_from(height - n_rows).unwrap_or(0);
    let area = Rect::new(
        inner.x,
        top,
        inner.width,
        u16::try_from(n_rows).unwrap_or(0),
    );
    frame.render_widget(Paragraph::new(rows), area);
    app.view_height = height;
    app.current_mut().top_visible = top_visible;
}

/// One log line as styled spans (newlines kept, split by [`wrap`]).
fn line_spans(line: &Line, tz: &jiff::tz::TimeZone) -> Vec<Span<'static>> {
    let time = Span::styled(
        format!("{} ", text::time_of_day(line.time, tz)),
        Style::default().fg(Color::DarkGray),
    );
    match &line.kind {
        LineKind::Message {
            name,
            text: body,
            own,
            history,
            mention,
            ..
        } => {
            let colour = NAME_COLOURS[text::name_colour(name, NAME_COLOURS.len())];
            let mut name_style = Style::default().fg(colour);
            if *own {
                name_style = name_style.add_modifier(Modifier::BOLD);
            }
            let mut body_style = Style::default();
            if *history {
                body_style = body_style.add_modifier(Modifier::DIM);
                name_style = name_style.add_modifier(Modifier::DIM);
            }
            if *mention {
                body_style = body_style.fg(Color::Black).bg(Color::Yellow);
            }
            let mut spans = vec![time];
            if *history {
                spans.push(Span::styled("~ ", Style::default().fg(Color::DarkGray)));
            }
            spans.push(Span::styled(clean_name(name), name_style));
            spans.push(Span::raw(": "));
            spans.push(Span::styled(text::clean(body, Newlines::Kept), body_style));
            spans
        }
        LineKind::Notice(notice) => vec![
            time,
            Span::styled(format!("-- {notice}"), Style::default().fg(Color::Yellow)),
        ],
        LineKind::Error(error) => vec![
            time,
            Span::styled(
                format!("!! {error}"),
                Style::default()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            ),
        ],
    }
}

/// Breaks spans into rows of at most `width` columns, at newlines and at
/// the last space that fits (anywhere when a word is longer than a row);
/// continuation rows are indented by six columns, under the text.
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<TextLine<'static>> {
    const INDENT: usize = 6;
    let indent = INDENT.min(width.saturating_sub(1));
    let blank = || vec![(' ', Style::default()); indent];
    let col = |cells: &[(char, Style)]| -> usize {
        cells.iter().map(|(c, _)| c.width().unwrap_or(0)).sum()
    };
    let mut rows: Vec<Vec<(char, Style)>> = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let cells = spans
        .iter()
        .flat_map(|span| span.content.chars().map(move |c| (c, span.style)));
    for (c, style) in cells {
        if c == '\n' {
            rows.push(std::mem::replace(&mut row, blank()));
            continue;
        }
        let w = c.width().unwrap_or(0);
        if col(&row) + w > width {
            // Break after the last space past the indent, if there is one.
            let space = row
                .iter()
                .rposition(|(c, _)| *c == ' ')
                .filter(|&i| i > indent);
            let tail = match space {
                Some(i) => {
                    let tail = row.split_off(i + 1);
                    row.pop();
                    tail
                }
                None => Vec::new(),
            };
            rows.push(std::mem::replace(&mut row, blank()));
            row.extend(tail);
            if c == ' ' && row.len() == indent {
                continue;
            }
        }
        row.push((c, style));
    }
    rows.push(row);
    rows.into_iter()
        .map(|cells| {
            let mut spans: Vec<Span<'static>> = Vec::new();
            for (c, style) in cells {
                match spans.last_mut() {
                    Some(last) if last.style == style => last.content.to_mut().push(c),
                    _ => spans.push(Span::styled(c.to_string(), style)),
                }
            }
            TextLine::from(spans)
        })
        .collect()
}

fn draw_status(frame: &mut Frame, app: &App, state: &State, now: SystemTime, area: Rect) {
    let tz = app.time_zone();
    let connection = match app.connection() {
        Connection::Connected => "connected".to_owned(),
        Connection::Reconnecting {
            attempt,
            retry_at,
            server,
        } => {
            let secs = retry_at
                .duration_since(now)
                .unwrap_or_default()
                .as_secs_f32()
                .ceil();
            format!("reconnecting to {server} in {secs:.0} s (attempt {attempt})")
        }
        Connection::Resumed { at } => {
            format!("connected, resumed at {}", text::time_of_day(*at, tz))
        }
        Connection::Reregistered { at } => {
            format!(
                "connected, new session since {}",
                text::time_of_day(*at, tz)
            )
        }
        Connection::Closed => "session over".to_owned(),
    };
    let colour = match app.connection() {
        Connection::Reconnecting { .. } | Connection::Closed => Color::Red,
        _ => Color::Blue,
    };
    // The connection first: it is what a narrow screen must still show.
    let status = format!(
        " {connection} │ {} ({}) │ {} │ {}",
        clean_name(&state.username),
        state.id,
        state.server,
        text::time_of_day(now, tz)
    );
    frame.render_widget(
        Paragraph::new(status).style(Style::default().bg(colour).fg(Color::White)),
        area,
    );
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let prompt = format!("{}> ", app.current().title);
    let prompt_width = prompt.width();
    let (shown, cursor) = app
        .input
        .view(usize::from(area.width).saturating_sub(prompt_width + 1));
    let line = TextLine::from(vec![
        Span::styled(prompt, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(shown),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area.x + u16::try_from(prompt_width + cursor).unwrap_or(area.width);
    frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(rows: &[TextLine]) -> Vec<String> {
        rows.iter()
            .map(|r| r.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn tiny_terminals_are_drawn_without_panicking() {
        use crate::{PeerId, Roster};
        use ratatui::Terminal;
        use ratatui::backend::TestBackend;
        use std::collections::BTreeMap;
        use std::time::UNIX_EPOCH;
        use tsockm_proto::Text;

        let state = State {
            id: PeerId::new("me00000001"),
            username: Text::from("alice"),
            server: "127.0.0.1:6969".into(),
            server_addr: None,
            registered_at: UNIX_EPOCH,
            online: true,
            roster: Roster::new(),
            rooms: BTreeMap::new(),
        };
        let mut app = App::new(&state, jiff::tz::TimeZone::UTC, UNIX_EPOCH);
        app.input
            .insert_str("a line longer than any of these terminals");
        for (w, h) in [(1, 1), (2, 3), (5, 2), (10, 4), (30, 6)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal
                .draw(|frame| draw(frame, &mut app, &state, UNIX_EPOCH))
                .unwrap();
        }
    }

    #[test]
    fn wraps_at_width_and_newlines() {
        let rows = wrap(vec![Span::raw("12:00 "), Span::raw("abcdefghij\nxy")], 10);
        assert_eq!(
            text_of(&rows),
            ["12:00 abcd", "      efgh", "      ij", "      xy"]
        );
        let wide = wrap(vec![Span::raw("日本語日本語")], 5);
        assert_eq!(
            text_of(&wide),
            ["日本", "    語", "    日", "    本", "    語"]
        );
    }
}
