//! [`Tally`]: which message of which author each client has received.
//!
//! Clients are split into groups of consecutive indices (the rooms of the
//! room workload; one group of everybody for fan-out), and every client should
//! receive every message of the other members of its group and nothing else.
//! One bit per (recipient, author in the same group, sequence number) finds
//! duplicates and, at the end, what is missing; the highest sequence seen per
//! (recipient, author) finds messages that overtook an earlier one; a message
//! from an author of another group is counted as strayed. This file does no
//! I/O.

use crate::error::BenchError;

/// Largest table accepted, in bits (512 MiB).
const MAX_TABLE_BITS: u128 = 1 << 32;

/// Completeness bookkeeping for `clients` clients sending `messages` each
/// to the other members of their group of `group` clients.
#[derive(Debug)]
pub struct Tally {
    clients: usize,
    messages: usize,
    /// Members per group: client `i` is in group `i / group`.
    group: usize,
    /// Bit `(recipient * group + author % group) * messages + seq`.
    seen: Vec<u64>,
    /// Highest `seq + 1` seen per `(recipient, author % group)`; 0 for none.
    high: Vec<u32>,
    /// Distinct messages received from other clients.
    pub distinct: u64,
    /// Messages received twice or more.
    pub duplicated: u64,
    /// Messages that arrived after a later one of the same author.
    pub out_of_order: u64,
    /// A client's own messages sent back to it.
    pub echoed: u64,
    /// Bodies that were not ours, or named an unknown author or sequence.
    pub foreign: u64,
    /// Messages from an author of another group (another room's message).
    pub strayed: u64,
}

/// What one received message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First receipt of a message from another client.
    New,
    /// Anything else: duplicate, echo or foreign.
    NotNew,
}

impl Tally {
    /// An empty tally for groups of `group` clients (`clients` itself for
    /// one group of everybody; the last group may be smaller); fails if the
    /// table would be unreasonably large.
    pub fn new(clients: usize, messages: usize, group: usize) -> Result<Tally, BenchError> {
        let group = group.clamp(1, clients.max(1));
        let bits = (clients as u128) * (group as u128) * (messages as u128);
        if bits > MAX_TABLE_BITS {
            return Err(BenchError::TooLarge {
                clients,
                messages,
                bits,
            });
        }
        let words = usize::try_from(bits.div_ceil(64)).unwrap_or(usize::MAX);
        Ok(Tally {
            clients,
            messages,
            group,
            seen: vec![0; words],
            high: vec![0; if messages == 0 { 0 } else { clients * group }],
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            echoed: 0,
            foreign: 0,
            strayed: 0,
        })
    }

    /// Records that `recipient` received message `seq` of `author`.
    pub fn record(&mut self, recipient: usize, author: u32, seq: u32) -> Receipt {
        let (author, seq) = (author as usize, seq as usize);
        if author >= self.clients || seq >= self.messages || recipient >= self.clients {
            self.foreign += 1;
            return Receipt::NotNew;
        }
        if author == recipient {
            self.echoed += 1;
            return Receipt::NotNew;
        }
        if author / self.group != recipient / self.group {
            self.strayed += 1;
            return Receipt::NotNew;
        }
        let pair = recipient * self.group + author % self.group;
        let bit = pair * self.messages + seq;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let receipt = if self.seen[word] & mask != 0 {
            self.duplicated += 1;
            Receipt::NotNew
        } else {
            self.seen[word] |= mask;
            self.distinct += 1;
            Receipt::New
        };
        let next = seq as u32 + 1;
        if next < self.high[pair] {
            self.out_of_order += 1;
        } else {
            self.high[pair] = next;
        }
        receipt
    }

    /// Deliveries expected in all: every client gets the messages of every
    /// other member of its group.
    pub fn expected(&self) -> u64 {
        let full = self.clients / self.group;
        let rest = self.clients % self.group;
        let pairs = |n: usize| (n as u64) * (n.saturating_sub(1) as u64);
        (full as u64 * pairs(self.group) + pairs(rest)) * self.messages as u64
    }

    /// Members of `client`'s group, itself included.
    pub fn group_size(&self, client: usize) -> usize {
        let first = client / self.group * self.group;
        self.clients.saturating_sub(first).min(self.group)
    }

    /// Expected deliveries that never arrived.
    pub fn missing(&self) -> u64 {
        self.expected().saturating_sub(self.distinct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_of_fault() {
        let mut t = Tally::new(3, 4, 3).expect("small");
        assert_eq!(t.expected(), 24);
        assert_eq!(t.record(0, 1, 0), Receipt::New);
        assert_eq!(t.record(0, 1, 2), Receipt::New);
        assert_eq!(t.record(0, 1, 1), Receipt::New); // overtaken by 2
        assert_eq!(t.record(0, 1, 1), Receipt::NotNew); // duplicate, and late
        assert_eq!(t.record(0, 0, 0), Receipt::NotNew); // echo
        assert_eq!(t.record(0, 7, 0), Receipt::NotNew); // unknown author
        assert_eq!(t.record(0, 1, 4), Receipt::NotNew); // unknown seq
        assert_eq!(t.record(2, 1, 0), Receipt::New); // other recipient
        assert_eq!(t.distinct, 4);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.out_of_order, 2);
        assert_eq!(t.echoed, 1);
        assert_eq!(t.foreign, 2);
        assert_eq!(t.missing(), 20);
    }

    #[test]
    fn groups_keep_to_themselves() {
        // Rooms {0, 1, 2}, {3, 4, 5} and {6}; two messages each.
        let mut t = Tally::new(7, 2, 3).expect("small");
        assert_eq!(t.expected(), (6 + 6) * 2);
        assert_eq!(
            (t.group_size(0), t.group_size(5), t.group_size(6)),
            (3, 3, 1)
        );
        assert_eq!(t.record(4, 3, 0), Receipt::New);
        assert_eq!(t.record(4, 5, 1), Receipt::New);
        assert_eq!(t.record(4, 2, 0), Receipt::NotNew); // another room
        assert_eq!(t.record(6, 0, 0), Receipt::NotNew); // another room
        assert_eq!(t.record(4, 5, 0), Receipt::New); // overtaken by 1
        assert_eq!((t.distinct, t.strayed, t.out_of_order), (3, 2, 1));
        assert_eq!(t.missing(), 24 - 3);
    }

    #[test]
    fn idle_runs_need_no_table() {
        let t = Tally::new(10_000, 0, 10_000).expect("no messages");
        assert_eq!(t.expected(), 0);
        assert!(Tally::new(100_000, 1_000, 100_000).is_err());
        // The same clients in rooms of ten need a small table.
        assert!(Tally::new(100_000, 20, 10).is_ok());
    }
}
