//! The store thread: the one owner of a [`Store`], on a dedicated OS thread
//! named `store`, fed through one bounded FIFO by [`StoreHandle`]s.
//!
//! The registry actor hands every accepted message to a handle and must
//! never wait for the disk, so a handle only ever `try_send`s: a full queue
//! (in requests or in bytes of text) drops the message and counts it. The
//! thread takes every append waiting (up to [`BATCH_MESSAGES`]) and writes
//! them in one transaction; HISTORY requests and session saves travel in the
//! same FIFO, so an answer includes every message appended before it was
//! asked (read-your-writes), and replies are called on the store thread.
//!
//! A failing store (disk full, file deleted or made read-only) never stops
//! the thread: the batch is lost and counted in [`StoreStats`], the error is
//! logged once, then once per [`ERROR_LOG_INTERVAL`] while it lasts, then
//! the recovery is logged, and the thread goes on serving. It must never
//! panic on a store error, and never be given work on a Tokio thread.

use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    Conversation, HistoryError, Page, Query, SavedSessions, Store, StoreError, StoredMessage,
};

/// Requests the queue holds (appends, HISTORY requests and saves together)
/// before appends are dropped.
pub const QUEUE_MESSAGES: usize = 65_536;

/// Bytes of queued messages (text, names and ids, plus each message's
/// fixed size) before appends are dropped: 64 MiB.
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Most messages written in one transaction.
pub const BATCH_MESSAGES: usize = 4_096;

/// While the store keeps failing, how often the error is logged again.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The store thread's bounds; [`Default`] is the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLimits {
    /// Requests the queue holds; see [`QUEUE_MESSAGES`].
    pub queue_messages: usize,
    /// Bytes of queued messages; see [`QUEUE_BYTES`].
    pub queue_bytes: usize,
    /// Most messages per transaction; see [`BATCH_MESSAGES`].
    pub batch_messages: usize,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            queue_messages: QUEUE_MESSAGES,
            queue_bytes: QUEUE_BYTES,
            batch_messages: BATCH_MESSAGES,
        }
    }
}

/// The store thread's counters for `:info`: relaxed atomics, statistics
/// rather than synchronisation.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Messages written to the store.
    pub messages_written: AtomicU64,
    /// Messages lost in batches the store failed to write.
    pub messages_failed: AtomicU64,
    /// Batches the store failed to write.
    pub batches_failed: AtomicU64,
    /// Messages never queued: the queue was full (or the store closed).
    pub messages_dropped: AtomicU64,
    /// Whether the latest batch failed (the store is failing now).
    pub last_write_failed: AtomicBool,
    /// Requests waiting in the queue now.
    pub queued: AtomicU64,
    /// Bytes of messages waiting in the queue now.
    pub queued_bytes: AtomicU64,
}

impl StoreStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Whether the store is failing now.
    pub fn failing(&self) -> bool {
        self.last_write_failed.load(Ordering::Relaxed)
    }
}

/// Why a message was not queued for the store. It was still relayed; only
/// its history is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// The queue holds its bound of requests.
    #[error("the store's queue is full")]
    QueueFull,
    /// The queued messages hold their bound of bytes.
    #[error("the store's queue holds too many bytes")]
    QueueBytes,
    /// The store thread is closing or has ended.
    #[error("the store is closed")]
    Closed,
}

/// Called on the store thread with a HISTORY answer (or on the caller's
/// thread, at once, if the request could not be queued).
pub type HistoryReply = Box<dyn FnOnce(Result<Page, HistoryError>) + Send>;

/// Called on the store thread once sessions are saved (or on the caller's
/// thread, at once, if the request could not be queued).
pub type SaveReply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One entry of the FIFO. Boxed payloads keep the queue's slots small.
enum Request {
    Append(Vec<StoredMessage>),
    History(Box<HistoryRequest>),
    SaveSessions(Box<SaveRequest>),
    /// Wakes the thread after [`StoreHandle::close`] set the flag.
    Close,
}

struct HistoryRequest {
    conversation: Conversation,
    query: Query,
    reply: HistoryReply,
}

struct SaveRequest {
    sessions: SavedSessions,
    done: SaveReply,
}

