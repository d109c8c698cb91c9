//! `--store sqlite:<path>`: one SQLite file (SQLite compiled in), in WAL
//! mode with `synchronous = NORMAL`: a commit survives the process being
//! killed, and a power cut loses at most the last commits, never the file.
//!
//! Layout (schema version 1):
//! - `conversations`: each conversation's key (`*`, `#room`,
//!   `d:<a>:<b>`, see [`Conversation::key`]), a small integer id, and how
//!   many messages it holds, kept up to date in every append so pruning to
//!   `history_max` never counts rows;
//! - `messages`: clustered on `(conversation, seq)` (a `WITHOUT ROWID`
//!   table), so a HISTORY page is one contiguous range and pruning deletes
//!   the front of one;
//! - `counters` (the largest seq ever appended, which outlives pruning),
//!   `meta` (the caller's small settings), and `saved_sessions`,
//!   `saved_peers`, `saved_kept` (the sessions of a graceful shutdown);
//! - `schema_version`: one row; [`SqliteStore::open`] runs the missing
//!   migrations and refuses a database from a newer build.
//!
//! The connection holds the database in exclusive locking mode: a second
//! server on the same file is refused at start instead of reusing ids, and
//! no `-shm` file is made. The file and its `-wal` are created readable by
//! the owner only, in a directory created `0700`. It must never be used by
//! two threads at once; the store thread owns it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::{
    Conversation, HistoryError, Page, Query, SavedPeer, SavedSessions, Seq, Store, StoreError,
    StoredMessage, wal_path, write_hint,
};

/// The newest schema this build knows (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// `MIGRATIONS[i]` takes a database from schema version `i` to `i + 1`.
/// Only ever append to this list.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout.
    "CREATE TABLE conversations (
         id INTEGER PRIMARY KEY,
         key TEXT NOT NULL UNIQUE,
         n_messages INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE messages (
         conversation INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         at_ms INTEGER NOT NULL,
         author_id TEXT NOT NULL,
         author_name TEXT NOT NULL,
         text TEXT NOT NULL,
         PRIMARY KEY (conversation, seq)
     ) WITHOUT ROWID;
     CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE saved_sessions (
         only INTEGER PRIMARY KEY CHECK (only = 1),
         saved_at_ms INTEGER NOT NULL,
         next_peer_seq INTEGER NOT NULL
     );
     CREATE TABLE saved_peers (
         position INTEGER PRIMARY KEY,
         id TEXT NOT NULL,
         username TEXT NOT NULL,
         token_hash BLOB NOT NULL,
         addr TEXT NOT NULL,
         since_ms INTEGER NOT NULL,
         rooms TEXT NOT NULL
     );
     CREATE TABLE saved_kept (
         peer INTEGER NOT NULL,
         position INTEGER NOT NULL,
         frame BLOB NOT NULL,
         PRIMARY KEY (peer, position)
     ) WITHOUT ROWID;",
    // 2: the messages last written to a saved peer (sent again to a client
    // that resumes naming the last one it got), beside its kept frames.
    "ALTER TABLE saved_kept ADD COLUMN written INTEGER NOT NULL DEFAULT 0;",
];

/// How long opening waits for another process to let go of the database
/// (a server that is still closing) before refusing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLite's page cache for the connection, in KiB.
const CACHE_KIB: i64 = 16 * 1024;

/// Prepared statements kept compiled (the store uses about a dozen).
const STATEMENT_CACHE: usize = 32;

const INSERT_MESSAGE: &str = "INSERT OR IGNORE INTO messages \
     (conversation, seq, at_ms, author_id, author_name, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_CONVERSATION: &str = "INSERT INTO conversations (key, n_messages) VALUES (?1, 0)";
const UPDATE_COUNT: &str = "UPDATE conversations SET n_messages = ?2 WHERE id = ?1";
/// The seq of the oldest message a conversation keeps once its `?2` oldest
/// are deleted: a walk of the first `?2` entries of its range, however long
/// the conversation.
const PRUNE_CUTOFF: &str =
    "SELECT seq FROM messages WHERE conversation = ?1 ORDER BY seq LIMIT 1 OFFSET ?2";
