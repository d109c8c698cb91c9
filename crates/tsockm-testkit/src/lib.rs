//! What TsockM's integration tests share: [`TestServer`], the real server
//! started in the test's runtime on `127.0.0.1:0` with an in-memory store
//! (`server.rs`), [`TestClient`], a small client built on `tsockm-proto`
//! over TCP or TLS: connect, register, send frames or raw bytes, and expect
//! frames, EOF or silence, each under a timeout; and [`TestPki`], the
//! certificates a TLS test server and its clients use (`tls.rs`).
//!
//! Every `expect_*` method panics with a description of what it waited for
//! and what it got, which is what a failing test should print.

mod redis;
mod server;
mod tls;

pub use redis::RedisServer;
pub use server::{TestServer, test_config};
pub use tls::{TEST_SERVER_NAMES, TestPki};
pub use tokio_rustls::rustls::version::{TLS12, TLS13};

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::SupportedProtocolVersion;
use tokio_util::codec::Framed;
use tokio_util::either::Either;
use tsockm_proto::{Action, Frame, FrameCodec, FrameError, Kind, Status};

/// How long an `expect_*` waits by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A test connection to a TsockM server.
#[derive(Debug)]
pub struct TestClient {
    framed: Framed<ClientStream, FrameCodec>,
    /// How long `expect_*` waits.
    pub timeout: Duration,
    /// The peer id, once registered through [`TestClient::register`].
    pub id: String,
    /// The resume token, once registered.
    pub token: String,
}

/// Whether `id` looks like a message id (section 10): letters and digits,
/// at most 32 characters, never `server`.
pub fn is_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id != "server"
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A HISTORY answer (section 12): the items, oldest first, and the end frame.
#[derive(Debug, Clone)]
pub struct History {
    /// The `RES::HISTORY` items before the end frame.
    pub items: Vec<Frame>,
    /// The end frame, `RES::HISTORY::200::server::<srv>::<conversation>::end <count>[ more]`.
    pub end: Frame,
}

impl History {
    /// The message ids (SRC) of the items, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.items.iter().map(|f| f.src().to_string()).collect()
    }

    /// The texts of the items (BODY after its first two `::`), oldest first.
    pub fn texts(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|f| history_text(f).to_owned())
            .collect()
    }
}

/// The text of a HISTORY item: its BODY after the first two `::`
/// (`<unix ms>::<author username>::<text>`).
pub fn history_text(item: &Frame) -> &str {
    let mut parts = item.body().splitn(3, "::");
    let (Some(_), Some(_), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("a HISTORY item body is `<unix ms>::<username>::<text>`: {item}");
    };
    text
}

/// A registration answer's body split into id and token.
pub fn split_welcome(frame: &Frame) -> (String, String) {
    let (id, token) = frame
        .body()
        .split_once(' ')
        .unwrap_or_else(|| panic!("welcome body is not `<id> <token>`: {frame}"));
    (id.to_owned(), token.to_owned())
}

/// The bytes under a [`TestClient`]: plain TCP (left) or TLS over TCP
/// (right); tokio-util's `Either` reads and writes whichever it holds.
type ClientStream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The TCP connection under a [`ClientStream`].
fn tcp_of(stream: &ClientStream) -> &TcpStream {
    match stream {
        Either::Left(tcp) => tcp,
        Either::Right(tls) => tls.get_ref().0,
    }
}

impl TestClient {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> TestClient {
        TestClient::over(Either::Left(tcp_connect(addr).await))
    }

    /// Connects to `addr` over TLS, trusting only the CA in `ca_pem` and
    /// checking that the server's certificate is for `server_name`.
    pub async fn connect_tls(addr: SocketAddr, ca_pem: &str, server_name: &str) -> TestClient {
        TestClient::connect_tls_versions(addr, ca_pem, server_name, &[]).await
    }