/// What handles and the thread share.
#[derive(Debug)]
struct Shared {
    stats: Arc<StoreStats>,
    /// Set by `close`: appends are refused, the thread ends once drained.
    closing: AtomicBool,
    limits: WorkerLimits,
    /// The store's [`Store::describe`].
    describe: String,
    /// The store's [`Store::is_persistent`].
    persistent: bool,
}

/// The registry's way to the store thread: cheap to clone, and no method
/// ever blocks.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    requests_tx: SyncSender<Request>,
    shared: Arc<Shared>,
}

impl StoreHandle {
    /// Queues a message to be stored. Never blocks: with the queue full (in
    /// requests or bytes) or the store closed, the message is dropped and
    /// counted in [`StoreStats::messages_dropped`].
    pub fn append(&self, message: StoredMessage) -> Result<(), Dropped> {
        self.append_all(vec![message])
    }

    /// Queues messages to be stored, in order, as one request (one wake-up
    /// of the store thread for a burst). Never blocks: when they do not fit
    /// (the queue full in requests or bytes, or the store closed), they are
    /// all dropped and counted in [`StoreStats::messages_dropped`].
    pub fn append_all(&self, messages: Vec<StoredMessage>) -> Result<(), Dropped> {
        if messages.is_empty() {
            return Ok(());
        }
        let stats = &self.shared.stats;
        let n = messages.len() as u64;
        let dropped = |why| {
            stats.messages_dropped.fetch_add(n, Ordering::Relaxed);
            Err(why)
        };
        if self.shared.closing.load(Ordering::Relaxed) {
            return dropped(Dropped::Closed);
        }
        let bytes: u64 = messages.iter().map(queued_bytes).sum();
        let before = stats.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.shared.limits.queue_bytes as u64 {
            stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return dropped(Dropped::QueueBytes);
        }
        stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.requests_tx.try_send(Request::Append(messages)) {
            Ok(()) => Ok(()),
            Err(e) => {
                stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                dropped(match e {
                    TrySendError::Full(_) => Dropped::QueueFull,
                    TrySendError::Disconnected(_) => Dropped::Closed,
                })
            }
        }
    }

    /// Asks for a page of history. `reply` gets it on the store thread,
    /// after every message appended before this call. If the request cannot
    /// be queued (queue full, store closing), `reply` is called at once, on
    /// this thread, with [`StoreError::Busy`] or [`StoreError::Closed`].
    /// (A request racing with [`close`](StoreHandle::close) from another
    /// thread may be dropped with the queue, `reply` uncalled.)
    pub fn history(&self, conversation: Conversation, query: Query, reply: HistoryReply) {
        let request = Box::new(HistoryRequest {
            conversation,
            query,
            reply,
        });
        if let Err((request, refusal)) = self.send(Request::History(request))
            && let Request::History(request) = request
        {
            (request.reply)(Err(HistoryError::Store(refusal.into())));
        }
    }

    /// Saves the sessions, replacing any saved before; `done` gets the
    /// outcome on the store thread. If the request cannot be queued, `done`
    /// is called at once, on this thread, with the reason.
    pub fn save_sessions(&self, sessions: SavedSessions, done: SaveReply) {
        let request = Box::new(SaveRequest { sessions, done });
        if let Err((request, refusal)) = self.send(Request::SaveSessions(request))
            && let Request::SaveSessions(request) = request
        {
            (request.done)(Err(refusal.into()));
        }
    }

    /// Asks the thread to end: appends from now on are refused, everything
    /// already queued is written and answered, then the thread ends. Never
    /// blocks; join the thread's [`JoinHandle`] to wait for it.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        // If the queue is full, the thread is busy and sees the flag once
        // it has drained the queue; if it has ended, there is nothing to do.
        let _ = self.send(Request::Close);
    }

    /// The counters the thread keeps.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.shared.stats
    }

    /// The store, as [`Store::describe`] named it.
    pub fn describe(&self) -> &str {
        &self.shared.describe
    }

    /// Whether the store outlives the process ([`Store::is_persistent`]).
    pub fn is_persistent(&self) -> bool {
        self.shared.persistent
    }

    /// Queues a request that is not an append (no byte accounting), or
    /// gives it back with the reason.
    fn send(&self, request: Request) -> Result<(), (Request, Refusal)> {
        if self.shared.closing.load(Ordering::Relaxed) && !matches!(request, Request::Close) {
            return Err((request, Refusal::Closed));
        }
        let stats = &self.shared.stats;
        stats.queued.fetch_add(1, Ordering::Relaxed);
        self.requests_tx.try_send(request).map_err(|e| {
            let queued = stats
                .queued
                .fetch_sub(1, Ordering::Relaxed)
                .saturating_sub(1);
            match e {
                TrySendError::Full(request) => (request, Refusal::Busy { queued }),
                TrySendError::Disconnected(request) => (request, Refusal::Closed),
            }
        })
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Busy { queued: u64 },
    Closed,
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> StoreError {
        match refusal {
            Refusal::Busy { queued } => StoreError::Busy { queued },
            Refusal::Closed => StoreError::Closed,
        }
    }
}

