//! `--store memory`: every conversation's latest messages in a bounded
//! deque, lost at exit.
//!
//! Sessions are kept in memory too, so saving and taking them behaves as
//! with SQLite within one process, but [`Store::is_persistent`] is false:
//! a server has no reason to save them, as nothing outlives it. This store
//! never fails.

use std::collections::{HashMap, VecDeque};

use super::{
    Conversation, HistoryError, Page, Query, SavedSessions, Seq, Store, StoreError, StoredMessage,
};

/// Messages, settings and sessions held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    /// Messages kept per conversation.
    history_max: usize,
    /// Each conversation's latest messages, oldest first, seqs increasing.
    conversations: HashMap<Conversation, VecDeque<StoredMessage>>,
    /// The largest seq ever appended.
    max_seq: Seq,
    /// Small settings.
    meta: HashMap<String, String>,
    /// Sessions saved and not yet taken.
    sessions: Option<SavedSessions>,
}

impl MemoryStore {
    /// An empty store keeping `history_max` messages per conversation.
    pub fn new(history_max: usize) -> MemoryStore {
        MemoryStore {
            history_max,
            conversations: HashMap::new(),
            max_seq: 0,
            meta: HashMap::new(),
            sessions: None,
        }
    }
}

impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn is_persistent(&self) -> bool {
        false
    }

    fn append(&mut self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        for message in batch {
            self.max_seq = self.max_seq.max(message.seq);
            if self.history_max == 0 {
                continue;
            }
            let messages = self
                .conversations
                .entry(message.conversation.clone())
                .or_default();
            match messages.back() {
                Some(last) if last.seq >= message.seq => {
                    // Out of order: keep the deque sorted, ignore a repeat.
                    let at = messages.partition_point(|m| m.seq < message.seq);
                    if messages.get(at).is_some_and(|m| m.seq == message.seq) {
                        continue;
                    }
                    messages.insert(at, message.clone());
                }
                _ => messages.push_back(message.clone()),
            }
            while messages.len() > self.history_max {
                messages.pop_front();
            }
        }
        Ok(())
    }

    fn history(
        &mut self,
        conversation: &Conversation,
        query: &Query,
    ) -> Result<Page, HistoryError> {
        let empty = VecDeque::new();
        let messages = self.conversations.get(conversation).unwrap_or(&empty);
        let anchor = |seq: Seq| {
            let at = messages.partition_point(|m| m.seq < seq);
            match messages.get(at) {
                Some(m) if m.seq == seq => Ok(at),
                _ => Err(HistoryError::UnknownId),
            }
        };
        let (range, more) = match *query {
            Query::Latest { n } => {
                let start = messages.len().saturating_sub(n);
                (start..messages.len(), start > 0)
            }
            Query::Before { seq, n } => {
                let end = anchor(seq)?;
                let start = end.saturating_sub(n);
                (start..end, start > 0)
            }
            Query::After { seq, n } => {
                let start = anchor(seq)? + 1;
                let end = messages.len().min(start.saturating_add(n));
                (start..end, end < messages.len())
            }
        };
        Ok(Page {
            items: messages.range(range).cloned().collect(),
            more,
        })
    }

    fn max_seq(&mut self) -> Result<Seq, StoreError> {
        Ok(self.max_seq)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.meta.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn save_sessions(&mut self, sessions: &SavedSessions) -> Result<(), StoreError> {
        self.sessions = Some(sessions.clone());
        Ok(())
    }

    fn take_sessions(&mut self) -> Result<Option<SavedSessions>, StoreError> {
        Ok(self.sessions.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[test]
    fn memory_store_conforms() {
        conformance::check_all(|history_max| Box::new(MemoryStore::new(history_max)));
    }

    #[test]
    fn out_of_order_appends_stay_sorted() {
        let lobby = Conversation::Lobby;
        let mut store = MemoryStore::new(3);
        for seq in [5, 2, 9, 7, 2] {
            store.append(&[conformance::message(seq, &lobby)]).unwrap();
        }
        let page = store.history(&lobby, &Query::Latest { n: 10 }).unwrap();
        assert_eq!(conformance::seqs(&page), (vec![5, 7, 9], false));
        assert_eq!(store.max_seq().unwrap(), 9);
    }
}
