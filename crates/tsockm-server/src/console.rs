//! The operator console: parses a line of standard input into a command,
//! runs it against the registry, and renders the answer as text.
//!
//! Parsing and rendering are pure functions (tested below); [`run`] is the
//! loop the binary feeds with lines. Answers go to the given writer
//! (standard output in the binary), never into the log.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::registry::{ConsoleReply, ConsoleRequest, InfoReport, PeerSummary, PingReport, Target};
use crate::server::Console;

/// The usage text printed by `:help` and after errors.
pub const USAGE: &str = "\
commands:
  :list, :ls           list peers: id, username, address, state, connected since, rooms
  :rooms               list rooms: name, member count, members' ids
  :kill <peer_id>      remove a peer (COMM_END to it, NTFY_KILL to the others)
  :kill all            remove every peer
  :ping <peer_id>      send a health check now and report whether it answered
  :ping all            the same for every peer
  :info                address, uptime, peer counts, traffic counters
  :mute, :unmute       stop / resume printing protocol frames
  :cc                  clear the screen
  :help                this help
  :exit                end every session and stop the server";

/// A parsed console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCommand {
    /// A question for the registry.
    Registry(ConsoleRequest),
    /// `:mute` (true) / `:unmute` (false).
    Mute(bool),
    /// `:cc`.
    Clear,
    /// `:help`.
    Help,
    /// `:exit`.
    Exit,
}

/// A console line that is not a valid command; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConsoleError(String);

/// Parses one line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<ConsoleCommand>, ConsoleError> {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    let argument = words.next();
    let extra = words.next();
    let target = |command: &str| -> Result<Target, ConsoleError> {
        match (argument, extra) {
            (None, _) => Err(ConsoleError(format!(
                "error: `{command}` needs a peer id or `all`\nusage: {command} <peer_id> | {command} all"
            ))),
            (Some(_), Some(_)) => Err(ConsoleError(format!(
                "error: `{command}` takes one argument\nusage: {command} <peer_id> | {command} all"
            ))),
            (Some("all"), None) => Ok(Target::All),
            (Some(id), None) => Ok(Target::Peer(id.to_owned())),
        }
    };
    let no_argument = |command: ConsoleCommand| match argument {
        None => Ok(Some(command)),
        Some(_) => Err(ConsoleError(format!(
            "error: `{name}` takes no argument\n{USAGE}"
        ))),
    };
    match name {
        ":list" | ":ls" => no_argument(ConsoleCommand::Registry(ConsoleRequest::List)),
        ":info" => no_argument(ConsoleCommand::Registry(ConsoleRequest::Info)),
        ":rooms" => no_argument(ConsoleCommand::Registry(ConsoleRequest::Rooms)),
        ":kill" => Ok(Some(ConsoleCommand::Registry(ConsoleRequest::Kill(
            target(":kill")?,
        )))),
        ":ping" => Ok(Some(ConsoleCommand::Registry(ConsoleRequest::Ping(
            target(":ping")?,
        )))),
        ":mute" => no_argument(ConsoleCommand::Mute(true)),
        ":unmute" => no_argument(ConsoleCommand::Mute(false)),
        ":cc" | ":clear" => no_argument(ConsoleCommand::Clear),
        ":help" | ":h" => no_argument(ConsoleCommand::Help),
        ":exit" | ":quit" => no_argument(ConsoleCommand::Exit),
        other => Err(ConsoleError(format!(
            "error: unknown command `{other}`\n{USAGE}"
        ))),
    }
}

/// Reads console lines until they end or the server shuts down, printing
/// each answer to `out`. `:exit` cancels `shutdown`. When the lines end
/// (standard input closed) the server keeps serving.
///
/// Commands run concurrently: a `:ping` waiting for answers does not hold
/// up the lines typed after it (an `:exit`, say); each answer is printed
/// when it is ready.
pub async fn run(
    console: Console,
    mut lines: mpsc::Receiver<String>,
    mut out: impl AsyncWrite + Unpin,
    shutdown: CancellationToken,
) {
    let mut running = FuturesUnordered::new();
    let mut reading = true;
    loop {
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            line = lines.recv(), if reading => match line {
                Some(line) => {
                    running.push(execute_owned(console.clone(), line, shutdown.clone()));
                    continue;
                }
                None => {
                    reading = false;
                    continue;
                }
            },
            Some(answer) = running.next() => answer,
        };
        if !answer.is_empty() {
            let text = format!("{answer}\n");
            if out.write_all(text.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
        }
    }
}

async fn execute_owned(console: Console, line: String, shutdown: CancellationToken) -> String {
    execute(&console, &line, &shutdown).await
}

