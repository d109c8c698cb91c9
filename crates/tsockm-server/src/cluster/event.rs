//! What the cluster's inbox streams carry: [`Entry`], a sequence number and
//! an [`Event`], read back from a stream entry's fields (which the scripts
//! of `scripts.rs` write).

use std::collections::HashMap;

use redis::Value;
use tsockm_proto::Text;

/// One event from a node's inbox, with its place in the cluster's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sequence number (a message's id is made of it).
    pub seq: u64,
    /// What happened.
    pub event: Event,
}

/// Where a message was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everyone.
    Lobby,
    /// A room (folded name, `#` included).
    Room(Text),
    /// One peer.
    Direct(Text),
}

/// Something that happened in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer registered.
    Joined {
        /// Its id.
        id: Text,
        /// Its username.
        name: Text,
        /// Its node.
        node: Text,
        /// When it registered, Unix ms.
        since_ms: i64,
        /// Its address.
        addr: Text,
    },
    /// A peer was put back after Redis lost its data (no one is told).
    Restored {
        /// Its id.
        id: Text,
        /// Its username.
        name: Text,
        /// Its node.
        node: Text,
        /// When it registered, Unix ms.
        since_ms: i64,
        /// Its address.
        addr: Text,
        /// Whether it is online.
        online: bool,
    },
    /// A peer was removed.
    Killed {
        /// Its id.
        id: Text,
        /// Its username.
        name: Text,
    },
    /// A message.
    Msg {
        /// Its audience.
        target: Target,
        /// Its author.
        author: Text,
        /// The author's username.
        name: Text,
        /// The text.
        text: Text,
        /// When it was accepted, Unix ms.
        at_ms: i64,
    },
    /// A peer joined a room.
    RoomJoined {
        /// The room.
        room: Text,
        /// The peer.
        id: Text,
        /// Its username.
        name: Text,
        /// The members there before it: id and username.
        roster: Vec<(Text, Text)>,
        /// It was a member already: only its node is told, for its roster.
        again: bool,
    },
    /// A peer left a room.
    RoomParted {
        /// The room.
        room: Text,
        /// The peer.
        id: Text,
        /// Its username.
        name: Text,
    },
    /// A peer's session moved to another node (a resume there).
    Moved {
        /// The peer.
        id: Text,
        /// Its node now.
        to: Text,
        /// Its node before.
        from: Text,
    },
    /// A peer's connection ended; it is away on its node.
    Away {
        /// The peer.
        id: Text,
    },
    /// A peer resumed on its own node.
    Online {
        /// The peer.
        id: Text,
    },
    /// A node was declared dead: its online peers are away.
    NodeDead {
        /// The node.
        node: Text,
    },
    /// The operator of some node asked for this node's peer to be removed.
    KillRequest {
        /// The peer.
        id: Text,
    },
}

/// Why a stream entry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable cluster event {id}: {problem}")]
pub struct EventError {
    id: String,
    problem: String,
}

impl Target {
    /// The bytes its name holds.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Target::Lobby => 0,
            Target::Room(name) | Target::Direct(name) => name.len(),
        }
    }
}

impl Entry {
    /// What the entry counts against the registry's bound on the events it
    /// keeps: its fixed size and the text it carries.
    pub fn kept_bytes(&self) -> usize {
        let texts = |texts: &[&Text]| texts.iter().map(|t| t.len()).sum::<usize>();
        let carried = match &self.event {
            Event::Joined {
                id,
                name,
                node,
                addr,
                ..
            }
            | Event::Restored {
                id,
                name,
                node,
                addr,
                ..
            } => texts(&[id, name, node, addr]),
            Event::Killed { id, name } => texts(&[id, name]),
            Event::Msg {
                target,
                author,
                name,
                text,
                ..
            } => target.heap_bytes() + texts(&[author, name, text]),
            Event::RoomJoined {
                room,
                id,
                name,
                roster,
                ..
            } => {
                texts(&[room, id, name])
                    + roster
                        .iter()
                        .map(|(id, name)| {
                            std::mem::size_of::<(Text, Text)>() + id.len() + name.len()
                        })
                        .sum::<usize>()
            }
            Event::RoomParted { room, id, name } => texts(&[room, id, name]),
            Event::Moved { id, to, from } => texts(&[id, to, from]),
            Event::Away { id } | Event::Online { id } | Event::KillRequest { id } => id.len(),
            Event::NodeDead { node } => node.len(),
        };
        std::mem::size_of::<Entry>() + carried
    }

