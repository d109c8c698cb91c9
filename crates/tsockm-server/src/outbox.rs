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
//!
//! The connection task waits on it through wakers kept under the same lock
//! (one for "something to write", one for "closed"), not a `Notify` or a
//! cancellation token: a waiting task then holds no waiter node, and an
//! outbox allocates nothing beyond itself. Every idle peer has one.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

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
    /// Woken when the queue stops being empty, or on close.
    writer: Option<Waker>,
    /// Woken on close.
    closer: Option<Waker>,
}

impl State {
    /// Remembers `cx`'s waker in `slot` (unless it is already there).
    fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
        match slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }
}

/// A bounded queue of frames for one connection's writer.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Most frames queued at once.
    capacity: usize,
    /// The server-wide count this outbox's frames are part of.
    backlog: Arc<Backlog>,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames, counted in a
    /// backlog of its own.
    pub fn new(capacity: usize) -> Self {
        Outbox::with_backlog(capacity, Arc::default())
    }

    /// An empty outbox holding at most `capacity` frames, counted in
    /// `backlog`.
    pub fn with_backlog(capacity: usize, backlog: Arc<Backlog>) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
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
        let writer = {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if state.queue.len() >= self.capacity {
                return Err(PushError::Full);
            }
            state.queue.push_back(frame);
            state.writer.take()
        };
        self.backlog.add(1);
        wake(writer);
        Ok(())
    }

    /// Queues frames in order under one lock. If the queue fills up (or is
    /// closed), the frames that did not fit are given back, in order.
    pub fn push_all<'a>(
        &self,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> Result<usize, Vec<Bytes>> {
        let mut frames = frames.peekable();
        let (n_pushed, writer, refused) = {
            let mut state = self.lock();
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
            let writer = if n_pushed > 0 {
                state.writer.take()
            } else {
                None
            };
            (n_pushed, writer, refused)
        };
        self.backlog.add(n_pushed);
        wake(writer);
        match refused {
            Some(refused) => Err(refused),
            None => Ok(n_pushed),
        }
    }

    /// Queues a frame past the capacity: for the roster and resume replays,
    /// which are bounded by the peer count and the kept bound instead.
    pub fn push_unbounded(&self, frame: Bytes) {
        let writer = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.queue.push_back(frame);
            state.writer.take()
        };
        self.backlog.add(1);
        wake(writer);
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
        let (writer, closer) = {
            let mut state = self.lock();
            if let Some(frame) = last {
                state.queue.push_back(frame);
                self.backlog.add(1);
            }
            state.closed = true;
            (state.writer.take(), state.closer.take())
        };
        wake(writer);
        wake(closer);
    }

    /// Whether [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Resolves once the outbox is closed.
    pub async fn closed(&self) {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.closed {
                return Poll::Ready(());
            }
            State::park(&mut state.closer, cx);
            Poll::Pending
        })
        .await;
    }

    /// Frames queued now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Waits until there is something to write (`true`), or the outbox is
    /// closed and drained (`false`).
    async fn wait_ready(&self) -> bool {
        poll_fn(|cx| {
            let mut state = self.lock();
            if !state.queue.is_empty() {
                return Poll::Ready(true);
            }
            if state.closed {
                return Poll::Ready(false);
            }
            State::park(&mut state.writer, cx);
            Poll::Pending
        })
        .await
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

/// Wakes a task taken out of the state, after the lock is released.
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
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
        let a = Outbox::with_backlog(8, backlog.clone());
        let b = Outbox::with_backlog(8, backlog.clone());
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

    #[tokio::test]
    async fn closing_wakes_both_the_writer_and_the_closed_waiter() {
        let outbox = Arc::new(Outbox::new(8));
        let spawn_waiter = |closed: bool| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                if closed {
                    outbox.closed().await;
                    true
                } else {
                    outbox.next_batch(&mut VecDeque::new()).await
                }
            })
        };
        let (closed, writer) = (spawn_waiter(true), spawn_waiter(false));
        tokio::task::yield_now().await;
        assert!(!closed.is_finished() && !writer.is_finished());
        outbox.close(None);
        let limit = std::time::Duration::from_secs(5);
        assert!(tokio::time::timeout(limit, closed).await.unwrap().unwrap());
        // Closed and empty: the writer is told there is nothing more.
        assert!(!tokio::time::timeout(limit, writer).await.unwrap().unwrap());
        assert!(outbox.is_closed());
    }
}
