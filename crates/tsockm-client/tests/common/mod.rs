//! Test helpers: the real server in-process on `127.0.0.1:0`, a TCP proxy
//! that can cut connections (a drop without `COMM_END`), the binary driven
//! as a script (`script.rs`), and waiting for events or conditions under a
//! timeout. Nothing here sleeps a fixed time to
//! hope something happened.
#![allow(dead_code)]

pub mod script;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tsockm_client::{Config, Event, Events, PeerId, Session};
use tsockm_server::CancellationToken;
use tsockm_server::{ConsoleReply, ConsoleRequest, PeerSummary, Target};

/// How long any one expected thing may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    pub console: tsockm_server::Console,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Server settings for tests: the testkit's (loopback, port 0, quiet, an
/// in-memory store, never the default data directory) with a short
/// removal delay.
pub fn server_config() -> tsockm_server::Config {
    tsockm_server::Config {
        removal_delay: Duration::from_secs(2),
        ..tsockm_testkit::test_config()
    }
}

pub async fn start() -> TestServer {
    start_with(server_config()).await
}

pub async fn start_with(config: tsockm_server::Config) -> TestServer {
    let server = tsockm_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let console = server.console();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestServer {
        addr,
        console,
        shutdown,
        task: Some(task),
    }
}

impl TestServer {
    /// Session settings for tests against this server: fast backoff.
    pub fn config(&self, username: &str) -> Config {
        client_config(self.addr, username)
    }

    /// Connects and registers a session.
    pub async fn connect(&self, username: &str) -> (Session, Events) {
        within(Session::connect(self.config(username)))
            .await
            .unwrap()
    }

    /// The server's `:list`.
    pub async fn peers(&self) -> Vec<PeerSummary> {
        match self.console.request(ConsoleRequest::List).await.unwrap() {
            ConsoleReply::List(peers) => peers,
            other => panic!("unexpected answer to :list: {other:?}"),
        }
    }

    /// Waits until the server's `:list` shows the peer online or away.
    pub async fn wait_peer_online(&self, id: &PeerId, online: bool) {
        let id = id.as_str().to_owned();
        wait_until(|| async {
            self.peers()
                .await
                .iter()
                .any(|p| p.id == id && p.online == online)
        })
        .await;
    }

    /// `:kill <id>`.
    pub async fn kill(&self, id: &PeerId) {
        let reply = self
            .console
            .request(ConsoleRequest::Kill(Target::Peer(id.as_str().to_owned())))
            .await
            .unwrap();
        assert!(
            matches!(reply, ConsoleReply::Killed(ref k) if k.len() == 1),
            "{reply:?}"
        );
    }

    /// Shuts the server down and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            within(task).await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn client_config(addr: SocketAddr, username: &str) -> Config {
    Config {
        connect_timeout: Duration::from_secs(3),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        reconnect_for: Duration::from_secs(20),
        end_timeout: Duration::from_secs(3),
        ..Config::new(addr.to_string(), username)
    }
}

/// Runs a future under [`WAIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

/// Polls a condition until it holds (every 10 ms), under [`WAIT`].
pub async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The next event, under [`WAIT`].
pub async fn next(events: &mut Events) -> Event {
    within(events.recv()).await.expect("events ended")
}

/// Skips events until one matches; panics (listing what was seen) on
/// timeout or when the session ends first.
pub async fn wait_for(events: &mut Events, mut matches: impl FnMut(&Event) -> bool) -> Event {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if matches(&event) {
                return Some(event);
            }
            seen.push(event);
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        Ok(None) => panic!("events ended; seen: {seen:#?}"),
        Err(_) => panic!("timed out; seen: {seen:#?}"),
    }
}

/// A TCP proxy between clients and the server that can cut every current
/// connection (both sides closed, no `COMM_END`) and refuse new ones.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

struct ProxyState {
    /// Cancelled to cut the connections made before.
    cut: CancellationToken,
    /// Whether new connections are closed at once.
    blocked: bool,
    /// Connections accepted so far.
    n_accepted: usize,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            cut: CancellationToken::new(),
            blocked: false,
            n_accepted: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (blocked, cut) = {
                    let mut s = shared.lock().unwrap();
                    s.n_accepted += 1;
                    (s.blocked, s.cut.clone())
                };
                if blocked {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, state, task }
    }

    /// Closes every connection made so far.
    pub fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        s.cut.cancel();
        s.cut = CancellationToken::new();
    }

    /// Closes new connections at once (`true`) or forwards them (`false`).
    pub fn set_blocked(&self, blocked: bool) {
        self.state.lock().unwrap().blocked = blocked;
    }

    /// Connections accepted so far.
    pub fn n_accepted(&self) -> usize {
        self.state.lock().unwrap().n_accepted
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
