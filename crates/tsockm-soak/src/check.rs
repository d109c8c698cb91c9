//! The invariants, checked over every session's record once the run is over
//! (see the crate documentation for what they mean).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::bot::{Rx, Session};

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
}

/// Checks every session against the others.
pub fn check(sessions: &[Session]) -> Checked {
    let mut checked = Checked::default();
    // A broadcast is accepted when anyone received it.
    let mut accepted: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for session in sessions {
        for rx in &session.received {
            if let Rx::Broadcast { author, seq } = rx {
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
    let mut violations = Vec::new();
    for session in sessions {
        check_session(
            session,
            &accepted,
            &observer_ids,
            &mut checked,
            &mut violations,
        );
    }
    checked.violations = violations;
    checked
}

fn check_session(
    session: &Session,
    accepted: &HashMap<&str, BTreeSet<u64>>,
    observer_ids: &HashSet<&str>,
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
            Rx::Broadcast { author, seq } => {
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
            Rx::Direct { author, seq } => {
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
                violations.push(format!(
                    "{me}: no NTFY_KILL for {peer}, which joined after it"
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
            if seqs.len() != all.len() {
                let missing: Vec<u64> = all.iter().filter(|s| !seqs.contains(s)).copied().collect();
                violations.push(format!(
                    "{me} was present for all of {author}'s session, yet missed {} accepted \
                     broadcasts: {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)]
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
            violations.push(format!(
                "{me}: broadcasts of {author} are not a contiguous run of the accepted ones \
                 (got {} from b{first})",
                seqs.len()
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
        }
    }

    fn b(author: &str, seq: u64) -> Rx {
        Rx::Broadcast {
            author: author.to_owned(),
            seq,
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
    fn an_observer_must_see_every_kill() {
        let sessions = vec![session("obs", true, vec![join("a")])];
        let checked = check(&sessions);
        assert!(checked.violations.join("\n").contains("no NTFY_KILL for a"));
    }
}