    /// [`TestClient::connect_tls`] offering only `versions` ([`TLS12`],
    /// [`TLS13`]; all of rustls's when empty).
    pub async fn connect_tls_versions(
        addr: SocketAddr,
        ca_pem: &str,
        server_name: &str,
        versions: &[&'static SupportedProtocolVersion],
    ) -> TestClient {
        let tcp = tcp_connect(addr).await;
        let (connector, name) = tls::connector(ca_pem, server_name, versions);
        let tls = tokio::time::timeout(DEFAULT_TIMEOUT, connector.connect(name, tcp))
            .await
            .unwrap_or_else(|_| panic!("TLS handshake with {addr} timed out"))
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
        TestClient::over(Either::Right(Box::new(tls)))
    }

    fn over(stream: ClientStream) -> TestClient {
        TestClient {
            framed: Framed::new(stream, FrameCodec::with_max_frame_bytes(1 << 20)),
            timeout: DEFAULT_TIMEOUT,
            id: String::new(),
            token: String::new(),
        }
    }

    /// Connects with the receive buffer of the client's socket set to
    /// `bytes` (which turns the kernel's autotuning off for it), so that a
    /// client that stops reading fills its socket with less data.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> TestClient {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        socket
            .set_recv_buffer_size(bytes)
            .expect("set the receive buffer size");
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        TestClient::over(Either::Left(stream))
    }

