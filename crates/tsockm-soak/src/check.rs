//! The invariants, checked over every session's record once the run is over
//! (see the crate documentation for what they mean).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::bot::{Connection, Rx, Session};

/// What the check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Every invariant that did not hold.
    pub violations: Vec<String>,
    /// Broadcasts accepted (received by at least one peer).
    pub n_accepted: usize,
    /// Broadcasts received, all recipients together.
    pub n_deliveries: usize,
    /// NTFY_KILL frames received, all recipients together.
    pub n_kills: usize,
    /// Broadcast deliveries whose place was checked against the reference
    /// order (the first observer's).
    pub n_order_checked: usize,
}

/// Checks every session against the others.
pub fn check(sessions: &[Session]) -> Checked {
    let mut checked = Checked::default();
    // A broadcast is accepted when anyone received it.
    let mut accepted: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for session in sessions {
        for rx in &session.received {
            if let Rx::Broadcast { author, seq, .. } = rx {
                accepted.entry(author).or_default().insert(*seq);
            }
        }
    }
    checked.n_accepted = accepted.values().map(BTreeSet::len).sum();
    let observer_ids: HashSet<&str> = sessions
        .iter()
        .filter(|s| s.observer)
        .map(|s| s.peer_id.as_str())
        .collect();
    let by_id: HashMap<&str, &Session> = sessions.iter().map(|s| (s.peer_id.as_str(), s)).collect();
    let mut violations = Vec::new();
    for session in sessions {
        check_session(
            session,
            &accepted,
            &observer_ids,
            &by_id,
            &mut checked,
            &mut violations,
        );
    }
    check_ids(sessions, &mut violations);
    checked.n_order_checked = check_lobby_order(sessions, &mut violations);
    checked.violations = violations;
    checked
}

/// Where broadcast `gap` of `author` should have arrived in `session`'s
/// record, and the connections that began around there.
fn around_gap(session: &Session, author: &str, gap: u64) -> String {
    let mut before = None;
    let mut after = None;
    for (i, rx) in session.received.iter().enumerate() {
        if let Rx::Broadcast { author: a, seq, .. } = rx
            && a == author
        {
            if *seq < gap {
                before = Some(i);
            } else if after.is_none() {
                after = Some(i);
            }
        }
    }
    let from = before.map_or(0, |i| i + 1);
    let to = after.unwrap_or(session.received.len());
    let near: Vec<String> = session
        .connections
        .iter()
        .filter(|c| c.at >= from && c.at <= to)
        .map(describe)
        .collect();
    let all: Vec<String> = session.connections.iter().map(describe).collect();
    format!(
        "; it belongs between items {from} and {to} of {} received, where {}; \
         all connections: [{}]",
        session.received.len(),
        if near.is_empty() {
            "no connection began".to_owned()
        } else {
            format!("these began: {}", near.join(", "))
        },
        all.join(", ")
    )
}

fn describe(c: &Connection) -> String {
    let after = if c.after.is_empty() {
        String::new()
    } else {
        format!(" after a {}", c.after)
    };
    format!("@{} node {} {}{after}", c.at, c.node, c.how)
}

/// A message is `(kind, author, seq)`: `b` or `d`, its author's peer id, and
/// its number for that author.
type MessageKey<'a> = (char, &'a str, u64);

fn message_of(rx: &Rx) -> Option<(MessageKey<'_>, &str)> {
    match rx {
        Rx::Broadcast { author, seq, id } => Some((('b', author, *seq), id)),
        Rx::Direct { author, seq, id } => Some((('d', author, *seq), id)),
        Rx::Join { .. } | Rx::Kill { .. } => None,
    }
}

