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
use std::sync::Mutex;

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
}

impl Outbox {
    /// An empty outbox holding at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closing: CancellationToken::new(),
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
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
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
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Takes back every frame not yet handed to the writer, in order.
    pub fn take_pending(&self) -> VecDeque<Bytes> {
        std::mem::take(&mut self.lock().queue)
    }

    /// Closes the outbox: the writer sends what is queued (plus `last`, which
    /// goes past the capacity) and then the connection ends.
    pub fn close(&self, last: Option<Bytes>) {
        {
            let mut state = self.lock();
            if let Some(frame) = last {
                state.queue.push_back(frame);
            }
            state.closed = true;
        }
        self.ready.notify_one();
        self.closing.cancel();
    }

    /// Whether [`Outbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Resolves once the outbox is closed.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Waits until there is something to write, then swaps it into `batch`
    /// (which must be empty). Returns `false` once closed and drained.
    pub async fn next_batch(&self, batch: &mut VecDeque<Bytes>) -> bool {
        loop {
            {
                let mut state = self.lock();
                if !state.queue.is_empty() {
                    std::mem::swap(&mut state.queue, batch);
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.ready.notified().await;
        }
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
