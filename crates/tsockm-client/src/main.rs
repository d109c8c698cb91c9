//! `tsockm-client`: the terminal chat client.
//!
//! The edge of the program: arguments, the choice between the interactive
//! mode (a line editor on a terminal) and the script mode (standard input is
//! not a terminal), and exit codes with a one-line reason. Everything about
//! the network is in the library's `Session`; parsing, state and rendering are
//! in its `command`, `app` and `ui` modules.
//!
//! The line editor is `rustyline`: it is small (no async runtime of its own,
//! few dependencies), and its `ExternalPrinter` prints incoming messages above
//! the line being typed and redraws that line. It reads on a thread of its
//! own; lines come to the async side through a bounded channel, one at a
//! time, and the reader waits until a line has been handled before it reads
//! the next (so after `:exit` it never touches the terminal again).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

use clap::Parser;
use tokio::sync::mpsc;
use tsockm_client::app::{self, App};
use tsockm_client::command::{self, Command};
use tsockm_client::ui::{self, Ui};
use tsockm_client::{Closed, Config, ConnectError, Event, Events, PeerId, Session};

/// Exit code: the session ended because the user asked (`:exit`, end of input).
const EXIT_OK: u8 = 0;
/// Exit code: the server could not be reached, or the connection was lost.
const EXIT_UNREACHABLE: u8 = 1;
/// Exit code: the server ended the session (the client was kicked, or the
/// server shut down). (2 is clap's code for a bad command line.)
const EXIT_ENDED_BY_SERVER: u8 = 3;

const PROMPT_USERNAME: &str = "Enter your username: ";
const PROMPT: &str = "> ";

/// Chat on a TsockM server.
///
/// On a terminal, type a message and press Enter to send it to everyone, or a
/// `:command` (`:help` lists them). With standard input not a terminal, each
/// input line is handled as if typed, each event is printed on one line, and
/// at the end of input the client ends the session and exits.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 when you end the session (:exit, end of input); \
                  1 when the server cannot be reached or the connection is lost; \
                  2 for a bad command line; 3 when the server ends the session."
)]
struct Args {
    /// The server's address, host:port.
    #[arg(short, long, default_value = "127.0.0.1:6969")]
    addr: String,
    /// Your username; asked for when absent.
    #[arg(short, long)]
    username: Option<String>,
    /// Never use colours (setting NO_COLOR does the same).
    #[arg(long)]
    no_color: bool,
    /// How long to keep trying to reconnect after the connection drops.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    reconnect_for: u64,
}

fn main() {
    let args = Args::parse();
    let interactive = io::stdin().is_terminal() && io::stdout().is_terminal();
    init_tracing(interactive);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => std::process::exit(i32::from(fail(
            EXIT_UNREACHABLE,
            &format!("cannot start the runtime: {e}"),
        ))),
    };
    let code = if interactive {
        interactive_mode(&args, &runtime)
    } else {
        script_mode(&args, &runtime)
    };
    // The input thread may still be blocked reading standard input; it must
    // not keep the process alive.
    let _ = io::stdout().flush();
    std::process::exit(i32::from(code))
}

fn init_tracing(interactive: bool) {
    let default = if interactive { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

/// Prints the one-line reason to standard error and gives back the code.
fn fail(code: u8, reason: &str) -> u8 {
    eprintln!("tsockm-client: {reason}");
    code
}

/// Where the program writes what it shows.
enum Output {
    /// Plain standard output (script mode, and before the editor runs).
    Stdout,
    /// Above the line being edited.
    Printer(Box<dyn rustyline::ExternalPrinter + Send>),
}

impl Output {
    fn print(&mut self, text: &str) {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                // A closed standard output is no reason to stop chatting.
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Output::Printer(printer) => {
                if printer.print(format!("{text}\n")).is_err() {
                    println!("{text}");
                }
            }
        }
    }
}

/// One thing read from the user.
#[derive(Debug)]
enum Input {
    /// A line, without its terminator.
    Line(String),
    /// End of input (or Ctrl-D / Ctrl-C on a terminal).
    End,
}

/// The reading thread's two ends: lines come in; "go on" goes out.
struct Reader {
    /// Lines read, one at a time.
    line_rx: mpsc::Receiver<Input>,
    /// Tells the thread to read the next line.
    go_tx: std::sync::mpsc::SyncSender<()>,
}

impl Reader {
    /// Starts a thread that calls `read` each time it is told to go on.
    fn spawn(mut read: impl FnMut() -> Input + Send + 'static) -> io::Result<Reader> {
        let (line_tx, line_rx) = mpsc::channel(1);
        let (go_tx, go_rx) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || {
                while go_rx.recv().is_ok() {
                    let input = read();
                    let end = matches!(input, Input::End);
                    if line_tx.blocking_send(input).is_err() || end {
                        break;
                    }
                }
            })?;
        Ok(Reader { line_rx, go_tx })
    }

    /// Lets the thread read the next line.
    fn go(&self) {
        let _ = self.go_tx.try_send(());
    }
}

