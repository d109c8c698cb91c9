//! The message store's two costs that users feel: how many messages a
//! second the store thread keeps up with, and how long a HISTORY page takes
//! from a big database.
//!
//! - `append`: messages of about 100 bytes of text handed to a
//!   [`StoreHandle`] (as the registry does) and written by the store thread
//!   to a SQLite file, with `history_max` 10,000 (pruning in every batch,
//!   as in a long-running server). One iteration is one message; the clock
//!   stops once the thread has written them all. The goal is well above
//!   50,000 messages a second.
//! - `history`: HISTORY `500` (latest) and `500 before <id>` (a random
//!   anchor) from a database of 1,000,000 messages: half in the lobby, the
//!   other half spread over 99 rooms, built once per run in a temporary
//!   directory. The goal is a p99 under 20 ms.
//!
//! Run with `cargo bench -p tsockm-server --bench store`. After criterion's
//! report, the run prints one line per measure with the sustained rate or
//! the latency percentiles, measured directly.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tsockm_server::store::{
    Conversation, Query, Seq, SqliteStore, Store, StoreHandle, StoreWorker, StoredMessage,
    WorkerLimits,
};

/// Messages in the HISTORY benchmark's database.
const N_STORED: u64 = 1_000_000;

/// Rooms beside the lobby in that database.
const N_ROOMS: u64 = 99;

/// Messages appended for the direct measure of the sustained rate.
const N_SUSTAINED: u64 = 1_000_000;

/// HISTORY requests timed one by one for the percentiles.
const N_LATENCY: usize = 2_000;

/// The server's default `--history-max`.
const HISTORY_MAX: usize = 10_000;

/// Items per HISTORY page, the most a client may ask for.
const PAGE: usize = 500;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .configure_from_args();
    // Without `--bench` (as under `cargo test --benches`) criterion only
    // checks that each benchmark runs: keep the databases small then.
    let timing = std::env::args().any(|arg| arg == "--bench");
    let dir = tempfile::tempdir().expect("a temporary directory");

    let (handle, thread) = spawn(&dir.path().join("append.db"));
    let mut next_seq = 1;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                append(&handle, next_seq);
                next_seq += 1;
            }
            barrier(&handle);
            start.elapsed()
        })
    });
    group.finish();
    let sustained = timing.then(|| sustained_rate(&handle, &mut next_seq));
    handle.close();
    thread.join().expect("the store thread ends");

    let n_stored = if timing { N_STORED } else { 20_000 };
    let mut store = build(&dir.path().join("history.db"), n_stored);
    let lobby = Conversation::Lobby;
    let mut anchors = Anchors::new(n_stored);
    let mut group = c.benchmark_group("store-history");
    group.bench_function("latest-500", |b| {
        b.iter(|| {
            black_box(
                store
                    .history(&lobby, &Query::Latest { n: PAGE })
                    .expect("a page"),
            )
        })
    });
    group.bench_function("before-500", |b| {
        b.iter(|| {
            let query = Query::Before {
                seq: anchors.next(),
                n: PAGE,
            };
            black_box(store.history(&lobby, &query).expect("a page"))
        })
    });
    group.finish();
    c.final_summary();

    if let Some(rate) = sustained {
        println!(
            "append: {rate:.0} messages/s sustained over {N_SUSTAINED} messages \
             (about 100 bytes of text, history_max {HISTORY_MAX})"
        );
        let room = Conversation::Room("#room7".to_owned());
        for (name, conversation) in [("lobby", &lobby), ("room", &room)] {
            let latest = latencies(|| store.history(conversation, &Query::Latest { n: PAGE }));
            println!("history latest {PAGE} ({name}, {n_stored} stored): {latest}");
        }
        let before = latencies(|| {
            store.history(
                &lobby,
                &Query::Before {
                    seq: anchors.next(),
                    n: PAGE,
                },
            )
        });
        println!("history {PAGE} before a random id (lobby, {n_stored} stored): {before}");
    }
}

