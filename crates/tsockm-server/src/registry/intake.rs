//! Intake: each command from a connection, and each line a client sends,
//! to its handler, through admission's checks.

use tokio::time::Instant;
use tsockm_proto::{Action, Frame, FrameError, Status, Text};

use super::admission::{ConnFacts, Request, Verdict, judge, takes_token};
use super::channel::{Command, NewConnection};
use super::fanout::PeerKey;
use super::sessions::Queued;
use super::timers::Timer;
use super::{Conn, ConnId, MAX_BAD_PASSWORDS, Registry};
use crate::addr::wire_addr;
use crate::logging::Direction;
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::wire;

impl Registry {
    /// Handles one command; broadcasts may stay staged.
    pub(super) fn handle(&mut self, command: Command) {
        match command {
            Command::Connect(new) => self.on_connect(new),
            Command::Frame { conn, item } => self.on_frame(conn, item),
            Command::Disconnected { conn, input_ended } => {
                let queued = if input_ended {
                    Queued::Write
                } else {
                    Queued::Keep(Vec::new())
                };
                self.disconnect(conn, None, queued);
            }
            Command::Console { request, reply } => self.on_console(request, reply),
        }
        self.settle();
    }

    fn on_connect(&mut self, new: NewConnection) {
        let deadline = new.accepted_at + self.limits.handshake_timeout;
        let handshake_timer = self.timers.insert_at(Timer::Handshake(new.conn), deadline);
        let (conn, addr) = (new.conn, new.addr);
        let (outbox, ticket) = new.take_in();
        self.conns.insert(
            conn,
            Box::new(Conn {
                dst: Text::from(wire_addr(addr)),
                outbox,
                peer: None,
                rate: TokenBucket::new(self.limits.max_rate, Instant::now()),
                solicited: 0,
                ticket,
                handshake_timer: Some(handshake_timer),
                authed: self.password.is_none(),
                n_bad_passwords: 0,
            }),
        );
    }

    /// Judges a line in the contract's order and does what it asks.
    fn on_frame(&mut self, conn_id: ConnId, item: Result<Frame, FrameError>) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return; // Closed by the registry while the frame was queued.
        };
        Stats::add(&self.stats.frames_in, 1);
        match &item {
            Ok(frame) => self.log.frame(Direction::In, &conn.dst, frame),
            Err(error) if self.log.enabled() => {
                tracing::info!("<- {} refused: {error}", conn.dst);
            }
            Err(_) => {}
        }
        let mut facts = ConnFacts {
            // By field, not `peer_and_id()`: `rate` and `solicited` change below
            // while this borrow lives.
            peer: conn.peer.map(|_| conn.dst.as_str()),
            needs_auth: !conn.authed,
            over_rate: false,
        };
        if takes_token(&item, &facts, conn.solicited > 0) {
            facts.over_rate = !conn.rate.try_take(Instant::now());
        } else if facts.peer.is_some() && matches!(&item, Ok(f) if f.action == Action::Comm) {
            conn.solicited = conn.solicited.saturating_sub(1);
        }
        let author = conn.peer_and_id().map(|(key, id)| (key, id.clone()));
        match judge(item, &facts) {
            Verdict::Drop => Stats::add(&self.stats.frames_rate_limited, 1),
            Verdict::Refuse(refusal) => {
                if refusal.status == Status::TooManyRequests {
                    Stats::add(&self.stats.frames_rate_limited, 1);
                }
                self.refuse(conn_id, refusal);
            }
            Verdict::Accept(request) => self.on_request(conn_id, author, request),
        }
    }

    fn on_request(&mut self, conn_id: ConnId, author: Option<(PeerKey, Text)>, request: Request) {
        let Some((key, id)) = author else {
            match request {
                Request::Register { username } => self.register(conn_id, username),
                Request::Resume {
                    peer_id,
                    token,
                    last_msg_id,
                } => self.resume(conn_id, &peer_id, &token, &last_msg_id),
                Request::Auth { password } => self.on_auth(conn_id, &password),
                // Admission takes nothing else before registration.
                _ => {}
            }
            return;
        };
        match request {
            Request::Msg { to, text } => self.on_msg(conn_id, key, &id, to, text),
            Request::GetPeer { id: wanted } => self.on_get_peer(conn_id, &id, &wanted),
            Request::End => {
                let end = self.wire.comm_end(&id, "OK");
                self.remove_peer(key, Some(&end));
            }
            Request::HealthAnswer => self.on_health_answer(&id),
            Request::Auth { password } => self.on_auth(conn_id, &password),
            Request::Join { room } => self.on_join(conn_id, key, room),
            Request::Part { room } => self.on_part(conn_id, key, room),
            Request::Rooms => self.on_rooms(conn_id, &id),
            Request::History {
                conversation,
                query,
            } => self.on_history(conn_id, key, &id, conversation, query),
            // Admission takes these only before registration.
            Request::Register { .. } | Request::Resume { .. } => {}
        }
    }

    /// AUTH: the password, compared in constant time; without a server
    /// password, any body is accepted. The third wrong one closes the
    /// connection.
    fn on_auth(&mut self, conn_id: ConnId, given: &str) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let right = self
            .password
            .as_ref()
            .is_none_or(|password| password.matches(given));
        if right {
            conn.authed = true;
            // Addressed to the client's address, also after registration
            // (the address is then kept with the peer, `dst` is its id).
            let client_addr = conn
                .peer
                .and_then(|key| self.fanout.get(key))
                .map_or_else(|| conn.dst.clone(), |peer| peer.info.addr.clone());
            let answer = self.wire.auth_ok(&client_addr);
            self.send_to_conn(conn_id, &answer);
            return;
        }
        conn.n_bad_passwords = conn.n_bad_passwords.saturating_add(1);
        let n_bad = conn.n_bad_passwords;
        let remaining = MAX_BAD_PASSWORDS.saturating_sub(n_bad);
        let reason = if remaining == 0 {
            "wrong password: closing after three wrong passwords".to_owned()
        } else {
            format!("wrong password: {remaining} more wrong and the connection is closed")
        };
        let answer = self
            .wire
            .error(Action::Auth, Status::Unauthorized, &conn.dst, reason);
        if remaining > 0 {
            self.send_to_conn(conn_id, &answer);
            return;
        }
        self.log.frame(Direction::Out, &conn.dst, &answer);
        tracing::info!(who = %conn.dst, "three wrong passwords: closing");
        self.disconnect(conn_id, wire::encode(&answer), Queued::Write);
    }
}
