//! [`Outbox`]: one connection's bounded queue of encoded frames, and
//! [`Backlog`], what all the queues hold together.
//!
//! The registry pushes shared `Bytes` (one encoding per broadcast, cloned per
//! recipient) without ever waiting; the connection's writer leases copies of
//! the handles of up to a batch of queued frames, writes them in as few
//! system calls as it can, and only then removes what was written.
//!
//! It is a small mutex-guarded deque rather than an mpsc channel because the
//! registry must be able to take back what the socket has not had,
//! synchronously, when a peer goes away or is taken over by a resume: those
//! frames then follow the peer, in order. The lock is held only to push a
//! frame, to lease or remove a batch, or to take the queue back; never
//! across an `.await` or a system call, and the only contenders are the
//! registry and this connection's writer.
//!
//! A queue is bounded in frames and in bytes. Its length and the time of its
//! writer's last progress are also kept in atomics, so that the registry can
//! tell, without a lock, which writers are behind and which have stalled.
//!
//! The connection task waits on it through wakers kept under the same lock
//! (one for "something to write", one for "closed"), not a `Notify` or a
//! cancellation token: a waiting task then holds no waiter node, and an
//! outbox allocates nothing beyond itself. Every idle peer has one.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Largest empty deque an outbox keeps once a burst is written.
const KEPT_QUEUE_CAPACITY: usize = 0;

/// How a relayed message starts: only those are remembered once written.
const RELAYED_MESSAGE: &[u8] = b"RES::MSG::";

/// Why a push did not queue the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds its maximum of frames or bytes: the peer is not
    /// reading.
    Full,
    /// The outbox was closed: the connection is ending.
    Closed,
}

/// What every outbox of the server holds together, so the registry can tell
/// when the writers as a whole are behind (and stop taking in more work),
/// and how many bytes wait for peers in all (queued here, or kept for away
/// peers, which the registry adds); and what the outboxes share besides:
/// the bounds of each, and the clock of their progress times.
#[derive(Debug)]
pub struct Backlog {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    /// Notified each time a writer takes frames out of its outbox.
    drained: Notify,
    /// Writers' progress times are milliseconds since this.
    epoch: Instant,
    /// What each outbox counted here may hold (one copy for all of them,
    /// not one per peer).
    bounds: Bounds,
}

impl Default for Backlog {
    /// A backlog whose outboxes hold at most 1,024 frames and 1 MiB each,
    /// remembering no written message.
    fn default() -> Self {
        Backlog::new(Bounds {
            frames: 1024,
            bytes: 1 << 20,
            remember: 0,
        })
    }
}

