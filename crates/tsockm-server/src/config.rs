//! The server's settings: [`Config`] for the library, [`Cli`] for the binary's
//! flags, and the duration syntax the flags use (`500ms`, `13s`, `2m`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::cluster::ClusterConfig;
use crate::store::StoreSpec;

/// Default listening address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6969";
/// Default for [`Config::max_peers`].
pub const DEFAULT_MAX_PEERS: usize = 10_000;
/// Default for [`Config::health_interval`].
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Default for [`Config::removal_delay`].
pub const DEFAULT_REMOVAL_DELAY: Duration = Duration::from_secs(13);
/// Default for [`Config::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Config::send_queue_frames`].
pub const DEFAULT_SEND_QUEUE_FRAMES: usize = 4096;
/// Default for [`Config::max_rate`].
pub const DEFAULT_MAX_RATE: u32 = 1000;
/// Default for [`Config::kept_frames`].
pub const DEFAULT_KEPT_FRAMES: usize = 1024;
/// Default for [`Config::send_queue_bytes`]: 4 MiB.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 4 << 20;
/// Default for [`Config::max_queued_bytes`]: 1 GiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1 << 30;
/// Default for [`Config::max_unregistered`].
pub const DEFAULT_MAX_UNREGISTERED: usize = 1024;
/// Default for [`Config::max_unregistered_per_ip`].
pub const DEFAULT_MAX_UNREGISTERED_PER_IP: usize = 16;
/// Default for [`Config::history_max`].
pub const DEFAULT_HISTORY_MAX: usize = 10_000;
/// Default for [`Config::max_rooms_per_peer`].
pub const DEFAULT_MAX_ROOMS_PER_PEER: usize = 64;

/// How much the server logs (see section 8 of the contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    /// Only warnings and errors.
    Silent,
    /// One line per frame.
    Tiny,
    /// Every frame in full.
    #[default]
    Dev,
}

/// Where the listener's TLS certificate chain and private key are: PEM
/// files, read once when the server binds (see `docs/tls.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first (e.g.
    /// Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key of the first certificate (e.g. `privkey.pem`):
    /// PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// Everything the server can be told. `Config::default()` is what the binary
/// runs with when given no flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Registered peers (online and away) the server holds at most.
    pub max_peers: usize,
    /// Longest frame accepted, in bytes, not counting the terminator.
    pub max_frame_bytes: usize,
    /// How often every peer gets a health check.
    pub health_interval: Duration,
    /// A peer silent for this long is dead.
    pub health_timeout: Duration,
    /// How long a peer whose connection ended stays away before removal.
    pub removal_delay: Duration,
    /// How long a new connection has to register.
    pub handshake_timeout: Duration,
    /// Frames queued for one peer before it is cut off as too slow.
    pub send_queue_frames: usize,
    /// Bytes queued for one peer before it is cut off as too slow; also the
    /// most bytes kept for an away peer.
    pub send_queue_bytes: usize,
    /// Bytes queued and kept for all peers together; past it, the peers
    /// holding the most are cut off or lose their oldest kept frames.
    pub max_queued_bytes: usize,
    /// Connections not registered yet, from all addresses together.
    pub max_unregistered: usize,
    /// Connections not registered yet from one address.
    pub max_unregistered_per_ip: usize,
    /// Connections from one address, registered or not (0: no cap).
    pub max_conns_per_ip: usize,
    /// The server password, if it has one (section 13).
    pub password: Option<Password>,
    /// `Some`: the listener speaks TLS with this certificate (section 13);
    /// `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    /// The cluster this server is a node of, if any (`cluster.md`).
    pub cluster: Option<ClusterConfig>,
    /// Frames per second one connection may send (0: no limit).
    pub max_rate: u32,
    /// Frames kept for an away peer; past it the oldest are dropped. Also
    /// how many messages written to a peer are remembered for a resume
    /// naming its last message id.
    pub kept_frames: usize,
    /// Where history and saved sessions are kept; `None` is the platform's
    /// default SQLite file (see [`StoreSpec::default_sqlite`]).
    pub store: Option<StoreSpec>,
    /// Messages kept per conversation (0: none).
    pub history_max: usize,
    /// Rooms one peer may be in at once.
    pub max_rooms_per_peer: usize,
    /// How much to log.
    pub log_mode: LogMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 6969)),
            max_peers: DEFAULT_MAX_PEERS,
            max_frame_bytes: tsockm_proto::DEFAULT_MAX_FRAME_BYTES,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            health_timeout: 2 * DEFAULT_HEALTH_INTERVAL,
            removal_delay: DEFAULT_REMOVAL_DELAY,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            send_queue_frames: DEFAULT_SEND_QUEUE_FRAMES,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_unregistered: DEFAULT_MAX_UNREGISTERED,
            max_unregistered_per_ip: DEFAULT_MAX_UNREGISTERED_PER_IP,
            max_conns_per_ip: 0,
            password: None,
            tls: None,
            cluster: None,
            max_rate: DEFAULT_MAX_RATE,
            kept_frames: DEFAULT_KEPT_FRAMES,
            store: None,
            history_max: DEFAULT_HISTORY_MAX,
            max_rooms_per_peer: DEFAULT_MAX_ROOMS_PER_PEER,
            log_mode: LogMode::Dev,
        }
    }
}

