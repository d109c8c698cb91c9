//! Rooms (section 11): JOIN with the member roster, PART, ROOMS, and who is
//! in which room. A room exists while it has members (online or away); a
//! message to it costs work for its members only.

use std::collections::HashMap;

use bytes::BytesMut;
use tsockm_proto::{Action, Status, Text};

use super::fanout::{Audience, PeerKey};
use super::{ConnId, Registry};
use crate::logging::Direction;
use crate::room::RoomName;
use crate::wire;

/// Every room with members, and its members in the order they joined.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    by_name: HashMap<RoomName, Vec<PeerKey>>,
}

impl Rooms {
    /// The members of `room` (none if it does not exist).
    pub fn members(&self, room: &RoomName) -> &[PeerKey] {
        self.by_name.get(room).map_or(&[], Vec::as_slice)
    }

    /// Takes the member list of `room` out, to hand it to the fan-out
    /// without copying it; give it back with [`Rooms::put_members`].
    pub fn take_members(&mut self, room: &RoomName) -> Vec<PeerKey> {
        self.by_name
            .get_mut(room)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Gives back a member list taken with [`Rooms::take_members`].
    pub fn put_members(&mut self, room: RoomName, members: Vec<PeerKey>) {
        if !members.is_empty() {
            self.by_name.insert(room, members);
        }
    }

    /// Adds `key` to `room`, creating it.
    pub fn add(&mut self, room: &RoomName, key: PeerKey) {
        self.by_name.entry(room.clone()).or_default().push(key);
    }

    /// Takes `key` out of `room`, which ends with its last member.
    pub fn remove(&mut self, room: &RoomName, key: PeerKey) {
        if let Some(members) = self.by_name.get_mut(room) {
            members.retain(|&k| k != key);
            if members.is_empty() {
                self.by_name.remove(room);
            }
        }
    }

    /// Every room with its members, sorted by name.
    pub fn sorted(&self) -> Vec<(&RoomName, &[PeerKey])> {
        let mut rooms: Vec<_> = self
            .by_name
            .iter()
            .map(|(name, members)| (name, members.as_slice()))
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(b.0));
        rooms
    }
}

impl Registry {
    /// Whether the peer at `key` is in `room`.
    pub(super) fn is_member(&self, key: PeerKey, room: &RoomName) -> bool {
        self.fanout
            .get(key)
            .is_some_and(|peer| peer.info.rooms.contains(room))
    }

    /// JOIN: the roster of the room to the joiner, ending with its own JOIN,
    /// which every other member gets too (unless it was a member already).
    pub(super) fn on_join(&mut self, conn_id: ConnId, key: PeerKey, room: RoomName) {
        let already = self.is_member(key, &room);
        if !already {
            let n_rooms = self.fanout.get(key).map_or(0, |p| p.info.rooms.len());
            if n_rooms >= self.limits.max_rooms_per_peer {
                let reason = format!(
                    "you are in {n_rooms} rooms already, the most this server allows: PART one first"
                );
                self.refuse_with(conn_id, Action::Join, Status::Forbidden, &reason);
                return;
            }
        }
        let Some(joiner) = self.fanout.get(key) else {
            return;
        };
        let (joiner_id, joiner_name) = (joiner.info.id.clone(), joiner.info.username.clone());
        if self.in_cluster() {
            if self.cluster_down(conn_id, Action::Join) {
                return;
            }
            // A member at once (its messages to the room are taken); the
            // cluster sends the roster and tells the other members.
            if let Some(info) = self.fanout.info_mut(key)
                && !info.rooms.contains(&room)
            {
                info.rooms.push(room.clone());
            }
            let request = crate::cluster::LinkRequest::Join {
                room: room.as_text().clone(),
                id: joiner_id,
                name: joiner_name,
            };
            self.ask(Some(conn_id), Action::Join, request);
            return;
        }
        let room_text = room.as_text().clone();
        // The members already there, written as one buffer.
        let mut roster = BytesMut::new();
        for &member in self.rooms.members(&room) {
            let Some(peer) = self.fanout.get(member).filter(|_| member != key) else {
                continue;
            };
            let join =
                self.wire
                    .about_peer(Action::Join, &peer.info.id, &room_text, &peer.info.username);
            self.log.frame(Direction::Out, &joiner_id, &join);
            if let Some(bytes) = wire::encode(&join) {
                roster.extend_from_slice(&bytes);
            }
        }
        let own = self
            .wire
            .about_peer(Action::Join, &joiner_id, &room_text, &joiner_name);
        let Some(own_bytes) = wire::encode(&own) else {
            return;
        };
        if already {
            self.log.frame(Direction::Out, &joiner_id, &own);
            roster.extend_from_slice(&own_bytes);
            self.fanout.deliver(Audience::One(key), &roster.freeze());
            return;
        }
        if !roster.is_empty() {
            self.fanout.deliver(Audience::One(key), &roster.freeze());
        }
        if let Some(info) = self.fanout.info_mut(key) {
            info.rooms.push(room.clone());
        }
        self.rooms.add(&room, key);
        self.log.frame(Direction::Out, &room_text, &own);
        let members = self.rooms.members(&room).to_vec();
        self.fanout.deliver(
            Audience::Some {
                members: &members,
                except: None,
            },
            &own_bytes,
        );
    }

