//! The server's settings: [`Config`] for the library, [`Cli`] for the binary's
//! flags, and the duration syntax the flags use (`500ms`, `13s`, `2m`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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
    /// `Some`: the listener speaks TLS with this certificate; `None`: plain
    /// TCP.
    pub tls: Option<TlsFiles>,
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
            max_rate: DEFAULT_MAX_RATE,
            kept_frames: DEFAULT_KEPT_FRAMES,
            store: None,
            history_max: DEFAULT_HISTORY_MAX,
            max_rooms_per_peer: DEFAULT_MAX_ROOMS_PER_PEER,
            tls: None,
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
    /// Address to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

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

    /// Speak TLS with this certificate chain (PEM, the server's certificate
    /// first, e.g. fullchain.pem); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM, e.g. privkey.pem); needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Log only warnings and errors (unless RUST_LOG says otherwise; then
    /// frames it lets through are logged in full).
    #[arg(short, long, conflicts_with = "tiny")]
    pub silent: bool,

    /// Log one short line per frame instead of every frame in full.
    #[arg(short, long)]
    pub tiny: bool,
}

impl Cli {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Config {
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
        Config {
            addr: self.addr,
            max_peers: self.max_peers,
            max_frame_bytes: self.max_frame,
            health_interval: self.health_interval,
            health_timeout: self.health_timeout.unwrap_or(2 * self.health_interval),
            removal_delay: self.removal_delay,
            handshake_timeout: self.handshake_timeout,
            send_queue_frames: self.send_queue,
            max_rate: self.max_rate,
            kept_frames: self.kept_frames,
            store: self.store,
            history_max: self.history_max,
            max_rooms_per_peer: self.max_rooms_per_peer,
            tls,
            log_mode,
        }
    }
}

/// Longest `--max-frame` accepted, in bytes.
pub const MAX_FRAME_LIMIT: usize = 16 << 20;
/// Shortest `--max-frame` accepted: a registration must fit.
pub const MIN_FRAME_LIMIT: usize = 64;

/// Parses a count that must be at least 1.
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Parses a frame length limit in bytes (64 B to 16 MiB).
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
        let config = Cli::parse_from(["tsockm-server"]).into_config();
        let default = Config::default();
        assert_eq!(config.addr, default.addr);
        assert_eq!(config.max_peers, default.max_peers);
        assert_eq!(config.max_frame_bytes, default.max_frame_bytes);
        assert_eq!(config.health_interval, default.health_interval);
        assert_eq!(config.health_timeout, default.health_timeout);
        assert_eq!(config.removal_delay, default.removal_delay);
        assert_eq!(config.handshake_timeout, default.handshake_timeout);
        assert_eq!(config.send_queue_frames, default.send_queue_frames);
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
        .into_config();
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
        let config = Cli::parse_from(["tsockm-server", "--health-interval", "500ms"]).into_config();
        assert_eq!(config.health_timeout, Duration::from_secs(1));
        let config = Cli::parse_from(["tsockm-server", "-t"]).into_config();
        assert_eq!(config.log_mode, LogMode::Tiny);
        let config = Cli::parse_from(["tsockm-server", "--silent"]).into_config();
        assert_eq!(config.log_mode, LogMode::Silent);
    }
}