/// The TsockM chat server.
///
/// Listens for TsockM clients, relays their messages, and reads operator
/// commands (`:help` lists them) from standard input. Durations are written
/// like `500ms`, `13s`, `2m` or `1h`.
#[derive(Debug, Parser)]
#[command(name = "tsockm-server", version, about, long_about)]
pub struct Cli {
    /// Address to listen on (`host:port`, the host a name or an IP address;
    /// port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: String,

    /// Most registered peers (online and away); one more gets 503.
    #[arg(long, default_value_t = DEFAULT_MAX_PEERS, value_parser = parse_positive)]
    pub max_peers: usize,

    /// Longest frame in bytes, not counting the line terminator; longer ones get 413.
    #[arg(long, default_value_t = tsockm_proto::DEFAULT_MAX_FRAME_BYTES, value_parser = parse_frame_limit)]
    pub max_frame: usize,

    /// How often each peer gets a health check.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub health_interval: Duration,

    /// A peer with no sign of life for this long is dropped [default: twice --health-interval].
    #[arg(long, value_parser = parse_duration)]
    pub health_timeout: Option<Duration>,

    /// How long a peer whose connection dropped is kept (away) for a resume.
    #[arg(long, default_value = "13s", value_parser = parse_duration)]
    pub removal_delay: Duration,

    /// How long a new connection has to register before it gets 408 and is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Frames queued for one peer; a peer that lets it fill up is disconnected.
    #[arg(long, default_value_t = DEFAULT_SEND_QUEUE_FRAMES, value_parser = parse_positive)]
    pub send_queue: usize,

    /// Bytes queued for one peer (e.g. `4MiB`); a peer that lets it fill up
    /// is disconnected. Also the most kept for an away peer.
    #[arg(long, default_value = "4MiB", value_parser = parse_bytes)]
    pub send_queue_bytes: usize,

    /// Bytes queued and kept for all peers together (e.g. `1GiB`); past it
    /// the peers holding the most are cut off, or lose their oldest kept
    /// frames if away. Peers that read what they are sent are never touched.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub max_queued_bytes: usize,

    /// Connections that have not registered yet, from all addresses
    /// together; one more gets `ERR::NONE::503` and is closed.
    #[arg(long, default_value_t = DEFAULT_MAX_UNREGISTERED, value_parser = parse_positive)]
    pub max_unregistered: usize,

    /// Connections that have not registered yet from one address; one more
    /// gets `ERR::NONE::503` and is closed.
    #[arg(long, default_value_t = DEFAULT_MAX_UNREGISTERED_PER_IP, value_parser = parse_positive)]
    pub max_unregistered_per_ip: usize,

    /// Connections from one address, registered or not; one more gets
    /// `ERR::NONE::503` and is closed (0: no cap, so that a whole office
    /// behind one address fits).
    #[arg(long, default_value_t = 0)]
    pub max_conns_per_ip: usize,

