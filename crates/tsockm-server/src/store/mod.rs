//! The message store: every accepted message (contract section 12), the
//! small settings a restarted server needs (the largest message seq, the
//! sqids alphabet), and the sessions saved at a graceful shutdown.
//!
//! Map of the module:
//! - this file: the types every backend shares, the [`Store`] trait, the
//!   [`StoreSpec`] an operator chooses, [`open`] and [`StoreError`];
//! - `memory.rs`: [`MemoryStore`], lost at exit;
//! - `sqlite.rs`: [`SqliteStore`], one SQLite file in WAL mode;
//! - `worker.rs`: [`StoreWorker`], the thread that owns a store, and
//!   [`StoreHandle`], the registry's non-blocking way to reach it.
//!
//! A [`Store`] blocks (it does file I/O), so it must never run on the
//! registry's task or any Tokio worker: only the store thread and start-up
//! code (before the worker is spawned) call it directly. The store knows
//! nothing of the wire: message ids are the caller's sqids of a [`Seq`], and
//! the caller clamps and validates every query.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bytes::Bytes;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod faults;
mod memory;
mod sqlite;
mod worker;

pub use memory::MemoryStore;
pub use sqlite::{SCHEMA_VERSION, SqliteStore};
pub use worker::{
    BATCH_MESSAGES, Dropped, ERROR_LOG_INTERVAL, HistoryReply, QUEUE_BYTES, QUEUE_MESSAGES,
    SaveReply, StoreHandle, StoreStats, StoreWorker, WorkerLimits,
};

/// A message's position among every message the server accepted. Message
/// ids on the wire are sqids of it; a later-accepted message has a larger
/// seq, and a store never forgets the largest one it was given.
pub type Seq = u64;

/// Most items one HISTORY answer holds (contract section 12); callers clamp
/// `n` to `1..=MAX_HISTORY_ITEMS` before asking.
pub const MAX_HISTORY_ITEMS: usize = 500;

/// Where a message was said.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// The broadcast conversation, `*` on the wire.
    Lobby,
    /// A room, by its name with the `#`, already folded to lower case.
    Room(String),
    /// The direct messages between two peers, by their ids, always sorted
    /// (make it with [`Conversation::direct`]) so both directions are one
    /// conversation.
    Direct(String, String),
}

impl Conversation {
    /// The conversation between peers `a` and `b`, whichever sent.
    pub fn direct(a: &str, b: &str) -> Conversation {
        if a <= b {
            Conversation::Direct(a.to_owned(), b.to_owned())
        } else {
            Conversation::Direct(b.to_owned(), a.to_owned())
        }
    }

    /// The conversation's name in the database: `*`, `#room`, or
    /// `d:<a>:<b>` (peer ids are letters and digits, so never hold `:`).
    pub fn key(&self) -> String {
        match self {
            Conversation::Lobby => "*".to_owned(),
            Conversation::Room(name) => name.clone(),
            Conversation::Direct(a, b) => format!("d:{a}:{b}"),
        }
    }

    /// The bytes its names hold on the heap (for the queues' byte bounds).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Conversation::Lobby => 0,
            Conversation::Room(name) => name.len(),
            Conversation::Direct(a, b) => a.len() + b.len(),
        }
    }

    /// The conversation a [`key`](Conversation::key) names, if it is one.
    pub fn from_key(key: &str) -> Option<Conversation> {
        if key == "*" {
            Some(Conversation::Lobby)
        } else if key.starts_with('#') {
            Some(Conversation::Room(key.to_owned()))
        } else {
            let (a, b) = key.strip_prefix("d:")?.split_once(':')?;
            (!a.is_empty() && !b.is_empty() && !b.contains(':')).then(|| Conversation::direct(a, b))
        }
    }
}

/// One accepted message, as stored and as HISTORY gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its position; the message id is the sqids of it.
    pub seq: Seq,
    /// When the server accepted it, in Unix milliseconds (UTC).
    pub at_ms: i64,
    /// Where it was said.
    pub conversation: Conversation,
    /// The author's peer id at the time.
    pub author_id: String,
    /// The author's username at the time (the author may since be gone).
    pub author_name: String,
    /// The text, as the author sent it (unescaped).
    pub text: String,
}

