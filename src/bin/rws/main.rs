//! `rws`: a command-line WebSocket client and echo server built on
//! `resilient-ws`.
//!
//! - `rws serve --echo` runs an echo endpoint at `/ws`.
//! - `rws connect URL` sends stdin lines as text messages and prints the
//!   messages it receives on stdout; connection events go to stderr.

use std::{
    io::{self, BufRead, BufWriter, Stdout, Write},
    process,
    time::Duration,
};

use actix::prelude::*;
use actix_web::{App, HttpServer};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

mod demo;
use resilient_ws::{
    server::{echo_route, EchoConfig},
    Closed, ConnectionState, Error, ErrorEvent, IncomingMessage, Payload, ReconnectMode,
    ResilientWebSocket, StateChanged,
};
use tokio::sync::mpsc;

/// Exit code: the connection ended with an error, or a local failure.
const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage, a failed bind, or a failed initial connect.
const EXIT_SETUP: i32 = 2;
/// Exit code: interrupted by SIGINT/SIGTERM (128 + SIGINT, as shells report).
const EXIT_INTERRUPTED: i32 = 130;

/// How long `rws serve` waits for open connections on shutdown. actix-web's
/// default of 30 s would keep a Ctrl-C'd server alive as long as any
/// WebSocket stays open.
const SERVE_SHUTDOWN_SECS: u64 = 3;

/// How many stdin lines may wait between the reader thread and the socket;
/// beyond this the reader blocks, so a huge pipe does not fill memory.
const STDIN_QUEUE: usize = 256;

/// Writes one line to stderr. Unlike `eprintln!`, a closed stderr is ignored
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr().lock(), $($arg)*);
    }};
}

const CONNECT_AFTER_HELP: &str = "\
Output:
  stdout  one line per received message: a text message as-is (a text message
          that contains newlines spans several lines); a binary message as
          `base64:` followed by its standard (padded) base64 encoding, e.g.
          the bytes 01 02 03 print as `base64:AQID`.
  stderr  connection events (state changes, errors, the close), as
          human-readable lines, or with --json one JSON object per line:
            {\"event\":\"state\",\"previous\":\"connecting\",\"current\":\"connected\"}
            {\"event\":\"error\",\"error\":\"...\"}
            {\"event\":\"closed\",\"code\":1000,\"reason\":\"\",\"by_us\":true,\"error\":null}
          Log lines (RUST_LOG, default `warn`) and the final `rws: ...`
          message are plain text in both modes.

Input:
  Every stdin line (without its line ending) is sent as one text message, in
  order. At the end of stdin the connection is closed gracefully once every
  line has been handed over. With --echo the connection stays open instead.

Exit status:
  0    the connection closed normally (code 1000, or we closed it)
  1    the connection ended with an error (e.g. the server closed with 1011),
       or stdin/stdout failed
  2    bad arguments, or the initial connection failed
  130  interrupted (SIGINT/SIGTERM); the connection is closed gracefully first

Environment:
  RWS_TOKEN  bearer token, used when --token is not given (preferred: command
             lines are visible to other users in `ps`)
  RUST_LOG   log filter for stderr (default `warn`)";

/// A WebSocket client and echo server built on resilient-ws.
#[derive(Parser)]
#[command(name = "rws", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebSocket server with its endpoint at /ws.
    Serve(ServeArgs),
    /// Connect to a WebSocket server: stdin lines go out as text messages,
    /// received messages come out on stdout.
    #[command(after_help = CONNECT_AFTER_HELP)]
    Connect(ConnectArgs),
    /// Run an embedded server and client in one process and stream numbered
    /// messages through them; prints a delivery summary.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address to listen on; port 0 picks a free port. The bound address
    /// is printed on stderr as `listening on ws://ADDR/ws`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    bind: String,

    /// Echo every text and binary message back unchanged (the default, and
    /// for now the only mode).
    #[arg(long)]
    echo: bool,

    /// The largest message accepted, in bytes (after joining fragments);
    /// larger ones close the socket with 1009. Default 16 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,
}

// No `Debug`: it would print the token.
#[derive(Args)]
struct ConnectArgs {
    /// The WebSocket URL (ws:// or wss://).
    url: String,

    /// Send every received message back unchanged (text as text, binary as
    /// binary). The end of stdin then does not close the connection.
    #[arg(long)]
    echo: bool,

    /// Print connection events on stderr as JSON lines.
    #[arg(long)]
    json: bool,

    /// What to do when the connection is lost.
    #[arg(long, value_enum, default_value_t = Mode::None)]
    mode: Mode,

    /// An extra header for the upgrade request (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// A subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "P")]
    protocols: Vec<String>,

    /// Bearer token for the `Authorization` header (default: $RWS_TOKEN).
    /// Never printed.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,

    /// How long connecting (TCP, TLS and upgrade) may take, e.g. 500ms, 2s,
    /// 1m. Default 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    connect_timeout: Option<Duration>,

    /// How long a graceful close waits for the server's Close frame.
    /// Default 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    close_timeout: Option<Duration>,

    /// The largest message accepted, in bytes (after joining fragments);
    /// larger ones close the connection with 1009. Default 16 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,
}

/// `--mode`, mapped onto [`ReconnectMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A lost connection ends the program.
    None,
    /// Reconnect to a fresh session.
    Stateless,
    /// Resume the same session (needs a resilient-ws server).
    Stateful,
}

impl From<Mode> for ReconnectMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::None => ReconnectMode::None,
            Mode::Stateless => ReconnectMode::Stateless,
            Mode::Stateful => ReconnectMode::Stateful,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let code = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect(args) => connect(args),
        Command::Demo(args) => demo::run(args),
    };
    // `exit` rather than returning: the stdin reader thread may be blocked in
    // a read that would otherwise keep the process alive.
    process::exit(code);
}

