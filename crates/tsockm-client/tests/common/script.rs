//! The `tsockm-client` binary driven as a script would drive it: lines on
//! its standard input, its standard output read line by line, its exit code
//! and standard error at the end, each wait under a timeout.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{TestServer, within};

/// One running `tsockm-client`.
pub struct Client {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl Client {
    /// Starts the client with `--addr` the server's and `args`.
    pub fn spawn(server: &TestServer, args: &[&str]) -> Client {
        Client::spawn_at(server.addr, args, &[])
    }

    /// Starts the client with `--addr addr`, `args` and the environment
    /// variables `envs` (the platform's certificate store is never read
    /// unless `SSL_CERT_FILE` is given here).
    pub fn spawn_at(addr: SocketAddr, args: &[&str], envs: &[(&str, &OsStr)]) -> Client {
        let reconnect_for: &[&str] = if args.contains(&"--reconnect-for") {
            &[]
        } else {
            &["--reconnect-for", "5"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tsockm-client"))
            .arg("--addr")
            .arg(addr.to_string())
            .args(reconnect_for)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Client {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
        }
    }

    /// Starts a client registered as `username` and waits for its welcome.
    pub async fn joined(server: &TestServer, username: &str) -> Client {
        let mut client = Client::spawn(server, &["--username", username]);
        client
            .expect(&format!("* registered as {username} ("))
            .await;
        client
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads stdout until a line contains `needle`; returns that line.
    pub async fn expect(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(super::WAIT, async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("stdout ended before {needle:?}; seen: {:#?}", self.seen),
            Err(_) => panic!("timed out waiting for {needle:?}; seen: {:#?}", self.seen),
        }
    }

    /// The next stdout line.
    pub async fn next_line(&mut self) -> String {
        let line = within(self.stdout.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("stdout ended; seen: {:#?}", self.seen));
        self.seen.push(line.clone());
        line
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit; gives back the code, the rest of stdout, stderr.
    pub async fn finish(mut self) -> (i32, Vec<String>, String) {
        self.close_stdin();
        let status = within(self.child.wait()).await.unwrap();
        let mut rest = Vec::new();
        while let Some(line) = within(self.stdout.next_line()).await.unwrap() {
            rest.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            within(err.read_to_string(&mut stderr)).await.unwrap();
        }
        (status.code().unwrap_or(-1), rest, stderr)
    }
}