impl StoredMessage {
    /// The bytes a queued message holds: its heap bytes and its fixed size
    /// (what the queues' byte bounds count).
    pub fn queued_bytes(&self) -> usize {
        std::mem::size_of::<StoredMessage>()
            + self.text.len()
            + self.author_id.len()
            + self.author_name.len()
            + self.conversation.heap_bytes()
    }
}

/// Which messages of a conversation a HISTORY request wants. `n` is
/// `1..=MAX_HISTORY_ITEMS`, already clamped by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The latest `n` messages.
    Latest {
        /// How many.
        n: usize,
    },
    /// The `n` messages just before the message `seq` (which must be stored).
    Before {
        /// The anchor, not included in the answer.
        seq: Seq,
        /// How many.
        n: usize,
    },
    /// The `n` messages just after the message `seq` (which must be stored).
    After {
        /// The anchor, not included in the answer.
        seq: Seq,
        /// How many.
        n: usize,
    },
}

impl Query {
    /// How many messages are asked for.
    pub fn n(&self) -> usize {
        match *self {
            Query::Latest { n } | Query::Before { n, .. } | Query::After { n, .. } => n,
        }
    }
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The matching messages, oldest first.
    pub items: Vec<StoredMessage>,
    /// Whether further messages exist beyond the answer in the direction
    /// asked: older ones for `Latest` and `Before`, newer ones for `After`.
    pub more: bool,
}

/// Why a HISTORY request has no answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The anchor seq is not (or no longer) stored in that conversation:
    /// `ERR::HISTORY::404`.
    #[error("no such message in this conversation")]
    UnknownId,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One peer as saved at a graceful shutdown, to be restored as away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPeer {
    /// Its peer id.
    pub id: String,
    /// Its username.
    pub username: String,
    /// A hash of its current resume token (never the token itself).
    pub token_hash: [u8; 32],
    /// The address it was connected from, as on the wire.
    pub addr: String,
    /// When it registered, in Unix milliseconds.
    pub since_ms: i64,
    /// The rooms it is a member of, folded names with `#`.
    pub rooms: Vec<String>,
    /// Encoded frames kept for it while away, in order.
    pub kept: Vec<Bytes>,
    /// The last messages written to it (or queued for it) before the
    /// shutdown, oldest first: sent again to a client that resumes naming
    /// the last message it received.
    pub written: Vec<Bytes>,
}

/// Every session a server had at a graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSessions {
    /// When they were saved, in Unix milliseconds: a server started later
    /// than the removal delay after this restores nothing.
    pub saved_at_ms: i64,
    /// The counter peer ids continue from.
    pub next_peer_seq: u64,
    /// The peers, in registration order.
    pub peers: Vec<SavedPeer>,
}

/// A place messages are kept. Every method may block on I/O: call it only
/// from the store thread (see [`StoreWorker`]) or before the server runs.
pub trait Store: Send + 'static {
    /// The store as an operator would name it: `memory` or
    /// `sqlite:<path>`, the form [`StoreSpec`] parses.
    fn describe(&self) -> String;

    /// Whether what it holds survives a restart (so sessions are worth
    /// saving).
    fn is_persistent(&self) -> bool;

    /// Stores a batch, all or nothing (one transaction), then keeps only the
    /// latest `history_max` messages of each conversation it touched
    /// (0 stores none, but still remembers the largest seq). Within a
    /// conversation, seqs must come in increasing order; a seq already
    /// stored in that conversation is ignored.
    fn append(&mut self, batch: &[StoredMessage]) -> Result<(), StoreError>;

    /// The messages of `conversation` that `query` asks for.
    fn history(&mut self, conversation: &Conversation, query: &Query)
    -> Result<Page, HistoryError>;

    /// The largest seq ever appended (0 if none), even if pruned or never
    /// kept (`history_max` 0), so a restarted server continues the ids.
    fn max_seq(&mut self) -> Result<Seq, StoreError>;

    /// A small setting kept beside the messages (the sqids alphabet).
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets a small setting, replacing any earlier value.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Saves the sessions, replacing any saved before.
    fn save_sessions(&mut self, sessions: &SavedSessions) -> Result<(), StoreError>;

    /// The saved sessions, deleted as they are read: a second call gives
    /// `None`.
    fn take_sessions(&mut self) -> Result<Option<SavedSessions>, StoreError>;
}