/// Runs one console line and returns the text to print.
pub async fn execute(console: &Console, line: &str, shutdown: &CancellationToken) -> String {
    let command = match parse(line) {
        Ok(Some(command)) => command,
        Ok(None) => return String::new(),
        Err(error) => return error.to_string(),
    };
    match command {
        ConsoleCommand::Help => USAGE.to_owned(),
        ConsoleCommand::Clear => "\x1b[2J\x1b[H".to_owned(),
        ConsoleCommand::Mute(muted) => {
            console.set_muted(muted);
            if muted {
                "frames muted"
            } else {
                "frames unmuted"
            }
            .to_owned()
        }
        ConsoleCommand::Exit => {
            shutdown.cancel();
            "shutting down: ending every session".to_owned()
        }
        ConsoleCommand::Registry(request) => match console.request(request).await {
            Ok(reply) => render(&reply, SystemTime::now()),
            Err(_) => "error: the server is shutting down".to_owned(),
        },
    }
}

/// Renders a registry answer.
pub fn render(reply: &ConsoleReply, now: SystemTime) -> String {
    match reply {
        ConsoleReply::List(peers) if peers.is_empty() => "no peers".to_owned(),
        ConsoleReply::List(peers) => {
            let mut out = format!("{} peer(s):", peers.len());
            for peer in peers {
                let _ = write!(out, "\n{}", peer_line(peer, now));
            }
            out
        }
        ConsoleReply::Killed(removed) if removed.is_empty() => "no peers to remove".to_owned(),
        ConsoleReply::Killed(removed) => {
            let mut out = String::new();
            for (i, peer) in removed.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "removed {} ({})", peer.id, peer.username);
            }
            out
        }
        ConsoleReply::UnknownPeer(id) => format!("error: no peer with id `{id}`"),
        ConsoleReply::Pinged(report) => render_ping(report),
        ConsoleReply::Info(info) => render_info(info),
        ConsoleReply::Rooms(rooms) if rooms.is_empty() => "no rooms".to_owned(),
        ConsoleReply::Rooms(rooms) => {
            let mut out = format!("{} room(s):", rooms.len());
            for room in rooms {
                let _ = write!(
                    out,
                    "\n{}  {} member(s)  {}",
                    room.name,
                    room.members.len(),
                    room.members.join(" ")
                );
            }
            out
        }
    }
}

fn peer_line(peer: &PeerSummary, now: SystemTime) -> String {
    let state = if peer.online { "online" } else { "away" };
    let ago = now.duration_since(peer.since).unwrap_or_default();
    let mut line = format!(
        "{}  {}  {}  {}  since {} ({} ago)",
        peer.id,
        peer.username,
        peer.addr,
        state,
        utc(peer.since),
        human(ago)
    );
    if !peer.rooms.is_empty() {
        let _ = write!(line, "  rooms {}", peer.rooms.join(" "));
    }
    if !peer.node.is_empty() {
        let _ = write!(line, "  node {}", peer.node);
    }
    line
}

fn render_ping(report: &PingReport) -> String {
    if report.answered.is_empty() && report.silent.is_empty() && report.away.is_empty() {
        return "no peers to ping".to_owned();
    }
    let mut lines = Vec::new();
    for (peer, rtt) in &report.answered {
        lines.push(format!(
            "{} ({}) answered in {} ms",
            peer.id,
            peer.username,
            rtt.as_millis()
        ));
    }
    for peer in &report.silent {
        lines.push(format!(
            "{} ({}) did not answer within {} ms",
            peer.id,
            peer.username,
            report.window.as_millis()
        ));
    }
    for peer in &report.away {
        lines.push(format!(
            "{} ({}) is away: not pinged",
            peer.id, peer.username
        ));
    }
    lines.join("\n")
}

