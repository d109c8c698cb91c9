//! The registry's channel: the [`Command`]s connection tasks and the
//! console send it, and the [`RegistryHandle`] they send them with.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tsockm_proto::{Frame, FrameError};

use super::ConnId;
use super::console::{ConsoleReply, ConsoleRequest};
use crate::doorman::Ticket;
use crate::outbox::Outbox;

/// A connection just accepted, as announced to the registry.
///
/// Dropped without being taken in (the registry stopped with it still in
/// its queue), it closes the outbox: that ends the connection's task, which
/// has no other way to learn that nobody will serve it.
#[derive(Debug)]
pub struct NewConnection {
    /// Its id.
    pub conn: ConnId,
    /// The client's address.
    pub addr: SocketAddr,
    /// Where the registry queues frames for it, and where its reader
    /// records signs of life.
    pub outbox: Arc<Outbox>,
    /// When it was accepted (the handshake timeout counts from here).
    pub accepted_at: Instant,
    /// Its places at the door, marked registered when it registers.
    pub ticket: Ticket,
    /// Closes the outbox unless the registry took the connection in.
    unclaimed: Unclaimed,
}

impl NewConnection {
    /// Announces a connection.
    pub fn new(
        conn: ConnId,
        addr: SocketAddr,
        outbox: Arc<Outbox>,
        accepted_at: Instant,
        ticket: Ticket,
    ) -> Self {
        NewConnection {
            conn,
            addr,
            unclaimed: Unclaimed(Some(outbox.clone())),
            outbox,
            accepted_at,
            ticket,
        }
    }

    /// Takes the connection in: from now on the registry closes its
    /// outbox. Gives the outbox and the ticket.
    pub(super) fn take_in(self) -> (Arc<Outbox>, Ticket) {
        let NewConnection {
            outbox,
            ticket,
            mut unclaimed,
            ..
        } = self;
        unclaimed.0 = None;
        (outbox, ticket)
    }
}

/// An outbox closed when this is dropped, unless taken out first.
#[derive(Debug)]
struct Unclaimed(Option<Arc<Outbox>>);

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(outbox) = &self.0 {
            outbox.close(None);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doorman::{DoorLimits, Doorman};

    fn announce() -> (NewConnection, Arc<Outbox>) {
        let doorman = Doorman::new(DoorLimits {
            unregistered: 10,
            unregistered_per_ip: 10,
            conns_per_ip: 0,
        });
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        let ticket = doorman.admit(addr).expect("room at the door");
        let outbox = Arc::new(Outbox::new(8));
        let new = NewConnection::new(1, addr, outbox.clone(), Instant::now(), ticket);
        (new, outbox)
    }

    #[test]
    fn a_connection_never_taken_in_is_closed_when_dropped() {
        let (new, outbox) = announce();
        assert!(!outbox.is_closed());
        drop(new);
        assert!(outbox.is_closed());
    }

    #[test]
    fn a_connection_taken_in_stays_open() {
        let (new, outbox) = announce();
        let (taken, _ticket) = new.take_in();
        assert!(Arc::ptr_eq(&taken, &outbox));
        assert!(!outbox.is_closed());
    }

    #[tokio::test]
    async fn announcements_left_in_a_dropped_queue_close_their_outboxes() {
        let (tx, rx) = mpsc::channel(4);
        let handle = RegistryHandle { tx };
        let (new, outbox) = announce();
        handle.send(Command::Connect(new)).await.expect("queued");
        // The registry stops without reading its queue.
        drop(rx);
        assert!(outbox.is_closed());
    }
}
