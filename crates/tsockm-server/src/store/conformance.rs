//! What every [`Store`] backend must do, as test cases run against each
//! (`memory.rs` and `sqlite.rs` call [`check_all`] from their tests).

use bytes::Bytes;

use super::{
    Conversation, HistoryError, Page, Query, SavedPeer, SavedSessions, Seq, Store, StoredMessage,
};

/// Makes a fresh, empty store keeping `history_max` per conversation.
pub trait MakeStore: Fn(usize) -> Box<dyn Store> {}
impl<F: Fn(usize) -> Box<dyn Store>> MakeStore for F {}

/// Runs every case on fresh stores from `make`.
pub fn check_all(make: impl MakeStore) {
    pages_in_every_direction(make(100));
    unknown_anchors(make(3));
    pruning_keeps_the_latest(make(3));
    history_max_zero_stores_nothing(make(0));
    direct_messages_both_ways(make(100));
    repeats_are_ignored(make(100));
    meta_round_trips(make(100));
    sessions_are_taken_once(make(100));
}

/// A message with a text derived from its seq.
pub fn message(seq: Seq, conversation: &Conversation) -> StoredMessage {
    StoredMessage {
        seq,
        at_ms: 1_700_000_000_000 + seq as i64,
        conversation: conversation.clone(),
        author_id: format!("peer{}", seq % 3),
        author_name: format!("user{}", seq % 3),
        text: format!("message {seq}: héllo :: world"),
    }
}

/// The seqs of a page, and its `more`.
pub fn seqs(page: &Page) -> (Vec<Seq>, bool) {
    (page.items.iter().map(|m| m.seq).collect(), page.more)
}

fn room(name: &str) -> Conversation {
    Conversation::Room(name.to_owned())
}

fn ask(store: &mut dyn Store, conversation: &Conversation, query: Query) -> (Vec<Seq>, bool) {
    match store.history(conversation, &query) {
        Ok(page) => seqs(&page),
        Err(e) => panic!("{query:?} on {conversation:?}: {e}"),
    }
}

fn pages_in_every_direction(mut store: Box<dyn Store>) {
    let lobby = Conversation::Lobby;
    let rust = room("#rust");
    // Lobby gets odd seqs 1..=19, #rust even ones, interleaved, in two batches.
    let all: Vec<StoredMessage> = (1..=20)
        .map(|seq| message(seq, if seq % 2 == 1 { &lobby } else { &rust }))
        .collect();
    store.append(&all[..7]).unwrap();
    store.append(&all[7..]).unwrap();
    let lobby_seqs: Vec<Seq> = (1..=19).step_by(2).collect();

    // Each case: query, expected seqs (oldest first), expected `more`.
    let cases: Vec<(Query, Vec<Seq>, bool)> = vec![
        (Query::Latest { n: 3 }, vec![15, 17, 19], true),
        (Query::Latest { n: 10 }, lobby_seqs.clone(), false),
        (Query::Latest { n: 500 }, lobby_seqs.clone(), false),
        (Query::Before { seq: 9, n: 2 }, vec![5, 7], true),
        (Query::Before { seq: 9, n: 4 }, vec![1, 3, 5, 7], false),
        (Query::Before { seq: 9, n: 500 }, vec![1, 3, 5, 7], false),
        (Query::Before { seq: 1, n: 5 }, vec![], false),
        (Query::After { seq: 9, n: 2 }, vec![11, 13], true),
        (
            Query::After { seq: 9, n: 5 },
            vec![11, 13, 15, 17, 19],
            false,
        ),
        (Query::After { seq: 19, n: 5 }, vec![], false),
        (Query::After { seq: 1, n: 1 }, vec![3], true),
    ];
    for (query, expected, more) in cases {
        assert_eq!(
            ask(&mut *store, &lobby, query),
            (expected, more),
            "{query:?}"
        );
    }
    // Items come back whole, in their own conversation.
    let page = store.history(&rust, &Query::Latest { n: 2 }).unwrap();
    assert_eq!(page.items, vec![all[17].clone(), all[19].clone()]);
    assert!(page.more);
    // An empty conversation has no history and nothing more.
    assert_eq!(
        ask(&mut *store, &room("#empty"), Query::Latest { n: 5 }),
        (vec![], false)
    );
    assert_eq!(store.max_seq().unwrap(), 20);
}

fn unknown_anchors(mut store: Box<dyn Store>) {
    let lobby = Conversation::Lobby;
    let rust = room("#rust");
    let batch: Vec<StoredMessage> = (1..=6)
        .map(|seq| message(seq, if seq <= 5 { &lobby } else { &rust }))
        .collect();
    store.append(&batch).unwrap();
    // The lobby keeps 3..=5: 1 and 2 were pruned, 6 is elsewhere, 99 never was.
    for seq in [1, 2, 6, 99] {
        for query in [Query::Before { seq, n: 5 }, Query::After { seq, n: 5 }] {
            let answer = store.history(&lobby, &query);
            assert!(
                matches!(answer, Err(HistoryError::UnknownId)),
                "{query:?}: {answer:?}"
            );
        }
    }
    let answer = store.history(&room("#nowhere"), &Query::After { seq: 3, n: 5 });
    assert!(matches!(answer, Err(HistoryError::UnknownId)), "{answer:?}");
    assert_eq!(
        ask(&mut *store, &lobby, Query::Before { seq: 3, n: 5 }),
        (vec![], false)
    );
}

