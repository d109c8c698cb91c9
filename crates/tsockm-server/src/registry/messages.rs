//! Messages and lookups: relaying a MSG to its audience, GET_PEER.

use std::time::{SystemTime, UNIX_EPOCH};

use tsockm_proto::{Action, BROADCAST, Status, Text};

use super::admission::Destination;
use super::fanout::{Audience, PeerKey};
use super::hook::{AcceptedMessage, Conversation};
use super::{ConnId, Registry};
use crate::logging::Direction;
use crate::wire;

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
        let (audience, dst, conversation) = match &to {
            Destination::Lobby => (
                Audience::Everyone {
                    except: Some(author),
                },
                Text::from_static(BROADCAST),
                Conversation::Lobby,
            ),
            Destination::Peer(id) => {
                let Some(key) = self.fanout.key_of(id) else {
                    let reason = format!("no peer with id `{id}`");
                    self.refuse_with(conn_id, Action::Msg, Status::NotFound, &reason);
                    return;
                };
                (
                    Audience::One(key),
                    id.clone(),
                    Conversation::direct(author_id, id),
                )
            }
            Destination::Room(_) => {
                self.refuse_with(
                    conn_id,
                    Action::Msg,
                    Status::MethodNotAllowed,
                    "rooms are not supported by this server yet",
                );
                return;
            }
        };
        let relayed = self.wire.about_peer(Action::Msg, author_id, &dst, &text);
        self.log.frame(Direction::Out, &dst, &relayed);
        let Some(bytes) = wire::encode(&relayed) else {
            return;
        };
        self.fanout.deliver(audience, &bytes);
        let author_name = self
            .fanout
            .get(author)
            .map(|peer| peer.info.username.clone())
            .unwrap_or_default();
        self.accepted(|seq| AcceptedMessage {
            seq,
            at_ms: unix_ms(SystemTime::now()),
            conversation,
            author_id: author_id.clone(),
            author_name,
            text,
        });
    }

    /// Answers GET_PEER: the peer's username, or 404.
    pub(super) fn on_get_peer(&mut self, conn_id: ConnId, requester: &Text, wanted: &Text) {
        let answer = match self.fanout.find(wanted) {
            Some((_, peer)) => self.wire.about_peer(
                Action::GetPeer,
                &peer.info.id,
                requester,
                &peer.info.username,
            ),
            None => self.wire.error(
                Action::GetPeer,
                Status::NotFound,
                requester,
                format!("no peer with id `{wanted}`"),
            ),
        };
        self.send_to_conn(conn_id, &answer);
    }
}

/// Unix milliseconds of a point in time (0 before 1970).
pub(super) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