/// Reads one line from standard input (script mode); invalid UTF-8 is
/// replaced rather than refused.
fn read_stdin_line() -> Input {
    let mut buf = Vec::new();
    match io::stdin().lock().read_until(b'\n', &mut buf) {
        Ok(0) | Err(_) => Input::End,
        Ok(_) => {
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            Input::Line(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

fn session_config(args: &Args, username: String) -> Config {
    Config {
        reconnect_for: Duration::from_secs(args.reconnect_for),
        ..Config::new(args.addr.clone(), username)
    }
}

/// Registers, asking for a (new) username until the server takes one.
/// `Err` carries the exit code after the reason was printed.
fn register(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    ui: Ui,
    mut ask: impl FnMut() -> Option<String>,
) -> Result<(Session, Events), u8> {
    let mut given = args.username.clone();
    loop {
        let Some(username) = given.take().or_else(&mut ask) else {
            return Err(fail(
                EXIT_UNREACHABLE,
                "no username given before the end of input",
            ));
        };
        match runtime.block_on(Session::connect(session_config(args, username))) {
            Ok(connected) => return Ok(connected),
            Err(ConnectError::UsernameRefused { reason }) => {
                Output::Stdout.print(&ui.error(&format!("username refused: {reason}")));
            }
            Err(e) => return Err(fail(EXIT_UNREACHABLE, &e.to_string())),
        }
    }
}

fn script_mode(args: &Args, runtime: &tokio::runtime::Runtime) -> u8 {
    let ui = Ui::script();
    let ask = || {
        eprintln!("{}", PROMPT_USERNAME.trim_end());
        match read_stdin_line() {
            Input::Line(line) => Some(line),
            Input::End => None,
        }
    };
    let (session, events) = match register(args, runtime, ui, ask) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let reader = match Reader::spawn(read_stdin_line) {
        Ok(reader) => reader,
        Err(e) => return fail(EXIT_UNREACHABLE, &format!("cannot read input: {e}")),
    };
    let mut out = Output::Stdout;
    let outcome = runtime.block_on(chat(session, events, reader, &mut out, ui));
    if let Some(closed) = &outcome.closed {
        out.print(&ui.closed(closed));
    }
    exit_code(outcome.closed.as_ref())
}

fn interactive_mode(args: &Args, runtime: &tokio::runtime::Runtime) -> u8 {
    let colour = ui::colour_wanted(!args.no_color, std::env::var_os("NO_COLOR").as_deref());
    let ui = Ui::terminal(colour);
    let saved = terminal::save();
    let mut editor = match rustyline::DefaultEditor::with_config(
        rustyline::Config::builder().auto_add_history(true).build(),
    ) {
        Ok(editor) => editor,
        Err(e) => {
            return fail(
                EXIT_UNREACHABLE,
                &format!("cannot start the line editor: {e}"),
            );
        }
    };
    let ask = || editor.readline(PROMPT_USERNAME).ok();
    let (session, events) = match register(args, runtime, ui, ask) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let mut out = match editor.create_external_printer() {
        Ok(printer) => Output::Printer(Box::new(printer)),
        Err(_) => Output::Stdout,
    };
    let read = move || match editor.readline(PROMPT) {
        Ok(line) => Input::Line(line),
        Err(_) => Input::End,
    };
    let reader = match Reader::spawn(read) {
        Ok(reader) => reader,
        Err(e) => return fail(EXIT_UNREACHABLE, &format!("cannot read input: {e}")),
    };
    let outcome = runtime.block_on(chat(session, events, reader, &mut out, ui));
    // The editor may be in the middle of reading a line, in raw mode: give
    // the terminal back as it was, and leave the half-typed line.
    terminal::restore(saved);
    if outcome.mid_line {
        println!();
    }
    // A failure is said once, on standard error.
    if let Some(closed @ Closed::Ended) = &outcome.closed {
        println!("{}", ui.closed(closed));
    }
    exit_code(outcome.closed.as_ref())
}

/// Whether the chat goes on after a line.
enum Flow {
    Continue,
    Exit,
}

/// The chat itself: lines in, events out, until the session is closed.
async fn chat(
    session: Session,
    mut events: Events,
    mut reader: Reader,
    out: &mut Output,
    ui: Ui,
) -> Outcome {
    let mut app = App::new();
    out.print(&ui.welcome(&session.state()));
    reader.go();
    let mut reading = true;
    // Whether the reader is in the middle of reading a line.
    let mut mid_line = true;
    loop {
        tokio::select! {
            input = reader.line_rx.recv(), if reading => {
                mid_line = false;
                let flow = match input {
                    Some(Input::Line(line)) => handle_line(&line, &session, &mut app, out, ui).await,
                    Some(Input::End) | None => Flow::Exit,
                };
                match flow {
                    Flow::Continue => {
                        reader.go();
                        mid_line = true;
                    }
                    Flow::Exit => {
                        reading = false;
                        // Everything typed so far is queued before COMM_END.
                        let _ = session.end().await;
                    }
                }
            }
            event = events.recv() => match event {
                Some(Event::Closed(closed)) => {
                    return Outcome {
                        closed: Some(closed),
                        mid_line,
                    };
                }
                Some(event) => {
                    app.on_event(&event);
                    out.print(&ui.event(&event));
                }
                None => return Outcome { closed: None, mid_line },
            },
        }
    }
}

/// How the chat ended.
struct Outcome {
    /// Why the session closed (`None`: its task stopped without saying).
    closed: Option<Closed>,
    /// Whether the line editor was in the middle of reading a line.
    mid_line: bool,
}

/// The exit code for how the chat ended, with the one-line reason on
/// standard error when it is not a success.
fn exit_code(closed: Option<&Closed>) -> u8 {
    let Some(closed) = closed else {
        return fail(EXIT_UNREACHABLE, "the session stopped unexpectedly");
    };
    match closed {
        Closed::Ended => EXIT_OK,
        Closed::Lost { reason } => fail(EXIT_UNREACHABLE, &format!("connection lost: {reason}")),
        Closed::Kicked { reason } => fail(
            EXIT_ENDED_BY_SERVER,
            &format!("kicked by the server: {reason}"),
        ),
        Closed::ShutDown { reason } => fail(
            EXIT_ENDED_BY_SERVER,
            &format!("the server closed: {reason}"),
        ),
        other => fail(EXIT_UNREACHABLE, &format!("session closed: {other:?}")),
    }
}

async fn handle_line(
    line: &str,
    session: &Session,
    app: &mut App,
    out: &mut Output,
    ui: Ui,
) -> Flow {
    let command = match command::parse(line) {
        Ok(Some(command)) => command,
        Ok(None) => return Flow::Continue,
        Err(e) => {
            out.print(&ui.error_with_usage(&e.to_string(), &e.usage()));
            return Flow::Continue;
        }
    };
    match command {
        Command::Broadcast(text) => {
            if session.broadcast(text).await.is_ok() {
                app.on_sent();
            }
        }
        Command::Direct { to, text } => {
            let state = session.state();
            match app::resolve(&state.roster, &to) {
                Ok(id) => match session.direct(&id, text).await {
                    Ok(()) => app.on_sent(),
                    Err(e) => out.print(&ui.error(&e.to_string())),
                },
                Err(e) => out.print(&ui.error(&e.to_string())),
            }
        }
        Command::GetPeer(id) => {
            let _ = session.get_peer(&PeerId::new(id)).await;
        }
        Command::List => {
            let state = session.state();
            out.print(&ui.roster(&state.roster, &state.id));
        }
        Command::Info => {
            let lines = app.info_lines(&session.state(), SystemTime::now());
            out.print(&ui.lines(&lines));
        }
        Command::Clear => {
            if ui.is_terminal() {
                out.print(ui::CLEAR_SCREEN);
            }
        }
        Command::Help => {
            let help: Vec<String> = command::help_text().lines().map(str::to_owned).collect();
            out.print(&ui.lines(&help));
        }
        Command::Exit => return Flow::Exit,
    }
    Flow::Continue
}

/// Saving and restoring the terminal's mode, for an exit while the line
/// editor is reading in raw mode.
#[cfg(unix)]
mod terminal {
    use std::io::Write;

    use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

    pub fn save() -> Option<Termios> {
        tcgetattr(std::io::stdin()).ok()
    }

    pub fn restore(saved: Option<Termios>) {
        if let Some(termios) = saved {
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &termios);
        }
        // Bracketed paste off, in case the editor had turned it on.
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[?2004l");
        let _ = out.flush();
    }
}

#[cfg(not(unix))]
mod terminal {
    pub fn save() -> Option<()> {
        None
    }

    pub fn restore(_saved: Option<()>) {}
}