fn pruning_keeps_the_latest(mut store: Box<dyn Store>) {
    let lobby = Conversation::Lobby;
    let rust = room("#rust");
    for seq in 1..=10 {
        store.append(&[message(seq, &lobby)]).unwrap();
    }
    // One batch much larger than the bound, into two conversations.
    let batch: Vec<StoredMessage> = (11..=30)
        .map(|seq| message(seq, if seq % 2 == 0 { &lobby } else { &rust }))
        .collect();
    store.append(&batch).unwrap();
    assert_eq!(
        ask(&mut *store, &lobby, Query::Latest { n: 500 }),
        (vec![26, 28, 30], false)
    );
    assert_eq!(
        ask(&mut *store, &rust, Query::Latest { n: 500 }),
        (vec![25, 27, 29], false)
    );
    assert_eq!(
        ask(&mut *store, &rust, Query::Latest { n: 2 }),
        (vec![27, 29], true)
    );
    assert_eq!(store.max_seq().unwrap(), 30);
}

fn history_max_zero_stores_nothing(mut store: Box<dyn Store>) {
    let lobby = Conversation::Lobby;
    store
        .append(&[message(7, &lobby), message(8, &room("#a"))])
        .unwrap();
    assert_eq!(
        ask(&mut *store, &lobby, Query::Latest { n: 500 }),
        (vec![], false)
    );
    let answer = store.history(&lobby, &Query::Before { seq: 7, n: 5 });
    assert!(matches!(answer, Err(HistoryError::UnknownId)), "{answer:?}");
    // Ids must still never be reused.
    assert_eq!(store.max_seq().unwrap(), 8);
}

fn direct_messages_both_ways(mut store: Box<dyn Store>) {
    let ab = Conversation::direct("bob2", "alice1");
    let ba = Conversation::direct("alice1", "bob2");
    let ac = Conversation::direct("alice1", "carol3");
    store
        .append(&[
            message(1, &ab),
            message(2, &ba),
            message(3, &ac),
            message(4, &ba),
        ])
        .unwrap();
    for conversation in [&ab, &ba] {
        assert_eq!(
            ask(&mut *store, conversation, Query::Latest { n: 10 }),
            (vec![1, 2, 4], false)
        );
    }
    assert_eq!(
        ask(&mut *store, &ac, Query::Latest { n: 10 }),
        (vec![3], false)
    );
    assert_eq!(
        ask(&mut *store, &ab, Query::After { seq: 1, n: 1 }),
        (vec![2], true)
    );
    let answer = store.history(&ab, &Query::After { seq: 3, n: 1 });
    assert!(matches!(answer, Err(HistoryError::UnknownId)), "{answer:?}");
}

fn repeats_are_ignored(mut store: Box<dyn Store>) {
    let lobby = Conversation::Lobby;
    store
        .append(&[message(1, &lobby), message(2, &lobby)])
        .unwrap();
    let mut again = message(2, &lobby);
    again.text = "a second message 2".to_owned();
    store.append(&[again, message(3, &lobby)]).unwrap();
    let page = store.history(&lobby, &Query::Latest { n: 10 }).unwrap();
    assert_eq!(seqs(&page), (vec![1, 2, 3], false));
    assert_eq!(page.items[1], message(2, &lobby));
}

fn meta_round_trips(mut store: Box<dyn Store>) {
    assert_eq!(store.meta("alphabet").unwrap(), None);
    store.set_meta("alphabet", "abc").unwrap();
    store.set_meta("other", "x").unwrap();
    store.set_meta("alphabet", "cba").unwrap();
    assert_eq!(store.meta("alphabet").unwrap().as_deref(), Some("cba"));
    assert_eq!(store.meta("other").unwrap().as_deref(), Some("x"));
}

/// Sessions with two peers, one with kept frames and rooms, one with none.
pub fn sample_sessions(saved_at_ms: i64) -> SavedSessions {
    SavedSessions {
        saved_at_ms,
        next_peer_seq: 42,
        peers: vec![
            SavedPeer {
                id: "p1AbCdEfGh".to_owned(),
                username: "alice".to_owned(),
                token_hash: [7; 32],
                addr: "127.0.0.1:5000".to_owned(),
                since_ms: 1_700_000_000_000,
                rooms: vec!["#rust".to_owned(), "#tea".to_owned()],
                kept: vec![
                    Bytes::from_static(b"RES::MSG::200::p2::m1::*::hi\n"),
                    Bytes::from_static(b"RES::JOIN::200::p3::srv::#rust::carol\n"),
                ],
                written: vec![Bytes::from_static(b"RES::MSG::200::a::m1::*::hi\n")],
            },
            SavedPeer {
                id: "p2ZyXwVuTs".to_owned(),
                username: "bob".to_owned(),
                token_hash: [9; 32],
                addr: "[0000:0000:0000:0000:0000:0000:0000:0001]:5001".to_owned(),
                since_ms: 1_700_000_000_500,
                rooms: vec![],
                kept: vec![],
                written: vec![],
            },
        ],
    }
}

fn sessions_are_taken_once(mut store: Box<dyn Store>) {
    assert_eq!(store.take_sessions().unwrap(), None);
    store.save_sessions(&sample_sessions(1)).unwrap();
    // A second save replaces the first.
    let mut second = sample_sessions(2);
    second.peers.reverse();
    store.save_sessions(&second).unwrap();
    assert_eq!(store.take_sessions().unwrap(), Some(second));
    assert_eq!(store.take_sessions().unwrap(), None);
}