/// Deletes a conversation's messages before seq `?2`: one range of the
/// clustered table.
const PRUNE_BEFORE: &str = "DELETE FROM messages WHERE conversation = ?1 AND seq < ?2";
/// Deletes a conversation's `?2` oldest messages row by row (when its count
/// is off and the cutoff is not found).
const PRUNE: &str = "DELETE FROM messages WHERE conversation = ?1 AND seq IN \
     (SELECT seq FROM messages WHERE conversation = ?1 ORDER BY seq LIMIT ?2)";
const SET_COUNTER: &str = "INSERT INTO counters (name, value) VALUES (?1, ?2) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value";
const HAS_MESSAGE: &str = "SELECT 1 FROM messages WHERE conversation = ?1 AND seq = ?2";
const LATEST: &str = "SELECT seq, at_ms, author_id, author_name, text FROM messages \
     WHERE conversation = ?1 ORDER BY seq DESC LIMIT ?2";
const BEFORE: &str = "SELECT seq, at_ms, author_id, author_name, text FROM messages \
     WHERE conversation = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
const AFTER: &str = "SELECT seq, at_ms, author_id, author_name, text FROM messages \
     WHERE conversation = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3";

/// The counter holding the largest seq ever appended.
const MAX_SEQ: &str = "max_seq";

/// A conversation's row id and how many messages it holds.
#[derive(Debug, Clone, Copy)]
struct Counted {
    id: i64,
    n_messages: u64,
}

/// A store in one SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    /// The database file, absolute, for messages and [`Store::describe`].
    path: PathBuf,
    conn: Connection,
    /// Messages kept per conversation.
    history_max: usize,
    /// Every conversation in the database, as committed.
    conversations: HashMap<Conversation, Counted>,
    /// The largest seq ever appended, as committed.
    max_seq: Seq,
    /// The file opened, to notice it deleted or replaced: SQLite in WAL
    /// and exclusive mode would go on writing to the unlinked file, and
    /// everything written would vanish at exit.
    identity: Option<FileIdentity>,
}

