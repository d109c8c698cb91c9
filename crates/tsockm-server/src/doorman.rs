//! [`Doorman`]: the limits on connections checked at accept, so that one
//! address cannot hold the sign-up door shut: connections not registered
//! yet (in all, and per address) and, if the operator asks, all of an
//! address's connections. Also [`Slots`]: the place every connection's task
//! holds until it ends, which the accept loop waits for.
//!
//! The accept loop asks for a [`Ticket`] before serving a connection; the
//! registry marks it registered when the peer registers or resumes; the
//! ticket gives its places back when the last holder drops it. The counts
//! live under one mutex, held only to change them (never across an await).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// The limits a [`Doorman`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorLimits {
    /// Connections not registered yet, in all.
    pub unregistered: usize,
    /// Connections not registered yet, per address.
    pub unregistered_per_ip: usize,
    /// Connections per address (0: no cap).
    pub conns_per_ip: usize,
}

/// Why a connection was turned away; the text is the 503's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Turned {
    /// Too many connections have not registered yet.
    #[error("too many connections are registering right now: try again in a few seconds")]
    Unregistered,
    /// Too many connections from this address have not registered yet.
    #[error(
        "too many connections from your address are registering right now: finish or close one"
    )]
    UnregisteredFromAddress,
    /// Too many connections from this address.
    #[error("too many connections from your address")]
    FromAddress,
}

#[derive(Debug, Default)]
struct Counts {
    unregistered: usize,
    per_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerIp {
    conns: usize,
    unregistered: usize,
}

/// Counts connections per address against the limits.
#[derive(Debug)]
pub struct Doorman {
    limits: DoorLimits,
    counts: Mutex<Counts>,
}

/// One admitted connection's places; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    doorman: Arc<Doorman>,
    ip: IpAddr,
    registered: AtomicBool,
}

impl Doorman {
    /// A doorman keeping `limits`.
    pub fn new(limits: DoorLimits) -> Arc<Doorman> {
        Arc::new(Doorman {
            limits,
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts are plain numbers: still usable after a panic.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a connection from `addr` in, or says why not.
    pub fn admit(self: &Arc<Self>, addr: SocketAddr) -> Result<Ticket, Turned> {
        let ip = canonical(addr.ip());
        let mut counts = self.lock();
        let here = counts.per_ip.get(&ip).copied().unwrap_or_default();
        if counts.unregistered >= self.limits.unregistered {
            return Err(Turned::Unregistered);
        }
        if here.unregistered >= self.limits.unregistered_per_ip {
            return Err(Turned::UnregisteredFromAddress);
        }
        if self.limits.conns_per_ip != 0 && here.conns >= self.limits.conns_per_ip {
            return Err(Turned::FromAddress);
        }
        counts.unregistered += 1;
        let entry = counts.per_ip.entry(ip).or_default();
        entry.conns += 1;
        entry.unregistered += 1;
        Ok(Ticket {
            doorman: self.clone(),
            ip,
            registered: AtomicBool::new(false),
        })
    }

    /// Connections not registered yet, in all.
    #[cfg(test)]
    pub fn n_unregistered(&self) -> usize {
        self.lock().unregistered
    }
}

impl Ticket {
    /// The connection registered (or resumed): it no longer counts as
    /// registering.
    pub fn registered(&self) {
        if self.registered.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut counts = self.doorman.lock();
        counts.unregistered = counts.unregistered.saturating_sub(1);
        if let Some(here) = counts.per_ip.get_mut(&self.ip) {
            here.unregistered = here.unregistered.saturating_sub(1);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let registered = self.registered.load(Ordering::Relaxed);
        let mut counts = self.doorman.lock();
        if !registered {
            counts.unregistered = counts.unregistered.saturating_sub(1);
        }
        if let Some(here) = counts.per_ip.get_mut(&self.ip) {
            here.conns = here.conns.saturating_sub(1);
            if !registered {
                here.unregistered = here.unregistered.saturating_sub(1);
            }
            if here.conns == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The places of connections: one per connection's task, from accept until
/// the task ends with its socket closed.
#[derive(Debug)]
pub struct Slots {
    semaphore: Semaphore,
    /// Places taken by accepted connections (not the one the accept loop
    /// holds while it waits for the next connection).
    taken: AtomicUsize,
}

/// One connection's place, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
}

impl Slots {
    /// `capacity` places.
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            semaphore: Semaphore::new(capacity),
            taken: AtomicUsize::new(0),
        })
    }

    /// Waits for a free place; fails only if the slots were closed.
    pub async fn free(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.semaphore.acquire().await
    }

    /// Gives the free place `permit` to a connection just accepted.
    pub fn take(self: &Arc<Self>, permit: SemaphorePermit<'_>) -> Slot {
        permit.forget();
        self.taken.fetch_add(1, Ordering::Relaxed);
        Slot {
            slots: self.clone(),
        }
    }

    /// Connections whose task has not ended.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.taken.fetch_sub(1, Ordering::Relaxed);
        self.slots.semaphore.add_permits(1);
    }
}

/// An IPv4-mapped IPv6 address counts as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 5000))
    }

