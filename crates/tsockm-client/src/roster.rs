//! [`Roster`]: who is on the server, by peer id, as far as this client knows.
//!
//! The session keeps it from the `NTFY_JOIN` / `NTFY_KILL` frames the server
//! sends, so an incoming `alice: hi` needs no `GET_PEER` round trip. This file
//! is pure state: it does no I/O and never talks to the server.

use std::collections::HashMap;
use std::fmt;

use tsockm_proto::Text;

/// A peer id as the server made it (letters and digits, never `server`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(Text);

impl PeerId {
    /// Wraps an id received from the server or typed by the user.
    pub fn new(id: impl Into<Text>) -> Self {
        PeerId(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id as a cheap-to-clone [`Text`], for building frames.
    pub fn as_text(&self) -> &Text {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::borrow::Borrow<str> for PeerId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Every known peer (this client included): id → username.
///
/// Two peers may share a username; ids are unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// Username of each peer, by id.
    peers: HashMap<PeerId, Text>,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Roster::default()
    }

    /// Adds or renames a peer; gives back its previous username, if any.
    pub fn insert(&mut self, id: PeerId, username: Text) -> Option<Text> {
        self.peers.insert(id, username)
    }

    /// Removes a peer; gives back its username, if it was known.
    pub fn remove(&mut self, id: &str) -> Option<Text> {
        self.peers.remove(id)
    }

    /// Forgets every peer.
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// The username of a peer, if known.
    pub fn username(&self, id: &str) -> Option<&Text> {
        self.peers.get(id)
    }

    /// Whether a peer with this id is known.
    pub fn contains(&self, id: &str) -> bool {
        self.peers.contains_key(id)
    }

    /// The ids of every peer with exactly this username, sorted.
    pub fn ids_named(&self, username: &str) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, name)| name.as_str() == username)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Every peer as `(id, username)`, sorted by username, then id.
    pub fn sorted(&self) -> Vec<(&PeerId, &Text)> {
        let mut peers: Vec<(&PeerId, &Text)> = self.peers.iter().collect();
        peers.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
        peers
    }

    /// How many peers are known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(peers: &[(&str, &str)]) -> Roster {
        let mut r = Roster::new();
        for (id, name) in peers {
            r.insert(PeerId::new(*id), Text::from(*name));
        }
        r
    }

    #[test]
    fn insert_lookup_remove() {
        let mut r = roster(&[("id1", "alice"), ("id2", "bob")]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.username("id1").map(Text::as_str), Some("alice"));
        assert!(r.contains("id2"));
        assert_eq!(r.remove("id2").as_deref(), Some("bob"));
        assert_eq!(r.remove("id2"), None);
        assert!(!r.contains("id2"));
        r.clear();
        assert!(r.is_empty());
    }

    #[test]
    fn shared_usernames_give_every_id() {
        let r = roster(&[("idB", "alice"), ("idA", "alice"), ("idC", "bob")]);
        assert_eq!(
            r.ids_named("alice"),
            vec![PeerId::new("idA"), PeerId::new("idB")]
        );
        assert_eq!(r.ids_named("bob"), vec![PeerId::new("idC")]);
        assert!(r.ids_named("carol").is_empty());
    }

    #[test]
    fn sorted_by_name_then_id() {
        let r = roster(&[("id3", "bob"), ("id2", "alice"), ("id1", "alice")]);
        let order: Vec<&str> = r.sorted().iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["id1", "id2", "id3"]);
    }
}