/// Which store to use, as an operator writes it (`--store`, `TSOCKM_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `memory`: nothing survives the process.
    Memory,
    /// `sqlite:<path>`: one SQLite database file.
    Sqlite(PathBuf),
}

impl StoreSpec {
    /// The default: `$XDG_DATA_HOME/tsockm/tsockm.db`, else
    /// `~/.local/share/tsockm/tsockm.db` (the platform's data directory
    /// elsewhere).
    pub fn default_sqlite() -> Result<StoreSpec, StoreError> {
        let dirs = directories::BaseDirs::new().ok_or(StoreError::NoDataDirectory)?;
        Ok(StoreSpec::Sqlite(
            dirs.data_dir().join("tsockm").join("tsockm.db"),
        ))
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("memory"),
            StoreSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

impl FromStr for StoreSpec {
    type Err = StoreSpecError;

    fn from_str(s: &str) -> Result<StoreSpec, StoreSpecError> {
        if s == "memory" {
            Ok(StoreSpec::Memory)
        } else if let Some(path) = s.strip_prefix("sqlite:")
            && !path.is_empty()
        {
            Ok(StoreSpec::Sqlite(PathBuf::from(path)))
        } else {
            Err(StoreSpecError {
                given: s.to_owned(),
            })
        }
    }
}

/// A store setting that is neither `memory` nor `sqlite:<path>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown store {given:?}: expected \"memory\" or \"sqlite:<path>\"")]
pub struct StoreSpecError {
    /// What was given.
    pub given: String,
}

/// Opens the store `spec` names, keeping `history_max` messages per
/// conversation. A SQLite store is created (with its directory) if missing,
/// readable by its owner only, and migrated to this build's schema.
pub fn open(spec: &StoreSpec, history_max: usize) -> Result<Box<dyn Store>, StoreError> {
    Ok(match spec {
        StoreSpec::Memory => Box::new(MemoryStore::new(history_max)),
        StoreSpec::Sqlite(path) => Box::new(SqliteStore::open(path, history_max)?),
    })
}

/// Why the store failed. Each displays as one line naming the file and the
/// cause, for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Neither `$XDG_DATA_HOME` nor a home directory is known.
    #[error(
        "cannot find a data directory for the default store ($HOME is not set): \
         choose one with sqlite:<path>, or use memory"
    )]
    NoDataDirectory,
    /// The database's directory is missing and cannot be made.
    #[error("cannot create the data directory {}: {}", .path.display(), io_cause(.source))]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The database file is missing and cannot be made, or its access
    /// cannot be set.
    #[error("cannot create the database {}: {}", .path.display(), io_cause(.source))]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// SQLite cannot open the file (not a database, cannot be read, ...).
    #[error("cannot open the database {}: {}{}", .path.display(), sqlite_cause(.source), .hint)]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
        /// What the file system says, as in [`StoreError::Write`].
        hint: String,
    },
    /// Another process holds the database (another server on the same store).
    #[error(
        "the database {} is in use by another process (another TsockM server?): refusing to start",
        .path.display()
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a later version of TsockM.
    #[error(
        "the database {} was written by a newer TsockM (schema version {found}; this build knows {known}): refusing to start",
        .path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest schema version this build knows.
        known: i64,
    },
    /// Reading failed.
    #[error("cannot read from {}: {}", .path.display(), sqlite_cause(.source))]
    Read {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// Writing failed (disk full, file deleted or made read-only, ...).
    #[error("cannot write to {}: {}{}", .path.display(), sqlite_cause(.source), .hint)]
    Write {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
        /// What the file system says about the file when that explains
        /// more than SQLite's code: empty, or ` (<file>: <cause>)`.
        hint: String,
    },
    /// The file is another program's SQLite database.
    #[error(
        "the database {} is not TsockM's (it has other tables and no TsockM schema version): refusing to start",
        .path.display()
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// The database holds something this build cannot read back.
    #[error("the database {} holds a damaged {what}: {detail}", .path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What: "conversation", "saved session", ...
        what: &'static str,
        /// How it is damaged.
        detail: String,
    },
    /// The store thread's queue is full, so the request was not queued.
    #[error("the store is overloaded ({queued} requests waiting): try again later")]
    Busy {
        /// Requests waiting when this one was refused.
        queued: u64,
    },
    /// The store thread has ended (after `close`).
    #[error("the store is closed")]
    Closed,
}