/// Every message carries one id wherever it arrives, and no two messages
/// carry the same id (ids are unique across the cluster).
fn check_ids(sessions: &[Session], violations: &mut Vec<String>) {
    let mut id_of: HashMap<MessageKey<'_>, &str> = HashMap::new();
    let mut message_with: HashMap<&str, MessageKey<'_>> = HashMap::new();
    let mut n_reported = 0;
    for session in sessions {
        for (key, id) in session.received.iter().filter_map(message_of) {
            let (kind, author, seq) = key;
            let mut problem = None;
            match id_of.get(&key) {
                Some(&known) if known != id => {
                    problem = Some(format!(
                        "{} (client {}): {kind}{seq} of {author} arrived with id {id}, \
                         elsewhere with id {known}",
                        session.peer_id, session.bot
                    ));
                }
                Some(_) => {}
                None => {
                    id_of.insert(key, id);
                }
            }
            match message_with.get(id) {
                Some(&other) if other != key => {
                    let (k2, a2, s2) = other;
                    problem = Some(format!(
                        "{} (client {}): id {id} names {kind}{seq} of {author} and \
                         {k2}{s2} of {a2}",
                        session.peer_id, session.bot
                    ));
                }
                Some(_) => {}
                None => {
                    message_with.insert(id, key);
                }
            }
            if let Some(problem) = problem {
                n_reported += 1;
                if n_reported <= 10 {
                    violations.push(problem);
                }
            }
        }
    }
    if n_reported > 10 {
        violations.push(format!("... {} more message id conflicts", n_reported - 10));
    }
}

/// One order of the lobby: the first observer received every accepted
/// broadcast (observers are present throughout and never drop), so its
/// order is the reference; every recipient must receive the broadcasts it
/// gets in that order. Broadcasts the reference lacks are reported as
/// missing elsewhere and skipped here. Returns how many deliveries were
/// placed.
fn check_lobby_order(sessions: &[Session], violations: &mut Vec<String>) -> usize {
    let Some(reference) = sessions.iter().find(|s| s.observer) else {
        return 0;
    };
    let place: HashMap<(&str, u64), usize> = reference
        .received
        .iter()
        .filter_map(|rx| match rx {
            Rx::Broadcast { author, seq, .. } => Some((author.as_str(), *seq)),
            _ => None,
        })
        .enumerate()
        .map(|(i, key)| (key, i))
        .collect();
    let mut n_placed = 0;
    for session in sessions {
        let mut last: Option<(usize, &str, u64)> = None;
        let mut n_inversions = 0usize;
        let mut first_inversion = None;
        for rx in &session.received {
            let Rx::Broadcast { author, seq, .. } = rx else {
                continue;
            };
            let Some(&at) = place.get(&(author.as_str(), *seq)) else {
                continue;
            };
            n_placed += 1;
            if let Some((before, a0, s0)) = last
                && at <= before
            {
                n_inversions += 1;
                first_inversion
                    .get_or_insert_with(|| format!("b{seq} of {author} after b{s0} of {a0}"));
            }
            last = Some((at, author, *seq));
        }
        if let Some(first) = first_inversion {
            violations.push(format!(
                "{} (client {}): {n_inversions} lobby broadcasts out of the order observer {} \
                 received them in (first: {first}, which {} received the other way round)",
                session.peer_id, session.bot, reference.peer_id, reference.peer_id
            ));
        }
    }
    n_placed
}