// ---------------------------------------------------------------------------
// serve

fn serve(args: ServeArgs) -> i32 {
    // `--echo` is the only mode, so it is implied; the flag exists so scripts
    // can already say what they mean before other modes arrive.
    let _ = args.echo;
    let mut config = EchoConfig::default();
    if let Some(n) = args.max_message_size {
        config.max_message_size = n;
    }
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let config = config.clone();
            App::new().configure(move |c| echo_route(c, "/ws", config))
        })
        .shutdown_timeout(SERVE_SHUTDOWN_SECS);
        // `bind` already listens, so clients may connect as soon as the line
        // below is printed (tests wait for it).
        let server = match server.bind(args.bind.as_str()) {
            Ok(s) => s,
            Err(e) => {
                say!("rws: cannot listen on {}: {e}", args.bind);
                return EXIT_SETUP;
            }
        };
        for addr in server.addrs() {
            say!("listening on ws://{addr}/ws");
        }
        // actix-web stops gracefully on SIGINT/SIGTERM.
        match server.run().await {
            Ok(()) => 0,
            Err(e) => {
                say!("rws: server failed: {e}");
                EXIT_FAILURE
            }
        }
    })
}

// ---------------------------------------------------------------------------
// connect

/// What the tasks and the printer tell the main loop of `connect`.
#[derive(Debug)]
enum Control {
    /// The client is finally `Disconnected`; the error that ended the last
    /// socket (or the last reconnect attempt), `None` for a normal close.
    Ended(Option<Error>),
    /// Something local failed (stdin, stdout, send); close and exit non-zero.
    Failed(String),
    /// SIGINT or SIGTERM.
    Interrupted,
}

fn connect(args: ConnectArgs) -> i32 {
    actix_rt::System::new().block_on(run_client(args))
}

