//! `tsockm-client`: the terminal chat client.
//!
//! The edge of the program: arguments, the terminal, standard input and
//! output, exit codes with a one-line reason. Three modes share one loop body
//! (the library's `Chat`):
//!
//! - full screen (the default on a terminal): ratatui on crossterm, in the
//!   alternate screen and raw mode;
//! - `--plain` on a terminal: one line per event, the line being typed kept
//!   at the bottom (raw mode, crossterm);
//! - script mode (standard input not a terminal): each input line handled as
//!   if typed, one event a line, no colours; paced, so nothing is refused.
//!
//! Crossterm saves the terminal's mode when it turns raw mode on and puts it
//! back when turned off; a guard does that on every way out, a panic
//! included.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use clap::Parser;
use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::prelude::CrosstermBackend;
use tokio::sync::mpsc;
use tsockm_client::chat::{Chat, Flow};
use tsockm_client::lines::LineStyle;
use tsockm_client::{Closed, Config, ConnectError, Events, Secret, Session, Tls, text};
use unicode_width::UnicodeWidthStr;

/// Exit code: the session ended because the user asked (`:exit`, Ctrl-D,
/// end of input).
const EXIT_OK: u8 = 0;
/// Exit code: the server could not be reached (its TLS certificate did not
/// verify included), or the connection was lost.
const EXIT_UNREACHABLE: u8 = 1;
/// Exit code: a bad command line (clap uses it too; a `--ca` file that
/// cannot be used included), a password the server refused, or a username
/// it refused in script mode.
const EXIT_USAGE: u8 = 2;
/// Exit code: the server ended the session (kicked, shut down and not back,
/// or taken over by another connection).
const EXIT_ENDED_BY_SERVER: u8 = 3;
/// Exit code (script mode): the session ended as asked, but some messages
/// were not delivered.
const EXIT_NOT_ALL_SENT: u8 = 4;

const PROMPT_USERNAME: &str = "Enter your username: ";

/// Requests typed ahead of the session (a person outrunning the server)
/// before keys are left unread for a while.
const MAX_TYPED_AHEAD: usize = 64;

/// Said while the session ends in order after `:exit` or Ctrl-D.
const QUITTING: &str = "ending the session (Ctrl-C to quit at once)";

/// Chat on a TsockM server.
///
/// On a terminal the client fills the screen: conversations on the left,
/// messages on the right, type below (`:help` lists the commands). With
/// `--plain` it prints one line per event instead. With standard input not a
/// terminal, each input line is handled as if typed, each event is printed
/// on one line, and at the end of input the client ends the session and
/// exits.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 when you end the session (:exit, Ctrl-D, end of input); \
                  1 when the server cannot be reached (its TLS certificate does not verify \
                  included) or the connection is lost; \
                  2 for a bad command line (a --ca file that cannot be used included), \
                  a password the server refused, or a username it refused (script mode); \
                  3 when the server ends the session; \
                  4 in script mode when some messages were not delivered."
)]
struct Args {
    /// A server's address, host:port. Give it more than once: the client
    /// uses the first that answers, and the others when it loses it.
    #[arg(short, long = "addr", value_name = "HOST:PORT", default_value = "127.0.0.1:6969", value_parser = parse_addr)]
    addrs: Vec<String>,
    /// Your username; asked for when absent.
    #[arg(short, long)]
    username: Option<String>,
    /// One line per event instead of the full-screen interface.
    #[arg(long)]
    plain: bool,
    /// Never use colours (setting NO_COLOR does the same).
    #[arg(long)]
    no_color: bool,
    /// How long to keep trying to reconnect after the connection drops.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    reconnect_for: u64,
    /// The server's frame limit in bytes (its --max-frame); longer messages
    /// are refused here, before they are sent.
    #[arg(long, default_value_t = tsockm_proto::DEFAULT_MAX_FRAME_BYTES, value_name = "BYTES")]
    max_frame: usize,
    /// A file whose first line is the server's password (for a server
    /// started with --password-file).
    #[arg(long, value_name = "PATH")]
    password_file: Option<std::path::PathBuf>,
    /// Frames sent per second at most (0: no limit); keep it under the
    /// server's --max-rate.
    #[arg(long, default_value_t = tsockm_client::DEFAULT_MAX_RATE, value_name = "N")]
    max_rate: u32,
    /// Speak TLS to every server, checking its certificate against the
    /// platform's trusted roots (or --ca) for the host of each --addr.
    #[arg(long)]
    tls: bool,
    /// A PEM file of the CA certificate(s) to trust instead of the
    /// platform's roots (a private CA); implies --tls.
    #[arg(long, value_name = "PEM")]
    ca: Option<std::path::PathBuf>,
}

