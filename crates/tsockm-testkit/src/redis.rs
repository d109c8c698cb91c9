//! [`RedisServer`]: a `redis-server` process of the test's own, on a free
//! loopback port, removed when dropped. Never a shared, already running
//! one.
//!
//! When `redis-server` is not installed, [`RedisServer::start`] prints a
//! notice and gives `None` so the test can skip, unless the `CI`
//! environment variable is set: CI installs Redis (`.ci/run`), so there a
//! missing Redis is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Redis gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis server for one test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl RedisServer {
    /// Starts an empty Redis that keeps nothing on disk; `None` (after a
    /// notice) if `redis-server` is missing outside CI.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(false)
    }

    /// Starts a Redis that writes every change to its append-only file, so
    /// that [`RedisServer::restart`] after [`RedisServer::kill`] finds its
    /// data again.
    pub fn start_persistent() -> Option<RedisServer> {
        RedisServer::start_with(true)
    }

    fn start_with(persistent: bool) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed, and CI is set: the cluster tests must run"
            );
            eprintln!("notice: redis-server is not installed; this cluster test is skipped");
            return None;
        }
        let port = free_port();
        let dir = tempfile::tempdir().expect("a temporary directory for Redis");
        let mut redis = RedisServer {
            child: None,
            port,
            dir,
            persistent,
        };
        redis.launch();
        Some(redis)
    }

    /// The URL nodes join with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL): nodes find Redis unreachable.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (with its data if persistent,
    /// empty otherwise).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Stops answering (SIGSTOP) without closing connections.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Answers again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    fn launch(&mut self) {
        let dir: PathBuf = self.dir.path().to_owned();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command.spawn().expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers PING.
    fn answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A loopback port free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