async fn run_client(args: ConnectArgs) -> i32 {
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    // Echoes go through a task (not `try_send` in the printer) so they are
    // sent in order and wait for the client's mailbox when it is full.
    let (echo_tx, echo_rx) = if args.echo {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let printer = Printer::new(args.json, echo_tx, control_tx.clone()).start();

    let mut builder = ResilientWebSocket::builder(args.url.clone())
        .reconnect_mode(args.mode.into())
        .on_message(printer.clone().recipient())
        .on_state(printer.clone().recipient())
        .on_error(printer.clone().recipient())
        .on_closed(printer.clone().recipient());
    if let Some(d) = args.connect_timeout {
        builder = builder.connection_timeout(d);
    }
    if let Some(d) = args.close_timeout {
        builder = builder.close_timeout(d);
    }
    if let Some(n) = args.max_message_size {
        builder = builder.max_message_size(n);
    }
    for (name, value) in args.headers {
        builder = builder.header(name, value);
    }
    for p in args.protocols {
        builder = builder.protocol(p);
    }
    let token = args
        .token
        .or_else(|| std::env::var("RWS_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if let Some(token) = token {
        builder = builder.auth_token(move || {
            let t = token.clone();
            async move { Ok(t) }
        });
    }

    let ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            // Let the printer show the events of the failed attempt first:
            // they are already in its mailbox, ahead of this message.
            let _ = printer.send(Barrier).await;
            say!("rws: {e}");
            return EXIT_SETUP;
        }
    };

    if let Some(rx) = echo_rx {
        actix_rt::spawn(forward_echoes(ws.clone(), rx));
    }
    let (line_tx, line_rx) = mpsc::channel(STDIN_QUEUE);
    std::thread::spawn(move || read_stdin(line_tx));
    actix_rt::spawn(forward_stdin(
        ws.clone(),
        line_rx,
        !args.echo,
        control_tx.clone(),
    ));
    actix_rt::spawn(watch_signals(control_tx));

    let mut failure = None;
    let mut interrupted = false;
    let ended = loop {
        match control_rx.recv().await {
            Some(Control::Ended(error)) => break error,
            Some(Control::Failed(msg)) => {
                if failure.is_none() {
                    failure = Some(msg);
                    spawn_disconnect(&ws);
                }
            }
            Some(Control::Interrupted) => {
                if interrupted {
                    // A second signal: the user does not want to wait for
                    // the close handshake.
                    return EXIT_INTERRUPTED;
                }
                interrupted = true;
                spawn_disconnect(&ws);
            }
            // Cannot happen while `watch_signals` holds a sender; treat it as
            // the end anyway rather than hang.
            None => break None,
        }
    };

    if let Some(msg) = failure {
        say!("rws: {msg}");
        EXIT_FAILURE
    } else if interrupted {
        EXIT_INTERRUPTED
    } else if let Some(e) = ended {
        say!("rws: connection closed: {e}");
        EXIT_FAILURE
    } else {
        0
    }
}

/// Starts a graceful close without blocking the caller; its end arrives as
/// [`Control::Ended`] from the printer.
fn spawn_disconnect(ws: &ResilientWebSocket) {
    let ws = ws.clone();
    actix_rt::spawn(async move {
        let _ = ws.disconnect().await;
    });
}

/// Reads stdin line by line on its own thread (stdin reads block) and hands
/// the lines to the runtime. Dropping `tx` at the end signals end of input.
fn read_stdin(tx: mpsc::Sender<io::Result<String>>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let item = match stdin.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                line_no += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                // Text messages must be UTF-8; sending a lossy copy would
                // silently change the data, so this is an error instead.
                String::from_utf8(std::mem::take(&mut buf)).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("line {line_no} is not valid UTF-8"),
                    )
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

