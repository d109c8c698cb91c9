//! Codec throughput: `FrameCodec` decoding and encoding realistic streams of
//! frames, beside tokio-util's `LinesCodec` decoding the same bytes.
//!
//! `LinesCodec` is the baseline because it is the least a line protocol must
//! do: find each `\n`, check UTF-8 and hand the line out. `FrameCodec` does
//! that and parses all seven fields. The goal is at least 1.0x its
//! throughput.
//!
//! Two streams, both several thousand lines of one deterministic mix:
//! - `from-clients`, what the server reads: broadcasts and direct messages
//!   with 20–200 byte bodies (some multi-line, so escaped), health-check
//!   answers and GET_PEER lookups, as the client's builders write them;
//! - `from-server`, what the server writes (encoded once per broadcast) and
//!   every client reads: relayed broadcasts and direct messages, health
//!   checks, GET_PEER answers. Every header field is filled here.
//!
//! Run with `cargo bench -p tsockm-proto --bench codec`. Besides criterion's
//! own report, the run ends with one line per stream giving the median times
//! of the two decoders from the same run and their throughput ratio.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use tokio_util::codec::{Decoder, Encoder, LinesCodec};
use tsockm_proto::{Action, DEFAULT_MAX_FRAME_BYTES, Frame, FrameCodec, Kind, Status};

/// Lines in the benchmark stream.
const N_LINES: usize = 5_000;

/// Bytes handed to the decoder at a time, as one socket read would.
const READ_BYTES: usize = 8 * 1024;

/// The server's address, as in every frame the server sends.
const SRV: &str = "127.0.0.1:6969";

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .configure_from_args();
    let from_clients = bench_stream(&mut c, "from-clients", &client_frames(), false);
    let from_server = bench_stream(&mut c, "from-server", &server_frames(), true);
    c.final_summary();
    for summary in [from_clients, from_server].into_iter().flatten() {
        println!("{summary}");
    }
}

/// Benchmarks decoding `frames`' wire form with both codecs (and encoding
/// them, if `encode`) in one group; returns the summary line of the ratio.
fn bench_stream(c: &mut Criterion, name: &str, frames: &[Frame], encode: bool) -> Option<String> {
    let mut wire = BytesMut::new();
    for frame in frames {
        frame.encode(&mut wire).expect("valid headers");
    }
    let wire = wire.freeze();

    let mut group = c.benchmark_group(format!("codec/{name}"));
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let frame_samples = RefCell::new(Vec::new());
    group.bench_function("FrameCodec decode", |b| {
        b.iter_custom(|iters| {
            let elapsed = time(iters, || decode_frames(&wire));
            frame_samples.borrow_mut().push(per_iter(elapsed, iters));
            elapsed
        })
    });
    let lines_samples = RefCell::new(Vec::new());
    group.bench_function("LinesCodec decode", |b| {
        b.iter_custom(|iters| {
            let elapsed = time(iters, || decode_lines(&wire));
            lines_samples.borrow_mut().push(per_iter(elapsed, iters));
            elapsed
        })
    });
    if encode {
        group.bench_function("FrameCodec encode", |b| {
            let mut codec = FrameCodec::new();
            let mut dst = BytesMut::with_capacity(wire.len());
            b.iter(|| {
                dst.clear();
                for frame in frames {
                    codec.encode(frame, &mut dst).expect("valid headers");
                }
                black_box(dst.len())
            })
        });
    }
    group.finish();

    let frame_median = median(&mut frame_samples.borrow_mut());
    let lines_median = median(&mut lines_samples.borrow_mut());
    if frame_median <= 0.0 || lines_median <= 0.0 {
        // Filtered out on the command line.
        return None;
    }
    let mib = wire.len() as f64 / (1024.0 * 1024.0);
    Some(format!(
        "{name}: {} lines, {} bytes; median per pass: FrameCodec {:.1} µs ({:.0} MiB/s), \
         LinesCodec {:.1} µs ({:.0} MiB/s); FrameCodec/LinesCodec throughput ratio {:.2}x",
        frames.len(),
        wire.len(),
        frame_median * 1e6,
        mib / frame_median,
        lines_median * 1e6,
        mib / lines_median,
        lines_median / frame_median,
    ))
}

