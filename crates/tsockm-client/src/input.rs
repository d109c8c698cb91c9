//! [`Input`]: the line being typed, with a cursor, a history of lines sent
//! (Up/Down) and Tab completion from a list of candidates the caller gives.
//!
//! Pure state: no terminal, no session. The cursor is a character index;
//! [`Input::view`] gives what fits in a width, in terminal columns.

use unicode_width::UnicodeWidthChar;

/// Lines kept for Up/Down.
const MAX_HISTORY_LINES: usize = 500;

/// The line being typed.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The text, as characters (the cursor moves by character).
    chars: Vec<char>,
    /// The cursor, from 0 to `chars.len()`.
    cursor: usize,
    /// Lines entered before, oldest first.
    history: Vec<String>,
    /// Where Up/Down is in the history (`history.len()`: the new line).
    history_pos: usize,
    /// The line being typed when Up was first pressed.
    draft: String,
    /// The completion under way: where the word starts, the candidates and
    /// which one is shown.
    completion: Option<Completion>,
}

#[derive(Debug, Clone)]
struct Completion {
    start: usize,
    candidates: Vec<String>,
    index: usize,
}

impl Input {
    /// An empty line.
    pub fn new() -> Self {
        Input::default()
    }

    /// The text typed so far.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts a character at the cursor.
    pub fn insert(&mut self, c: char) {
        self.completion = None;
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Inserts text at the cursor (a paste); newlines become spaces.
    pub fn insert_str(&mut self, s: &str) {
        for c in s.chars() {
            self.insert(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        self.completion = None;
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        self.completion = None;
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        self.completion = None;
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        self.completion = None;
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    /// Moves the cursor to the start.
    pub fn home(&mut self) {
        self.completion = None;
        self.cursor = 0;
    }

    /// Moves the cursor to the end.
    pub fn end(&mut self) {
        self.completion = None;
        self.cursor = self.chars.len();
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.completion = None;
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn kill_word(&mut self) {
        self.completion = None;
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        self.chars.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Clears the line (Ctrl-C), keeping the history.
    pub fn clear(&mut self) {
        self.chars.clear();
        self.cursor = 0;
        self.completion = None;
        self.history_pos = self.history.len();
    }

    /// Takes the line (Enter): returns it, remembers it, and clears.
    pub fn submit(&mut self) -> String {
        let line = self.text();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > MAX_HISTORY_LINES {
                self.history.remove(0);
            }
        }
        self.clear();
        line
    }

    /// Shows the previous line of the history (Up).
    pub fn history_up(&mut self) {
        if self.history_pos == 0 {
            return;
        }
        if self.history_pos == self.history.len() {
            self.draft = self.text();
        }
        self.history_pos -= 1;
        let line = self.history[self.history_pos].clone();
        self.set(&line);
    }

    /// Shows the next line of the history, or the draft (Down).
    pub fn history_down(&mut self) {
        if self.history_pos >= self.history.len() {
            return;
        }
        self.history_pos += 1;
        let line = if self.history_pos == self.history.len() {
            std::mem::take(&mut self.draft)
        } else {
            self.history[self.history_pos].clone()
        };
        self.set(&line);
    }

    fn set(&mut self, line: &str) {
        self.chars = line.chars().collect();
        self.cursor = self.chars.len();
        self.completion = None;
    }

    /// The word before the cursor, where completion works.
    pub fn word_before_cursor(&self) -> (usize, String) {
        let mut start = self.cursor;
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        (start, self.chars[start..self.cursor].iter().collect())
    }

    /// Completes the word before the cursor (Tab): the first candidate that
    /// starts with it (case-insensitively), then the next on each Tab.
    /// `candidates` is asked for only on the first Tab of a series.
    pub fn complete(&mut self, candidates: impl FnOnce(usize, &str) -> Vec<String>) {
        if let Some(c) = &mut self.completion {
            c.index = (c.index + 1) % c.candidates.len().max(1);
        } else {
            let (start, word) = self.word_before_cursor();
            let lower = word.to_lowercase();
            let mut found: Vec<String> = candidates(start, &word)
                .into_iter()
                .filter(|c| c.to_lowercase().starts_with(&lower))
                .collect();
            found.sort();
            found.dedup();
            if found.is_empty() {
                return;
            }
            self.completion = Some(Completion {
                start,
                candidates: found,
                index: 0,
            });
        }
        let Some(c) = &self.completion else {
            return;
        };
        let Some(word) = c.candidates.get(c.index) else {
            return;
        };
        let mut replacement: Vec<char> = word.chars().collect();
        replacement.push(' ');
        let start = c.start;
        // Replace from the word's start to the cursor (which sits after the
        // previous candidate and its space).
        self.chars
            .splice(start..self.cursor, replacement.iter().copied());
        self.cursor = start + replacement.len();
    }

    /// What to show in `width` columns: the visible part of the line and
    /// the cursor's column in it. The line scrolls sideways to keep the
    /// cursor in view.
    pub fn view(&self, width: usize) -> (String, usize) {
        let width = width.max(1);
        let col = |c: &char| c.width().unwrap_or(0);
        // Start far enough right that the cursor fits.
        let mut start = 0;
        let mut used: usize = self.chars[..self.cursor].iter().map(col).sum();
        while used >= width && start < self.cursor {
            used -= col(&self.chars[start]);
            start += 1;
        }
        let mut shown = String::new();
        let mut n_cols = 0;
        for c in &self.chars[start..] {
            let w = col(c);
            if n_cols + w > width {
                break;
            }
            n_cols += w;
            shown.push(*c);
        }
        (shown, used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut input = Input::new();
        input.insert_str(s);
        input
    }

    #[test]
    fn editing() {
        let mut i = typed("helo");
        i.left();
        i.insert('l');
        assert_eq!(i.text(), "hello");
        i.home();
        i.delete();
        assert_eq!(i.text(), "ello");
        i.end();
        i.backspace();
        assert_eq!(i.text(), "ell");
        let mut i = typed("one two  three");
        i.kill_word();
        assert_eq!(i.text(), "one two  ");
        i.left();
        i.kill_to_start();
        assert_eq!((i.text().as_str(), i.cursor()), (" ", 0));
        i.clear();
        assert!(i.is_empty());
    }

    #[test]
    fn history_up_and_down_keeps_the_draft() {
        let mut i = Input::new();
        for line in ["first", "second"] {
            i.insert_str(line);
            assert_eq!(i.submit(), line);
        }
        i.insert_str("draft");
        i.history_up();
        assert_eq!(i.text(), "second");
        i.history_up();
        i.history_up();
        assert_eq!(i.text(), "first");
        i.history_down();
        assert_eq!(i.text(), "second");
        i.history_down();
        assert_eq!(i.text(), "draft");
    }

    #[test]
    fn tab_cycles_through_matches() {
        let names = |_: usize, _: &str| vec!["bob".into(), "Bea".into(), "alice".into()];
        let mut i = typed("hi b");
        i.complete(names);
        assert_eq!(i.text(), "hi Bea ");
        i.complete(names);
        assert_eq!(i.text(), "hi bob ");
        i.complete(names);
        assert_eq!(i.text(), "hi Bea ");
        i.insert('!');
        assert_eq!(i.text(), "hi Bea !");
        let mut none = typed("zz");
        none.complete(names);
        assert_eq!(none.text(), "zz");
    }

    #[test]
    fn view_scrolls_to_the_cursor() {
        let i = typed("abcdefghij");
        assert_eq!(i.view(20), ("abcdefghij".into(), 10));
        assert_eq!(i.view(5), ("ghij".into(), 4));
        let wide = typed("日本語");
        assert_eq!(wide.view(10), ("日本語".into(), 6));
    }
}