fn check_session(
    session: &Session,
    accepted: &HashMap<&str, BTreeSet<u64>>,
    observer_ids: &HashSet<&str>,
    by_id: &HashMap<&str, &Session>,
    checked: &mut Checked,
    violations: &mut Vec<String>,
) {
    let me = format!("{} (client {})", session.peer_id, session.bot);
    let mut broadcasts: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut last_direct: HashMap<&str, u64> = HashMap::new();
    let mut joins: HashMap<&str, bool> = HashMap::new();
    let mut killed: HashSet<&str> = HashSet::new();
    for rx in &session.received {
        match rx {
            Rx::Broadcast { author, seq, .. } => {
                checked.n_deliveries += 1;
                if killed.contains(author.as_str()) {
                    violations.push(format!(
                        "{me}: broadcast b{seq} of {author} after its NTFY_KILL"
                    ));
                }
                let seqs = broadcasts.entry(author).or_default();
                if let Some(&last) = seqs.last()
                    && *seq <= last
                {
                    violations.push(format!(
                        "{me}: b{seq} of {author} after b{last} (duplicate or out of order)"
                    ));
                }
                seqs.push(*seq);
            }
            Rx::Direct { author, seq, .. } => {
                if killed.contains(author.as_str()) {
                    violations.push(format!(
                        "{me}: direct d{seq} of {author} after its NTFY_KILL"
                    ));
                }
                if let Some(&last) = last_direct.get(author.as_str())
                    && *seq <= last
                {
                    violations.push(format!(
                        "{me}: d{seq} of {author} after d{last} (duplicate or out of order)"
                    ));
                }
                last_direct.insert(author, *seq);
            }
            Rx::Join { peer, announced } => {
                if joins.insert(peer, *announced).is_some() {
                    violations.push(format!("{me}: a second NTFY_JOIN for {peer}"));
                }
            }
            Rx::Kill { peer } => {
                checked.n_kills += 1;
                if !killed.insert(peer) {
                    violations.push(format!("{me}: a second NTFY_KILL for {peer}"));
                }
            }
        }
    }
    if session.observer {
        // Every churner that joined after the observer also left before it.
        for (peer, announced) in &joins {
            if *announced && !observer_ids.contains(peer) && !killed.contains(peer) {
                let history = by_id.get(peer).map_or_else(
                    || "no client had that id".to_owned(),
                    |s| {
                        let all: Vec<String> = s.connections.iter().map(describe).collect();
                        format!(
                            "client {}; connections: [{}]; it ended: {}, at {} ms \
                             (this observer at {} ms)",
                            s.bot,
                            all.join(", "),
                            s.end,
                            s.span_ms.1,
                            session.span_ms.1
                        )
                    },
                );
                violations.push(format!(
                    "{me}: no NTFY_KILL for {peer}, which joined after it ({history})"
                ));
            }
        }
    }
    if session.lossy {
        // A reset may destroy frames in flight: order and uniqueness only.
        return;
    }
    for (author, seqs) in &broadcasts {
        let Some(all) = accepted.get(author) else {
            continue;
        };
        let was_there_throughout =
            session.observer || (joins.get(author) == Some(&true) && killed.contains(author));
        if was_there_throughout {
            // A duplicate (reported above) also makes the counts differ,
            // with nothing missing.
            let missing: Vec<u64> = if seqs.len() == all.len() {
                Vec::new()
            } else {
                all.iter().filter(|s| !seqs.contains(s)).copied().collect()
            };
            if let Some(&gap) = missing.first() {
                violations.push(format!(
                    "{me} was present for all of {author}'s session, yet missed {} accepted \
                     broadcasts: {:?}{}",
                    missing.len(),
                    &missing[..missing.len().min(10)],
                    around_gap(session, author, gap)
                ));
            }
            continue;
        }
        // Present for one interval: a contiguous run of the accepted ones.
        let Some(&first) = seqs.first() else {
            continue;
        };
        let run: Vec<u64> = all.range(first..).take(seqs.len()).copied().collect();
        if run != *seqs {
            let gap = run
                .iter()
                .zip(seqs)
                .find(|(want, got)| want != got)
                .map_or(first, |(want, _)| *want);
            violations.push(format!(
                "{me}: broadcasts of {author} are not a contiguous run of the accepted ones \
                 (got {} from b{first}; b{gap} is missing){}",
                seqs.len(),
                around_gap(session, author, gap)
            ));
        }
    }
    if session.observer {
        // Authors it never heard from must have had nothing accepted.
        for (author, all) in accepted {
            if *author != session.peer_id && !broadcasts.contains_key(author) && !all.is_empty() {
                violations.push(format!(
                    "{me}: none of {author}'s {} accepted broadcasts arrived",
                    all.len()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(peer_id: &str, observer: bool, received: Vec<Rx>) -> Session {
        Session {
            peer_id: peer_id.to_owned(),
            bot: 0,
            observer,
            lossy: false,
            received,
            connections: Vec::new(),
            end: "",
            span_ms: (0, 0),
        }
    }

    fn b(author: &str, seq: u64) -> Rx {
        Rx::Broadcast {
            author: author.to_owned(),
            seq,
            id: format!("{author}-b{seq}"),
        }
    }

    fn join(peer: &str) -> Rx {
        Rx::Join {
            peer: peer.to_owned(),
            announced: true,
        }
    }

    fn kill(peer: &str) -> Rx {
        Rx::Kill {
            peer: peer.to_owned(),
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let sessions = vec![
            session(
                "obs",
                true,
                vec![join("a"), b("a", 0), b("a", 2), kill("a")],
            ),
            session("late", false, vec![b("a", 2)]),
        ];
        let checked = check(&sessions);
        assert!(checked.violations.is_empty(), "{:?}", checked.violations);
        assert_eq!(checked.n_accepted, 2);
    }

    #[test]
    fn gaps_duplicates_and_double_kills_are_caught() {
        let sessions = vec![
            session(
                "obs",
                true,
                vec![join("a"), b("a", 0), b("a", 1), b("a", 2), kill("a")],
            ),
            // Present throughout (saw the join and the kill) but missed b1.
            session(
                "r",
                false,
                vec![join("a"), b("a", 0), b("a", 2), kill("a"), kill("a")],
            ),
            // A run with a hole.
            session("s", false, vec![b("a", 0), b("a", 2)]),
            // Out of order.
            session("t", false, vec![b("a", 1), b("a", 0)]),
        ];
        let checked = check(&sessions);
        let all = checked.violations.join("\n");
        assert!(all.contains("missed 1 accepted"), "{all}");
        assert!(all.contains("second NTFY_KILL"), "{all}");
        assert!(all.contains("not a contiguous run"), "{all}");
        assert!(all.contains("out of order"), "{all}");
    }

    #[test]
    fn recipients_must_agree_on_the_lobby_order() {
        let sessions = vec![
            session("obs", true, vec![b("a", 0), b("c", 0), b("a", 1)]),
            // Same order, a part of it: fine.
            session("r", false, vec![b("c", 0), b("a", 1)]),
            // Per author in order, but c0 and a0 the other way round.
            session("s", false, vec![b("c", 0), b("a", 0), b("a", 1)]),
        ];
        let checked = check(&sessions);
        let all = checked.violations.join("\n");
        assert_eq!(checked.violations.len(), 1, "{all}");
        assert!(
            all.contains("s (client 0): 1 lobby broadcasts out of the order")
                && all.contains("b0 of a after b0 of c"),
            "{all}"
        );
        assert_eq!(checked.n_order_checked, 3 + 2 + 3);
    }

    #[test]
    fn a_message_has_one_id_and_an_id_one_message() {
        let other_id = Rx::Broadcast {
            author: "a".to_owned(),
            seq: 0,
            id: "x".to_owned(),
        };
        let reused = Rx::Broadcast {
            author: "a".to_owned(),
            seq: 1,
            id: "a-b0".to_owned(),
        };
        let sessions = vec![
            session("obs", true, vec![b("a", 0)]),
            session("r", false, vec![other_id]),
            session("s", false, vec![reused]),
        ];
        let all = check(&sessions).violations.join("\n");
        assert!(all.contains("b0 of a arrived with id x"), "{all}");
        assert!(all.contains("id a-b0 names b1 of a and b0 of a"), "{all}");
    }

    #[test]
    fn an_observer_must_see_every_kill() {
        let sessions = vec![session("obs", true, vec![join("a")])];
        let checked = check(&sessions);
        assert!(checked.violations.join("\n").contains("no NTFY_KILL for a"));
    }
}