/// A server address as given: `host:port`, the port a number.
fn parse_addr(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not host:port (for example 127.0.0.1:6969)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// How the program talks to the person or script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    FullScreen,
    Plain,
    Script,
}

fn main() {
    let args = Args::parse();
    let terminal = io::stdin().is_terminal() && io::stdout().is_terminal();
    let mode = match (terminal, args.plain) {
        (false, _) => Mode::Script,
        (true, true) => Mode::Plain,
        (true, false) => Mode::FullScreen,
    };
    let colour = mode != Mode::Script && colour_wanted(&args);
    init_tracing(mode);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => exit(fail(EXIT_UNREACHABLE, &format!("cannot start: {e}"))),
    };
    let code = runtime.block_on(run(&args, mode, colour));
    let _ = io::stdout().flush();
    // The input thread may still be blocked reading standard input; it must
    // not keep the process alive.
    exit(code)
}

fn exit(code: u8) -> ! {
    std::process::exit(i32::from(code))
}

/// Colours only when asked for nowhere not to: `--no-color`, `NO_COLOR`.
fn colour_wanted(args: &Args) -> bool {
    !args.no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs go to standard error, coloured only on a terminal; in full screen
/// they would scribble over the interface, so only `RUST_LOG` turns them on.
fn init_tracing(mode: Mode) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    if mode == Mode::FullScreen && !from_env {
        return;
    }
    let default = if mode == Mode::Script {
        "warn"
    } else {
        "error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .init();
}

/// Prints the one-line reason to standard error and gives back the code.
fn fail(code: u8, reason: &str) -> u8 {
    let reason = text::clean(reason, text::Newlines::Escaped);
    eprintln!("tsockm-client: {reason}");
    code
}

/// The password from `--password-file`; `Err` carries the exit code after
/// the reason (never the password) was printed.
fn read_password(args: &Args) -> Result<Option<Secret>, u8> {
    let Some(path) = &args.password_file else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Secret::from_file_text(&text))),
        Err(e) => Err(fail(
            EXIT_USAGE,
            &format!("cannot read the password file {}: {e}", path.display()),
        )),
    }
}

/// The TLS settings from `--tls` and `--ca`, read once for every address
/// and reconnection; `Err` carries the exit code after the one-line reason
/// was printed (2 for a `--ca` file that cannot be used).
fn load_tls(args: &Args) -> Result<Option<Tls>, u8> {
    match (&args.ca, args.tls) {
        (Some(path), _) => Tls::ca_file(path)
            .map(Some)
            .map_err(|e| fail(EXIT_USAGE, &e.to_string())),
        (None, true) => Tls::platform_roots()
            .map(Some)
            .map_err(|e| fail(EXIT_UNREACHABLE, &e.to_string())),
        (None, false) => Ok(None),
    }
}

fn session_config(
    args: &Args,
    username: String,
    password: Option<Secret>,
    tls: Option<Tls>,
) -> Config {
    Config {
        password,
        tls,
        addrs: args.addrs.clone(),
        reconnect_for: Duration::from_secs(args.reconnect_for),
        server_max_frame_bytes: args.max_frame,
        max_rate: args.max_rate,
        // Half a second's worth at once, as the default (900/s, 500).
        rate_burst: (args.max_rate / 2).clamp(1, tsockm_client::DEFAULT_RATE_BURST),
        ..Config::new(String::new(), username)
    }
}

async fn run(args: &Args, mode: Mode, colour: bool) -> u8 {
    // A script's lines come through a reader thread; on a terminal the keys
    // come through crossterm, which must be the only one reading.
    let mut reader = if mode == Mode::Script {
        match Reader::spawn() {
            Ok(reader) => Some(reader),
            Err(e) => return fail(EXIT_UNREACHABLE, &format!("cannot read input: {e}")),
        }
    } else {
        None
    };
    let (session, events) = match register(args, mode, reader.as_mut()).await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let tz = text::local_time_zone();
    let chat = Chat::new(session, tz.clone(), SystemTime::now());
    let outcome = match mode {
        Mode::Script => line_mode(chat, events, reader, LineStyle::script(tz)).await,
        Mode::Plain => line_mode(chat, events, None, LineStyle::terminal(colour, tz)).await,
        Mode::FullScreen => full_screen(chat, events).await,
    };
    exit_code(mode, &outcome)
}