    /// Join the cluster whose state lives in this Redis (e.g.
    /// `redis://127.0.0.1:6379`): several servers sharing it act as one.
    /// History is then kept in that Redis (--store is refused).
    #[arg(long, value_name = "REDIS_URL")]
    pub cluster: Option<String>,

    /// The cluster's name: the prefix of every key, so that clusters can
    /// share one Redis.
    #[arg(long, default_value = crate::cluster::DEFAULT_CLUSTER_NAME, requires = "cluster")]
    pub cluster_name: String,

    /// This node's name in logs, `:list` and `:info` [default: <hostname>-<pid>].
    // The doc comment is also the `--help` text, where `<hostname>` is no tag.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, requires = "cluster")]
    pub node_name: Option<String>,

    /// How long a node may miss its heartbeat before the others declare it
    /// dead (its peers become away everywhere).
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "cluster")]
    pub node_timeout: Duration,

    /// A file whose first line is the server password: clients must send
    /// it with `REQ::AUTH` before registering.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Speak TLS with this certificate chain (PEM, the server's certificate
    /// first, e.g. fullchain.pem); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM, e.g. privkey.pem); needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Frames per second one connection may send; more get 429 (0: no limit).
    #[arg(long, default_value_t = DEFAULT_MAX_RATE)]
    pub max_rate: u32,

    /// Frames kept for an away peer until it resumes; the oldest go first.
    /// Also how many messages written to a peer are remembered, to send
    /// again to a client that resumes naming the last message it got.
    #[arg(long, default_value_t = DEFAULT_KEPT_FRAMES)]
    pub kept_frames: usize,

    /// Where history and saved sessions are kept: `memory` (lost at exit)
    /// or `sqlite:<path>` [default: sqlite:$XDG_DATA_HOME/tsockm/tsockm.db,
    /// else sqlite:~/.local/share/tsockm/tsockm.db].
    #[arg(long, env = "TSOCKM_STORE", value_name = "STORE")]
    pub store: Option<StoreSpec>,

    /// Messages kept in the history of each conversation (lobby, room,
    /// pair of peers); 0 keeps none.
    #[arg(long, default_value_t = DEFAULT_HISTORY_MAX)]
    pub history_max: usize,

    /// Rooms one peer may be in at once; one more JOIN gets 403.
    #[arg(long, default_value_t = DEFAULT_MAX_ROOMS_PER_PEER, value_parser = parse_positive)]
    pub max_rooms_per_peer: usize,

    /// Log only warnings and errors (unless RUST_LOG says otherwise; then
    /// frames it lets through are logged in full).
    #[arg(short, long, conflicts_with = "tiny")]
    pub silent: bool,

    /// Log one short line per frame instead of every frame in full.
    #[arg(short, long)]
    pub tiny: bool,
}

