//! Messages and lookups: a MSG gets its message id and goes to its audience
//! (everyone, a room's members, or one peer) and to the hooks; GET_PEER.

use std::time::SystemTime;

use tsockm_proto::{Action, BROADCAST, Status, Text};

use super::admission::Destination;
use super::fanout::{Audience, PeerKey};
use super::{ConnId, Registry};
use crate::cluster::Target;
use crate::identity::unix_ms;
use crate::logging::Direction;
use crate::room::RoomName;
use crate::store::{Conversation, StoredMessage};
use crate::wire::{self, escaped_len, history_item_len, relayed_len};

impl Registry {
    /// Relays a message from the peer at `author` to its audience.
    pub(super) fn on_msg(
        &mut self,
        conn_id: ConnId,
        author: PeerKey,
        author_id: &Text,
        to: Destination,
        text: Text,
    ) {
        let Some(author_name) = self.fanout.get(author).map(|p| p.info.username.clone()) else {
            return;
        };
        // The destination's own checks: membership, then unknown peer.
        let (recipients, dst, conversation) = match to {
            Destination::Lobby => (
                Recipients::Lobby,
                Text::from_static(BROADCAST),
                Conversation::Lobby,
            ),
            Destination::Room(room) => {
                if !self.is_member(author, &room) {
                    let reason = format!("you are not in {room}: JOIN it first");
                    self.refuse_with(conn_id, Action::Msg, Status::Forbidden, &reason);
                    return;
                }
                let conversation = Conversation::Room(room.to_string());
                let dst = room.as_text().clone();
                (Recipients::Room(room), dst, conversation)
            }
            Destination::Peer(id) => {
                let recipient = match self.fanout.key_of(&id) {
                    Some(key) => Some(Recipients::Peer(key)),
                    None if self.knows_remote(&id) => Some(Recipients::Remote),
                    None => None,
                };
                let Some(recipient) = recipient else {
                    let reason = format!("no peer with id `{id}`");
                    self.refuse_with(conn_id, Action::Msg, Status::NotFound, &reason);
                    return;
                };
                let conversation = Conversation::direct(author_id, &id);
                (recipient, id, conversation)
            }
        };
        // Every frame the server sends fits the limit: the relayed frame
        // and the history item are longer than what the author sent.
        let now = SystemTime::now();
        let (seq, msg_id) = self.ids.peek_msg(now);
        let text_len = escaped_len(&text);
        let history_conversation = match recipients {
            // Each side of a direct conversation sees the other's id.
            Recipients::Peer(_) | Recipients::Remote => dst.len().max(author_id.len()),
            Recipients::Lobby | Recipients::Room(_) => dst.len(),
        };
        let longest = relayed_len(author_id, &msg_id, &dst, text_len).max(
            history_item_len(author_id, &msg_id, "", escaped_len(&author_name), text_len)
                + history_conversation,
        );
        if longest > self.limits.max_frame_bytes {
            let reason = format!(
                "message too long: relayed it would take {longest} bytes, more than the limit of {}",
                self.limits.max_frame_bytes
            );
            self.refuse_with(conn_id, Action::Msg, Status::PayloadTooLarge, &reason);
            return;
        }
        if self.in_cluster() {
            // The cluster gives it its id and delivers it, here too.
            let target = match recipients {
                Recipients::Lobby => Target::Lobby,
                Recipients::Room(room) => Target::Room(room.as_text().clone()),
                Recipients::Peer(_) | Recipients::Remote => Target::Direct(dst),
            };
            self.cluster_msg(conn_id, author_id, &author_name, target, conversation, text);
            return;
        }
        self.ids.commit_msg(seq);
        let relayed = self.wire.relayed(author_id, &msg_id, &dst, &text);
        self.log.frame(Direction::Out, &dst, &relayed);
        let Some(bytes) = wire::encode(&relayed) else {
            return;
        };
        match recipients {
            Recipients::Peer(key) => self.fanout.deliver(Audience::One(key), &bytes),
            Recipients::Remote => {}
            Recipients::Lobby => self.fanout.deliver(
                Audience::Everyone {
                    except: Some(author),
                },
                &bytes,
            ),
            Recipients::Room(room) => {
                // Its members but the author. The list is taken out and put
                // back so that no member list is copied per message.
                let members = self.rooms.take_members(&room);
                self.fanout.deliver(
                    Audience::Some {
                        members: &members,
                        except: Some(author),
                    },
                    &bytes,
                );
                self.rooms.put_members(room, members);
            }
        }
        self.accepted(StoredMessage {
            seq,
            at_ms: unix_ms(now),
            conversation,
            author_id: author_id.to_string(),
            author_name: author_name.to_string(),
            text: text.to_string(),
        });
    }

    /// Whether a peer of another node of the cluster has this id.
    pub(super) fn knows_remote(&self, id: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.mirror.contains_key(id))
    }

    /// Answers GET_PEER: the peer's username (on any node), or 404.
    pub(super) fn on_get_peer(&mut self, conn_id: ConnId, requester: &Text, wanted: &Text) {
        let remote = self
            .cluster
            .as_ref()
            .and_then(|c| c.mirror.get_key_value(wanted))
            .map(|(id, remote)| (id.clone(), remote.name.clone()));
        let found = self
            .fanout
            .find(wanted)
            .map(|(_, peer)| (peer.info.id.clone(), peer.info.username.clone()))
            .or(remote);
        let Some((id, name)) = found else {
            let reason = format!("no peer with id `{wanted}`");
            self.refuse_with(conn_id, Action::GetPeer, Status::NotFound, &reason);
            return;
        };
        let answer = self.wire.about_peer(Action::GetPeer, &id, requester, &name);
        self.send_to_conn(conn_id, &answer);
    }
}

/// Who a message goes to.
#[derive(Debug)]
enum Recipients {
    /// Every peer but the author.
    Lobby,
    /// A room's members but the author.
    Room(RoomName),
    /// One peer.
    Peer(PeerKey),
    /// One peer on another node of the cluster.
    Remote,
}
