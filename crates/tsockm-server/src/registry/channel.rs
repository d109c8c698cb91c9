//! The registry's channel: the [`Command`]s connection tasks and the
//! console send it, the [`RegistryHandle`] they send them with, and the
//! [`Activity`] a connection's reader records without a message per line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tsockm_proto::{Frame, FrameError};

use super::ConnId;
use super::console::{ConsoleReply, ConsoleRequest};
use crate::doorman::Ticket;
use crate::outbox::Outbox;

/// The last sign of life of a connection: the last line read from it to its
/// end (a frame, a blank, a malformed or over-long line).
///
/// Written by the connection's reader after each read that ended a line,
/// read by the registry's liveness sweep, so it is an atomic rather than a
/// message per line.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records a sign of life now.
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis();
        self.last_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the last sign of life was seen (the accept counts as one).
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// A connection just accepted, as announced to the registry.
#[derive(Debug)]
pub struct NewConnection {
    /// Its id.
    pub conn: ConnId,
    /// The client's address.
    pub addr: SocketAddr,
    /// Where the registry queues frames for it.
    pub outbox: Arc<Outbox>,
    /// Its last sign of life.
    pub activity: Arc<Activity>,
    /// When it was accepted (the handshake timeout counts from here).
    pub accepted_at: Instant,
    /// Its places at the door, marked registered when it registers.
    pub ticket: Arc<Ticket>,
}

/// What the registry is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A connection was accepted.
    Connect(NewConnection),
    /// A connection's reader decoded a line (or failed to).
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame, or what was wrong with the line.
        item: Result<Frame, FrameError>,
    },
    /// A connection ended: EOF, a read or write error, or it was closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// Whether it ended in an orderly EOF: the peer sends nothing more
        /// but may still be reading, so what is queued for it is written.
        input_ended: bool,
    },
    /// An operator command from the console.
    Console {
        /// The command.
        request: ConsoleRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ConsoleReply>,
    },
}

/// A cloneable handle to send the registry commands.
#[derive(Debug, Clone)]
pub struct RegistryHandle {
    pub(super) tx: mpsc::Sender<Command>,
}

/// The registry has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the registry has stopped")]
pub struct RegistryClosed;

impl RegistryHandle {
    /// Queues a command, waiting while the registry's queue is full.
    pub async fn send(&self, command: Command) -> Result<(), RegistryClosed> {
        // `reserve` first: the command is not held across the wait, which
        // keeps every connection task's future small.
        self.reserve().await?.send(command);
        Ok(())
    }

    /// Waits for a place in the registry's queue, to fill without waiting.
    ///
    /// The waiting future is large (a semaphore waiter) and is only needed
    /// when the queue is full, so it lives on the heap for as long as the
    /// wait lasts instead of in every connection task.
    pub async fn reserve(&self) -> Result<mpsc::Permit<'_, Command>, RegistryClosed> {
        match self.tx.try_reserve() {
            Ok(permit) => Ok(permit),
            Err(mpsc::error::TrySendError::Full(())) => Box::pin(self.tx.reserve())
                .await
                .map_err(|_| RegistryClosed),
            Err(mpsc::error::TrySendError::Closed(())) => Err(RegistryClosed),
        }
    }

    /// Asks a console question and waits for the answer.
    pub async fn console(&self, request: ConsoleRequest) -> Result<ConsoleReply, RegistryClosed> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Console { request, reply }).await?;
        answer.await.map_err(|_| RegistryClosed)
    }
}
