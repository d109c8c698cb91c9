//! Starting a real server on 127.0.0.1:0 for one test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tsockm_server::registry::{ConsoleReply, ConsoleRequest};
use tsockm_server::{CancellationToken, Config, Console, LogMode};

pub use tsockm_testkit::TestClient;

/// A server running in this test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The SRC every server frame carries.
    pub srv: String,
    pub console: Console,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Settings for tests: loopback, port 0, quiet logs, long timers unless a
/// test shortens them.
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        log_mode: LogMode::Silent,
        ..Config::default()
    }
}

pub async fn start() -> TestServer {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> TestServer {
    let server = tsockm_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let console = server.console();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestServer {
        addr,
        srv: addr.to_string(),
        console,
        shutdown,
        task,
    }
}

impl TestServer {
    pub async fn client(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// Connects and registers, reading a roster of `n_others` frames.
    pub async fn joined(&self, username: &str, n_others: usize) -> TestClient {
        TestClient::joined(self.addr, username, n_others).await
    }

    pub async fn console(&self, request: ConsoleRequest) -> ConsoleReply {
        self.console.request(request).await.unwrap()
    }

    /// Runs a console line as the operator would type it.
    pub async fn console_line(&self, line: &str) -> String {
        tsockm_server::console::execute(&self.console, line, &self.shutdown).await
    }

    /// Waits until `:list` satisfies `pred`.
    pub async fn wait_for_peers(
        &self,
        what: &str,
        pred: impl Fn(&[tsockm_server::registry::PeerSummary]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let ConsoleReply::List(peers) = self.console(ConsoleRequest::List).await
                && pred(&peers)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Shuts down and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
    }
}