impl Backlog {
    /// An empty backlog whose outboxes each hold at most `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Backlog {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            drained: Notify::new(),
            epoch: Instant::now(),
            bounds: Bounds {
                frames: bounds.frames.max(1),
                ..bounds
            },
        }
    }

    /// Frames queued in all outboxes now.
    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }

    /// Bytes queued in all outboxes and kept for away peers now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resolves after some writer next takes frames out (or at once if one
    /// did since the last call).
    pub async fn drained(&self) {
        self.drained.notified().await;
    }

    /// Counts `n` bytes kept outside any outbox (frames kept for an away
    /// peer).
    pub fn add_kept(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Stops counting `n` kept bytes.
    pub fn sub_kept(&self, n: usize) {
        if n > 0 {
            self.bytes.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn add(&self, n_frames: usize, n_bytes: usize) {
        self.frames.fetch_add(n_frames, Ordering::Relaxed);
        self.bytes.fetch_add(n_bytes, Ordering::Relaxed);
    }

    fn sub(&self, n_frames: usize, n_bytes: usize) {
        if n_frames > 0 {
            self.frames.fetch_sub(n_frames, Ordering::Relaxed);
        }
        if n_bytes > 0 {
            self.bytes.fetch_sub(n_bytes, Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// How much one outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most frames queued at once.
    pub frames: usize,
    /// Most bytes queued at once.
    pub bytes: usize,
    /// Most written messages remembered (and at most `bytes` of them).
    pub remember: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Frames not yet written in full, oldest first. The writer works on
    /// copies of the handles and removes a frame only once it is written,
    /// so what is taken back (for a resume) is exactly what the socket has
    /// not had yet.
    queue: VecDeque<Bytes>,
    /// Bytes of the frames in `queue`.
    queued_bytes: usize,
    /// Bytes of the first frame already written to the socket.
    front_written: usize,
    closed: bool,
    /// The last relayed messages (MSG frames) written in full, oldest
    /// first, at most `remember` of them: sent again to a client that
    /// resumes naming the last message it received.
    written: VecDeque<Bytes>,
    /// Bytes of the frames in `written`.
    written_bytes: usize,
    /// Set when a push found the queue full: every later push is refused
    /// too until the queue is taken back, so frames refused to a peer that
    /// is about to be cut off cannot be overtaken by later ones that found
    /// room after its writer made progress.
    clogged: bool,
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

/// A bounded queue of frames for one connection's writer, shared by the
/// connection's task and the registry (which also reads from it when the
/// reader last saw a sign of life).
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Changes each time the queue is taken back, so a writer's report of
    /// progress on frames it no longer owns is recognised and ignored.
    /// Changed only under the state's lock; read without it by a writer
    /// about to write, which must not take the lock for that.
    epoch: AtomicU64,
    /// Frames queued now (a copy of the queue's length, read without the
    /// lock by the registry's congestion check).
    n_queued: AtomicUsize,
    /// When the writer last made progress, or the queue last stopped being
    /// empty, in the backlog's milliseconds.
    progress_ms: AtomicU64,
    /// When the connection's reader last saw a line end (a sign of life
    /// the registry's liveness sweep reads), in the backlog's
    /// milliseconds. Kept here because the outbox is already shared by the
    /// connection and the registry: no second allocation per peer for it.
    last_sign_ms: AtomicU64,
    /// The server-wide count this outbox's frames are part of, and the
    /// bounds of every outbox.
    backlog: Arc<Backlog>,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames (and 1 GiB),
    /// counted in a backlog of its own, remembering no written message.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        let bounds = Bounds {
            frames: capacity,
            bytes: 1 << 30,
            remember: 0,
        };
        Outbox::with_backlog(Arc::new(Backlog::new(bounds)))
    }

    /// An empty outbox with the backlog's bounds, counted in it.
    pub fn with_backlog(backlog: Arc<Backlog>) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            epoch: AtomicU64::new(0),
            n_queued: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(backlog.now_ms()),
            // The accept counts as a sign of life.
            last_sign_ms: AtomicU64::new(backlog.now_ms()),
            backlog,
        }
    }

    /// Records a sign of life from the connection's reader: a line ended.
    pub fn touch(&self) {
        self.last_sign_ms
            .store(self.backlog.now_ms(), Ordering::Relaxed);
    }

    /// When the reader last saw a sign of life (the accept counts as one).
    pub fn last_sign(&self) -> Instant {
        self.backlog.epoch + Duration::from_millis(self.last_sign_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the deque inconsistent,
        // so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `frame` fits now (the queue's bounds, not clogged).
    fn fits(&self, state: &State, frame: &Bytes) -> bool {
        !state.clogged
            && state.queue.len() < self.backlog.bounds.frames
            && state.queued_bytes + frame.len() <= self.backlog.bounds.bytes
    }

    /// Appends a frame to the queue (under the lock), counting it.
    fn append(&self, state: &mut State, frame: Bytes) {
        if state.queue.is_empty() {
            // A writer that had nothing to do is not behind until now.
            self.progress_ms
                .store(self.backlog.now_ms(), Ordering::Relaxed);
        }
        state.queued_bytes += frame.len();
        state.queue.push_back(frame);
        self.n_queued.store(state.queue.len(), Ordering::Relaxed);
    }

    /// Queues a frame, unless the queue is full or closed.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let len = frame.len();
        let writer = {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if !self.fits(&state, &frame) {
                state.clogged = true;
                return Err(PushError::Full);
            }
            self.append(&mut state, frame);
            state.writer.take()
        };
        self.backlog.add(1, len);
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
        let (n_pushed, n_bytes, writer, refused) = {
            let mut state = self.lock();
            let mut n_pushed = 0;
            let mut n_bytes = 0;
            let mut refused = None;
            while let Some(frame) = frames.peek() {
                if state.closed || !self.fits(&state, frame) {
                    state.clogged |= !state.closed;
                    refused = Some(frames.by_ref().cloned().collect::<Vec<_>>());
                    break;
                }
                n_bytes += frame.len();
                self.append(&mut state, (*frame).clone());
                n_pushed += 1;
                frames.next();
            }
            let writer = if n_pushed > 0 {
                state.writer.take()
            } else {
                None
            };
            (n_pushed, n_bytes, writer, refused)
        };
        self.backlog.add(n_pushed, n_bytes);
        wake(writer);
        match refused {
            Some(refused) => Err(refused),
            None => Ok(n_pushed),
        }
    }

    /// Queues a frame past the bounds: for the roster and resume replays,
    /// which are bounded by the peer count and the kept bound instead.
    pub fn push_unbounded(&self, frame: Bytes) {
        let len = frame.len();
        let writer = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            self.append(&mut state, frame);
            state.writer.take()
        };
        self.backlog.add(1, len);
        wake(writer);
    }

    /// Takes back every frame not yet written in full, in order (a frame
    /// the writer is part-way through is given back whole: its start went
    /// to a socket that is being abandoned).
    pub fn take_pending(&self) -> VecDeque<Bytes> {
        let (pending, n_bytes) = {
            let mut state = self.lock();
            state.front_written = 0;
            state.clogged = false;
            self.epoch.fetch_add(1, Ordering::Release);
            self.n_queued.store(0, Ordering::Relaxed);
            let n_bytes = std::mem::take(&mut state.queued_bytes);
            (std::mem::take(&mut state.queue), n_bytes)
        };
        self.backlog.sub(pending.len(), n_bytes);
        pending
    }

    /// Closes the outbox: the writer sends what is queued (plus `last`, which
    /// goes past the bounds) and then the connection ends.
    pub fn close(&self, last: Option<Bytes>) {
        let (writer, closer) = {
            let mut state = self.lock();
            if let Some(frame) = last {
                let len = frame.len();
                self.append(&mut state, frame);
                self.backlog.add(1, len);
            }
            state.closed = true;
            (state.writer.take(), state.closer.take())
        };
        wake(writer);
        wake(closer);
    }

    /// Takes the remembered messages written so far, oldest first.
    pub fn take_written(&self) -> VecDeque<Bytes> {
        let mut state = self.lock();
        state.written_bytes = 0;
        std::mem::take(&mut state.written)
    }

    /// Copies of the remembered messages written so far and of the
    /// messages still queued, oldest first (what a client that did not
    /// read them may ask for again).
    pub fn remembered_and_queued(&self) -> Vec<Bytes> {
        let state = self.lock();
        state
            .written
            .iter()
            .chain(
                state
                    .queue
                    .iter()
                    .filter(|f| f.starts_with(RELAYED_MESSAGE)),
            )
            .cloned()
            .collect()
    }

    /// Whether [`Outbox::close`] was called.
    #[cfg(test)]
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
    pub fn len(&self) -> usize {
        self.n_queued.load(Ordering::Relaxed)
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().queued_bytes
    }

    /// Whether less than half of either bound is used: the peer keeps up
    /// with what it is sent.
    pub fn keeps_up(&self) -> bool {
        let state = self.lock();
        state.queued_bytes <= self.backlog.bounds.bytes / 2
            && state.queue.len() <= self.backlog.bounds.frames / 2
    }

    /// Whether frames wait here while the writer has made no progress for
    /// `after`: the peer stopped reading (or its network did). Its queue
    /// then says nothing about how the other writers keep up.
    pub fn stalled(&self, after: Duration) -> bool {
        if self.len() == 0 {
            return false;
        }
        let since = self.progress_ms.load(Ordering::Relaxed);
        let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.backlog.now_ms().saturating_sub(since) >= after_ms
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

    /// Copies the handles of up to `max` of the oldest frames into `batch`
    /// (which must be empty); the frames stay queued until
    /// [`Outbox::written`] reports them.
    fn lease(&self, batch: &mut Vec<Bytes>, max: usize) -> Lease {
        let state = self.lock();
        batch.extend(state.queue.iter().take(max).cloned());
        Lease {
            epoch: self.epoch.load(Ordering::Relaxed),
            offset: state.front_written,
        }
    }

    /// Waits until there is something to write, then copies up to `max` of
    /// the oldest frames' handles into `batch` (which must be empty). Gives
    /// `None` once closed and drained.
    pub async fn next_batch(&self, batch: &mut Vec<Bytes>, max: usize) -> Option<Lease> {
        if self.wait_ready().await {
            // Woken by a push: let the other tasks run once first, the
            // registry among them, so that what it is queueing now goes in
            // this batch (at light load a frame per write otherwise).
            tokio::task::yield_now().await;
            Some(self.lease(batch, max))
        } else {
            None
        }
    }

    /// Whether `lease`'s frames are still this outbox's to write (they were
    /// not taken back since).
    pub fn holds(&self, lease: &Lease) -> bool {
        self.epoch.load(Ordering::Acquire) == lease.epoch
    }

    /// Reports that the first `n_frames` frames of `lease`'s batch are now
    /// written in full, and `offset` bytes of the next one. Returns `false`
    /// (and changes nothing) if the queue was taken back since the lease:
    /// the rest of the batch is no longer this writer's to write.
    pub fn written(&self, lease: &Lease, n_frames: usize, offset: usize) -> bool {
        if n_frames > 0 || offset > 0 {
            self.progress_ms
                .store(self.backlog.now_ms(), Ordering::Relaxed);
        }
        let n_bytes = {
            let mut state = self.lock();
            if self.epoch.load(Ordering::Relaxed) != lease.epoch {
                return false;
            }
            let n_frames = n_frames.min(state.queue.len());
            let State {
                queue,
                queued_bytes,
                written,
                written_bytes,
                ..
            } = &mut *state;
            let mut n_bytes = 0;
            for frame in queue.drain(..n_frames) {
                n_bytes += frame.len();
                if self.backlog.bounds.remember > 0 && frame.starts_with(RELAYED_MESSAGE) {
                    *written_bytes += frame.len();
                    written.push_back(frame);
                    while written.len() > self.backlog.bounds.remember
                        || *written_bytes > self.backlog.bounds.bytes
                    {
                        match written.pop_front() {
                            Some(old) => *written_bytes -= old.len(),
                            None => break,
                        }
                    }
                }
            }
            *queued_bytes -= n_bytes;
            state.front_written = offset;
            if state.queue.is_empty() && state.queue.capacity() > KEPT_QUEUE_CAPACITY {
                // A burst grew the deque: do not keep it for an idle peer.
                state.queue = VecDeque::new();
            }
            self.n_queued.store(state.queue.len(), Ordering::Relaxed);
            self.backlog.sub(n_frames, n_bytes);
            n_bytes
        };
        if n_bytes > 0 {
            self.backlog.drained.notify_one();
        }
        true
    }
}

/// What a writer was given by [`Outbox::next_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    epoch: u64,
    /// Bytes of the first frame already written.
    pub offset: usize,
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
        let state = self.lock();
        self.backlog.sub(state.queue.len(), state.queued_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Leases up to `max` frames and reports them all written.
    async fn write_all(outbox: &Outbox, max: usize) -> Option<Vec<Bytes>> {
        let mut batch = Vec::new();
        let lease = outbox.next_batch(&mut batch, max).await?;
        assert!(outbox.written(&lease, batch.len(), 0));
        Some(batch)
    }

    #[tokio::test]
    async fn bounded_ordered_and_closable() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(b("a")), Ok(()));
        assert_eq!(outbox.push(b("b")), Ok(()));
        assert_eq!(outbox.push(b("c")), Err(PushError::Full));
        assert_eq!(write_all(&outbox, 8).await, Some(vec![b("a"), b("b")]));
        // Taken back (the peer is cut off), it takes frames again.
        assert!(outbox.take_pending().is_empty());
        outbox.push(b("c")).unwrap();
        outbox.close(Some(b("end")));
        assert_eq!(outbox.push(b("d")), Err(PushError::Closed));
        assert!(outbox.is_closed());
        assert_eq!(write_all(&outbox, 8).await, Some(vec![b("c"), b("end")]));
        assert_eq!(write_all(&outbox, 8).await, None);
    }

    #[tokio::test]
    async fn once_full_it_refuses_until_taken_back() {
        let outbox = Outbox::new(2);
        outbox.push(b("a")).unwrap();
        outbox.push(b("b")).unwrap();
        assert_eq!(outbox.push(b("c")), Err(PushError::Full));
        // The writer makes room, but the refused frame must not be
        // overtaken: later pushes are refused as well.
        assert_eq!(write_all(&outbox, 1).await, Some(vec![b("a")]));
        assert_eq!(outbox.push(b("d")), Err(PushError::Full));
        assert_eq!(outbox.push_all([b("e")].iter()), Err(vec![b("e")]));
        assert_eq!(outbox.take_pending(), [b("b")]);
        assert_eq!(outbox.push(b("f")), Ok(()));
    }

    #[tokio::test]
    async fn the_last_messages_written_are_remembered() {
        let bounds = Bounds {
            frames: 8,
            bytes: 1 << 20,
            remember: 2,
        };
        let outbox = Outbox::with_backlog(Arc::new(Backlog::new(bounds)));
        for frame in [
            "RES::MSG::1\n",
            "RES::NTFY_JOIN::x\n",
            "RES::MSG::2\n",
            "RES::MSG::3\n",
        ] {
            outbox.push(b(frame)).unwrap();
        }
        // Nothing is remembered before it is written.
        assert!(outbox.take_written().is_empty());
        write_all(&outbox, 8).await;
        assert_eq!(
            outbox.take_written(),
            [b("RES::MSG::2\n"), b("RES::MSG::3\n")]
        );
        assert!(outbox.take_written().is_empty());
    }

    #[tokio::test]
    async fn frames_stay_queued_until_written() {
        let outbox = Outbox::new(8);
        for frame in ["one", "two", "three"] {
            outbox.push(b(frame)).unwrap();
        }
        let mut batch = Vec::new();
        let lease = outbox.next_batch(&mut batch, 2).await.unwrap();
        assert_eq!(batch, [b("one"), b("two")]);
        assert_eq!(lease.offset, 0);
        // "one" written, two bytes of "two".
        assert!(outbox.written(&lease, 1, 2));
        assert_eq!(outbox.len(), 2);
        batch.clear();
        let lease = outbox.next_batch(&mut batch, 8).await.unwrap();
        assert_eq!(batch, [b("two"), b("three")]);
        assert_eq!(lease.offset, 2);
        // Taken back meanwhile: the part-written frame comes back whole, and
        // the writer's later report changes nothing.
        let pending = outbox.take_pending();
        assert_eq!(pending, [b("two"), b("three")]);
        assert!(!outbox.written(&lease, 2, 0));
        outbox.close(Some(b("end")));
        assert_eq!(write_all(&outbox, 8).await, Some(vec![b("end")]));
    }

    #[tokio::test]
    async fn the_backlog_counts_queued_frames() {
        let backlog = Arc::new(Backlog::new(Bounds {
            frames: 8,
            bytes: 1 << 20,
            remember: 0,
        }));
        let a = Outbox::with_backlog(backlog.clone());
        let b_ = Outbox::with_backlog(backlog.clone());
        a.push(b("1")).unwrap();
        a.push(b("2")).unwrap();
        b_.push_unbounded(b("3"));
        assert_eq!(backlog.frames(), 3);
        // Leased frames still count until they are written.
        let mut batch = Vec::new();
        let lease = a.next_batch(&mut batch, 8).await.unwrap();
        assert_eq!(backlog.frames(), 3);
        assert!(a.written(&lease, 2, 0));
        assert_eq!(backlog.frames(), 1);
        backlog.drained().await; // The write left a notification.
        b_.close(Some(b("end")));
        assert_eq!(backlog.frames(), 2);
        drop(b_);
        assert_eq!(backlog.frames(), 0);
    }

    #[tokio::test]
    async fn bounded_in_bytes_too_and_the_backlog_counts_them() {
        let backlog = Arc::new(Backlog::new(Bounds {
            frames: 100,
            bytes: 10,
            remember: 0,
        }));
        let outbox = Outbox::with_backlog(backlog.clone());
        outbox.push(b("12345")).unwrap();
        outbox.push(b("6789")).unwrap();
        assert_eq!(outbox.push(b("ab")), Err(PushError::Full));
        assert_eq!((backlog.frames(), backlog.bytes()), (2, 9));
        assert_eq!(outbox.queued_bytes(), 9);
        assert_eq!(outbox.take_pending().len(), 2);
        assert_eq!((backlog.frames(), backlog.bytes()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_without_progress_is_stalled() {
        let outbox = Outbox::new(8);
        let after = Duration::from_millis(50);
        assert!(!outbox.stalled(after), "empty");
        outbox.push(b("x")).unwrap();
        assert!(!outbox.stalled(after), "just queued");
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(outbox.stalled(after));
        write_all(&outbox, 8).await;
        assert!(!outbox.stalled(after), "written");
    }

    #[tokio::test]
    async fn pending_frames_can_be_taken_back() {
        let outbox = Outbox::new(8);
        outbox.push(b("a")).unwrap();
        outbox.push(b("b")).unwrap();
        let pending = outbox.take_pending();
        assert_eq!(pending.len(), 2);
        assert_eq!(outbox.len(), 0);
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_writer() {
        let outbox = Arc::new(Outbox::new(8));
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { write_all(&outbox, 8).await })
        };
        tokio::task::yield_now().await;
        outbox.push(b("x")).unwrap();
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch, Some(vec![b("x")]));
    }

    #[tokio::test]
    async fn closing_wakes_both_the_writer_and_the_closed_waiter() {
        let outbox = Arc::new(Outbox::new(8));
        let closed = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.closed().await })
        };
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move { write_all(&outbox, 8).await })
        };
        tokio::task::yield_now().await;
        assert!(!closed.is_finished() && !writer.is_finished());
        outbox.close(None);
        let limit = std::time::Duration::from_secs(5);
        tokio::time::timeout(limit, closed).await.unwrap().unwrap();
        // Closed and empty: the writer is told there is nothing more.
        assert_eq!(
            tokio::time::timeout(limit, writer).await.unwrap().unwrap(),
            None
        );
        assert!(outbox.is_closed());
    }
}
