//! The registry in a cluster: what it does with what the link hands it —
//! the events of this node's inbox, in the cluster's order, delivered to
//! the local peers they are for; and the answers to its requests (a
//! session handed over, ROOMS, a refusal).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tsockm_proto::reason::RESUMED_ELSEWHERE;
use tsockm_proto::{Action, BROADCAST, Frame, Status, Text};

use super::admission::Refusal;
use super::cluster::{HeldToken, Remote};
use super::fanout::{Audience, PeerKey};
use super::peer::Link;
use super::timers::Timer;
use super::{ConnId, Registry};
use crate::cluster::{Claimed, ClusterInput, Entry, Event, LinkRequest, Target};
use crate::logging::Direction;
use crate::room::RoomName;
use crate::wire;

impl Registry {
    /// Handles what the link hands over.
    pub(super) fn on_cluster(&mut self, input: ClusterInput) {
        match input {
            ClusterInput::Events(entries) => {
                for entry in entries {
                    self.on_cluster_event(entry);
                }
            }
            ClusterInput::Claimed { conn, id, outcome } => self.on_claimed(conn, &id, outcome),
            ClusterInput::Rooms { conn, rooms } => {
                let Some(requester) = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.peer_and_id().map(|(_, id)| id.clone()))
                else {
                    return;
                };
                let lines: Vec<String> = rooms
                    .iter()
                    .map(|(name, count)| format!("{name} {count}"))
                    .collect();
                let answer = self.wire.rooms(&requester, &lines.join("\n"));
                self.send_to_conn(conn, &answer);
            }
            ClusterInput::Refused {
                conn,
                action,
                status,
                reason,
            } => self.refuse(conn, Refusal::new(action, status, reason)),
            ClusterInput::Reset => self.cluster_restore(),
            ClusterInput::Nodes(nodes) => {
                if let Some(cluster) = &mut self.cluster {
                    cluster.nodes = nodes;
                }
            }
        }
        self.settle();
    }

    /// Applies one event of the inbox.
    fn on_cluster_event(&mut self, entry: Entry) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.last_seq = cluster.last_seq.max(entry.seq);
        let entry = Arc::new(entry);
        cluster.keep_recent(entry.clone());
        let seq = entry.seq;
        let node = cluster.node().clone();
        match &entry.event {
            Event::Joined {
                id,
                name,
                node: at,
                since_ms,
                addr,
            } => {
                cluster.mirror.insert(
                    id.clone(),
                    Remote {
                        name: name.clone(),
                        node: at.clone(),
                        online: true,
                        since_ms: *since_ms,
                        addr: addr.clone(),
                    },
                );
                let local = self.fanout.key_of(id);
                if local.is_none()
                    && let Some(cluster) = &mut self.cluster
                {
                    // Gone before its registration came back.
                    cluster.welcomes.remove(id);
                }
                if let Some(key) = local {
                    // Our own registration came back: from now on events
                    // are for it, starting with everyone before it.
                    self.fanout.set_since_seq(key, seq);
                    self.send_cluster_welcome(key, id);
                    self.send_cluster_roster(key, id);
                }
                self.deliver_event(&entry, Audience::Everyone { except: local });
            }
            Event::Restored {
                id,
                name,
                node: at,
                since_ms,
                addr,
                online,
            } => {
                cluster.mirror.insert(
                    id.clone(),
                    Remote {
                        name: name.clone(),
                        node: at.clone(),
                        online: *online,
                        since_ms: *since_ms,
                        addr: addr.clone(),
                    },
                );
            }
            Event::Killed { id, .. } => {
                cluster.mirror.remove(id);
                if let Some(key) = self.fanout.key_of(id) {
                    self.drop_local(key);
                }
                self.deliver_event(&entry, Audience::Everyone { except: None });
            }
            Event::Msg { target, author, .. } => {
                let author = self.fanout.key_of(author);
                match target {
                    Target::Lobby => {
                        self.deliver_event(&entry, Audience::Everyone { except: author });
                    }
                    Target::Room(room) => {
                        if let Ok(room) = RoomName::parse(room) {
                            let members = self.rooms.take_members(&room);
                            self.deliver_event(
                                &entry,
                                Audience::Some {
                                    members: &members,
                                    except: author,
                                },
                            );
                            self.rooms.put_members(room, members);
                        }
                    }
                    Target::Direct(to) => {
                        if let Some(key) = self.fanout.key_of(to) {
                            self.deliver_event(&entry, Audience::One(key));
                        }
                    }
                }
            }
            Event::RoomJoined {
                room,
                id,
                name,
                roster,
                again,
            } => {
                let Ok(room) = RoomName::parse(room) else {
                    return;
                };
                if let Some(key) = self.fanout.key_of(id) {
                    // The joiner is here: the members before it, then its
                    // own JOIN, which the other members here get too.
                    let mut block = BytesMut::new();
                    for (member, member_name) in roster {
                        let join =
                            self.wire
                                .about_peer(Action::Join, member, room.as_text(), member_name);
                        self.log.frame(Direction::Out, id, &join);
                        if let Some(bytes) = wire::encode(&join) {
                            block.extend_from_slice(&bytes);
                        }
                    }
                    if *again {
                        let own = self.wire.about_peer(Action::Join, id, room.as_text(), name);
                        self.log.frame(Direction::Out, id, &own);
                        if let Some(bytes) = wire::encode(&own) {
                            block.extend_from_slice(&bytes);
                        }
                        self.fanout
                            .deliver_at(Audience::One(key), &block.freeze(), seq);
                        return;
                    }
                    if !block.is_empty() {
                        self.fanout
                            .deliver_at(Audience::One(key), &block.freeze(), seq);
                    }
                    if !self.rooms.members(&room).contains(&key) {
                        self.rooms.add(&room, key);
                    }
                    if let Some(info) = self.fanout.info_mut(key)
                        && !info.rooms.contains(&room)
                    {
                        info.rooms.push(room.clone());
                    }
                }
                let members = self.rooms.members(&room).to_vec();
                self.deliver_event(
                    &entry,
                    Audience::Some {
                        members: &members,
                        except: None,
                    },
                );
            }
            Event::RoomParted { room, id, .. } => {
                let Ok(room) = RoomName::parse(room) else {
                    return;
                };
                let members = self.rooms.members(&room).to_vec();
                self.deliver_event(
                    &entry,
                    Audience::Some {
                        members: &members,
                        except: None,
                    },
                );
                if let Some(key) = self.fanout.key_of(id) {
                    self.rooms.remove(&room, key);
                }
            }
            Event::Moved { id, to, .. } => {
                if let Some(remote) = cluster.mirror.get_mut(id) {
                    remote.node = to.clone();
                    remote.online = true;
                }
                if *to != node
                    && let Some(key) = self.fanout.key_of(id)
                {
                    // Resumed on another node: an old connection here is
                    // told and closed; the session lives there now.
                    if let Some(Link::Online { outbox, .. }) =
                        self.fanout.get(key).map(|p| p.link())
                    {
                        let end = self.wire.comm_end(id, RESUMED_ELSEWHERE);
                        self.log.frame(Direction::Out, id, &end);
                        outbox.close(wire::encode(&end));
                    }
                    self.drop_local(key);
                }
            }
            Event::Away { id } => {
                if let Some(remote) = cluster.mirror.get_mut(id) {
                    remote.online = false;
                }
            }
            Event::Online { id } => {
                if let Some(remote) = cluster.mirror.get_mut(id) {
                    remote.online = true;
                }
            }
            Event::NodeDead { node: dead } => {
                let mut away = Vec::new();
                for (id, remote) in &mut cluster.mirror {
                    if remote.node == *dead && remote.online {
                        remote.online = false;
                        away.push(id.clone());
                    }
                }
                tracing::warn!(node = %dead, n_peers = away.len(), "a node died: its peers are away");
                for id in away {
                    // Every node asks; the script removes each peer once.
                    self.timers.insert(
                        Timer::ClusterRemoval {
                            peer: id,
                            node: dead.clone(),
                        },
                        self.limits.removal_delay,
                    );
                }
            }
            Event::KillRequest { id } => {
                if let Some(key) = self.fanout.key_of(id) {
                    let end = self.wire.comm_end(id, "removed by the server operator");
                    self.remove_peer(key, Some(&end));
                }
            }
        }
    }

    /// The frame an event is for the peers it concerns.
    pub(super) fn frame_of(&self, entry: &Entry) -> Option<Frame> {
        let frame = match &entry.event {
            Event::Joined { id, name, .. } => self.wire.announce(Action::NtfyJoin, id, name),
            Event::Killed { id, name } => self.wire.announce(Action::NtfyKill, id, name),
            Event::Msg {
                target,
                author,
                text,
                ..
            } => {
                let dst = match target {
                    Target::Lobby => Text::from_static(BROADCAST),
                    Target::Room(room) => room.clone(),
                    Target::Direct(to) => to.clone(),
                };
                let msg_id = self.ids.msg_id(entry.seq);
                self.wire.relayed(author, &msg_id, &dst, text)
            }
            Event::RoomJoined { room, id, name, .. } => {
                self.wire.about_peer(Action::Join, id, room, name)
            }
            Event::RoomParted { room, id, name } => {
                self.wire.about_peer(Action::Part, id, room, name)
            }
            _ => return None,
        };
        Some(frame)
    }

    /// Delivers an event's frame to `audience`, at its place in the order.
    fn deliver_event(&mut self, entry: &Entry, audience: Audience<'_>) {
        let Some(frame) = self.frame_of(entry) else {
            return;
        };
        self.log.frame(Direction::Out, frame.dst(), &frame);
        if let Some(bytes) = wire::encode(&frame) {
            self.fanout.deliver_at(audience, &bytes, entry.seq);
        }
    }

    /// Welcomes every peer registered here whose registration has not come
    /// back, with events for it from after `seq`.
    pub(super) fn welcome_waiting(&mut self, seq: u64) {
        let waiting: Vec<Text> = self
            .cluster
            .as_ref()
            .map(|c| c.welcomes.keys().cloned().collect())
            .unwrap_or_default();
        for id in waiting {
            let Some(key) = self.fanout.key_of(&id) else {
                if let Some(cluster) = &mut self.cluster {
                    cluster.welcomes.remove(&id);
                }
                continue;
            };
            self.fanout.set_since_seq(key, seq);
            self.send_cluster_welcome(key, &id);
            self.send_cluster_roster(key, &id);
        }
    }

    /// The welcome of a peer registered here, once its registration is in
    /// Redis (and so resumable on every node).
    fn send_cluster_welcome(&mut self, key: PeerKey, id: &Text) {
        let Some(HeldToken(token)) = self.cluster.as_mut().and_then(|c| c.welcomes.remove(id))
        else {
            return;
        };
        let Some(peer) = self.fanout.get(key) else {
            return;
        };
        let Link::Online { conn, .. } = &peer.link else {
            return; // Gone before its welcome: it cannot resume.
        };
        let welcome = self.wire.welcome(&peer.info.addr, id, &token);
        let conn = *conn;
        self.send_to_conn(conn, &welcome);
    }

    /// The roster of the cluster for a peer registered here: one NTFY_JOIN
    /// per other peer, as one buffer.
    fn send_cluster_roster(&mut self, key: PeerKey, newcomer: &Text) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut roster = BytesMut::new();
        for (id, remote) in &cluster.mirror {
            if id == newcomer {
                continue;
            }
            if self.log.enabled() {
                let join = self
                    .wire
                    .about_peer(Action::NtfyJoin, id, newcomer, &remote.name);
                self.log.frame(Direction::Out, newcomer, &join);
            }
            self.wire
                .roster_line(&mut roster, id, &remote.name, newcomer);
        }
        if !roster.is_empty() {
            self.fanout.deliver_unbounded(key, [roster.freeze()]);
        }
    }

    /// Forgets a local peer whose session ended elsewhere (removed, or
    /// moved to another node), telling no one: the event says it all.
    pub(super) fn drop_local(&mut self, key: PeerKey) {
        let rooms = self
            .fanout
            .get(key)
            .map(|p| p.info.rooms.clone())
            .unwrap_or_default();
        for room in &rooms {
            self.rooms.remove(room, key);
        }
        if let Some(peer) = self.fanout.remove(key)
            && let Link::Online { conn, outbox } = peer.link()
        {
            self.conns.remove(conn);
            outbox.close(None);
        }
    }

    /// The cluster's answer to a resume of a peer of another node.
    fn on_claimed(&mut self, conn_id: ConnId, id: &Text, outcome: Option<Claimed>) {
        let Some(pending) = self
            .cluster
            .as_mut()
            .and_then(|c| c.claims.remove(&conn_id))
        else {
            return;
        };
        let Some(claimed) = outcome else {
            self.refuse_with(
                conn_id,
                Action::Comm,
                Status::NotFound,
                "cannot resume: unknown or removed peer id, or wrong resume token",
            );
            return;
        };
        let Some(conn) = self.conns.get(&conn_id) else {
            // Gone while the session moved here: it is away here now.
            let through = claimed
                .replay
                .first()
                .map_or(claimed.seq, |entry| entry.seq.saturating_sub(1));
            let request = LinkRequest::Away {
                id: id.clone(),
                through,
            };
            self.ask(None, Action::Comm, request);
            return;
        };
        let addr = conn.dst.clone();
        let outbox = conn.outbox.clone();
        let (info, since_seq) = self.claimed_peer(id, &pending.token.0, &addr, &claimed);
        let rooms = info.rooms.clone();
        let key = self.fanout.insert(
            info,
            Link::Online {
                conn: conn_id,
                outbox,
            },
            since_seq,
        );
        for room in &rooms {
            self.rooms.add(room, key);
        }
        self.bind_peer(conn_id, key, id.clone());
        // What it missed: from its old node's inbox up to the hand-over,
        // then what this node read since.
        let room_names: Vec<Text> = rooms.iter().map(|r| r.as_text().clone()).collect();
        let recent: Vec<Arc<Entry>> = self
            .cluster
            .as_ref()
            .map(|c| {
                c.recent
                    .iter()
                    .filter(|e| e.seq > claimed.seq && e.concerns(id, &room_names))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let frames: Vec<Bytes> = claimed
            .replay
            .iter()
            .chain(recent.iter().map(|e| &**e))
            .filter_map(|entry| self.frame_of(entry))
            .filter_map(|frame| wire::encode(&frame))
            .collect();
        tracing::info!(peer = %id, n_again = frames.len(), last_msg = ?pending.last_msg, "peer resumed from another node");
        let welcome = self.wire.welcome(&addr, id, &pending.token.0);
        self.send_to_conn(conn_id, &welcome);
        self.fanout.deliver_unbounded(key, frames);
        if let Some(cluster) = &mut self.cluster
            && let Some(remote) = cluster.mirror.get_mut(id)
        {
            remote.online = true;
            remote.addr = addr;
        }
    }
}