/// Flags that cannot work together, or a value that cannot be used: the
/// message says which and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Cli {
    /// The configuration these flags describe, checked as a whole.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let log_mode = if self.silent {
            LogMode::Silent
        } else if self.tiny {
            LogMode::Tiny
        } else {
            LogMode::Dev
        };
        // Clap's `requires` lets the two flags through only together.
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => None,
        };
        let cluster = self.cluster.map(|url| ClusterConfig {
            url,
            name: self.cluster_name,
            node: self
                .node_name
                .unwrap_or_else(ClusterConfig::default_node_name),
            node_timeout: self.node_timeout,
        });
        let store_flag = std::env::args_os()
            .any(|a| a == "--store" || a.to_string_lossy().starts_with("--store="));
        if cluster.is_some() && store_flag {
            return Err(ConfigError(
                "--store cannot be used with --cluster: a cluster keeps its history in its Redis"
                    .to_owned(),
            ));
        }
        let config = Config {
            addr: resolve(&self.addr)?,
            max_peers: self.max_peers,
            max_frame_bytes: self.max_frame,
            health_interval: self.health_interval,
            health_timeout: self.health_timeout.unwrap_or(2 * self.health_interval),
            removal_delay: self.removal_delay,
            handshake_timeout: self.handshake_timeout,
            send_queue_frames: self.send_queue,
            send_queue_bytes: self.send_queue_bytes,
            max_queued_bytes: self.max_queued_bytes,
            max_unregistered: self.max_unregistered,
            max_unregistered_per_ip: self.max_unregistered_per_ip,
            max_conns_per_ip: self.max_conns_per_ip,
            password: match &self.password_file {
                Some(path) => Some(Password::read(path)?),
                None => None,
            },
            tls,
            // In a cluster, TSOCKM_STORE is ignored: the store is Redis.
            store: if cluster.is_some() { None } else { self.store },
            cluster,
            max_rate: self.max_rate,
            kept_frames: self.kept_frames,

            history_max: self.history_max,
            max_rooms_per_peer: self.max_rooms_per_peer,
            log_mode,
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    /// Refuses settings that contradict each other.
    pub fn check(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.health_timeout < self.health_interval {
            return fail(format!(
                "--health-timeout ({}) is shorter than --health-interval ({}): \
                 every peer would be found dead before its next health check",
                humantime::format_duration(self.health_timeout),
                humantime::format_duration(self.health_interval)
            ));
        }
        if self.send_queue_bytes < self.max_frame_bytes + 1 {
            return fail(format!(
                "--send-queue-bytes ({}) must hold at least one frame of --max-frame ({} bytes)",
                self.send_queue_bytes, self.max_frame_bytes
            ));
        }
        if self.max_queued_bytes < self.send_queue_bytes {
            return fail(format!(
                "--max-queued-bytes ({}) must be at least --send-queue-bytes ({})",
                self.max_queued_bytes, self.send_queue_bytes
            ));
        }
        Ok(())
    }
}

/// The first address `host:port` names (a host name is looked up).
fn resolve(addr: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let mut addrs = addr.to_socket_addrs().map_err(|e| {
        ConfigError(format!(
            "--addr `{addr}` is not an address to listen on ({e}); write host:port, e.g. 127.0.0.1:6969 or localhost:6969"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| ConfigError(format!("--addr `{addr}` names no address")))
}

/// The server password. Never shown: its `Debug` writes `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A password given directly (tests).
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The first line of `path`.
    pub fn read(path: &std::path::Path) -> Result<Password, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(ConfigError(format!(
                "the password file {} is empty: its first line is the password",
                path.display()
            )));
        }
        Ok(Password(line.to_owned()))
    }

    /// Whether `given` is the password, in time that does not depend on
    /// where they differ or how long either is.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let expected = Sha256::digest(self.0.as_bytes());
        let given = Sha256::digest(given.as_bytes());
        expected.ct_eq(&given).into()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Parses a size in bytes: `4096`, `4KiB`, `4MiB`, `1GiB`, `4MB`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a size in bytes ({e}); write e.g. 4MiB or 1GiB"))?;
    let n = usize::try_from(size.as_u64()).map_err(|_| format!("`{text}` is too large"))?;
    if n == 0 {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(n)
}

/// Longest `--max-frame` accepted, in bytes.
pub const MAX_FRAME_LIMIT: usize = 16 << 20;
/// Shortest `--max-frame` accepted: every frame the server writes about a
/// peer (a registration answer, NTFY_JOIN and JOIN with a 32-character
/// username) must fit.
pub const MIN_FRAME_LIMIT: usize = 256;

/// Parses a count that must be at least 1.
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Parses a frame length limit in bytes ([`MIN_FRAME_LIMIT`] to
/// [`MAX_FRAME_LIMIT`]: 256 B to 16 MiB).
pub fn parse_frame_limit(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of bytes"))?;
    if (MIN_FRAME_LIMIT..=MAX_FRAME_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "must be between {MIN_FRAME_LIMIT} and {MAX_FRAME_LIMIT} bytes"
        ))
    }
}