    /// PART: every member, the leaver included, is told; then it is out.
    pub(super) fn on_part(&mut self, conn_id: ConnId, key: PeerKey, room: RoomName) {
        if !self.is_member(key, &room) {
            let reason = format!("you are not in {room}");
            self.refuse_with(conn_id, Action::Part, Status::NotFound, &reason);
            return;
        }
        let Some(leaver) = self.fanout.get(key) else {
            return;
        };
        if self.in_cluster() {
            let request = crate::cluster::LinkRequest::Part {
                room: room.as_text().clone(),
                id: leaver.info.id.clone(),
                name: leaver.info.username.clone(),
            };
            if self.cluster_down(conn_id, Action::Part) {
                return;
            }
            // Not a member from now on; it still gets the PART.
            if let Some(info) = self.fanout.info_mut(key) {
                info.rooms.retain(|r| r != &room);
            }
            self.ask(Some(conn_id), Action::Part, request);
            return;
        }
        let part = self.wire.about_peer(
            Action::Part,
            &leaver.info.id,
            room.as_text(),
            &leaver.info.username,
        );
        self.log.frame(Direction::Out, room.as_text(), &part);
        if let Some(bytes) = wire::encode(&part) {
            let members = self.rooms.members(&room).to_vec();
            self.fanout.deliver(
                Audience::Some {
                    members: &members,
                    except: None,
                },
                &bytes,
            );
        }
        self.leave_room(key, &room);
    }

    /// Takes the peer at `key` out of `room`, without telling anyone.
    pub(super) fn leave_room(&mut self, key: PeerKey, room: &RoomName) {
        if let Some(info) = self.fanout.info_mut(key) {
            info.rooms.retain(|r| r != room);
        }
        self.rooms.remove(room, key);
    }

    /// ROOMS: one line per room, `#name <member count>`, sorted by name.
    pub(super) fn on_rooms(&mut self, conn_id: ConnId, requester: &Text) {
        if self.in_cluster() {
            // The cluster's rooms, counted on every node.
            if !self.cluster_down(conn_id, Action::Rooms) {
                let request = crate::cluster::LinkRequest::Rooms { conn: conn_id };
                self.ask(Some(conn_id), Action::Rooms, request);
            }
            return;
        }
        let body: Vec<String> = self
            .rooms
            .sorted()
            .iter()
            .map(|(name, members)| format!("{name} {}", members.len()))
            .collect();
        let answer = self.wire.rooms(requester, &body.join("\n"));
        self.send_to_conn(conn_id, &answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_end_with_their_last_member_and_list_sorted() {
        let mut rooms = Rooms::default();
        let b = RoomName::parse("#b").unwrap();
        let a = RoomName::parse("#A").unwrap();
        rooms.add(&b, 1);
        rooms.add(&b, 2);
        rooms.add(&a, 2);
        let names: Vec<String> = rooms.sorted().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["#a", "#b"]);
        assert_eq!(rooms.members(&b), [1, 2]);
        rooms.remove(&b, 1);
        rooms.remove(&b, 2);
        assert!(rooms.members(&b).is_empty());
        assert_eq!(rooms.sorted().len(), 1);
    }
}