    /// Connects to `addr` from the local address `from` (any port), so a test
    /// can play several client addresses on loopback (127.0.0.2, ...).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> TestClient {
        let socket = match from {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("a socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let stream = tokio::time::timeout(DEFAULT_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} from {from} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr} from {from}: {e}"));
        TestClient::over(Either::Left(stream))
    }

    /// From now on, decodes what the server sends with a limit of
    /// `max_frame_bytes` (terminator excluded), as a client enforcing the
    /// server's `--max-frame` would: a longer line makes the `expect_*`
    /// that meets it panic. Call it before anything is read.
    pub fn limit_frames(&mut self, max_frame_bytes: usize) {
        *self.framed.codec_mut() = FrameCodec::with_max_frame_bytes(max_frame_bytes);
    }

    /// Sends `REQ::HISTORY` and reads the whole answer: the items up to the
    /// end frame. Panics on anything else (an error included).
    pub async fn history(&mut self, conversation: &str, query: &str) -> History {
        self.send(Frame::history(conversation, query)).await;
        self.history_answer().await
    }

    /// Reads the answer to a HISTORY sent earlier: the next frames must be
    /// its items and its end frame.
    pub async fn history_answer(&mut self) -> History {
        let mut items = Vec::new();
        loop {
            let frame = self.expect_next().await;
            assert!(
                frame.kind == Kind::Res && frame.action == Action::History,
                "waiting for the answer to a HISTORY: got {frame}"
            );
            if frame.sender_id() == "server" {
                return History { items, end: frame };
            }
            items.push(frame);
        }
    }

    /// Sends GET_PEER for its own id and reads up to the answer: once it is
    /// read, the server has handled every frame this client sent before.
    /// Returns the frames that arrived before the answer.
    pub async fn sync(&mut self) -> Vec<Frame> {
        assert!(!self.id.is_empty(), "sync needs a registered client");
        self.send(Frame::get_peer(self.id.clone())).await;
        let mut before = Vec::new();
        loop {
            let frame = self.expect_next().await;
            if frame.kind == Kind::Res
                && frame.action == Action::GetPeer
                && frame.sender_id() == self.id.as_str()
            {
                return before;
            }
            before.push(frame);
        }
    }

    /// Skips frames until the next relayed message (`RES::MSG`).
    pub async fn expect_msg(&mut self) -> Frame {
        self.expect_where("a relayed message", |f| {
            f.kind == Kind::Res && f.action == Action::Msg
        })
        .await
    }

    /// Connects and registers as `username`, then reads the roster of
    /// `n_others` NTFY_JOIN frames.
    pub async fn joined(addr: SocketAddr, username: &str, n_others: usize) -> TestClient {
        let mut client = TestClient::connect(addr).await;
        client.join_as(username, n_others).await;
        client
    }

    /// Registers as `username`, then reads the roster of `n_others`
    /// NTFY_JOIN frames.
    pub async fn join_as(&mut self, username: &str, n_others: usize) {
        self.register(username).await;
        for _ in 0..n_others {
            self.expect_where("roster NTFY_JOIN", |f| f.action == Action::NtfyJoin)
                .await;
        }
    }

    /// The local address of this connection.
    pub fn local_addr(&self) -> SocketAddr {
        tcp_of(self.framed.get_ref())
            .local_addr()
            .expect("a connected socket has a local address")
    }

    /// The TLS version in use (`TLSv1_3`, ...), `None` on plain TCP.
    pub fn tls_version(&self) -> Option<String> {
        match self.framed.get_ref() {
            Either::Left(_) => None,
            Either::Right(tls) => tls.get_ref().1.protocol_version().map(|v| format!("{v:?}")),
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: Frame) {
        self.framed.send(frame).await.expect("send a frame");
    }

    /// Sends raw bytes exactly as given.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.expect("send raw bytes");
        stream.flush().await.expect("flush");
    }

    /// Sends raw bytes, giving back the error if the connection is gone
    /// (for a test that expects the server to die).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// Half-closes: no more bytes from this side.
    pub async fn shutdown_write(&mut self) {
        self.framed.get_mut().shutdown().await.expect("shutdown");
    }

    /// Registers with `username`; stores and returns the id and token.
    pub async fn register(&mut self, username: &str) -> (String, String) {
        self.send(Frame::register(username)).await;
        let welcome = self
            .expect_where("RES::COMM registration answer", |f| {
                f.kind == Kind::Res && f.action == Action::Comm
            })
            .await;
        let (id, token) = split_welcome(&welcome);
        self.id = id.clone();
        self.token = token.clone();
        (id, token)
    }

    /// The next item within the timeout; `None` at EOF.
    pub async fn next_item(&mut self) -> Option<Result<Frame, FrameError>> {
        match tokio::time::timeout(self.timeout, self.framed.next()).await {
            Ok(Some(Ok(item))) => Some(item),
            Ok(Some(Err(e))) => panic!("read failed: {e}"),
            Ok(None) => None,
            Err(_) => panic!("no frame and no EOF within {:?}", self.timeout),
        }
    }

    /// The next frame, which must arrive within the timeout and be valid.
    pub async fn expect_next(&mut self) -> Frame {
        match self.next_item().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => panic!("the server sent a malformed frame: {e}"),
            None => panic!("connection closed while a frame was expected"),
        }
    }

    /// Skips frames until one matches `pred`; panics on timeout or EOF.
    pub async fn expect_where(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut skipped = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, self.framed.next()).await;
            match next {
                Ok(Some(Ok(Ok(frame)))) if pred(&frame) => return frame,
                Ok(Some(Ok(Ok(frame)))) => skipped.push(frame.to_string()),
                Ok(Some(Ok(Err(e)))) => panic!("waiting for {what}: malformed frame: {e}"),
                Ok(Some(Err(e))) => panic!("waiting for {what}: read failed: {e}"),
                Ok(None) => panic!("waiting for {what}: connection closed; skipped {skipped:#?}"),
                Err(_) => panic!(
                    "waiting for {what}: nothing within {:?}; skipped {skipped:#?}",
                    self.timeout
                ),
            }
        }
    }

    /// The next frame must be `kind::action::status`; returns it.
    pub async fn expect_frame(&mut self, kind: Kind, action: Action, status: Status) -> Frame {
        let frame = self.expect_next().await;
        assert!(
            frame.kind == kind && frame.action == action && frame.status == status,
            "expected {kind}::{action}::{status}, got {frame}"
        );
        frame
    }

    /// The next frame must be an error with `action` and `status`.
    pub async fn expect_error(&mut self, action: Action, status: Status) -> Frame {
        self.expect_frame(Kind::Err, action, status).await
    }

    /// The connection must reach EOF (or reset) within the timeout, after
    /// skipping frames that match `skip`.
    pub async fn expect_closed_skipping(&mut self, skip: impl Fn(&Frame) -> bool) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(Ok(frame)))) if skip(&frame) => {}
                Ok(Some(Ok(item))) => panic!("expected the connection to close, got {item:?}"),
                Err(_) => panic!("connection still open after {:?}", self.timeout),
            }
        }
    }

    /// The connection must reach EOF with no further frame.
    pub async fn expect_closed(&mut self) {
        self.expect_closed_skipping(|_| false).await;
    }

    /// The connection must end cleanly with no further frame: EOF, not a
    /// reset, and over TLS after the server's close_notify (a bare FIN
    /// would be an `UnexpectedEof` error here).
    pub async fn expect_clean_eof(&mut self) {
        match tokio::time::timeout(self.timeout, self.framed.next()).await {
            Ok(None) => {}
            Ok(Some(item)) => panic!("expected a clean end, got {item:?}"),
            Err(_) => panic!("connection still open after {:?}", self.timeout),
        }
    }

    /// Nothing may arrive for `quiet` (absence can only be shown by waiting).
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(item) = tokio::time::timeout(quiet, self.framed.next()).await {
            panic!("expected silence for {quiet:?}, got {item:?}");
        }
    }
}

/// A TCP connection to `addr`, under the default timeout.
async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}