/// An I/O error's cause in lower case without the OS error number, as
/// "permission denied" rather than "Permission denied (os error 13)".
fn io_cause(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(end) => &text[..end],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// SQLite's explanation of a failure, with a word about the cases an
/// operator meets most.
fn sqlite_cause(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(code, _)
            if code.extended_code == rusqlite::ffi::SQLITE_READONLY_DBMOVED =>
        {
            "the file was deleted or replaced while the server ran \
             (a restart creates a new one)"
                .to_owned()
        }
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::NotADatabase =>
        {
            "the file is not a SQLite database".to_owned()
        }
        other => other.to_string(),
    }
}

/// What the file system says about a database file that SQLite failed to
/// write, for [`StoreError::Write`]'s hint: deleted, or not writable.
fn write_hint(path: &Path) -> String {
    let wal = wal_path(path);
    for file in [path, wal.as_path()] {
        match std::fs::OpenOptions::new().append(true).open(file) {
            Ok(_) => {}
            // A missing -wal is normal; a missing database is not.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file != path => {}
            Err(e) => return format!(" ({}: {})", file.display(), io_cause(&e)),
        }
    }
    String::new()
}

/// The write-ahead log beside a database file.
fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_round_trip() {
        let cases = [
            (Conversation::Lobby, "*"),
            (Conversation::Room("#rust".to_owned()), "#rust"),
            (Conversation::direct("zeta9", "Alpha1"), "d:Alpha1:zeta9"),
        ];
        for (conversation, key) in cases {
            assert_eq!(conversation.key(), key);
            assert_eq!(Conversation::from_key(key), Some(conversation));
        }
        for bad in ["", "d:", "d:a", "d::b", "d:a:", "d:a:b:c", "lobby"] {
            assert_eq!(Conversation::from_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn direct_is_the_same_both_ways() {
        assert_eq!(
            Conversation::direct("a", "b"),
            Conversation::direct("b", "a")
        );
        assert_eq!(
            Conversation::direct("b", "a"),
            Conversation::Direct("a".to_owned(), "b".to_owned())
        );
    }

    #[test]
    fn store_specs_parse_and_print() {
        let cases = [
            ("memory", StoreSpec::Memory),
            (
                "sqlite:/x/y.db",
                StoreSpec::Sqlite(PathBuf::from("/x/y.db")),
            ),
            ("sqlite:rel.db", StoreSpec::Sqlite(PathBuf::from("rel.db"))),
        ];
        for (text, spec) in cases {
            assert_eq!(text.parse::<StoreSpec>(), Ok(spec.clone()));
            assert_eq!(spec.to_string(), text);
        }
        for bad in ["", "sqlite:", "sqlite", "redis://x", "Memory"] {
            let error = bad.parse::<StoreSpec>().unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("\"memory\" or \"sqlite:<path>\""),
                "{error}"
            );
        }
    }

    #[test]
    fn io_causes_read_as_a_phrase() {
        let error = io::Error::from_raw_os_error(13);
        assert_eq!(io_cause(&error), "permission denied");
        let error = io::Error::other("Odd");
        assert_eq!(io_cause(&error), "odd");
    }

    #[test]
    fn the_default_sqlite_store_follows_xdg() {
        // Only reads the environment: the test sets nothing, so it holds
        // whatever $XDG_DATA_HOME and $HOME are.
        if let Ok(StoreSpec::Sqlite(path)) = StoreSpec::default_sqlite() {
            assert!(path.ends_with("tsockm/tsockm.db"), "{}", path.display());
            if let Some(xdg) =
                std::env::var_os("XDG_DATA_HOME").filter(|x| Path::new(x).is_absolute())
            {
                assert!(path.starts_with(xdg));
            }
        }
    }
}
