//! Fuzzes the server end to end: arbitrary byte streams, split arbitrarily,
//! written over loopback sockets into a real `tsockm_server::Server`.
//!
//! One server runs for the whole process on a process-wide tokio runtime.
//! Each input opens one to three connections and is read as a list of
//! operations (see [`Op`]): write a chunk of raw bytes, write a well-formed
//! frame that names another connection's peer (so registration, resume,
//! takeover, direct messages and lookups are reached), half-close, reset and
//! reconnect, or stop reading. A reader per connection drains and decodes
//! what the server sends and remembers the last welcome (peer id and token).
//!
//! Checks, besides "the server never panics" (libfuzzer-sys turns a panic on
//! any thread into an abort):
//! - every input finishes within [`INPUT_DEADLINE`] (no hang);
//! - afterwards the registry still answers `:info`, and once every client
//!   socket is closed, the server holds no online peer and no unregistered
//!   connection within [`SETTLE_DEADLINE`] (connections are not leaked);
//! - peers left away are removed after the (short) removal delay, so the
//!   peer count stays bounded; libFuzzer's RSS limit bounds memory.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;
use tsockm_proto::{Action, FrameCodec, Kind};
use tsockm_server::{ConsoleReply, ConsoleRequest};
use tsockm_server::{CancellationToken, Config, Console, LogMode, Server};

/// Longest one input may take before it counts as a hang.
const INPUT_DEADLINE: Duration = Duration::from_secs(10);
/// How long the server has to drop every closed connection after an input.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a frame naming another connection's peer waits for its welcome.
const WELCOME_WAIT: Duration = Duration::from_millis(20);
/// Peers the server may hold: inputs that leave many peers away are bounded
/// by the removal delay; this is a generous bound for the check.
const MAX_AWAY_PEERS: usize = 2_000;

struct Fixture {
    runtime: Runtime,
    addr: SocketAddr,
    console: Console,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // libFuzzer's C `main` does not ignore SIGPIPE as a Rust `main`
        // does (and as the server binary relies on): a write to a socket
        // the peer reset would kill the process instead of failing.
        // SAFETY: called once, before any other thread of ours exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let config = Config {
            addr: "127.0.0.1:0".parse().expect("an address"),
            store: Some(tsockm_server::StoreSpec::Memory),
            // Small limits so that the over-long, full and trimmed paths are
            // reached by short inputs.
            max_frame_bytes: 256,
            send_queue_frames: 16,
            kept_frames: 8,
            max_rate: 200,
            removal_delay: Duration::from_millis(20),
            handshake_timeout: Duration::from_millis(500),
            health_interval: Duration::from_millis(300),
            health_timeout: Duration::from_millis(600),
            log_mode: LogMode::Silent,
            ..Config::default()
        };
        let server = runtime
            .block_on(Server::bind(config))
            .expect("bind the server");
        let addr = server.local_addr();
        let console = server.console();
        // The server runs until the process exits.
        let shutdown = CancellationToken::new();
        runtime.spawn(server.run(shutdown));
        Fixture {
            runtime,
            addr,
            console,
        }
    })
}

/// What a connection's reader learnt from the server.
#[derive(Default)]
struct Seen {
    /// From the last RES::COMM welcome: `(peer id, resume token)`.
    welcome: Option<(String, String)>,
}

/// One client connection of an input.
struct Client {
    writer: Option<OwnedWriteHalf>,
    reader: JoinHandle<()>,
    /// Cancelled to make the reader stop reading (a peer that does not read).
    stop_reading: CancellationToken,
    seen: Arc<Mutex<Seen>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Option<Client> {
        let stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_zero_linger();
        let (read, write) = stream.into_split();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop_reading = CancellationToken::new();
        let reader = tokio::spawn(read_all(read, seen.clone(), stop_reading.clone()));
        Some(Client {
            writer: Some(write),
            reader,
            stop_reading,
            seen,
        })
    }

