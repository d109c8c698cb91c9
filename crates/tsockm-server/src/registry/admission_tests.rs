//! Section 9's order of checks, with section 14's additions, as a table:
//! one row per step (and the rows that show one step before the next).

use super::*;

const ME: &str = "meMEme1234";

fn facts(peer: Option<&'static str>, needs_auth: bool, over_rate: bool) -> ConnFacts<'static> {
    ConnFacts {
        peer,
        needs_auth,
        over_rate,
    }
}

/// A verdict in a few words: `ERR MSG 403`, `DROP`, or the request.
fn render(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Refuse(r) => format!("ERR {} {}", r.action, r.status),
        Verdict::Drop => "DROP".to_owned(),
        Verdict::Accept(request) => format!("{request:?}"),
    }
}

fn item(line: &str) -> Result<Frame, FrameError> {
    line.parse::<Frame>()
}

/// The table: a name, what the registry knows of the connection, the
/// line, and the verdict in a few words (see `render`).
#[rustfmt::skip]
fn rows() -> Vec<(&'static str, ConnFacts<'static>, String, &'static str)> {
    let new = facts(None, false, false);
    let new_over = facts(None, false, true);
    let locked = facts(None, true, false);
    let locked_over = facts(None, true, true);
    let me = facts(Some(ME), false, false);
    let me_over = facts(Some(ME), false, true);
    let rows = [
        // 2. Malformed; over the rate, junk is dropped without an answer.
        ("2 malformed", me, "REQ::MSG::200", "ERR NONE 400"),
        ("2 unknown type", new, "ASK::MSG::200::::::::", "ERR NONE 400"),
        ("2 unknown status", me, "REQ::MSG::201::::::*::x", "ERR NONE 400"),
        ("2 junk over the rate", me_over, "REQ::MSG", "DROP"),
        ("2 junk over the rate, unregistered", new_over, "junk", "DROP"),
        // 3. Unknown action.
        ("3 unknown action", me, "REQ::PING::200::::::::", "ERR NONE 405"),
        ("3 over the rate", me_over, "REQ::PING::200::::::::", "DROP"),
        // 4. Not taken from clients, before "not registered".
        ("4 RES::MSG", me, "RES::MSG::200::::::*::x", "ERR MSG 405"),
        ("4 ERR", me, "ERR::COMM::400::::::::x", "ERR COMM 405"),
        ("4 REQ::NTFY_JOIN", new, "REQ::NTFY_JOIN::200::::::::", "ERR NTFY_JOIN 405"),
        ("4 RES::JOIN", me, "RES::JOIN::200::::::#a::", "ERR JOIN 405"),
        ("4 before 8", me_over, "REQ::NTFY_KILL::200::::::::", "ERR NTFY_KILL 405"),
        // 5. Not registered: anything but COMM (and AUTH, section 14).
        ("5 MSG", new, "REQ::MSG::200::::::*::hi", "ERR MSG 400"),
        ("5 COMM_END", new, "REQ::COMM_END::200::::::::", "ERR COMM_END 400"),
        ("5 RES::COMM", new, "RES::COMM::200::::::::OK", "ERR COMM 400"),
        ("5 JOIN", new, "REQ::JOIN::200::::::#a::", "ERR JOIN 400"),
        ("5 HISTORY", new, "REQ::HISTORY::200::::::*::5", "ERR HISTORY 400"),
        ("5 before 8", new_over, "REQ::GET_PEER::200::::::::x", "ERR GET_PEER 400"),
        // Section 14: COMM before AUTH on a server with a password.
        ("14 COMM before AUTH", locked, "REQ::COMM::200::::::::alice", "ERR COMM 401"),
        ("14 resume before AUTH", locked, "REQ::COMM::200::id::::::tok", "ERR COMM 401"),
        ("14 401 before 8", locked_over, "REQ::COMM::200::::::::alice", "ERR COMM 401"),
        ("14 5 before 401", locked, "REQ::MSG::200::::::*::x", "ERR MSG 400"),
        ("14 AUTH before registering", locked, "REQ::AUTH::200::::::::pw", r#"Auth { password: "pw" }"#),
        ("14 AUTH over the rate", locked_over, "REQ::AUTH::200::::::::pw", "ERR AUTH 429"),
        ("14 AUTH after registering", me, "REQ::AUTH::200::::::::pw", r#"Auth { password: "pw" }"#),
        // 6. A second COMM, before the SENDER_ID check.
        ("6 second COMM", me, "REQ::COMM::200::::::::alice", "ERR COMM 400"),
        ("6 before 7", me, "REQ::COMM::200::someone::::::tok", "ERR COMM 400"),
        // 7. SENDER_ID naming someone else, health answers included.
        ("7 MSG", me, "REQ::MSG::200::someone::::*::hi", "ERR MSG 403"),
        ("7 health answer", me, "RES::COMM::200::someone::::::OK", "ERR COMM 403"),
        ("7 JOIN", me, "REQ::JOIN::200::someone::::#a::", "ERR JOIN 403"),
        ("7 before 8", me_over, "REQ::MSG::200::someone::::*::hi", "ERR MSG 403"),
        ("7 own id is fine", me, "REQ::ROOMS::200::meMEme1234::::::", "Rooms"),
        // 8. The rate.
        ("8 MSG", me_over, "REQ::MSG::200::::::*::hi", "ERR MSG 429"),
        ("8 registration", new_over, "REQ::COMM::200::::::::alice", "ERR COMM 429"),
        ("8 unsolicited health answer", me_over, "RES::COMM::200::::::::OK", "ERR COMM 429"),
        ("8 before 9", me_over, "REQ::JOIN::200::::::#a b::", "ERR JOIN 429"),
        // 9. The action's own checks that need only the frame.
        ("9 username", new, "REQ::COMM::200::::::::", "ERR COMM 400"),
        ("9 username with ::", new, "REQ::COMM::200::::::::a::b", "ERR COMM 400"),
        ("9 room syntax", me, "REQ::JOIN::200::::::#a b::", "ERR JOIN 400"),
        ("9 room without #", me, "REQ::PART::200::::::a::", "ERR PART 400"),
        ("9 room in a MSG", me, "REQ::MSG::200::::::#::x", "ERR MSG 400"),
        ("9 history query", me, "REQ::HISTORY::200::::::*::0", "ERR HISTORY 400"),
        ("9 history conversation", me, "REQ::HISTORY::200::::::#a::b::5", "ERR HISTORY 400"),
        // Accepted.
        ("register", new, "REQ::COMM::200::::::::alice", r#"Register { username: "alice" }"#),
        ("resume", new, "REQ::COMM::200::id1::m1::::tok", r#"Resume { peer_id: "id1", token: "tok", last_msg_id: "m1" }"#),
        ("broadcast", me, "REQ::MSG::200::::::*::hi", r#"Msg { to: Lobby, text: "hi" }"#),
        ("broadcast, empty DST", me, "REQ::MSG::200::::::::hi", r#"Msg { to: Lobby, text: "hi" }"#),
        ("room message", me, "REQ::MSG::200::::::#Rust::hi", r##"Msg { to: Room(RoomName("#rust")), text: "hi" }"##),
        ("direct", me, "REQ::MSG::200::::::id2::hi", r#"Msg { to: Peer("id2"), text: "hi" }"#),
        ("get peer", me, "REQ::GET_PEER::200::::::::id2", r#"GetPeer { id: "id2" }"#),
        ("COMM_END", me, "REQ::COMM_END::200::::::::", "End"),
        ("health answer", me, "RES::COMM::200::meMEme1234::::::OK", "HealthAnswer"),
        ("join", me, "REQ::JOIN::200::::::#a::", r##"Join { room: RoomName("#a") }"##),
        ("rooms", me, "REQ::ROOMS::200::::::::", "Rooms"),
        ("history", me, "REQ::HISTORY::200::::::id2::5 after m9", r#"History { conversation: Peer("id2"), query: HistoryQuery { n: 5, anchor: Some((After, "m9")) } }"#),
    ];
    rows.into_iter().map(|(name, facts, line, verdict)| (name, facts, line.to_owned(), verdict)).collect()
}

#[test]
fn the_order_of_checks() {
    for (name, facts, line, expected) in rows() {
        let verdict = judge(item(&line), &facts);
        assert_eq!(render(&verdict), expected, "row `{name}`: {line}");
    }
}

#[test]
fn tokens_are_taken_by_all_but_comm_end_and_solicited_health_answers() {
    let me = facts(Some(ME), false, false);
    let new = facts(None, false, false);
    let end = item("REQ::COMM_END::200::::::::");
    let answer = item("RES::COMM::200::::::::OK");
    let msg = item("REQ::MSG::200::::::*::x");
    assert!(!takes_token(&end, &me, false));
    assert!(!takes_token(&end, &new, false));
    assert!(!takes_token(&answer, &me, true));
    assert!(takes_token(&answer, &me, false));
    assert!(takes_token(&answer, &new, true));
    assert!(takes_token(&msg, &me, true));
    assert!(takes_token(&item("junk"), &me, true));
}

#[test]
fn history_queries() {
    let ok = [
        ("5", 5, None),
        ("1", 1, None),
        ("500", 500, None),
        ("501", 500, None),
        ("99999999999999999999999", 500, None),
        ("  7  ", 7, None),
        ("3 before abc", 3, Some((Side::Before, "abc"))),
        ("3 after abc", 3, Some((Side::After, "abc"))),
    ];
    for (body, n, anchor) in ok {
        let query = history_query(body).unwrap();
        assert_eq!(query.n, n, "{body:?}");
        assert_eq!(
            query.anchor.as_ref().map(|(s, id)| (*s, id.as_str())),
            anchor,
            "{body:?}"
        );
    }
    for bad in [
        "",
        "0",
        "abc",
        "-5",
        "5 before",
        "5 after",
        "5 around x",
        "5 before a b",
        "1.5",
    ] {
        assert!(history_query(bad).is_err(), "{bad:?}");
    }
}