/// One line from the terminal, in its ordinary (cooked) mode.
async fn read_terminal_line() -> Option<String> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
        }
    });
    read.await.ok().flatten()
}

/// Registers, asking for a (new) username until the server takes one.
/// `Err` carries the exit code after the reason was printed.
async fn register(
    args: &Args,
    mode: Mode,
    mut reader: Option<&mut Reader>,
) -> Result<(Session, Events), u8> {
    let password = read_password(args)?;
    let tls = load_tls(args)?;
    let mut given = args.username.clone();
    loop {
        let from_flag = given.is_some();
        let username = match given.take() {
            Some(username) => username,
            None => {
                eprint!("{PROMPT_USERNAME}");
                let _ = io::stderr().flush();
                let line = match reader.as_mut() {
                    Some(reader) => reader.next().await,
                    None => read_terminal_line().await,
                };
                match line {
                    Some(line) => line,
                    // Ctrl-D at the prompt: the person chose to quit; a
                    // script that gives no name is a usage error.
                    None if mode == Mode::Script => {
                        return Err(fail(
                            EXIT_USAGE,
                            "no username given before the end of input",
                        ));
                    }
                    None => {
                        eprintln!();
                        return Err(EXIT_OK);
                    }
                }
            }
        };
        let config = session_config(args, username, password.clone(), tls.clone());
        match Session::connect(config).await {
            Ok(connected) => return Ok(connected),
            Err(ConnectError::UsernameRefused { reason }) => {
                let words = format!("the server refused the username: {reason}");
                if mode == Mode::Script && from_flag {
                    return Err(fail(EXIT_USAGE, &words));
                }
                eprintln!(
                    "{}",
                    LineStyle::script(jiff::tz::TimeZone::UTC).error(&words)
                );
            }
            Err(e @ (ConnectError::PasswordNeeded { .. } | ConnectError::WrongPassword { .. })) => {
                return Err(fail(EXIT_USAGE, &e.to_string()));
            }
            Err(e) => return Err(fail(EXIT_UNREACHABLE, &e.to_string())),
        }
    }
}

/// Standard input, read line by line on a thread of its own (cooked mode),
/// handed over through a bounded channel, so a script is read only as fast
/// as its lines are sent.
struct Reader {
    line_rx: mpsc::Receiver<String>,
}