/// What tells one file from another at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// The identity of the file at `path` now, where the platform has one.
    fn of(path: &Path) -> Option<FileIdentity> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| FileIdentity {
                device: m.dev(),
                inode: m.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// [`SCHEMA_VERSION`], and prunes every conversation to `history_max`.
    pub fn open(path: &Path, history_max: usize) -> Result<SqliteStore, StoreError> {
        let path = std::path::absolute(path).map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })?;
        create_private(&path)?;
        let conn = Connection::open(&path).map_err(|e| open_error(&path, e))?;
        let mut store = SqliteStore {
            path,
            conn,
            history_max,
            conversations: HashMap::new(),
            max_seq: 0,
            identity: None,
        };
        store.configure()?;
        store.migrate()?;
        store.load()?;
        store.prune_all()?;
        store.identity = FileIdentity::of(&store.path);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the connection up: exclusive lock, WAL, `synchronous = NORMAL`.
    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let setup = |conn: &Connection| -> rusqlite::Result<String> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
            conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(mode)
        };
        let mode = setup(&self.conn).map_err(|e| self.open_error(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Write {
                path: self.path.clone(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                    Some(format!(
                        "cannot use write-ahead logging (journal mode {mode})"
                    )),
                ),
                hint: write_hint(&self.path),
            });
        }
        Ok(())
    }

    /// Brings the schema to [`SCHEMA_VERSION`] in one transaction, and
    /// proves the file writable (it records when it was opened).
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| open_error(&path, e))?;
        let found = schema_version(&tx).map_err(|e| open_error(&path, e))?;
        let found = match found {
            Some(version) => version,
            None => {
                let n_tables: i64 = tx
                    .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
                    .map_err(|e| open_error(&path, e))?;
                if n_tables > 0 {
                    return Err(StoreError::Foreign { path });
                }
                0
            }
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found,
                known: SCHEMA_VERSION,
            });
        }
        let write = |tx: &Transaction<'_>| -> rusqlite::Result<()> {
            if found == 0 {
                tx.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")?;
            }
            for migration in MIGRATIONS.iter().skip(found.max(0) as usize) {
                tx.execute_batch(migration)?;
            }
            tx.execute("DELETE FROM schema_version", [])?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
            tx.execute(SET_COUNTER, params!["opened_at_ms", now_ms()])?;
            Ok(())
        };
        write(&tx)
            .and_then(|()| tx.commit())
            .map_err(|e| write_error(&path, e))
    }

    /// Reads the conversations and the largest seq into memory.
    fn load(&mut self) -> Result<(), StoreError> {
        /// `(id, key, n_messages)`.
        type ConversationRow = (i64, String, u64);
        let read = |conn: &Connection| -> rusqlite::Result<(Vec<ConversationRow>, Seq)> {
            let mut statement = conn.prepare("SELECT id, key, n_messages FROM conversations")?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let max_seq = conn
                .query_row(
                    "SELECT value FROM counters WHERE name = ?1",
                    [MAX_SEQ],
                    |row| row.get(0),
                )
                .optional()?;
            Ok((rows, max_seq.unwrap_or(0)))
        };
        let (rows, max_seq) = read(&self.conn).map_err(|e| self.read_error(e))?;
        for (id, key, n_messages) in rows {
            let conversation = Conversation::from_key(&key).ok_or_else(|| StoreError::Damaged {
                path: self.path.clone(),
                what: "conversation",
                detail: format!("{key:?} is not a conversation"),
            })?;
            self.conversations
                .insert(conversation, Counted { id, n_messages });
        }
        self.max_seq = max_seq;
        Ok(())
    }

    /// Prunes every conversation holding more than `history_max` (the
    /// setting was lowered since the last run).
    fn prune_all(&mut self) -> Result<(), StoreError> {
        let history_max = self.history_max as u64;
        let mut over: HashMap<Conversation, Counted> = self
            .conversations
            .iter()
            .filter(|(_, counted)| counted.n_messages > history_max)
            .map(|(conversation, counted)| (conversation.clone(), *counted))
            .collect();
        if over.is_empty() {
            return Ok(());
        }
        let mut write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for counted in over.values_mut() {
                prune(&tx, counted, history_max)?;
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(|e| write_error(&self.path, e))?;
        self.conversations.extend(over);
        Ok(())
    }

    fn open_error(&self, source: rusqlite::Error) -> StoreError {
        open_error(&self.path, source)
    }

    fn read_error(&self, source: rusqlite::Error) -> StoreError {
        if is_busy(&source) {
            return StoreError::InUse {
                path: self.path.clone(),
            };
        }
        StoreError::Read {
            path: self.path.clone(),
            source,
        }
    }

    fn write_error(&self, source: rusqlite::Error) -> StoreError {
        write_error(&self.path, source)
    }

    /// Fails if the file at the path is no longer the one opened.
    fn check_file(&self) -> Result<(), StoreError> {
        let Some(opened) = self.identity else {
            return Ok(());
        };
        if FileIdentity::of(&self.path) == Some(opened) {
            return Ok(());
        }
        Err(StoreError::Write {
            path: self.path.clone(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY_DBMOVED),
                None,
            ),
            hint: String::new(),
        })
    }

    /// The page `query` asks for, from the conversation with row id `id`.
    fn page(&self, id: i64, conversation: &Conversation, query: &Query) -> rusqlite::Result<Page> {
        let message = |row: &rusqlite::Row<'_>| {
            Ok(StoredMessage {
                seq: row.get(0)?,
                at_ms: row.get(1)?,
                conversation: conversation.clone(),
                author_id: row.get(2)?,
                author_name: row.get(3)?,
                text: row.get(4)?,
            })
        };
        // One more than asked tells whether there are more.
        let limit = query.n().saturating_add(1) as u64;
        let mut items = match *query {
            Query::Latest { .. } => self
                .conn
                .prepare_cached(LATEST)?
                .query_map(params![id, limit], message)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Query::Before { seq, .. } => self
                .conn
                .prepare_cached(BEFORE)?
                .query_map(params![id, seq, limit], message)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Query::After { seq, .. } => self
                .conn
                .prepare_cached(AFTER)?
                .query_map(params![id, seq, limit], message)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        let more = items.len() > query.n();
        items.truncate(query.n());
        if !matches!(query, Query::After { .. }) {
            items.reverse();
        }
        Ok(Page { items, more })
    }

    /// Writes a batch in one transaction; returns the conversations it
    /// changed, as they are once it commits.
    fn write_batch(
        &mut self,
        batch: &[StoredMessage],
    ) -> rusqlite::Result<HashMap<Conversation, Counted>> {
        let history_max = self.history_max as u64;
        let mut touched: HashMap<Conversation, Counted> = HashMap::new();
        let tx = self.conn.transaction()?;
        if history_max > 0 {
            let mut insert = tx.prepare_cached(INSERT_MESSAGE)?;
            for message in batch {
                let counted = match touched.get_mut(&message.conversation) {
                    Some(counted) => counted,
                    None => {
                        let counted = match self.conversations.get(&message.conversation) {
                            Some(counted) => *counted,
                            None => {
                                tx.prepare_cached(INSERT_CONVERSATION)?
                                    .execute([message.conversation.key()])?;
                                Counted {
                                    id: tx.last_insert_rowid(),
                                    n_messages: 0,
                                }
                            }
                        };
                        touched
                            .entry(message.conversation.clone())
                            .or_insert(counted)
                    }
                };
                let added = insert.execute(params![
                    counted.id,
                    message.seq,
                    message.at_ms,
                    message.author_id,
                    message.author_name,
                    message.text,
                ])?;
                counted.n_messages += added as u64;
            }
            for counted in touched.values_mut() {
                prune(&tx, counted, history_max)?;
            }
        }
        let batch_max = batch.iter().map(|m| m.seq).max().unwrap_or(0);
        if batch_max > self.max_seq {
            tx.prepare_cached(SET_COUNTER)?
                .execute(params![MAX_SEQ, batch_max])?;
        }
        tx.commit()?;
        Ok(touched)
    }

    fn write_sessions(&mut self, sessions: &SavedSessions) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        clear_sessions(&tx)?;
        tx.execute(
            "INSERT INTO saved_sessions (only, saved_at_ms, next_peer_seq) VALUES (1, ?1, ?2)",
            params![sessions.saved_at_ms, sessions.next_peer_seq],
        )?;
        {
            let mut peer = tx.prepare(
                "INSERT INTO saved_peers (position, id, username, token_hash, addr, since_ms, rooms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut kept = tx.prepare(
                "INSERT INTO saved_kept (peer, position, frame, written) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (position, saved) in sessions.peers.iter().enumerate() {
                peer.execute(params![
                    position as i64,
                    saved.id,
                    saved.username,
                    saved.token_hash,
                    saved.addr,
                    saved.since_ms,
                    saved.rooms.join("\n"),
                ])?;
                let frames = saved
                    .written
                    .iter()
                    .map(|frame| (frame, true))
                    .chain(saved.kept.iter().map(|frame| (frame, false)));
                for (at, (frame, written)) in frames.enumerate() {
                    kept.execute(params![position as i64, at as i64, frame.as_ref(), written])?;
                }
            }
        }
        tx.commit()
    }

    fn read_sessions(tx: &Transaction<'_>) -> rusqlite::Result<Option<SessionRows>> {
        let head: Option<(i64, u64)> = tx
            .query_row(
                "SELECT saved_at_ms, next_peer_seq FROM saved_sessions WHERE only = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((saved_at_ms, next_peer_seq)) = head else {
            return Ok(None);
        };
        let peers = tx
            .prepare(
                "SELECT position, id, username, token_hash, addr, since_ms, rooms \
                 FROM saved_peers ORDER BY position",
            )?
            .query_map([], |row| {
                Ok(PeerRow {
                    position: row.get(0)?,
                    id: row.get(1)?,
                    username: row.get(2)?,
                    token_hash: row.get(3)?,
                    addr: row.get(4)?,
                    since_ms: row.get(5)?,
                    rooms: row.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let kept = tx
            .prepare("SELECT peer, frame, written FROM saved_kept ORDER BY peer, position")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(SessionRows {
            saved_at_ms,
            next_peer_seq,
            peers,
            kept,
        }))
    }

    /// Turns the rows read back into sessions.
    fn decode_sessions(&self, rows: SessionRows) -> Result<SavedSessions, StoreError> {
        let damaged = |detail: String| StoreError::Damaged {
            path: self.path.clone(),
            what: "saved session",
            detail,
        };
        let mut kept_by_peer: HashMap<i64, (Vec<Bytes>, Vec<Bytes>)> = HashMap::new();
        for (peer, frame, written) in rows.kept {
            let (kept, remembered) = kept_by_peer.entry(peer).or_default();
            if written {
                remembered.push(Bytes::from(frame));
            } else {
                kept.push(Bytes::from(frame));
            }
        }
        let mut peers = Vec::with_capacity(rows.peers.len());
        for row in rows.peers {
            let token_hash: [u8; 32] = row.token_hash.as_slice().try_into().map_err(|_| {
                damaged(format!(
                    "peer {}'s token hash is {} bytes, not 32",
                    row.id,
                    row.token_hash.len()
                ))
            })?;
            let (kept, written) = kept_by_peer.remove(&row.position).unwrap_or_default();
            peers.push(SavedPeer {
                rooms: row
                    .rooms
                    .split('\n')
                    .filter(|room| !room.is_empty())
                    .map(str::to_owned)
                    .collect(),
                kept,
                written,
                id: row.id,
                username: row.username,
                token_hash,
                addr: row.addr,
                since_ms: row.since_ms,
            });
        }
        Ok(SavedSessions {
            saved_at_ms: rows.saved_at_ms,
            next_peer_seq: rows.next_peer_seq,
            peers,
        })
    }
}

/// The saved sessions as read, before decoding.
struct SessionRows {
    saved_at_ms: i64,
    next_peer_seq: u64,
    peers: Vec<PeerRow>,
    /// `(peer position, frame, whether it is a written message)`, in order.
    kept: Vec<(i64, Vec<u8>, bool)>,
}

/// One `saved_peers` row.
struct PeerRow {
    position: i64,
    id: String,
    username: String,
    token_hash: Vec<u8>,
    addr: String,
    since_ms: i64,
    rooms: String,
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn is_persistent(&self) -> bool {
        true
    }

    fn append(&mut self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.check_file()?;
        let touched = self.write_batch(batch).map_err(|e| self.write_error(e))?;
        self.conversations.extend(touched);
        self.max_seq = batch.iter().map(|m| m.seq).fold(self.max_seq, Seq::max);
        Ok(())
    }

    fn history(
        &mut self,
        conversation: &Conversation,
        query: &Query,
    ) -> Result<Page, HistoryError> {
        let Some(counted) = self.conversations.get(conversation).copied() else {
            return match query {
                Query::Latest { .. } => Ok(Page::default()),
                Query::Before { .. } | Query::After { .. } => Err(HistoryError::UnknownId),
            };
        };
        if let Query::Before { seq, .. } | Query::After { seq, .. } = *query {
            let found = self
                .conn
                .prepare_cached(HAS_MESSAGE)
                .and_then(|mut s| s.exists(params![counted.id, seq]))
                .map_err(|e| self.read_error(e))?;
            if !found {
                return Err(HistoryError::UnknownId);
            }
        }
        self.page(counted.id, conversation, query)
            .map_err(|e| HistoryError::Store(self.read_error(e)))
    }

    fn max_seq(&mut self) -> Result<Seq, StoreError> {
        Ok(self.max_seq)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
            .map_err(|e| self.read_error(e))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.check_file()?;
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute([key, value]))
            .map(|_| ())
            .map_err(|e| self.write_error(e))
    }

    fn save_sessions(&mut self, sessions: &SavedSessions) -> Result<(), StoreError> {
        self.check_file()?;
        self.write_sessions(sessions)
            .map_err(|e| self.write_error(e))
    }

    fn take_sessions(&mut self) -> Result<Option<SavedSessions>, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| write_error(&path, e))?;
        let rows = SqliteStore::read_sessions(&tx).map_err(|e| StoreError::Read {
            path: path.clone(),
            source: e,
        })?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        clear_sessions(&tx)
            .and_then(|()| tx.commit())
            .map_err(|e| write_error(&path, e))?;
        self.decode_sessions(rows).map(Some)
    }
}