    /// Reads a stream entry: its id (`<seq>-0`) and its fields.
    pub fn decode(id: &str, fields: &HashMap<String, Value>) -> Result<Entry, EventError> {
        let fail = |problem: &str| EventError {
            id: id.to_owned(),
            problem: problem.to_owned(),
        };
        let seq = id
            .split_once('-')
            .map_or(id, |(seq, _)| seq)
            .parse::<u64>()
            .map_err(|_| fail("the id is not a number"))?;
        let text = |key: &str| -> Result<Text, EventError> {
            match fields.get(key) {
                Some(Value::BulkString(bytes)) => {
                    Text::from_utf8(bytes::Bytes::copy_from_slice(bytes))
                        .map_err(|_| fail("a field is not UTF-8"))
                }
                Some(Value::SimpleString(s)) => Ok(Text::from(s.as_str())),
                Some(Value::Int(n)) => Ok(Text::from(n.to_string())),
                _ => Err(fail(&format!("no field `{key}`"))),
            }
        };
        let number = |key: &str| -> Result<i64, EventError> {
            text(key)?
                .parse::<i64>()
                .map_err(|_| fail(&format!("field `{key}` is not a number")))
        };
        let kind = text("k")?;
        let event = match kind.as_str() {
            "join" => Event::Joined {
                id: text("i")?,
                name: text("n")?,
                node: text("o")?,
                since_ms: number("s")?,
                addr: text("a")?,
            },
            "restore" => Event::Restored {
                id: text("i")?,
                name: text("n")?,
                node: text("o")?,
                since_ms: number("s")?,
                addr: text("a")?,
                online: text("e")? == "on",
            },
            "kill" => Event::Killed {
                id: text("i")?,
                name: text("n")?,
            },
            "msg" => {
                let dst = text("d")?;
                let target = match text("c")?.as_str() {
                    "lobby" => Target::Lobby,
                    "room" => Target::Room(dst),
                    "direct" => Target::Direct(dst),
                    _ => return Err(fail("unknown message kind")),
                };
                Event::Msg {
                    target,
                    author: text("a")?,
                    name: text("n")?,
                    text: text("x")?,
                    at_ms: number("t")?,
                }
            }
            "rjoin" => Event::RoomJoined {
                room: text("m")?,
                id: text("i")?,
                name: text("n")?,
                roster: text("R")?
                    .lines()
                    .filter_map(|line| line.split_once('\t'))
                    .map(|(id, name)| (Text::from(id), Text::from(name)))
                    .collect(),
                again: text("g")? == "1",
            },
            "rpart" => Event::RoomParted {
                room: text("m")?,
                id: text("i")?,
                name: text("n")?,
            },
            "move" => Event::Moved {
                id: text("i")?,
                to: text("o")?,
                from: text("f")?,
            },
            "away" => Event::Away { id: text("i")? },
            "online" => Event::Online { id: text("i")? },
            "dead" => Event::NodeDead { node: text("o")? },
            "ctl-kill" => Event::KillRequest { id: text("i")? },
            _ => return Err(fail("unknown kind")),
        };
        Ok(Entry { seq, event })
    }

    /// Whether the peer `id` (whose rooms are `rooms`) would have been
    /// sent this event: lobby events, its rooms' events, its direct
    /// messages. Used to pick, from an inbox, what a peer that resumes on
    /// another node missed.
    pub fn concerns(&self, id: &str, rooms: &[Text]) -> bool {
        match &self.event {
            Event::Msg {
                target: Target::Direct(to),
                ..
            } => to == id,
            Event::Msg {
                target: Target::Room(room),
                ..
            }
            | Event::RoomJoined { room, .. }
            | Event::RoomParted { room, .. } => rooms.iter().any(|r| r == room),
            Event::Msg {
                target: Target::Lobby,
                ..
            }
            | Event::Joined { .. }
            | Event::Killed { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn entries_decode() {
        let msg = Entry::decode(
            "1234-0",
            &fields(&[
                ("k", "msg"),
                ("c", "room"),
                ("a", "alice12345"),
                ("n", "alice"),
                ("x", "hi :: there\n"),
                ("t", "99"),
                ("d", "#rust"),
            ]),
        )
        .unwrap();
        assert_eq!(msg.seq, 1234);
        assert_eq!(
            msg.event,
            Event::Msg {
                target: Target::Room("#rust".into()),
                author: "alice12345".into(),
                name: "alice".into(),
                text: "hi :: there\n".into(),
                at_ms: 99,
            }
        );
        assert!(msg.concerns("bob", &["#rust".into()]));
        assert!(!msg.concerns("bob", &["#go".into()]));
        let join = Entry::decode(
            "7-0",
            &fields(&[
                ("k", "rjoin"),
                ("m", "#a"),
                ("i", "x"),
                ("n", "X"),
                ("R", "p\tP\nq\tQ"),
                ("g", "0"),
            ]),
        )
        .unwrap();
        let Event::RoomJoined { roster, again, .. } = join.event else {
            panic!("a room join");
        };
        assert_eq!(roster, [("p".into(), "P".into()), ("q".into(), "Q".into())]);
        assert!(!again);
        assert!(Entry::decode("x-0", &fields(&[("k", "away"), ("i", "a")])).is_err());
        assert!(Entry::decode("1-0", &fields(&[("k", "what")])).is_err());
        assert!(Entry::decode("1-0", &fields(&[("k", "away")])).is_err());
    }
}