/// Decodes `wire` with `FrameCodec`, fed in socket-sized reads; returns a
/// checksum so nothing is optimised away.
fn decode_frames(wire: &[u8]) -> usize {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::with_capacity(READ_BYTES * 2);
    let mut n = 0;
    for read in wire.chunks(READ_BYTES) {
        buf.extend_from_slice(read);
        while let Some(item) = codec.decode(&mut buf).expect("no I/O") {
            let frame = item.expect("the stream is valid");
            n += frame.body.len() + frame.dst.len();
            black_box(frame);
        }
    }
    n
}

/// Decodes `wire` with `LinesCodec` under the same limit, fed the same way.
fn decode_lines(wire: &[u8]) -> usize {
    let mut codec = LinesCodec::new_with_max_length(DEFAULT_MAX_FRAME_BYTES);
    let mut buf = BytesMut::with_capacity(READ_BYTES * 2);
    let mut n = 0;
    for read in wire.chunks(READ_BYTES) {
        buf.extend_from_slice(read);
        while let Some(line) = codec.decode(&mut buf).expect("valid lines") {
            n += line.len();
            black_box(line);
        }
    }
    n
}

fn time(iters: u64, mut f: impl FnMut() -> usize) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

fn per_iter(elapsed: Duration, iters: u64) -> f64 {
    elapsed.as_secs_f64() / iters.max(1) as f64
}

fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Ten-character ids shaped like the server's sqids.
fn ids(rng: &mut XorShift) -> Vec<String> {
    (0..50).map(|_| peer_id(rng)).collect()
}

/// What the server reads: the frames the client's builders make, a few with
/// SENDER_ID filled in (the contract allows a peer to name itself).
fn client_frames() -> Vec<Frame> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let ids = ids(&mut rng);
    let mut frames = Vec::with_capacity(N_LINES);
    while frames.len() < N_LINES {
        let own = ids[rng.below(ids.len())].as_str();
        let other = ids[rng.below(ids.len())].as_str();
        let frame = match rng.below(100) {
            0..=59 => Frame::broadcast(body(&mut rng)),
            60..=74 => Frame::direct(other, body(&mut rng)),
            75..=89 => Frame::health_answer(own),
            _ => Frame::get_peer(other),
        };
        frames.push(if rng.below(10) == 0 {
            frame.with_sender(own)
        } else {
            frame
        });
    }
    frames
}

/// What the server writes and each client reads: every header field set.
fn server_frames() -> Vec<Frame> {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let ids = ids(&mut rng);
    let mut frames = Vec::with_capacity(N_LINES);
    while frames.len() < N_LINES {
        let author = ids[rng.below(ids.len())].as_str();
        let other = ids[rng.below(ids.len())].as_str();
        let relay = |dst: &str, body: String| {
            Frame::new(Kind::Res, Action::Msg, Status::Ok)
                .with_sender(author)
                .with_src(SRV)
                .with_dst(dst)
                .with_body(body)
        };
        let frame = match rng.below(100) {
            0..=59 => relay("*", body(&mut rng)),
            60..=79 => relay(other, body(&mut rng)),
            80..=89 => Frame::request(Action::Comm)
                .with_sender("server")
                .with_src(SRV)
                .with_dst(author)
                .with_body("check?"),
            _ => Frame::response(Action::GetPeer)
                .with_sender(other)
                .with_src(SRV)
                .with_dst(author)
                .with_body("bob"),
        };
        frames.push(frame);
    }
    frames
}

/// A message body of 20 to 200 bytes; about one in six holds a backslash
/// and may span lines, so it is escaped on the wire.
fn body(rng: &mut XorShift) -> String {
    const WORDS: [&str; 12] = [
        "hello", "world", "the", "server", "relays", "every", "message", "to", "all", "peers",
        "quickly", "::",
    ];
    let len = 20 + rng.below(181);
    let escaped = rng.below(6) == 0;
    let mut s = String::with_capacity(len + 8);
    if escaped {
        s.push_str("C:\\temp");
    }
    while s.len() < len {
        if !s.is_empty() {
            s.push(if escaped && rng.below(8) == 0 {
                '\n'
            } else {
                ' '
            });
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s.truncate(len);
    s
}

/// An id shaped like the server's sqids: ten letters and digits.
fn peer_id(rng: &mut XorShift) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..10)
        .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len())]))
        .collect()
}

/// A small deterministic generator, so every run benchmarks the same bytes.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