/// Parses a duration such as `500ms`, `13s`, `2m`, `1h` or `1m 30s`
/// (humantime's syntax). A bare number is seconds. Zero is refused: every
/// timer needs a period.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 500ms, 13s, 2m"))?,
    };
    if duration.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("13s", Duration::from_secs(13)),
            ("13", Duration::from_secs(13)),
            ("1s 500ms", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "s", "0s", "0", "-1s", "10x", "1e9999s", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_defaults_match_the_config_defaults() {
        let config = Cli::parse_from(["tsockm-server"]).into_config().unwrap();
        let default = Config::default();
        assert_eq!(config.addr, default.addr);
        assert_eq!(config.max_peers, default.max_peers);
        assert_eq!(config.max_frame_bytes, default.max_frame_bytes);
        assert_eq!(config.health_interval, default.health_interval);
        assert_eq!(config.health_timeout, default.health_timeout);
        assert_eq!(config.removal_delay, default.removal_delay);
        assert_eq!(config.handshake_timeout, default.handshake_timeout);
        assert_eq!(config.send_queue_frames, default.send_queue_frames);
        assert_eq!(config.send_queue_bytes, default.send_queue_bytes);
        assert_eq!(config.max_queued_bytes, default.max_queued_bytes);
        assert_eq!(config.max_unregistered, default.max_unregistered);
        assert_eq!(
            config.max_unregistered_per_ip,
            default.max_unregistered_per_ip
        );
        assert_eq!(config.max_conns_per_ip, default.max_conns_per_ip);
        assert_eq!(config.password, None);
        assert_eq!(config.max_rate, default.max_rate);
        assert_eq!(config.kept_frames, default.kept_frames);
        assert_eq!(config.history_max, default.history_max);
        assert_eq!(config.max_rooms_per_peer, default.max_rooms_per_peer);
        assert_eq!(config.tls, default.tls);
        assert_eq!(config.log_mode, LogMode::Dev);
    }

    #[test]
    fn tls_flags_come_together_or_not_at_all() {
        let config = Cli::parse_from([
            "tsockm-server",
            "--tls-cert",
            "/etc/tsockm/fullchain.pem",
            "--tls-key",
            "/etc/tsockm/privkey.pem",
        ])
        .into_config()
        .unwrap();
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "/etc/tsockm/fullchain.pem".into(),
                key: "/etc/tsockm/privkey.pem".into(),
            })
        );
        for alone in [["--tls-cert", "cert.pem"], ["--tls-key", "key.pem"]] {
            let error = Cli::try_parse_from(["tsockm-server", alone[0], alone[1]])
                .expect_err("one TLS flag alone is refused");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{alone:?}"
            );
            assert_eq!(error.exit_code(), 2, "{alone:?}");
        }
    }

    #[test]
    fn health_timeout_defaults_to_twice_the_interval() {
        let config = Cli::parse_from(["tsockm-server", "--health-interval", "500ms"])
            .into_config()
            .unwrap();
        assert_eq!(config.health_timeout, Duration::from_secs(1));
        let config = Cli::parse_from(["tsockm-server", "-t"])
            .into_config()
            .unwrap();
        assert_eq!(config.log_mode, LogMode::Tiny);
        let config = Cli::parse_from(["tsockm-server", "--silent"])
            .into_config()
            .unwrap();
        assert_eq!(config.log_mode, LogMode::Silent);
    }

    #[test]
    fn contradictory_settings_are_refused_in_one_line() {
        let refused = [
            vec!["--health-interval", "10s", "--health-timeout", "5s"],
            vec!["--max-frame", "65536", "--send-queue-bytes", "64KiB"],
            vec!["--send-queue-bytes", "8MiB", "--max-queued-bytes", "4MiB"],
            vec!["--addr", "nowhere.invalid:6969"],
            vec!["--addr", "127.0.0.1"],
            vec!["--password-file", "/nonexistent/password"],
        ];
        for flags in refused {
            let cli =
                Cli::parse_from(std::iter::once("tsockm-server").chain(flags.iter().copied()));
            let error = cli.into_config().expect_err(&format!("{flags:?}"));
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        let ok = Cli::parse_from([
            "tsockm-server",
            "--addr",
            "localhost:0",
            "--max-conns-per-ip",
            "16",
        ]);
        let config = ok.into_config().unwrap();
        assert!(config.addr.ip().is_loopback());
    }

    #[test]
    fn sizes_and_passwords() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        let password = Password::new("s3cret");
        assert!(password.matches("s3cret"));
        assert!(!password.matches("s3cre"));
        assert!(!password.matches(""));
        assert_eq!(format!("{password:?}"), "Password(***)");
    }
}