/// The store thread's state.
pub struct StoreWorker {
    store: Box<dyn Store>,
    requests_rx: Receiver<Request>,
    shared: Arc<Shared>,
    /// Appends taken from the queue and not yet written.
    batch: Vec<StoredMessage>,
    /// Set while the store is failing, for logging.
    failing: Option<Failing>,
}

impl std::fmt::Debug for StoreWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWorker")
            .field("store", &self.shared.describe)
            .field("batch", &self.batch.len())
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

/// A spell of failed writes, for logging it once a minute and its end.
#[derive(Debug)]
struct Failing {
    since: Instant,
    last_logged: Instant,
    batches: u64,
    messages: u64,
}

impl StoreWorker {
    /// Starts the thread `store` owning `store`. Returns the handle to give
    /// the registry, and the thread to join after [`StoreHandle::close`].
    pub fn spawn(
        store: Box<dyn Store>,
        limits: WorkerLimits,
    ) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
        let (requests_tx, requests_rx) = mpsc::sync_channel(limits.queue_messages.max(1));
        let shared = Arc::new(Shared {
            stats: Arc::new(StoreStats::default()),
            closing: AtomicBool::new(false),
            limits,
            describe: store.describe(),
            persistent: store.is_persistent(),
        });
        let worker = StoreWorker {
            store,
            requests_rx,
            shared: Arc::clone(&shared),
            batch: Vec::new(),
            failing: None,
        };
        let thread = std::thread::Builder::new()
            .name("store".to_owned())
            .spawn(move || worker.run())?;
        Ok((
            StoreHandle {
                requests_tx,
                shared,
            },
            thread,
        ))
    }

    /// Serves the queue until `close` (or until every handle is dropped),
    /// then writes what is left.
    fn run(mut self) {
        let batch_max = self.shared.limits.batch_messages.max(1);
        self.batch.reserve(batch_max);
        while let Ok(first) = self.requests_rx.recv() {
            self.serve(first, batch_max);
            if self.shared.closing.load(Ordering::Relaxed) {
                break;
            }
        }
        tracing::debug!(store = %self.shared.describe, "store thread ends");
    }

    /// Serves `first` and everything queued behind it until the queue is
    /// empty: appends gather into batches, and any other request first
    /// writes the appends queued before it. Ends with the batch written.
    fn serve(&mut self, first: Request, batch_max: usize) {
        let mut next = Some(first);
        while let Some(request) = next {
            self.dequeued(&request);
            match request {
                Request::Append(messages) => {
                    for message in messages {
                        self.batch.push(message);
                        if self.batch.len() >= batch_max {
                            self.write();
                        }
                    }
                }
                Request::History(request) => {
                    self.write();
                    let answer = self.store.history(&request.conversation, &request.query);
                    call_back(move || (request.reply)(answer));
                }
                Request::SaveSessions(request) => {
                    self.write();
                    let outcome = self.store.save_sessions(&request.sessions);
                    if let Err(error) = &outcome {
                        tracing::error!(%error, "cannot save the sessions");
                    }
                    call_back(move || (request.done)(outcome));
                }
                // The flag is set; `run` stops once the queue is drained.
                Request::Close => {}
            }
            next = self.requests_rx.try_recv().ok();
        }
        self.write();
    }

    /// Takes a request's share off the queue's counters.
    fn dequeued(&self, request: &Request) {
        let stats = &self.shared.stats;
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if let Request::Append(messages) = request {
            let bytes: u64 = messages.iter().map(queued_bytes).sum();
            stats.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Writes the batch gathered so far, counting and logging the outcome.
    fn write(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = mem::take(&mut self.batch);
        let n = batch.len() as u64;
        let stats = &self.shared.stats;
        match self.store.append(&batch) {
            Ok(()) => {
                stats.messages_written.fetch_add(n, Ordering::Relaxed);
                stats.last_write_failed.store(false, Ordering::Relaxed);
                if let Some(failing) = self.failing.take() {
                    // Warn, not info: whoever saw the error (`-s` shows
                    // warnings and errors) must see that it is over.
                    tracing::warn!(
                        store = %self.shared.describe,
                        failed_for = ?failing.since.elapsed(),
                        batches_failed = failing.batches,
                        messages_lost = failing.messages,
                        "the store writes again"
                    );
                }
            }
            Err(error) => {
                stats.batches_failed.fetch_add(1, Ordering::Relaxed);
                stats.messages_failed.fetch_add(n, Ordering::Relaxed);
                stats.last_write_failed.store(true, Ordering::Relaxed);
                let now = Instant::now();
                match &mut self.failing {
                    None => {
                        tracing::error!(
                            %error,
                            "the store cannot write: messages are relayed but not stored"
                        );
                        self.failing = Some(Failing {
                            since: now,
                            last_logged: now,
                            batches: 1,
                            messages: n,
                        });
                    }
                    Some(failing) => {
                        failing.batches += 1;
                        failing.messages += n;
                        if now.duration_since(failing.last_logged) >= ERROR_LOG_INTERVAL {
                            failing.last_logged = now;
                            tracing::error!(
                                %error,
                                failing_for = ?failing.since.elapsed(),
                                batches_failed = failing.batches,
                                messages_lost = failing.messages,
                                "the store still cannot write"
                            );
                        }
                    }
                }
            }
        }
        // Keep the allocation for the next batch.
        self.batch = batch;
        self.batch.clear();
    }
}

/// Calls a caller's reply; a panic in it is the caller's bug, logged, and
/// must not end the store thread.
fn call_back(reply: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(reply)).is_err() {
        tracing::error!("a store reply panicked");
    }
}