/// A store thread over a fresh SQLite file.
fn spawn(path: &std::path::Path) -> (StoreHandle, std::thread::JoinHandle<()>) {
    let store = SqliteStore::open(path, HISTORY_MAX).expect("the database opens");
    StoreWorker::spawn(Box::new(store), WorkerLimits::default()).expect("the store thread starts")
}

/// Queues message `seq`, waiting for room rather than dropping it (the
/// benchmark measures what the thread keeps up with, not what it drops).
fn append(handle: &StoreHandle, seq: Seq) {
    while handle.append(message(seq, room_of(seq))).is_err() {
        std::thread::yield_now();
    }
}

/// Waits until the store thread has written everything queued before.
fn barrier(handle: &StoreHandle) {
    let (done_tx, done_rx) = mpsc::channel();
    handle.history(
        Conversation::Lobby,
        Query::Latest { n: 1 },
        Box::new(move |_| {
            let _ = done_tx.send(());
        }),
    );
    done_rx.recv().expect("the store thread answers");
}

/// Messages a second over [`N_SUSTAINED`] appends, from the first append
/// until the thread has written the last.
fn sustained_rate(handle: &StoreHandle, next_seq: &mut Seq) -> f64 {
    let failed_before = handle.stats().batches_failed.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..N_SUSTAINED {
        append(handle, *next_seq);
        *next_seq += 1;
    }
    barrier(handle);
    let elapsed = start.elapsed();
    assert_eq!(
        handle.stats().batches_failed.load(Ordering::Relaxed),
        failed_before,
        "no batch may fail"
    );
    N_SUSTAINED as f64 / elapsed.as_secs_f64()
}

/// The conversation of the `seq`th message: the lobby or one of 8 rooms.
fn room_of(seq: Seq) -> Conversation {
    match seq % 9 {
        0 => Conversation::Lobby,
        n => Conversation::Room(format!("#room{n}")),
    }
}

/// A message with about 100 bytes of text.
fn message(seq: Seq, conversation: Conversation) -> StoredMessage {
    StoredMessage {
        seq,
        at_ms: 1_700_000_000_000 + seq as i64,
        conversation,
        author_id: format!("Xq{:08}", seq % 1000),
        author_name: format!("user{}", seq % 1000),
        text: format!(
            "{seq:>10} the quick brown fox jumps over the lazy dog, then over the lazy dog again ok"
        ),
    }
}

/// A database of `n` messages: every other one in the lobby, the rest
/// spread over [`N_ROOMS`] rooms. Kept whole (`history_max` is `n`).
fn build(path: &std::path::Path, n: u64) -> SqliteStore {
    let start = Instant::now();
    let mut store = SqliteStore::open(path, n as usize).expect("the database opens");
    let mut batch = Vec::with_capacity(4096);
    for seq in 1..=n {
        let conversation = if seq % 2 == 0 {
            Conversation::Lobby
        } else {
            Conversation::Room(format!("#room{}", seq / 2 % N_ROOMS))
        };
        batch.push(message(seq, conversation));
        if batch.len() == batch.capacity() || seq == n {
            store.append(&batch).expect("the batch is written");
            batch.clear();
        }
    }
    eprintln!("built a store of {n} messages in {:.1?}", start.elapsed());
    store
}

/// Random lobby message seqs (even ones) for `before` anchors, leaving at
/// least a page before each.
struct Anchors {
    state: u64,
    n_stored: u64,
}

impl Anchors {
    fn new(n_stored: u64) -> Anchors {
        Anchors {
            state: 0x9E37_79B9_7F4A_7C15,
            n_stored,
        }
    }

    fn next(&mut self) -> Seq {
        // xorshift64: deterministic, good enough to scatter anchors.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let low = 2 * PAGE as u64 + 2;
        let seq = low + self.state % (self.n_stored - low);
        seq & !1
    }
}

/// Times `request` [`N_LATENCY`] times: `p50 ... p99 ... max`.
fn latencies<T, E: std::fmt::Debug>(mut request: impl FnMut() -> Result<T, E>) -> String {
    let mut times: Vec<Duration> = (0..N_LATENCY)
        .map(|_| {
            let start = Instant::now();
            black_box(request().expect("a page"));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}