    async fn write(&mut self, bytes: &[u8]) {
        if let Some(writer) = &mut self.writer
            && writer.write_all(bytes).await.is_err()
        {
            self.writer = None;
        }
    }

    fn welcome(&self) -> Option<(String, String)> {
        self.seen.lock().map(|seen| seen.welcome.clone()).ok()?
    }

    /// Closes abruptly: the socket was set to linger zero, so this is a
    /// reset, no FIN, and no TIME_WAIT is left behind to use up ports.
    fn abort(self) {
        self.reader.abort();
        drop(self.writer);
    }
}

async fn read_all(mut read: OwnedReadHalf, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    let mut codec = FrameCodec::with_max_frame_bytes(1 << 20);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let n = tokio::select! {
            () = stop.cancelled() => return,
            n = tokio::io::AsyncReadExt::read_buf(&mut read, &mut buf) => n,
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            let Ok(frame) = item else {
                panic!("the server sent a malformed frame: {item:?}");
            };
            if frame.kind == Kind::Res
                && frame.action == Action::Comm
                && frame.sender_id() == "server"
                && let Some((id, token)) = frame.body().split_once(' ')
                && let Ok(mut seen) = seen.lock()
            {
                seen.welcome = Some((id.to_owned(), token.to_owned()));
            }
        }
    }
}