/// What a queued message counts against [`WorkerLimits::queue_bytes`]: its
/// heap bytes and its fixed size.
fn queued_bytes(message: &StoredMessage) -> u64 {
    message.queued_bytes() as u64
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::mpsc::{Sender, channel};

    use super::*;
    use crate::store::conformance::{message, sample_sessions, seqs};
    use crate::store::{MemoryStore, SqliteStore, faults, wal_path};

    /// Longest a test waits for the store thread.
    const WAIT: Duration = Duration::from_secs(10);

    fn history(
        handle: &StoreHandle,
        conversation: &Conversation,
        query: Query,
    ) -> Result<Page, HistoryError> {
        let (reply_tx, reply_rx) = channel();
        handle.history(
            conversation.clone(),
            query,
            Box::new(move |answer| {
                let _ = reply_tx.send(answer);
            }),
        );
        reply_rx
            .recv_timeout(WAIT)
            .expect("the store thread answers")
    }

    /// Like [`history`], asking again while the queue is full (just after
    /// a [`block`] ends).
    fn history_when_room(
        handle: &StoreHandle,
        conversation: &Conversation,
        query: Query,
    ) -> Result<Page, HistoryError> {
        let deadline = Instant::now() + WAIT;
        loop {
            match history(handle, conversation, query) {
                Err(HistoryError::Store(StoreError::Busy { .. })) if Instant::now() < deadline => {
                    std::thread::yield_now();
                }
                answer => return answer,
            }
        }
    }

    /// Waits until the thread has handled everything queued before.
    fn barrier(handle: &StoreHandle) {
        let _ = history(handle, &Conversation::Lobby, Query::Latest { n: 1 });
    }

    /// Keeps the store thread busy inside a reply until the returned sender
    /// is dropped or sent to.
    fn block(handle: &StoreHandle) -> Sender<()> {
        let (entered_tx, entered_rx) = channel();
        let (release_tx, release_rx) = channel::<()>();
        handle.history(
            Conversation::Lobby,
            Query::Latest { n: 1 },
            Box::new(move |_| {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(WAIT);
            }),
        );
        entered_rx
            .recv_timeout(WAIT)
            .expect("the store thread takes the request");
        release_tx
    }

    fn spawn_sqlite(path: &Path, limits: WorkerLimits) -> (StoreHandle, JoinHandle<()>) {
        let store = SqliteStore::open(path, 1000).unwrap();
        StoreWorker::spawn(Box::new(store), limits).unwrap()
    }

    fn get(counter: &AtomicU64) -> u64 {
        StoreStats::get(counter)
    }

    #[test]
    fn handles_are_clone_send_and_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<StoreHandle>();
    }

    #[test]
    fn answers_include_every_earlier_append() {
        let (handle, thread) =
            StoreWorker::spawn(Box::new(MemoryStore::new(10_000)), WorkerLimits::default())
                .unwrap();
        assert_eq!(handle.describe(), "memory");
        assert!(!handle.is_persistent());
        let lobby = Conversation::Lobby;
        for round in 0..20 {
            for seq in round * 100 + 1..=round * 100 + 100 {
                handle.append(message(seq, &lobby)).unwrap();
            }
            let page = history(&handle, &lobby, Query::Latest { n: 1 }).unwrap();
            assert_eq!(seqs(&page), (vec![round * 100 + 100], true));
        }
        let stats = Arc::clone(handle.stats());
        assert_eq!(get(&stats.messages_written), 2000);
        assert_eq!(get(&stats.queued), 0);
        assert_eq!(get(&stats.queued_bytes), 0);
        handle.close();
        thread.join().unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let limits = WorkerLimits {
            queue_messages: 8,
            ..WorkerLimits::default()
        };
        let (handle, thread) = StoreWorker::spawn(Box::new(MemoryStore::new(100)), limits).unwrap();
        let lobby = Conversation::Lobby;
        let release = block(&handle);
        for seq in 1..=8 {
            handle.append(message(seq, &lobby)).unwrap();
        }
        assert_eq!(handle.append(message(9, &lobby)), Err(Dropped::QueueFull));
        // Other requests are refused at once, on this thread.
        let answer = history(&handle, &lobby, Query::Latest { n: 5 });
        assert!(
            matches!(
                answer,
                Err(HistoryError::Store(StoreError::Busy { queued: 8 }))
            ),
            "{answer:?}"
        );
        let (done_tx, done_rx) = channel();
        handle.save_sessions(
            sample_sessions(1),
            Box::new(move |outcome| {
                let _ = done_tx.send(outcome);
            }),
        );
        let outcome = done_rx.recv_timeout(WAIT).unwrap();
        assert!(
            matches!(outcome, Err(StoreError::Busy { .. })),
            "{outcome:?}"
        );
        drop(release);
        let page = history_when_room(&handle, &lobby, Query::Latest { n: 500 }).unwrap();
        assert_eq!(seqs(&page), ((1..=8).collect(), false));
        assert_eq!(get(&handle.stats().messages_dropped), 1);
        handle.close();
        thread.join().unwrap();
    }

    #[test]
    fn the_byte_bound_drops_and_counts() {
        let lobby = Conversation::Lobby;
        let one = queued_bytes(&message(1, &lobby));
        let limits = WorkerLimits {
            queue_bytes: (one * 3 + one / 2) as usize,
            ..WorkerLimits::default()
        };
        let (handle, thread) = StoreWorker::spawn(Box::new(MemoryStore::new(100)), limits).unwrap();
        let release = block(&handle);
        for seq in 1..=3 {
            handle.append(message(seq, &lobby)).unwrap();
        }
        assert_eq!(handle.append(message(4, &lobby)), Err(Dropped::QueueBytes));
        assert_eq!(get(&handle.stats().queued_bytes), one * 3);
        drop(release);
        barrier(&handle);
        handle.append(message(5, &lobby)).unwrap();
        let page = history(&handle, &lobby, Query::Latest { n: 500 }).unwrap();
        assert_eq!(seqs(&page), (vec![1, 2, 3, 5], false));
        assert_eq!(get(&handle.stats().messages_dropped), 1);
        handle.close();
        thread.join().unwrap();
    }

    #[test]
    fn close_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsockm.db");
        let (handle, thread) = spawn_sqlite(&path, WorkerLimits::default());
        let lobby = Conversation::Lobby;
        let release = block(&handle);
        for seq in 1..=500 {
            handle.append(message(seq, &lobby)).unwrap();
        }
        let (done_tx, done_rx) = channel();
        handle.save_sessions(
            sample_sessions(7),
            Box::new(move |outcome| {
                let _ = done_tx.send(outcome);
            }),
        );
        handle.close();
        assert_eq!(handle.append(message(501, &lobby)), Err(Dropped::Closed));
        drop(release);
        thread.join().unwrap();
        done_rx.recv_timeout(WAIT).unwrap().unwrap();
        // The thread has ended: requests are answered at once.
        let answer = history(&handle, &lobby, Query::Latest { n: 1 });
        assert!(
            matches!(answer, Err(HistoryError::Store(StoreError::Closed))),
            "{answer:?}"
        );
        assert_eq!(get(&handle.stats().messages_written), 500);

        let mut store = SqliteStore::open(&path, 1000).unwrap();
        assert_eq!(store.max_seq().unwrap(), 500);
        let page = store.history(&lobby, &Query::Latest { n: 500 }).unwrap();
        assert_eq!(seqs(&page), ((1..=500).collect(), false));
        assert_eq!(store.take_sessions().unwrap(), Some(sample_sessions(7)));
    }

    #[test]
    fn a_panicking_reply_does_not_end_the_thread() {
        let (handle, thread) =
            StoreWorker::spawn(Box::new(MemoryStore::new(100)), WorkerLimits::default()).unwrap();
        let lobby = Conversation::Lobby;
        handle.history(
            lobby.clone(),
            Query::Latest { n: 1 },
            Box::new(|_| panic!("a caller's bug")),
        );
        handle.append(message(1, &lobby)).unwrap();
        let page = history(&handle, &lobby, Query::Latest { n: 5 }).unwrap();
        assert_eq!(seqs(&page), (vec![1], false));
        handle.close();
        let answer = history(&handle, &lobby, Query::Latest { n: 5 });
        assert!(
            matches!(answer, Err(HistoryError::Store(StoreError::Closed))),
            "{answer:?}"
        );
        thread.join().unwrap();
    }

    #[test]
    fn the_thread_ends_when_every_handle_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsockm.db");
        let (handle, thread) = spawn_sqlite(&path, WorkerLimits::default());
        let copy = handle.clone();
        handle.append(message(1, &Conversation::Lobby)).unwrap();
        drop(handle);
        copy.append(message(2, &Conversation::Lobby)).unwrap();
        drop(copy);
        thread.join().unwrap();
        assert_eq!(
            SqliteStore::open(&path, 1000).unwrap().max_seq().unwrap(),
            2
        );
    }

    #[test]
    fn a_deleted_database_is_counted_and_the_thread_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsockm.db");
        let (handle, thread) = spawn_sqlite(&path, WorkerLimits::default());
        let lobby = Conversation::Lobby;
        handle.append(message(1, &lobby)).unwrap();
        barrier(&handle);
        std::fs::remove_file(&path).unwrap();
        let _ = std::fs::remove_file(wal_path(&path));
        for seq in 2..=4 {
            handle.append(message(seq, &lobby)).unwrap();
            barrier(&handle);
        }
        let stats = Arc::clone(handle.stats());
        assert_eq!(get(&stats.batches_failed), 3);
        assert_eq!(get(&stats.messages_failed), 3);
        assert!(stats.failing());
        // Still serving: what was written before is still answered.
        let page = history(&handle, &lobby, Query::Latest { n: 10 }).unwrap();
        assert_eq!(seqs(&page), (vec![1], false));
        handle.close();
        thread.join().unwrap();
    }

    #[test]
    fn a_read_only_database_is_counted_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsockm.db");
        let (handle, thread) = spawn_sqlite(&path, WorkerLimits::default());
        let lobby = Conversation::Lobby;
        handle.append(message(1, &lobby)).unwrap();
        barrier(&handle);
        let wal = wal_path(&path);
        let Some(guard) = faults::immutable(&[&path, &wal]) else {
            handle.close();
            return faults::skipped("the database");
        };
        for seq in 2..=3 {
            handle.append(message(seq, &lobby)).unwrap();
            barrier(&handle);
        }
        let stats = Arc::clone(handle.stats());
        assert_eq!(get(&stats.batches_failed), 2);
        assert!(stats.failing());
        drop(guard);
        handle.append(message(4, &lobby)).unwrap();
        let page = history(&handle, &lobby, Query::Latest { n: 10 }).unwrap();
        assert_eq!(seqs(&page), (vec![1, 4], false));
        assert!(!stats.failing());
        assert_eq!(get(&stats.messages_written), 2);
        handle.close();
        thread.join().unwrap();
    }
}