/// Sends the stdin lines in order; each `send` is awaited before the next so
/// the order holds and the last line is handed over before `disconnect()`.
async fn forward_stdin(
    ws: ResilientWebSocket,
    mut lines: mpsc::Receiver<io::Result<String>>,
    close_at_eof: bool,
    control: mpsc::UnboundedSender<Control>,
) {
    while let Some(item) = lines.recv().await {
        let failed = match item {
            Ok(line) => ws
                .send(line)
                .await
                .err()
                .map(|e| format!("send failed: {e}")),
            Err(e) => Some(format!("reading stdin: {e}")),
        };
        if let Some(msg) = failed {
            let _ = control.send(Control::Failed(msg));
            return;
        }
    }
    if close_at_eof {
        // Queued behind every line already handed to `send()`.
        let _ = ws.disconnect().await;
    }
}

/// Sends received messages back, in the order they arrived.
async fn forward_echoes(ws: ResilientWebSocket, mut rx: mpsc::UnboundedReceiver<Payload>) {
    while let Some(payload) = rx.recv().await {
        if let Err(e) = ws.send(payload).await {
            // The connection is going away; its end is reported elsewhere.
            log::warn!("echo not sent: {e}");
        }
    }
}

/// Turns SIGINT and SIGTERM into [`Control::Interrupted`], every time they
/// arrive.
async fn watch_signals(control: mpsc::UnboundedSender<Control>) {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            log::warn!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if control.send(Control::Interrupted).is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    loop {
        if actix_rt::signal::ctrl_c().await.is_err() {
            return std::future::pending().await;
        }
        if control.send(Control::Interrupted).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// the printer actor

/// Answered once every event sent to the printer before it was handled.
#[derive(Message)]
#[rtype(result = "()")]
struct Barrier;

/// Receives the client's events: messages to stdout, everything else to
/// stderr; tells the main loop when the client is finally disconnected.
///
/// One actor gets all four event types, so they share one mailbox and arrive
/// in the order the client published them: every message before the
/// `Closed` that follows it.
struct Printer {
    json: bool,
    out: BufWriter<Stdout>,
    /// Set once stdout failed; later messages are dropped.
    out_failed: bool,
    echo: Option<mpsc::UnboundedSender<Payload>>,
    control: mpsc::UnboundedSender<Control>,
    state: ConnectionState,
    /// Whether the client was ever connected; before that, a return to
    /// `Disconnected` is a failed `connect()`, which the main task reports.
    was_connected: bool,
    /// Why the last socket (or reconnect attempt) ended.
    last_error: Option<Error>,
}

impl Printer {
    fn new(
        json: bool,
        echo: Option<mpsc::UnboundedSender<Payload>>,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        Printer {
            json,
            out: BufWriter::new(io::stdout()),
            out_failed: false,
            echo,
            control,
            state: ConnectionState::Disconnected,
            was_connected: false,
            last_error: None,
        }
    }

    fn write_message(&mut self, payload: &Payload) -> io::Result<()> {
        match payload {
            Payload::Text(t) => self.out.write_all(t.as_bytes())?,
            Payload::Binary(b) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                self.out.write_all(b"base64:")?;
                self.out.write_all(encoded.as_bytes())?;
            }
        }
        self.out.write_all(b"\n")?;
        // Flushed per message so a reader sees each line at once; stdout is
        // locked only for the flush, and a message is one or two syscalls.
        self.out.flush()
    }

    fn event(&self, json: JsonEvent<'_>, human: std::fmt::Arguments<'_>) {
        if self.json {
            match serde_json::to_string(&json) {
                Ok(line) => say!("{line}"),
                Err(e) => log::error!("cannot serialize event: {e}"),
            }
        } else {
            say!("{human}");
        }
    }
}

/// An event as a `--json` line. A struct-like enum rather than `json!` so
/// that `"event"` comes first and fields keep this order.
#[derive(serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonEvent<'a> {
    State {
        previous: &'a str,
        current: &'a str,
    },
    Error {
        error: &'a str,
    },
    Closed {
        code: Option<u16>,
        reason: &'a str,
        by_us: bool,
        error: Option<&'a str>,
    },
}