/// Creates the database's directory (`0700`) and the database and its
/// `-wal` (`0600`) if missing, so nothing is ever readable by others, and
/// so a directory that cannot be written is named at start.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|source| StoreError::CreateDirectory {
                path: dir.to_owned(),
                // "File exists" says less than what is wrong.
                source: if source.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory")
                } else {
                    source
                },
            })?;
    }
    for file in [path.to_owned(), wal_path(path)] {
        if file.exists() {
            continue;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&file) {
            Ok(_) => {}
            // Made by someone else meanwhile: as good.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(StoreError::CreateFile { path: file, source }),
        }
    }
    Ok(())
}

/// The schema version recorded, or `None` for a database without one.
fn schema_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_table {
        return Ok(None);
    }
    conn.query_row("SELECT MAX(version) FROM schema_version", [], |row| {
        row.get::<_, Option<i64>>(0)
    })
    .map(|version| Some(version.unwrap_or(0)))
}

/// Deletes the oldest messages of a conversation over `history_max` and
/// records its new count.
fn prune(tx: &Transaction<'_>, counted: &mut Counted, history_max: u64) -> rusqlite::Result<()> {
    if counted.n_messages > history_max {
        let excess = counted.n_messages - history_max;
        // Finding where the kept messages start and deleting the range
        // before it costs half of deleting the same rows by a list of
        // their seqs (fan-out A with SQLite spent more on pruning than on
        // inserting).
        let cutoff: Option<i64> = tx
            .prepare_cached(PRUNE_CUTOFF)?
            .query_row(params![counted.id, excess], |row| row.get(0))
            .optional()?;
        let deleted = match cutoff {
            Some(cutoff) => tx
                .prepare_cached(PRUNE_BEFORE)?
                .execute(params![counted.id, cutoff])?,
            None => tx
                .prepare_cached(PRUNE)?
                .execute(params![counted.id, excess])?,
        };
        counted.n_messages = counted.n_messages.saturating_sub(deleted as u64);
    }
    tx.prepare_cached(UPDATE_COUNT)?
        .execute(params![counted.id, counted.n_messages])?;
    Ok(())
}

