//! HISTORY (section 12): the request's own checks (membership, unknown
//! peer, unknown message id), the question to the store, and the answer
//! written when the store replies (on its own thread, through a small
//! channel the actor reads).

use tokio::sync::mpsc;
use tsockm_proto::{Action, Status, Text};

use super::admission::{Destination, HistoryQuery, Side};
use super::fanout::{Audience, PeerKey};
use super::{ConnId, Registry};
use crate::logging::Direction;
use crate::store::{Conversation, HistoryError, Page, Query};
use crate::wire;

/// HISTORY answers from the store waiting for the actor. Small: the store
/// thread waits when it is full, which bounds the pages in flight.
pub const HISTORY_ANSWERS: usize = 16;

/// A store's answer to one HISTORY request, on its way to the actor.
#[derive(Debug)]
pub struct HistoryAnswer {
    /// The peer that asked.
    key: PeerKey,
    /// Its id when it asked (the key may since belong to another peer).
    peer_id: Text,
    /// The conversation as the answer names it: `*`, `#room`, or the other
    /// peer's id.
    label: Text,
    /// The page, or why there is none.
    result: Result<Page, HistoryError>,
}

impl Registry {
    /// Checks a HISTORY request and asks the store.
    pub(super) fn on_history(
        &mut self,
        conn_id: ConnId,
        key: PeerKey,
        requester: &Text,
        conversation: Destination,
        query: HistoryQuery,
    ) {
        let (conversation, label) = match conversation {
            Destination::Lobby => (Conversation::Lobby, Text::from_static("*")),
            Destination::Room(room) => {
                if !self.is_member(key, &room) {
                    let reason = format!("you are not in {room}: JOIN it to read its history");
                    self.refuse_with(conn_id, Action::History, Status::Forbidden, &reason);
                    return;
                }
                (Conversation::Room(room.to_string()), room.as_text().clone())
            }
            Destination::Peer(id) => {
                if self.fanout.key_of(&id).is_none()
                    && !self.knows_remote(&id)
                    && !self.ids.could_be_peer(&id)
                {
                    let reason = format!("no peer with id `{id}` was ever registered here");
                    self.refuse_with(conn_id, Action::History, Status::NotFound, &reason);
                    return;
                }
                (Conversation::direct(requester, &id), id)
            }
        };
        let query = match query.anchor {
            None => Query::Latest { n: query.n },
            Some((side, msg_id)) => {
                let Some(seq) = self.ids.msg_seq(&msg_id) else {
                    let reason = format!("no message with id `{msg_id}`");
                    self.refuse_with(conn_id, Action::History, Status::NotFound, &reason);
                    return;
                };
                match side {
                    Side::Before => Query::Before { seq, n: query.n },
                    Side::After => Query::After { seq, n: query.n },
                }
            }
        };
        if self.limits.history_max == 0 {
            // Nothing is stored: every HISTORY gets the empty answer.
            self.on_history_answer(HistoryAnswer {
                key,
                peer_id: requester.clone(),
                label,
                result: Ok(Page::default()),
            });
            return;
        }
        let answers = self.history_tx.clone();
        let peer_id = requester.clone();
        let reply = Box::new(move |result| {
            let answer = HistoryAnswer {
                key,
                peer_id,
                label,
                result,
            };
            match answers.try_send(answer) {
                Ok(()) => {}
                // On the store thread, wait for room; on the actor's own
                // thread (the store refused at once), the channel cannot
                // be waited on, and the answer is lost.
                Err(mpsc::error::TrySendError::Full(answer)) => {
                    if tokio::runtime::Handle::try_current().is_err() {
                        let _ = answers.blocking_send(answer);
                    } else {
                        tracing::warn!("a HISTORY answer was dropped: too many waiting");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        });
        if self.in_cluster() {
            // The cluster's history; the link asks after this node's
            // messages accepted before.
            if !self.cluster_down(conn_id, Action::History) {
                let request = crate::cluster::LinkRequest::History {
                    conversation,
                    query,
                    answer: crate::cluster::HistoryAnswerFn(reply),
                };
                self.ask(Some(conn_id), Action::History, request);
            }
            return;
        }
        // Messages accepted before this request reach the store first.
        self.flush_hooks();
        self.store.history(conversation, query, reply);
    }

    /// Writes a store's answer to the peer that asked, as one block: the
    /// items oldest first, then the end frame.
    pub(super) fn on_history_answer(&mut self, answer: HistoryAnswer) {
        let HistoryAnswer {
            key,
            peer_id,
            label,
            result,
        } = answer;
        if self
            .fanout
            .get(key)
            .is_none_or(|peer| peer.info.id != peer_id)
        {
            return; // It left meanwhile.
        }
        let frames = match result {
            Ok(page) => {
                let mut frames = Vec::with_capacity(page.items.len() + 1);
                // For a direct conversation the label is the other peer's
                // id, as the contract names it for the one who asks.
                for item in &page.items {
                    frames.push(self.wire.history_item(
                        &item.author_id,
                        &self.ids.msg_id(item.seq),
                        &label,
                        item.at_ms,
                        &item.author_name,
                        &item.text,
                    ));
                }
                frames.push(self.wire.history_end(&label, page.items.len(), page.more));
                frames
            }
            Err(HistoryError::UnknownId) => vec![self.wire.error(
                Action::History,
                Status::NotFound,
                &peer_id,
                "no message with that id in this conversation",
            )],
            Err(HistoryError::Store(error)) => {
                tracing::warn!(%error, "a HISTORY request failed");
                vec![self.wire.error(
                    Action::History,
                    Status::ServiceUnavailable,
                    &peer_id,
                    "history is unavailable right now; try again later",
                )]
            }
        };
        let mut block = bytes::BytesMut::new();
        for frame in &frames {
            self.log.frame(Direction::Out, &peer_id, frame);
            if let Some(bytes) = wire::encode(frame) {
                block.extend_from_slice(&bytes);
            }
        }
        // The answer to a peer's own request may be larger than its send
        // queue (up to `--history-max` items of up to `--max-frame` bytes):
        // a peer that keeps up gets it whole past the bound (the global
        // budget still counts it); one that is behind is held to the bound.
        let block = block.freeze();
        if self.fanout.keeps_up(key) {
            self.fanout.deliver_unbounded(key, [block]);
        } else {
            self.fanout.deliver(Audience::One(key), &block);
        }
    }
}