fn render_info(info: &InfoReport) -> String {
    let cluster = match &info.cluster {
        None => String::new(),
        Some(c) => {
            let nodes: Vec<String> = c
                .nodes
                .iter()
                .map(|(name, alive)| {
                    if *alive {
                        name.clone()
                    } else {
                        format!("{name} (dead)")
                    }
                })
                .collect();
            let n_alive = c.nodes.iter().filter(|(_, alive)| *alive).count();
            format!(
                "\ncluster: node {}; {n_alive} node(s) alive: {}; peers on all nodes: {} online, {} away; Redis {}",
                c.node,
                nodes.join(", "),
                c.n_online,
                c.n_away,
                if c.redis_up {
                    "reachable"
                } else {
                    "UNREACHABLE"
                }
            )
        }
    };
    let failing = if info.store_failing {
        " (FAILING NOW: see the log)"
    } else {
        ""
    };
    let store = if info.cluster.is_some() {
        "store: the cluster's Redis (each conversation's history is a stream there)".to_owned()
    } else {
        format!(
            "store: {}{failing}: {} message(s) written, {} failed, {} dropped (queue full)",
            info.store, info.store_written, info.store_failed, info.store_dropped,
        )
    };
    format!(
        "address: {}\nuptime: {}\npeers: {} online, {} away ({} connection(s) not registered)\n\
         connections: {} open\n\
         rooms: {}\n\
         frames: {} in, {} out\nbytes: {} in, {} out\n\
         dropped: {} kept frame(s), {} rate-limited frame(s), {} peer(s) cut off for not reading\n\
         queued: {} of at most {} bytes; {} peer(s) cut off or trimmed over that budget\n\
         {store}",
        info.addr,
        human(info.uptime),
        info.n_online,
        info.n_away,
        info.n_unregistered,
        info.n_connections,
        info.n_rooms,
        info.frames_in,
        info.frames_out,
        info.bytes_in,
        info.bytes_out,
        info.frames_dropped,
        info.frames_rate_limited,
        info.peers_cut_off,
        info.queued_bytes,
        info.max_queued_bytes,
        info.peers_over_budget,
    ) + &cluster
}

/// A duration to the second, as humantime writes it: `1h 2m 3s`.
fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// `2026-11-28 05:44:47Z`.
fn utc(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn request(r: ConsoleRequest) -> Result<Option<ConsoleCommand>, ConsoleError> {
        Ok(Some(ConsoleCommand::Registry(r)))
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse(":list"), request(ConsoleRequest::List));
        assert_eq!(parse(" :ls "), request(ConsoleRequest::List));
        assert_eq!(parse(":info"), request(ConsoleRequest::Info));
        assert_eq!(
            parse(":kill all"),
            request(ConsoleRequest::Kill(Target::All))
        );
        assert_eq!(
            parse(":kill abcDEF1234"),
            request(ConsoleRequest::Kill(Target::Peer("abcDEF1234".into())))
        );
        assert_eq!(
            parse(":ping all"),
            request(ConsoleRequest::Ping(Target::All))
        );
        assert_eq!(parse(":mute"), Ok(Some(ConsoleCommand::Mute(true))));
        assert_eq!(parse(":unmute"), Ok(Some(ConsoleCommand::Mute(false))));
        assert_eq!(parse(":cc"), Ok(Some(ConsoleCommand::Clear)));
        assert_eq!(parse(":help"), Ok(Some(ConsoleCommand::Help)));
        assert_eq!(parse(":exit"), Ok(Some(ConsoleCommand::Exit)));
    }

    #[test]
    fn errors_say_what_is_wrong_and_show_the_usage() {
        let e = parse(":kill").unwrap_err().to_string();
        assert!(
            e.contains("error") && e.contains("usage: :kill <peer_id>"),
            "{e}"
        );
        let e = parse(":ping").unwrap_err().to_string();
        assert!(e.contains("usage: :ping <peer_id>"), "{e}");
        let e = parse(":kill a b").unwrap_err().to_string();
        assert!(e.contains("one argument"), "{e}");
        let e = parse(":frobnicate").unwrap_err().to_string();
        assert!(
            e.contains("unknown command `:frobnicate`") && e.contains(":list"),
            "{e}"
        );
        let e = parse("list").unwrap_err().to_string();
        assert!(e.contains("unknown command `list`"), "{e}");
        assert!(parse(":list now").is_err());
    }

    #[test]
    fn renders_peers() {
        let since = UNIX_EPOCH + Duration::from_secs(1_795_844_687);
        let peer = PeerSummary {
            id: "abcDEF1234".into(),
            username: "alice".into(),
            addr: "127.0.0.1:5000".into(),
            online: true,
            since,
            rooms: Vec::new(),
            node: String::new(),
        };
        let away = PeerSummary {
            online: false,
            ..peer.clone()
        };
        let text = render(
            &ConsoleReply::List(vec![peer, away]),
            since + Duration::from_secs(65),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2 peer(s):");
        assert_eq!(
            lines[1],
            "abcDEF1234  alice  127.0.0.1:5000  online  since 2026-11-28 05:44:47Z (1m 5s ago)"
        );
        assert!(lines[2].contains(" away "));
        assert_eq!(render(&ConsoleReply::List(vec![]), since), "no peers");
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(19_723 * 86_400)),
            "2024-01-01 00:00:00Z"
        );
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(3_723_400)), "1h 2m 3s");
    }
}