fn state_name(s: ConnectionState) -> String {
    // The library's serde names ("connecting", ...) are the documented ones.
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{s:?}"),
    }
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Printer {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        if !self.out_failed {
            if let Err(e) = self.write_message(&msg.payload) {
                self.out_failed = true;
                let _ = self
                    .control
                    .send(Control::Failed(format!("writing to stdout: {e}")));
            }
        }
        if let Some(echo) = &self.echo {
            let _ = echo.send(msg.payload);
        }
    }
}

impl Handler<StateChanged> for Printer {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        let (previous, current) = (state_name(msg.previous), state_name(msg.current));
        self.event(
            JsonEvent::State {
                previous: &previous,
                current: &current,
            },
            format_args!("state: {previous} -> {current}"),
        );
        self.state = msg.current;
        match msg.current {
            ConnectionState::Connected => {
                self.was_connected = true;
                self.last_error = None;
            }
            ConnectionState::Disconnected if self.was_connected => {
                let _ = self.control.send(Control::Ended(self.last_error.take()));
            }
            _ => {}
        }
    }
}

impl Handler<ErrorEvent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: ErrorEvent, _: &mut Context<Self>) {
        let error = msg.error.to_string();
        self.event(
            JsonEvent::Error { error: &error },
            format_args!("error: {error}"),
        );
        // A failed reconnect attempt is what ends a client that gives up.
        // Errors while connected are followed by a `Closed` that carries
        // them, and errors while closing (e.g. an echo refused) do not
        // change how the connection ended.
        if matches!(
            self.state,
            ConnectionState::Connecting | ConnectionState::Reconnecting
        ) {
            self.last_error = Some(msg.error);
        }
    }
}

impl Handler<Closed> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        let error = msg.error.as_ref().map(ToString::to_string);
        let who = if msg.by_us { "us" } else { "peer" };
        let code = msg.code.map(|c| format!(", code {c}")).unwrap_or_default();
        let reason = if msg.reason.is_empty() {
            String::new()
        } else {
            format!(", reason {:?}", msg.reason)
        };
        let cause = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        self.event(
            JsonEvent::Closed {
                code: msg.code,
                reason: &msg.reason,
                by_us: msg.by_us,
                error: error.as_deref(),
            },
            format_args!("closed by {who}{code}{reason}{cause}"),
        );
        self.last_error = msg.error;
    }
}

impl Handler<Barrier> for Printer {
    type Result = ();

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}

// ---------------------------------------------------------------------------
// argument parsers

/// Parses `500ms`, `2s`, `1m`, `1h` (a whole number and a unit).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let bad = || format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1m or 1h");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs_per_unit = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// A duration that must not be zero (both timeouts need time to pass).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A byte count greater than zero.
fn parse_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid size {s:?}: expected a number of bytes")),
    }
}

/// Parses `Name: value`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid header {s:?}: the name is empty"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "1.5s", "-1s", "2 minutes", "1d", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert!(parse_timeout("0ms").is_err());
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1k").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Client: demo"),
            Ok(("X-Client".into(), "demo".into()))
        );
        assert_eq!(
            parse_header("X-Url:http://a:1/"),
            Ok(("X-Url".into(), "http://a:1/".into()))
        );
        assert_eq!(parse_header("X-Empty:"), Ok(("X-Empty".into(), "".into())));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "rws",
            "connect",
            "ws://h/ws",
            "--header",
            "A: b",
            "-H",
            "C: d",
            "--protocol",
            "p1",
            "--mode",
            "stateful",
            "--connect-timeout",
            "500ms",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Connect(a) = cli.command else {
            panic!("expected connect");
        };
        assert_eq!(a.headers.len(), 2);
        assert_eq!(a.protocols, ["p1"]);
        assert_eq!(a.mode, Mode::Stateful);
        assert_eq!(a.connect_timeout, Some(Duration::from_millis(500)));
        assert!(Cli::try_parse_from(["rws", "connect", "ws://h", "--mode", "x"]).is_err());
        assert!(Cli::try_parse_from(["rws", "serve", "--echo"]).is_ok());
    }
}
