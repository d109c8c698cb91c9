//! [`RedisServer`]: the `redis-server` of one cluster soak, on a free
//! loopback port, keeping nothing on disk, killed by its handle when
//! dropped. Never a shared, already running one (`cluster.md`).
//!
//! The same job as `tsockm-testkit`'s `RedisServer`, which is a test-only
//! crate that panics on failure; the soak is also a binary, so this one
//! returns errors instead. It must never outlive the run.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long Redis gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no Redis could be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `redis-server` is not installed (or not on PATH).
    #[error("redis-server is not installed")]
    Missing,
    /// It is installed but did not start answering.
    #[error("redis-server did not start: {0}")]
    Start(String),
}

/// Whether `redis-server` can be run here.
pub fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A running `redis-server` of this process's own.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    /// Its working directory (empty: nothing is saved), removed on drop.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts an empty Redis on a free loopback port and waits until it
    /// answers PING.
    pub async fn start() -> Result<RedisServer, RedisError> {
        if !installed() {
            return Err(RedisError::Missing);
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| RedisError::Start(format!("no free port: {e}")))?;
        let dir =
            std::env::temp_dir().join(format!("tsockm-soak-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| RedisError::Start(format!("cannot create {}: {e}", dir.display())))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RedisError::Start(e.to_string()))?;
        // From here on the handle kills it, whatever happens next.
        let mut redis = RedisServer { child, port, dir };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !redis.answers().await {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(RedisError::Start(format!("it exited ({status})")));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisError::Start(format!(
                    "no answer on port {port} after {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    /// The URL nodes join with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it answers PING.
    async fn answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let ping = async {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut answer = [0u8; 7];
            stream.read_exact(&mut answer).await.ok()?;
            Some(&answer == b"+PONG\r\n")
        };
        tokio::time::timeout(Duration::from_millis(500), ping)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
