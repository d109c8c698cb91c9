//! Logging: the subscriber the binary installs, and [`FrameLog`], the
//! protocol frame dump that `-t`, the default dev mode and `:mute` control.
//!
//! Logs go to standard error; console answers go to standard output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::fmt;

use tracing_subscriber::EnvFilter;
use tsockm_proto::{Action, Frame, Kind, SERVER_ID};

use crate::config::LogMode;

/// Installs the global subscriber: `warn` in silent mode, `info` otherwise;
/// `RUST_LOG`, when set, overrides either (frames included).
pub fn init(mode: LogMode) {
    let default = match mode {
        LogMode::Silent => "warn",
        LogMode::Tiny | LogMode::Dev => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Installing twice (only possible in tests) keeps the first subscriber.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Received from a client.
    In,
    /// Sent by the server.
    Out,
}

/// Prints protocol frames according to the log mode, unless muted.
#[derive(Debug, Clone)]
pub struct FrameLog {
    mode: LogMode,
    muted: Arc<AtomicBool>,
}

impl FrameLog {
    /// A frame log for `mode`, unmuted.
    pub fn new(mode: LogMode) -> Self {
        FrameLog {
            mode,
            muted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops (`true`) or resumes (`false`) printing frames.
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether frames are printed at all: not muted, and the filter lets
    /// `info` through (the mode sets it, unless `RUST_LOG` overrides it, so
    /// `-s` with `RUST_LOG=info` prints frames in full).
    pub fn enabled(&self) -> bool {
        !self.muted.load(Ordering::Relaxed) && tracing::enabled!(tracing::Level::INFO)
    }

    /// Logs one frame; `who` names the peer or client address.
    pub fn frame(&self, direction: Direction, who: &str, frame: &Frame) {
        if !self.enabled() {
            return;
        }
        let arrow = match direction {
            Direction::In => "<-",
            Direction::Out => "->",
        };
        match self.mode {
            LogMode::Tiny => tracing::info!(
                "{arrow} {who} {} {} {} ({} body bytes)",
                frame.kind,
                frame.action,
                frame.status,
                frame.body().len()
            ),
            LogMode::Dev | LogMode::Silent => {
                tracing::info!("{arrow} {who} {}", Redacted(frame));
            }
        }
    }
}

/// A frame as the log shows it: in full, but for its secrets, written
/// `***` (section 8): the resume token in a resume request and in a
/// registration or resume answer, and the body of AUTH.
#[derive(Debug)]
pub struct Redacted<'a>(pub &'a Frame);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        let request = frame.kind == Kind::Req;
        let secret = match frame.action {
            Action::Auth if request => Some(""),
            // A resume: the peer id in SENDER_ID, the token in BODY.
            Action::Comm if request && !frame.sender_id().is_empty() => Some(""),
            // The answer to a registration or resume: `<id> <token>`.
            Action::Comm if frame.kind == Kind::Res && frame.sender_id() == SERVER_ID => {
                Some(frame.body().split_once(' ').map_or("", |(id, _)| id))
            }
            _ => None,
        };
        match secret {
            None => write!(f, "{frame}"),
            Some(kept) => {
                let header = frame.clone().with_body("");
                let space = if kept.is_empty() { "" } else { " " };
                write!(f, "{header}{kept}{space}***")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_written_as_stars() {
        let cases = [
            (
                "REQ::COMM::200::abcDEF1234::::::sEcReTtOkEn",
                "REQ::COMM::200::abcDEF1234::::::***",
            ),
            (
                "REQ::COMM::200::abcDEF1234::m1::::sEcReTtOkEn",
                "REQ::COMM::200::abcDEF1234::m1::::***",
            ),
            (
                "RES::COMM::200::server::127.0.0.1:1::127.0.0.1:2::abcDEF1234 sEcReTtOkEn",
                "RES::COMM::200::server::127.0.0.1:1::127.0.0.1:2::abcDEF1234 ***",
            ),
            (
                "REQ::AUTH::200::::::::pAsSwOrD",
                "REQ::AUTH::200::::::::***",
            ),
            // No secret: shown in full.
            ("REQ::COMM::200::::::::alice", "REQ::COMM::200::::::::alice"),
            (
                "RES::COMM::200::abcDEF1234::::::OK",
                "RES::COMM::200::abcDEF1234::::::OK",
            ),
            (
                "RES::AUTH::200::server::127.0.0.1:1::127.0.0.1:2::OK",
                "RES::AUTH::200::server::127.0.0.1:1::127.0.0.1:2::OK",
            ),
        ];
        for (line, shown) in cases {
            let frame: Frame = line.parse().unwrap();
            assert_eq!(Redacted(&frame).to_string(), shown);
        }
    }
}