impl Reader {
    fn spawn() -> io::Result<Reader> {
        let (line_tx, line_rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                loop {
                    let mut buf = Vec::new();
                    match stdin.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if buf.last() == Some(&b'\n') {
                                buf.pop();
                            }
                            if buf.last() == Some(&b'\r') {
                                buf.pop();
                            }
                            // Invalid UTF-8 is replaced rather than refused.
                            let line = String::from_utf8_lossy(&buf).into_owned();
                            if line_tx.blocking_send(line).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        Ok(Reader { line_rx })
    }

    /// The next line; `None` at the end of input.
    async fn next(&mut self) -> Option<String> {
        self.line_rx.recv().await
    }
}

/// How the chat ended.
struct Outcome {
    /// Why the session closed (`None`: its task stopped without saying).
    closed: Option<Closed>,
    /// Messages not delivered.
    n_not_sent: u64,
}

/// The exit code for how the chat ended, with the one-line reason on
/// standard error when it is not a success.
fn exit_code(mode: Mode, outcome: &Outcome) -> u8 {
    let Some(closed) = &outcome.closed else {
        return fail(EXIT_UNREACHABLE, "the session stopped unexpectedly");
    };
    let words = tsockm_client::app::closed_words(closed);
    match closed {
        Closed::Ended if mode == Mode::Script && outcome.n_not_sent > 0 => fail(
            EXIT_NOT_ALL_SENT,
            &format!(
                "{} not delivered (see the lines marked !)",
                text::count(
                    usize::try_from(outcome.n_not_sent).unwrap_or(usize::MAX),
                    "message"
                )
            ),
        ),
        Closed::Ended => EXIT_OK,
        Closed::Lost { .. } => fail(EXIT_UNREACHABLE, &words),
        _ => fail(EXIT_ENDED_BY_SERVER, &words),
    }
}

/// `--plain` and script mode: lines in, lines out. On a terminal (`inline`)
/// the line being typed stays at the bottom, edited with the same keys as
/// the full screen.
async fn line_mode(
    mut chat: Chat,
    mut events: Events,
    mut reader: Option<Reader>,
    style: LineStyle,
) -> Outcome {
    let inline = reader.is_none();
    let mut out = LineOut::new(inline);
    let mut keys = if inline {
        match RawMode::enter(false) {
            Ok(raw) => Some((raw, EventStream::new())),
            Err(e) => {
                out.print(&style.error(&format!("cannot use the terminal: {e}")));
                None
            }
        }
    } else {
        None
    };
    chat.start();
    out.show(&mut chat, &style);
    let session = chat.session().clone();
    let mut reading = true;
    loop {
        // A script's next line is read only once the previous ones are in
        // the session's queue: stdin is the backpressure.
        let can_read = reading && keys.is_none() && !chat.has_requests();
        let can_type = keys.is_some() && chat.n_requests() < MAX_TYPED_AHEAD;
        tokio::select! {
            permit = session.reserve(), if chat.has_requests() => match permit {
                Ok(permit) => chat.send_next(permit),
                Err(_) => chat.drop_requests(),
            },
            line = next_line(&mut reader), if can_read => {
                let flow = match line {
                    Some(line) => chat.line(&line),
                    // End of input: everything read is sent, then COMM_END.
                    None => chat.end(),
                };
                reading = flow == Flow::Continue;
            }
            key = next_key(&mut keys), if can_type => match key {
                Some(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                    if !reading {
                        // Asked to quit already: Ctrl-C or Ctrl-D again
                        // quits at once.
                        if ctrl && matches!(key.code, KeyCode::Char('c' | 'd')) {
                            chat.closed.get_or_insert(Closed::Ended);
                            break;
                        }
                    } else if chat.key(key) == Flow::Exit {
                        reading = false;
                        chat.app.note(QUITTING, SystemTime::now());
                    }
                }
                Some(TermEvent::Paste(text)) => chat.app.input.insert_str(&text),
                Some(_) => {}
                None => {
                    if !reading {
                        break;
                    }
                    chat.end();
                    reading = false;
                }
            },
            event = events.recv() => match event {
                Some(event) => {
                    let closed = matches!(event, tsockm_client::Event::Closed(_));
                    chat.event(event);
                    if closed {
                        out.show(&mut chat, &style);
                        break;
                    }
                }
                None => break,
            },
        }
        out.show(&mut chat, &style);
    }
    out.finish();
    drop(keys);
    Outcome {
        closed: chat.closed.clone(),
        n_not_sent: chat.app.counters.n_not_sent,
    }
}

async fn next_line(reader: &mut Option<Reader>) -> Option<String> {
    match reader {
        Some(reader) => reader.next().await,
        None => None,
    }
}

async fn next_key(keys: &mut Option<(RawMode, EventStream)>) -> Option<TermEvent> {
    match keys {
        Some((_, stream)) => match stream.next().await {
            Some(Ok(event)) => Some(event),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

/// Standard output for the line modes; inline, it keeps the line being
/// typed as the last line of the terminal.
struct LineOut {
    inline: bool,
}

impl LineOut {
    fn new(inline: bool) -> Self {
        LineOut { inline }
    }

    fn print(&mut self, text: &str) {
        let mut out = io::stdout().lock();
        // A closed standard output is no reason to stop chatting.
        if self.inline {
            let _ = queue!(
                out,
                cursor::MoveToColumn(0),
                terminal::Clear(terminal::ClearType::CurrentLine)
            );
            let _ = write!(out, "{}\r\n", text.replace('\n', "\r\n"));
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }

    /// Prints the lines added since the last call, then the input line.
    fn show(&mut self, chat: &mut Chat, style: &LineStyle) {
        if chat.clear_requested {
            chat.clear_requested = false;
            if self.inline {
                let _ = execute!(
                    io::stdout(),
                    terminal::Clear(terminal::ClearType::All),
                    cursor::MoveTo(0, 0)
                );
            }
        }
        for fresh in chat.app.take_fresh() {
            if let Some(line) = style.render(&fresh) {
                self.print(&line);
            }
        }
        if !self.inline {
            return;
        }
        let mut out = io::stdout().lock();
        if chat.app.take_bell() {
            let _ = write!(out, "\x07");
        }
        let status = match chat.app.connection() {
            tsockm_client::app::Connection::Reconnecting { .. } => "[reconnecting] ",
            tsockm_client::app::Connection::Closed => "[closed] ",
            _ => "",
        };
        let prompt = format!("{status}{}> ", chat.app.current().title);
        let width = terminal::size().map(|(w, _)| usize::from(w)).unwrap_or(80);
        let (shown, cursor_col) = chat
            .app
            .input
            .view(width.saturating_sub(prompt.width() + 1));
        let _ = queue!(
            out,
            cursor::MoveToColumn(0),
            terminal::Clear(terminal::ClearType::CurrentLine),
            style::Print(&prompt),
            style::Print(&shown),
            cursor::MoveToColumn(u16::try_from(prompt.width() + cursor_col).unwrap_or(0)),
        );
        let _ = out.flush();
    }

    fn finish(&mut self) {
        if self.inline {
            let _ = execute!(
                io::stdout(),
                cursor::MoveToColumn(0),
                terminal::Clear(terminal::ClearType::CurrentLine)
            );
        }
    }
}

/// Raw mode (and, for the full screen, the alternate screen) while it
/// lives: crossterm saved the terminal's mode and puts it back on drop.
struct RawMode {
    alternate: bool,
}

impl RawMode {
    fn enter(alternate: bool) -> io::Result<RawMode> {
        terminal::enable_raw_mode()?;
        let guard = RawMode { alternate };
        if alternate {
            execute!(
                io::stdout(),
                terminal::EnterAlternateScreen,
                crossterm::event::EnableBracketedPaste
            )?;
        } else {
            execute!(io::stdout(), crossterm::event::EnableBracketedPaste)?;
        }
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal(alternate);
            hook(info);
        }));
        Ok(guard)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal(self.alternate);
    }
}

fn restore_terminal(alternate: bool) {
    let mut out = io::stdout();
    let _ = execute!(out, crossterm::event::DisableBracketedPaste);
    if alternate {
        let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    }
    let _ = terminal::disable_raw_mode();
}

/// The full-screen interface: keys and session events in, the screen
/// redrawn after each (and every second, for the clock and countdowns).
async fn full_screen(mut chat: Chat, mut events: Events) -> Outcome {
    let raw = match RawMode::enter(true) {
        Ok(raw) => raw,
        Err(e) => {
            let _ = fail(EXIT_UNREACHABLE, &format!("cannot use the terminal: {e}"));
            let _ = chat.session().end().await;
            return Outcome {
                closed: None,
                n_not_sent: 0,
            };
        }
    };
    let mut terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
        Ok(terminal) => terminal,
        Err(e) => {
            drop(raw);
            let _ = fail(EXIT_UNREACHABLE, &format!("cannot use the terminal: {e}"));
            return Outcome {
                closed: None,
                n_not_sent: 0,
            };
        }
    };
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    chat.start();
    let session = chat.session().clone();
    // Once the user asked to quit, the session ends in order (what was
    // typed is sent first); Ctrl-C or Ctrl-D again quits at once.
    let mut exiting = false;
    loop {
        let can_type = chat.n_requests() < MAX_TYPED_AHEAD;
        let state = chat.state();
        let _ = terminal.draw(|frame| {
            tsockm_client::tui::draw(frame, &mut chat.app, &state, SystemTime::now());
        });
        if chat.app.take_bell() {
            let _ = execute!(io::stdout(), style::Print("\x07"));
        }
        tokio::select! {
            permit = session.reserve(), if chat.has_requests() => match permit {
                Ok(permit) => chat.send_next(permit),
                Err(_) => chat.drop_requests(),
            },
            key = keys.next(), if can_type => match key {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                    if exiting {
                        if ctrl && matches!(key.code, KeyCode::Char('c' | 'd')) {
                            break;
                        }
                    } else if ctrl && key.code == KeyCode::Char('l') {
                        // Ctrl-L redraws everything, as in a shell.
                        let _ = terminal.clear();
                    } else if chat.key(key) == Flow::Exit {
                        exiting = true;
                        chat.app.note(QUITTING, SystemTime::now());
                    }
                }
                Some(Ok(TermEvent::Paste(text))) => chat.app.input.insert_str(&text),
                Some(Ok(TermEvent::Resize(..))) => {
                    let _ = terminal.autoresize();
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    if exiting {
                        break;
                    }
                    chat.end();
                    exiting = true;
                }
            },
            event = events.recv() => match event {
                Some(event) => {
                    let closed = matches!(event, tsockm_client::Event::Closed(_));
                    chat.event(event);
                    if closed {
                        break;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {}
        }
    }
    drop(terminal);
    drop(raw);
    // Quit at once: the session ends when the program does.
    let closed = chat.closed.get_or_insert(Closed::Ended);
    if let Closed::Ended = closed {
        println!("session ended");
    }
    Outcome {
        closed: chat.closed.clone(),
        n_not_sent: chat.app.counters.n_not_sent,
    }
}
