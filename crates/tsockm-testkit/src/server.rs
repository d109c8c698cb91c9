//! [`TestServer`]: the real server, started in the test's runtime on
//! `127.0.0.1:0`, quiet, with settings a test may change, and the console
//! handle to ask it questions. Never the default data directory. Started
//! with TLS, its `client` and `joined` connect over TLS.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tsockm_server::{
    CancellationToken, Config, Console, ConsoleReply, ConsoleRequest, Hook, LogMode, PeerSummary,
    StoreSpec,
};

use crate::{TEST_SERVER_NAMES, TestClient, TestPki};

/// How long [`TestServer::wait_for_peers`] and [`TestServer::stop`] wait.
const WAIT: Duration = Duration::from_secs(10);

/// Settings for tests: loopback, port 0, quiet logs, the in-memory store
/// (never the default data directory), long timers unless a test shortens
/// them.
pub fn test_config() -> Config {
    Config {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        log_mode: LogMode::Silent,
        store: Some(StoreSpec::Memory),
        ..Config::default()
    }
}

/// A server running in the test's runtime.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The SRC every server frame carries.
    pub srv: String,
    /// Its console.
    pub console: Console,
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    /// The CA its clients trust, when it speaks TLS.
    pub ca_pem: Option<String>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with [`test_config`].
    pub async fn start() -> TestServer {
        TestServer::start_with(test_config()).await
    }

    /// Starts a server with `config`.
    pub async fn start_with(config: Config) -> TestServer {
        TestServer::start_with_hooks(config, Vec::new()).await
    }

    /// Starts a server speaking TLS with `pki`'s certificate, `config`
    /// otherwise.
    pub async fn start_tls(pki: &TestPki, config: Config) -> TestServer {
        let config = Config {
            tls: Some(pki.tls_files()),
            ..config
        };
        let mut server = TestServer::start_with(config).await;
        server.ca_pem = Some(pki.ca_pem.clone());
        server
    }

    /// Starts a server with `config` and hooks that see every accepted message.
    pub async fn start_with_hooks(config: Config, hooks: Vec<Box<dyn Hook>>) -> TestServer {
        let mut server = tsockm_server::Server::bind(config)
            .await
            .expect("bind a test server");
        for hook in hooks {
            server.add_hook(hook);
        }
        let addr = server.local_addr();
        let console = server.console();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addr,
            srv: addr.to_string(),
            console,
            shutdown,
            ca_pem: None,
            task: Some(task),
        }
    }

    /// A new connection to it (over TLS if it speaks TLS).
    pub async fn client(&self) -> TestClient {
        match &self.ca_pem {
            Some(ca_pem) => TestClient::connect_tls(self.addr, ca_pem, TEST_SERVER_NAMES[0]).await,
            None => TestClient::connect(self.addr).await,
        }
    }

    /// Connects and registers, reading a roster of `n_others` frames.
    pub async fn joined(&self, username: &str, n_others: usize) -> TestClient {
        let mut client = self.client().await;
        client.join_as(username, n_others).await;
        client
    }

    /// Asks the registry a console question.
    pub async fn console(&self, request: ConsoleRequest) -> ConsoleReply {
        self.console
            .request(request)
            .await
            .expect("the server answers its console")
    }

    /// Runs a console line as the operator would type it.
    pub async fn console_line(&self, line: &str) -> String {
        tsockm_server::console::execute(&self.console, line, &self.shutdown).await
    }

    /// The server's `:list`.
    pub async fn peers(&self) -> Vec<PeerSummary> {
        match self.console(ConsoleRequest::List).await {
            ConsoleReply::List(peers) => peers,
            other => panic!("unexpected answer to :list: {other:?}"),
        }
    }

    /// Waits until `:list` satisfies `pred`.
    pub async fn wait_for_peers(&self, what: &str, pred: impl Fn(&[PeerSummary]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if pred(&self.peers().await) {
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
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let Some(task) = self.task.take() else {
            return;
        };
        tokio::time::timeout(WAIT, task)
            .await
            .expect("server stops within 10 s")
            .expect("the server task does not panic")
            .expect("the server ends without an error");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that did not stop its server: stop it anyway.
        self.shutdown.cancel();
    }
}