    #[tokio::test]
    async fn slots_count_the_places_taken() {
        let slots = Slots::new(2);
        let waiting = slots.free().await.unwrap();
        assert_eq!(slots.taken(), 0, "a place waited for is not taken");
        let first = slots.take(waiting);
        let second = slots.take(slots.free().await.unwrap());
        assert_eq!(slots.taken(), 2);
        assert!(slots.semaphore.try_acquire().is_err(), "no place is left");
        drop(first);
        assert_eq!(slots.taken(), 1);
        drop(slots.free().await.unwrap());
        drop(second);
        assert_eq!(slots.taken(), 0);
        assert_eq!(slots.semaphore.available_permits(), 2);
    }

    #[test]
    fn per_address_and_total_limits() {
        let doorman = Doorman::new(DoorLimits {
            unregistered: 3,
            unregistered_per_ip: 2,
            conns_per_ip: 0,
        });
        let a1 = doorman.admit(at([127, 0, 0, 2])).unwrap();
        let a2 = doorman.admit(at([127, 0, 0, 2])).unwrap();
        assert_eq!(
            doorman.admit(at([127, 0, 0, 2])).unwrap_err(),
            Turned::UnregisteredFromAddress
        );
        let b1 = doorman.admit(at([127, 0, 0, 3])).unwrap();
        assert_eq!(
            doorman.admit(at([127, 0, 0, 4])).unwrap_err(),
            Turned::Unregistered
        );
        // Registering frees a place for the address and in all.
        a1.registered();
        a1.registered();
        assert_eq!(doorman.n_unregistered(), 2);
        let a3 = doorman.admit(at([127, 0, 0, 2])).unwrap();
        drop((a2, b1, a3));
        assert_eq!(doorman.n_unregistered(), 0);
        drop(a1);
        assert!(doorman.lock().per_ip.is_empty());
    }

    #[test]
    fn an_optional_cap_on_all_of_an_addresss_connections() {
        let doorman = Doorman::new(DoorLimits {
            unregistered: 100,
            unregistered_per_ip: 100,
            conns_per_ip: 2,
        });
        let a = doorman.admit(at([127, 0, 0, 2])).unwrap();
        a.registered();
        let _b = doorman.admit(at([127, 0, 0, 2])).unwrap();
        assert_eq!(
            doorman.admit(at([127, 0, 0, 2])).unwrap_err(),
            Turned::FromAddress
        );
        let mapped =
            SocketAddr::from(("::ffff:127.0.0.2".parse::<std::net::Ipv6Addr>().unwrap(), 1));
        assert_eq!(doorman.admit(mapped).unwrap_err(), Turned::FromAddress);
        drop(a);
        assert!(doorman.admit(at([127, 0, 0, 2])).is_ok());
    }
}