fn clear_sessions(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch("DELETE FROM saved_sessions; DELETE FROM saved_peers; DELETE FROM saved_kept;")
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// An error while opening: busy means another process holds the file.
fn open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    if is_busy(&source) {
        StoreError::InUse {
            path: path.to_owned(),
        }
    } else if source.sqlite_error_code() == Some(ErrorCode::ReadOnly) {
        write_error(path, source)
    } else {
        let hint = match source.sqlite_error_code() {
            Some(
                ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::PermissionDenied,
            ) => write_hint(path),
            _ => String::new(),
        };
        StoreError::Open {
            path: path.to_owned(),
            source,
            hint,
        }
    }
}

fn write_error(path: &Path, source: rusqlite::Error) -> StoreError {
    if is_busy(&source) {
        return StoreError::InUse {
            path: path.to_owned(),
        };
    }
    StoreError::Write {
        path: path.to_owned(),
        hint: write_hint(path),
        source,
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    use super::*;
    use crate::store::conformance::{self, message, sample_sessions, seqs};
    use crate::store::faults;
    use crate::store::{StoreWorker, WorkerLimits};

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn sqlite_store_conforms() {
        let dir = temp_dir();
        let n = Cell::new(0);
        conformance::check_all(|history_max| {
            n.set(n.get() + 1);
            let path = dir.path().join(format!("{}.db", n.get()));
            Box::new(SqliteStore::open(&path, history_max).unwrap())
        });
    }

    #[test]
    fn a_restart_continues_ids_history_and_settings() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        let lobby = Conversation::Lobby;
        let rust = Conversation::Room("#rust".to_owned());
        {
            let mut store = SqliteStore::open(&path, 3).unwrap();
            assert_eq!(store.max_seq().unwrap(), 0);
            let batch: Vec<_> = (1..=8).map(|seq| message(seq, &lobby)).collect();
            store.append(&batch).unwrap();
            store.append(&[message(9, &rust)]).unwrap();
            store.set_meta("alphabet", "xyz").unwrap();
        }
        let mut store = SqliteStore::open(&path, 3).unwrap();
        assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
        assert!(store.is_persistent());
        assert_eq!(store.max_seq().unwrap(), 9);
        assert_eq!(store.meta("alphabet").unwrap().as_deref(), Some("xyz"));
        let page = store.history(&lobby, &Query::Latest { n: 10 }).unwrap();
        assert_eq!(seqs(&page), (vec![6, 7, 8], false));
        assert_eq!(page.items[0], message(6, &lobby));
        // Counts survived too: one more prunes exactly one.
        store.append(&[message(10, &lobby)]).unwrap();
        let page = store.history(&lobby, &Query::Latest { n: 10 }).unwrap();
        assert_eq!(seqs(&page), (vec![7, 8, 10], false));
        let page = store.history(&rust, &Query::Latest { n: 10 }).unwrap();
        assert_eq!(seqs(&page), (vec![9], false));
    }

    #[test]
    fn a_lower_history_max_prunes_at_open() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        let lobby = Conversation::Lobby;
        let batch: Vec<_> = (1..=50).map(|seq| message(seq, &lobby)).collect();
        SqliteStore::open(&path, 100)
            .unwrap()
            .append(&batch)
            .unwrap();
        let mut store = SqliteStore::open(&path, 5).unwrap();
        let page = store.history(&lobby, &Query::Latest { n: 500 }).unwrap();
        assert_eq!(seqs(&page), ((46..=50).collect(), false));
        drop(store);
        let mut store = SqliteStore::open(&path, 0).unwrap();
        let page = store.history(&lobby, &Query::Latest { n: 500 }).unwrap();
        assert_eq!(seqs(&page), (vec![], false));
        assert_eq!(store.max_seq().unwrap(), 50);
    }

    #[test]
    fn sessions_survive_a_restart_and_are_taken_once() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        SqliteStore::open(&path, 10)
            .unwrap()
            .save_sessions(&sample_sessions(1234))
            .unwrap();
        let mut store = SqliteStore::open(&path, 10).unwrap();
        assert_eq!(store.take_sessions().unwrap(), Some(sample_sessions(1234)));
        drop(store);
        assert_eq!(
            SqliteStore::open(&path, 10)
                .unwrap()
                .take_sessions()
                .unwrap(),
            None
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir();
        let data = dir.path().join("made").join("here");
        let path = data.join("tsockm.db");
        let mut store = SqliteStore::open(&path, 10).unwrap();
        store.append(&[message(1, &Conversation::Lobby)]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(data.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal_path(&path)), 0o600);
        // Exclusive locking: no shared-memory file for others to read.
        let mut shm = path.as_os_str().to_owned();
        shm.push("-shm");
        assert!(!Path::new(&shm).exists());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        SqliteStore::open(&path, 10).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE schema_version SET version = 7", [])
            .unwrap();
        let error = SqliteStore::open(&path, 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the database {} was written by a newer TsockM (schema version 7; \
                 this build knows {SCHEMA_VERSION}): refusing to start",
                path.display()
            )
        );
    }

    #[test]
    fn files_that_are_not_a_tsockm_database_are_refused() {
        let dir = temp_dir();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let error = SqliteStore::open(&junk, 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot open the database {}: the file is not a SQLite database",
                junk.display()
            )
        );
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE bookmarks (url TEXT)")
            .unwrap();
        let error = SqliteStore::open(&other, 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the database {} is not TsockM's (it has other tables and no TsockM \
                 schema version): refusing to start",
                other.display()
            )
        );
    }

    #[test]
    fn a_second_server_on_the_same_file_is_refused() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        let _first = SqliteStore::open(&path, 10).unwrap();
        let error = SqliteStore::open(&path, 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the database {} is in use by another process (another TsockM server?): \
                 refusing to start",
                path.display()
            )
        );
    }

    #[test]
    fn an_unwritable_directory_is_named() {
        let dir = temp_dir();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let Some(_guard) = faults::unwritable_dir(&data) else {
            return faults::skipped("a directory");
        };
        let path = data.join("tsockm.db");
        let error = SqliteStore::open(&path, 10).unwrap_err().to_string();
        let expected = format!("cannot create the database {}: ", path.display());
        assert!(error.starts_with(&expected), "{error}");
        assert!(
            error.ends_with("permission denied") || error.ends_with("operation not permitted"),
            "{error}"
        );
        // And a directory below it cannot be made either.
        let path = data.join("sub").join("tsockm.db");
        let error = SqliteStore::open(&path, 10).unwrap_err().to_string();
        let expected = format!(
            "cannot create the data directory {}: ",
            data.join("sub").display()
        );
        assert!(error.starts_with(&expected), "{error}");
    }

    #[test]
    fn a_file_in_the_way_of_the_directory_is_named() {
        let dir = temp_dir();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = SqliteStore::open(&file.join("tsockm.db"), 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot create the data directory {}: not a directory",
                file.display()
            )
        );
    }

    #[test]
    fn write_errors_name_the_file_and_the_cause() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        let lobby = Conversation::Lobby;
        let mut store = SqliteStore::open(&path, 10).unwrap();
        store.append(&[message(1, &lobby)]).unwrap();
        let wal = wal_path(&path);
        if let Some(guard) = faults::immutable(&[&path, &wal]) {
            let error = store.append(&[message(2, &lobby)]).unwrap_err().to_string();
            let start = format!("cannot write to {}: ", path.display());
            assert!(error.starts_with(&start), "{error}");
            assert!(error.ends_with(": operation not permitted)"), "{error}");
            drop(store);
            let error = SqliteStore::open(&path, 10).unwrap_err().to_string();
            assert!(error.ends_with(": operation not permitted)"), "{error}");
            drop(guard);
            store = SqliteStore::open(&path, 10).unwrap();
        } else {
            faults::skipped("the database");
        }
        // Deleted while open: SQLite would go on writing to the unlinked file.
        std::fs::remove_file(&path).unwrap();
        let error = store.append(&[message(3, &lobby)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot write to {}: the file was deleted or replaced while the server ran \
                 (a restart creates a new one)",
                path.display()
            )
        );
        assert!(store.set_meta("k", "v").is_err());
        assert!(store.save_sessions(&sample_sessions(1)).is_err());
    }

    /// Set for the child process of `a_kill_during_heavy_writes_keeps_a_prefix`.
    const CRASH_CHILD_DB: &str = "TSOCKM_STORE_CRASH_CHILD_DB";

    /// The messages the crash test's writer appends: seq 1, 2, 3, ... over
    /// three conversations, with texts of about 100 bytes.
    fn crash_message(seq: Seq) -> StoredMessage {
        let conversation = match seq % 3 {
            0 => Conversation::Lobby,
            1 => Conversation::Room("#crash".to_owned()),
            _ => Conversation::direct("alice1", "bob2"),
        };
        let mut message = message(seq, &conversation);
        message.text = format!("{seq:>12} {}", "x".repeat(88));
        message
    }

    /// Not a test on its own: the writer the crash test runs as a child
    /// process (this test binary again, with `CRASH_CHILD_DB` set). It
    /// appends as fast as the store thread takes messages, reporting how
    /// many are written, until it is killed.
    #[test]
    fn crash_child_writer() {
        let Some(path) = std::env::var_os(CRASH_CHILD_DB) else {
            return;
        };
        let store = SqliteStore::open(Path::new(&path), 1_000_000).unwrap();
        let (handle, _thread) =
            StoreWorker::spawn(Box::new(store), WorkerLimits::default()).unwrap();
        // Bounded, should the parent fail to kill it.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seq = 1;
        while std::time::Instant::now() < deadline {
            // Never skip a seq: wait for room instead.
            while handle.append(crash_message(seq)).is_err() {
                std::thread::yield_now();
            }
            if seq % 1000 == 0 {
                let written = handle
                    .stats()
                    .messages_written
                    .load(std::sync::atomic::Ordering::Relaxed);
                println!("written {written}");
            }
            seq += 1;
        }
    }

    /// Kills the child if the test fails before it does.
    struct KillOnDrop(std::process::Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_kill_during_heavy_writes_keeps_a_prefix() {
        let dir = temp_dir();
        let path = dir.path().join("tsockm.db");
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "store::sqlite::tests::crash_child_writer",
                    "--nocapture",
                ])
                .env(CRASH_CHILD_DB, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (written_tx, written_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("written ")
                    .and_then(|n| n.parse::<u64>().ok())
                    && written_tx.send(n).is_err()
                {
                    break;
                }
            }
        });
        // Kill it mid-stream, once a good many batches have been committed.
        let mut written = 0;
        while written < 40_000 {
            written = written_rx
                .recv_timeout(Duration::from_secs(15))
                .expect("the writer reports progress");
        }
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{status}");
        }

        let check = Connection::open(&path).unwrap();
        let integrity: String = check
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        drop(check);

        let mut store = SqliteStore::open(&path, 1_000_000).unwrap();
        let max_seq = store.max_seq().unwrap();
        assert!(
            max_seq >= written,
            "{max_seq} stored, {written} reported written"
        );
        let mut stored = Vec::new();
        for conversation in [
            Conversation::Lobby,
            Conversation::Room("#crash".to_owned()),
            Conversation::direct("alice1", "bob2"),
        ] {
            let mut page = store
                .history(&conversation, &Query::Latest { n: 500 })
                .unwrap();
            // Walk back to the start, checking every row.
            loop {
                for item in &page.items {
                    assert_eq!(*item, crash_message(item.seq));
                }
                stored.extend(page.items.iter().map(|m| m.seq));
                let Some(oldest) = page.items.first().filter(|_| page.more) else {
                    break;
                };
                page = store
                    .history(
                        &conversation,
                        &Query::Before {
                            seq: oldest.seq,
                            n: 500,
                        },
                    )
                    .unwrap();
            }
        }
        stored.sort_unstable();
        let expected: Vec<Seq> = (1..=max_seq).collect();
        assert!(stored == expected, "stored seqs are not 1..={max_seq}");
    }
}
