//! [`Outbox`]: one connection's bounded queue of encoded frames.
//!
//! The registry pushes shared `Bytes` (one encoding per broadcast, cloned per
//! recipient) without ever waiting; the connection's writer takes everything
//! queued at once and writes it in as few system calls as it can.
//!
//! It is a small mutex-guarded deque rather than an mpsc channel because the
//! registry must be able to take back what was not yet handed to the writer,
//! synchronously, when a peer goes away or is taken over by a resume: those
//! frames then follow the peer, in order. The lock is held only to push one
//! frame or to swap the whole deque out; never across an `.await`, and the
//! only contenders are the registry and this connection's writer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a push did not queue the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds its maximum number of frames: the peer is not reading.
    Full,
    /// The outbox was closed: the connection is ending.
    Closed,
}

/// Frames waiting in every outbox of the server, so the registry can tell
/// when the writers as a whole are behind and stop taking in more work.
#[derive(Debug, Default)]
pub struct Backlog {
    frames: AtomicUsize,
    /// Notified each time a writer takes frames out of its outbox.
    drained: Notify,
}

impl Backlog {
    /// Frames queued in all outboxes now.
    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }

    /// Resolves after some writer next takes frames out (or at once if one
    /// did since the last call).
    pub async fn drained(&self) {
        self.drained.notified().await;
    }

    fn add(&self, n: usize) {
        self.frames.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        if n > 0 {
            self.frames.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    closed: bool,
}

/// A bounded queue of frames for one connection's writer.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Most frames queued at once.
    capacity: usize,
    /// Wakes the writer when the queue stops being empty, or on close.
    ready: Notify,
    /// Cancelled when the outbox closes, so a writer stuck on a socket that
    /// is not being read can be given a deadline.
    closing: CancellationToken,
    /// The server-wide count this outbox's frames are part of.
    backlog: Arc<Backlog>,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames, counted in a
    /// backlog of its own.
    pub fn new(capacity: usize) -> Self {
        Outbox::with_backlog(capacity, Arc::default(), &CancellationToken::new())
    }

    /// An empty outbox holding at most `capacity` frames, counted in
    /// `backlog`, that also counts as closed once `shutdown` is cancelled.
    pub fn with_backlog(
        capacity: usize,
        backlog: Arc<Backlog>,
        shutdown: &CancellationToken,
    ) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closing: shutdown.child_token(),
            backlog,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent,
        // so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame, unless the queue is full or closed.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let was_empty = {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if state.queue.len() >= self.capacity {
                return Err(PushError::Full);
            }
            state.queue.push_back(frame);
            state.queue.len() == 1
        };
        self.backlog.add(1);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues frames in order under one lock. If the queue fills up (or is
    /// closed), the frames that did not fit are given back, in order.
    pub fn push_all<'a>(
        &self,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> Result<usize, Vec<Bytes>> {
        let mut frames = frames.peekable();
        let (n_pushed, was_empty, refused) = {
            let mut state = self.lock();
            let was_empty = state.queue.is_empty();
            let mut n_pushed = 0;
            let mut refused = None;
            while let Some(frame) = frames.peek() {
                if state.closed || state.queue.len() >= self.capacity {
                    refused = Some(frames.by_ref().cloned().collect::<Vec<_>>());
                    break;
                }
                state.queue.push_back((*frame).clone());
                n_pushed += 1;
                frames.next();
            }
            (n_pushed, was_empty, refused)
        };
        self.backlog.add(n_pushed);
        if was_empty && n_pushed > 0 {
            self.ready.notify_one();
        }
        match refused {
            Some(refused) => Err(refused),
            None => Ok(n_pushed),
        }
    }

    /// Queues a frame past the capacity: for the roster and resume replays,
    /// which are bounded by the peer count and the kept bound instead.
    pub fn push_unbounded(&self, frame: Bytes) {
        let was_empty = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.queue.push_back(frame);
            state.queue.len() == 1
        };
        self.backlog.add(1);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Takes back every frame not yet handed to the writer, in order.
    pub fn take_pending(&self) -> VecDeque<Bytes> {
        let pending = std::mem::take(&mut self.lock().queue);
        self.backlog.sub(pending.len());
        pending
    }

    /// Closes the outbox: the writer sends what is queued (plus `last`, which
    /// goes past the capacity) and then the connection ends.
    pub fn close(&self, last: Option<Bytes>) {
        {
            let mut state = self.lock();
            if let Some(frame) = last {
                state.queue.push_back(frame);
                self.backlog.add(1);
            }
            state.closed = true;
        }
        self.ready.notify_one();
        self.closing.cancel();
    }

    /// Whether [`Outbox::close`] was called (or the server is shutting down).
    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Resolves once the outbox is closed.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Frames queued now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Waits until there is something to write (`true`), or the outbox is
    /// closed and drained (`false`).
    async fn wait_ready(&self) -> bool {
        loop {
            {
                let state = self.lock();
                if !state.queue.is_empty() {
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Appends everything queued to `batch`, oldest first.
    fn take_batch(&self, batch: &mut VecDeque<Bytes>) {
        let n_taken = {
            let mut state = self.lock();
            let n_taken = state.queue.len();
            if batch.is_empty() {
                std::mem::swap(&mut state.queue, batch);
            } else {
                batch.append(&mut state.queue);
            }
            n_taken
        };
        self.backlog.sub(n_taken);
        self.backlog.drained.notify_one();
    }

    /// Waits until there is something to write, then moves it into `batch`.
    /// Returns `false` once closed and drained.
    pub async fn next_batch(&self, batch: &mut VecDeque<Bytes>) -> bool {
        let ready = self.wait_ready().await;
        if ready {
            self.take_batch(batch);
        }
        ready
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Frames never written (the connection ended) leave the backlog.
        let n_left = self.lock().queue.len();
        self.backlog.sub(n_left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_ordered_and_closable() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Err(PushError::Full));
        let mut batch = VecDeque::new();
        assert!(outbox.next_batch(&mut batch).await);
        assert_eq!(batch, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        batch.clear();
        outbox.push(Bytes::from_static(b"c")).unwrap();
        outbox.close(Some(Bytes::from_static(b"end")));
        assert_eq!(
            outbox.push(Bytes::from_static(b"d")),
            Err(PushError::Closed)
        );
        assert!(outbox.is_closed());
        assert!(outbox.next_batch(&mut batch).await);
        assert_eq!(
            batch,
            [Bytes::from_static(b"c"), Bytes::from_static(b"end")]
        );
        batch.clear();
        assert!(!outbox.next_batch(&mut batch).await);
    }

    #[tokio::test]
    async fn the_backlog_counts_queued_frames() {
        let backlog = Arc::new(Backlog::default());
        let shutdown = CancellationToken::new();
        let a = Outbox::with_backlog(8, backlog.clone(), &shutdown);
        let b = Outbox::with_backlog(8, backlog.clone(), &shutdown);
        a.push(Bytes::from_static(b"1")).unwrap();
        a.push(Bytes::from_static(b"2")).unwrap();
        b.push_unbounded(Bytes::from_static(b"3"));
        assert_eq!(backlog.frames(), 3);
        let mut batch = VecDeque::new();
        a.take_batch(&mut batch);
        assert_eq!(backlog.frames(), 1);
        backlog.drained().await; // The take left a notification.
        b.close(Some(Bytes::from_static(b"end")));
        assert_eq!(backlog.frames(), 2);
        drop(b);
        assert_eq!(backlog.frames(), 0);
    }

    #[tokio::test]
    async fn pending_frames_can_be_taken_back() {
        let outbox = Outbox::new(8);
        outbox.push(Bytes::from_static(b"a")).unwrap();
        outbox.push(Bytes::from_static(b"b")).unwrap();
        let pending = outbox.take_pending();
        assert_eq!(pending.len(), 2);
        assert_eq!(outbox.len(), 0);
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_writer() {
        let outbox = std::sync::Arc::new(Outbox::new(8));
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = VecDeque::new();
                outbox.next_batch(&mut batch).await;
                batch
            })
        };
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"x")).unwrap();
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch, [Bytes::from_static(b"x")]);
    }
}