/// The operations an input is made of; the opcode byte also picks the
/// connection (low two bits, modulo the number of connections).
enum Op<'a> {
    /// Raw bytes, exactly as given.
    Raw(&'a [u8]),
    /// A registration with a username from the input.
    Register(&'a [u8]),
    /// Resume connection `other`'s peer (its id and token).
    Resume { other: usize, wrong_token: bool },
    /// A direct message to connection `other`'s peer.
    Direct { other: usize, body: &'a [u8] },
    /// A broadcast.
    Broadcast(&'a [u8]),
    /// GET_PEER for connection `other`'s peer.
    GetPeer { other: usize },
    /// COMM_END, or a health-check answer.
    End,
    HealthAnswer,
    /// Half-close the connection (no more bytes from the client).
    ShutdownWrite,
    /// Reset the connection and open a fresh one in its place.
    Reconnect,
    /// Stop reading what the server sends.
    StopReading,
    /// Let the server catch up for a moment.
    Pause,
}

fn parse_op<'a>(data: &mut &'a [u8]) -> Option<(usize, Op<'a>)> {
    let (&opcode, rest) = data.split_first()?;
    *data = rest;
    let conn = usize::from(opcode & 3);
    let take = |data: &mut &'a [u8]| -> &'a [u8] {
        let Some((&len, rest)) = data.split_first() else {
            return &[];
        };
        let len = usize::from(len).min(rest.len());
        let (chunk, rest) = rest.split_at(len);
        *data = rest;
        chunk
    };
    let other = usize::from((opcode >> 2) & 3);
    let op = match opcode >> 4 {
        0..=4 => Op::Raw(take(data)),
        5 => Op::Register(take(data)),
        6 => Op::Resume {
            other,
            wrong_token: false,
        },
        7 => Op::Resume {
            other,
            wrong_token: true,
        },
        8 => Op::Direct {
            other,
            body: take(data),
        },
        9 => Op::Broadcast(take(data)),
        10 => Op::GetPeer { other },
        11 => Op::End,
        12 => Op::HealthAnswer,
        13 => Op::ShutdownWrite,
        14 => match opcode & 12 {
            0 | 4 => Op::Reconnect,
            8 => Op::StopReading,
            _ => Op::Pause,
        },
        _ => Op::Raw(take(data)),
    };
    Some((conn, op))
}

async fn run_input(fixture: &Fixture, data: &[u8]) {
    let Some((&first, mut data)) = data.split_first() else {
        return;
    };
    let n_conns = 1 + usize::from(first % 3);
    let mut clients = Vec::with_capacity(n_conns);
    for _ in 0..n_conns {
        let Some(client) = Client::connect(fixture.addr).await else {
            return; // Out of ports or descriptors: not the server's fault.
        };
        clients.push(client);
    }
    while let Some((conn, op)) = parse_op(&mut data) {
        let conn = conn % n_conns;
        match op {
            Op::Raw(bytes) => clients[conn].write(bytes).await,
            Op::Register(name) => {
                let mut line = b"REQ::COMM::200::::::::".to_vec();
                line.extend_from_slice(name);
                line.push(b'\n');
                clients[conn].write(&line).await;
            }
            Op::Resume { other, wrong_token } => {
                let other = other % n_conns;
                let Some((id, token)) = wait_welcome(&clients[other]).await else {
                    continue;
                };
                let token = if wrong_token { "x".repeat(22) } else { token };
                let line = format!("REQ::COMM::200::{id}::::::{token}\n");
                clients[conn].write(line.as_bytes()).await;
            }
            Op::Direct { other, body } => {
                let other = other % n_conns;
                let Some((id, _)) = wait_welcome(&clients[other]).await else {
                    continue;
                };
                let mut line = format!("REQ::MSG::200::::::{id}::").into_bytes();
                line.extend_from_slice(body);
                line.push(b'\n');
                clients[conn].write(&line).await;
            }
            Op::Broadcast(body) => {
                let mut line = b"REQ::MSG::200::::::*::".to_vec();
                line.extend_from_slice(body);
                line.push(b'\n');
                clients[conn].write(&line).await;
            }
            Op::GetPeer { other } => {
                let other = other % n_conns;
                let Some((id, _)) = wait_welcome(&clients[other]).await else {
                    continue;
                };
                let line = format!("REQ::GET_PEER::200::::::::{id}\n");
                clients[conn].write(line.as_bytes()).await;
            }
            Op::End => clients[conn].write(b"REQ::COMM_END::200::::::::\n").await,
            Op::HealthAnswer => clients[conn].write(b"RES::COMM::200::::::::OK\n").await,
            Op::ShutdownWrite => {
                if let Some(writer) = &mut clients[conn].writer {
                    let _ = writer.shutdown().await;
                }
                clients[conn].writer = None;
            }
            Op::Reconnect => {
                let Some(fresh) = Client::connect(fixture.addr).await else {
                    continue;
                };
                let old = std::mem::replace(&mut clients[conn], fresh);
                old.abort();
            }
            Op::StopReading => clients[conn].stop_reading.cancel(),
            Op::Pause => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    for client in clients {
        client.abort();
    }
}

/// The welcome `client` got, waiting briefly for it.
async fn wait_welcome(client: &Client) -> Option<(String, String)> {
    let deadline = tokio::time::Instant::now() + WELCOME_WAIT;
    loop {
        if let Some(welcome) = client.welcome() {
            return Some(welcome);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the server dropped every connection of the input.
async fn settle(console: &Console) {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    loop {
        let reply = tokio::time::timeout(SETTLE_DEADLINE, console.request(ConsoleRequest::Info))
            .await
            .expect("the registry answers :info in time (it is not stuck)")
            .expect("the registry is running");
        let ConsoleReply::Info(info) = reply else {
            panic!("unexpected answer to :info: {reply:?}");
        };
        assert!(
            info.n_away <= MAX_AWAY_PEERS,
            "{} away peers: removal is not keeping up",
            info.n_away
        );
        if info.n_online == 0 && info.n_unregistered == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every client socket is closed, yet after {SETTLE_DEADLINE:?} the server \
             still holds {} online peers and {} unregistered connections",
            info.n_online,
            info.n_unregistered
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    fixture.runtime.block_on(async {
        tokio::time::timeout(INPUT_DEADLINE, run_input(fixture, data))
            .await
            .expect("an input finishes in time (the server does not hang it)");
        settle(&fixture.console).await;
    });
});
