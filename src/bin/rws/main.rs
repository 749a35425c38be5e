//! `rws`: a command-line WebSocket client and server built on
//! `resilient-ws`.
//!
//! - `rws serve` runs the reliable protocol at `/ws` (negotiate at
//!   `/ws/negotiate`), echoing (`--echo`, the default) or broadcasting
//!   (`--broadcast`) every message; plain WebSocket clients on the same path
//!   are echoed or join the broadcast. On SIGINT/SIGTERM it tells every
//!   client (close 1012) when to come back, then stops.
//! - `rws connect URL` sends stdin lines as text messages and prints the
//!   messages it receives on stdout; connection events go to stderr. With
//!   `--mode stateless` (or `stateful`) it reconnects after a loss, and exits
//!   only once the client is `Disconnected` for good (it gave up, or the
//!   connection closed normally).
//! - `rws demo` runs a reliable server, a fault proxy that keeps cutting
//!   connections and a stateful client in one process, and checks that
//!   numbered messages arrive exactly once and in order both ways.

use std::{
    io::{self, BufRead, BufWriter, Stdout, Write},
    process,
    time::Duration,
};

use actix::prelude::*;
use actix_web::{App, HttpServer};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use resilient_ws::{
    protocol::ShutdownAdvice,
    server::{reliable_route, PlainMode, ReliableServer, ServerOptions},
    Closed, ConnectionState, Error, ErrorEvent, IncomingMessage, MessageDropped, OverflowPolicy,
    Payload, ReconnectMode, Reconnected, Reconnecting, ResilientWebSocket, SessionLost,
    StateChanged,
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

/// How often the end of stdin checks whether a reconnect has finished.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// `--linger` with `--mode stateful` when not given.
const STATEFUL_LINGER: Duration = Duration::from_millis(500);

/// The longest the end of stdin lingers for answers in all, so a server
/// that never stops sending cannot keep the command open.
const MAX_LINGER: Duration = Duration::from_secs(5);

/// Writes one line to stderr. Unlike `eprintln!`, a closed stderr is ignored
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        // One write per line: stderr is unbuffered, and `writeln!` would
        // write each piece of the format separately, so a process killed
        // mid-line (or a log line from another thread) could leave a torn
        // line ("accepted " without its number) for whoever reads it.
        let line = ::std::format!("{}\n", ::std::format_args!($($arg)*));
        let _ = ::std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

// After `say!`, so the demo can use it.
mod demo;

const CONNECT_AFTER_HELP: &str = "\
Output:
  stdout  one line per received message: a text message as-is (a text message
          that contains newlines spans several lines); a binary message as
          `base64:` followed by its standard (padded) base64 encoding, e.g.
          the bytes 01 02 03 print as `base64:AQID`.
  stderr  connection events, as human-readable lines, or with --json one JSON
          object per line:
            {\"event\":\"state\",\"previous\":\"connecting\",\"current\":\"connected\"}
            {\"event\":\"error\",\"error\":\"...\"}
            {\"event\":\"closed\",\"code\":1000,\"reason\":\"\",\"by_us\":true,\"error\":null}
            {\"event\":\"reconnecting\",\"attempt\":2,\"delay_ms\":1234,\"reason\":\"...\"}
            {\"event\":\"reconnected\",\"attempts\":2,\"downtime_ms\":3100}
            {\"event\":\"dropped\",\"id\":17,\"reason\":\"overflow\"}
            {\"event\":\"not_sent\",\"line\":5,\"error\":\"...\"}
            {\"event\":\"session_lost\",\"connection_id\":\"9f...\",\"resending\":3}
          `dropped`: a buffered line was thrown away (reason `overflow`,
          `expired` or `retries_exhausted`); `not_sent`: stdin line N was
          refused (not connected with --no-buffer, or the buffer was full);
          `session_lost` (--mode stateful): the server no longer had the
          session, so a fresh one starts and the unacknowledged lines are
          sent again (human form: `session lost: ID, re-sending N`).
          Log lines (RUST_LOG, default `warn`) and the final `rws: ...`
          message are plain text in both modes.

Input:
  Every stdin line (without its line ending) is sent as one text message, in
  order. At the end of stdin the connection is closed gracefully once every
  line has been handed over; if the client is reconnecting then, it first
  waits until the connection is back (so buffered lines go out) or the client
  gives up. With --echo the connection stays open instead.

Reconnecting:
  With the default --mode none the command exits when the connection ends.
  With --mode stateless (or stateful) a lost connection is retried: attempt n
  waits a random time between --initial-delay and
  min(--max-delay, --initial-delay * 2^n). Lines read meanwhile wait in a
  buffer (--buffer, --overflow, --message-ttl, --no-buffer) and go out first
  when the connection is back. The command exits only when the client is
  disconnected for good: the server closed normally (code 1000), the client
  gave up (--max-attempts, or an error retrying cannot fix, such as HTTP 401),
  or it was closed (end of stdin, a signal). The first connection is not
  retried: it fails with status 2 (with --endpoint, each endpoint is tried
  once first).
  --mode stateful speaks the reliable protocol (negotiate, then the
  rws.reliable.v1 subprotocol; `rws serve` speaks it): the session is resumed
  after a loss, so no line and no received message is lost or repeated. A
  server that shuts down (close 1012) says when to come back; that wait
  replaces the backoff.

Exit status:
  0    the connection closed normally (code 1000, or we closed it)
  1    the connection ended with an error (e.g. the server closed with 1011,
       or the client gave up reconnecting), buffered lines were left unsent,
       or stdin/stdout failed
  2    bad arguments, or the initial connection failed
  130  interrupted (SIGINT/SIGTERM); the connection is closed gracefully first

Environment:
  RWS_TOKEN  bearer token, used when --token is not given (preferred: command
             lines are visible to other users in `ps`)
  RUST_LOG   log filter for stderr (default `warn`)";

/// A WebSocket client and server built on resilient-ws.
#[derive(Parser)]
#[command(name = "rws", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reliable WebSocket server at /ws (negotiate at
    /// /ws/negotiate); plain WebSocket clients may use /ws too.
    Serve(ServeArgs),
    /// Connect to a WebSocket server: stdin lines go out as text messages,
    /// received messages come out on stdout.
    #[command(after_help = CONNECT_AFTER_HELP)]
    Connect(Box<ConnectArgs>),
    /// Run a reliable server, a fault proxy that keeps cutting connections
    /// and a stateful client in one process, stream numbered messages both
    /// ways, and print what was lost, duplicated or reordered (nothing).
    Demo(demo::DemoArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address to listen on; port 0 picks a free port. The bound address
    /// is printed on stderr as `listening on ws://ADDR/ws`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    bind: String,

    /// Send every message back to its sender (the default). Plain WebSocket
    /// clients are echoed too.
    #[arg(long, conflicts_with = "broadcast")]
    echo: bool,

    /// Send every message to every client, the sender included. Plain
    /// WebSocket clients join the broadcast (best effort: one that falls far
    /// behind is closed with 1013).
    #[arg(long)]
    broadcast: bool,

    /// How long a reliable session outlives its socket, so a client can
    /// resume it without losing a message.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    resume_window: Duration,

    /// The largest message accepted, in bytes; larger ones close the socket
    /// with 1009. Default 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,

    /// The bound on sent-but-unacknowledged bytes per session and direction
    /// (the reliable protocol's window). Default 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_unacked_bytes: Option<usize>,

    /// On SIGINT/SIGTERM, clients are told (close 1012) to come back after
    /// this long plus a random part of --shutdown-spread.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    shutdown_reconnect_after: Duration,

    /// The width of the random spread added to --shutdown-reconnect-after,
    /// so clients do not all return at once.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    shutdown_spread: Duration,

    /// On SIGINT/SIGTERM, how long each reliable session may drain: it acks
    /// what it delivered, stops taking messages, sends what it has queued
    /// and waits this long at most for the client's acks before closing
    /// with 1012.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    shutdown_drain: Duration,

    /// How often the server pings each client; 0 turns the server's
    /// heartbeat off.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_interval)]
    keep_alive: Duration,

    /// How long a client may stay silent (no frame, no pong) before the
    /// server closes it with 1001 and frees it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    client_timeout: Duration,
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

    /// What to do when the connection is lost. Without `stateless` (or
    /// `stateful`) the command exits when the connection ends.
    #[arg(long, value_enum, default_value_t = Mode::None)]
    mode: Mode,

    /// A failover endpoint (repeatable), tried after URL: the first
    /// connection tries each endpoint once in turn, and a reconnect moves on
    /// to the next one after every failure.
    #[arg(long = "endpoint", value_name = "URL")]
    endpoints: Vec<String>,

    /// How many reconnect attempts after a loss before giving up (exit
    /// status 1); 0 retries forever. Only with --mode stateless/stateful.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_attempts: u32,

    /// The shortest wait before a reconnect attempt, e.g. 500ms, 2s; the
    /// longest doubles with each attempt up to --max-delay (the wait is
    /// random in between).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    initial_delay: Duration,

    /// The longest wait before a reconnect attempt. Must not be less than
    /// --initial-delay.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    max_delay: Duration,

    /// How long a connection must stay up before the attempt count starts
    /// again from 1, so a server that accepts and drops at once still sees
    /// growing delays.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    min_uptime: Duration,

    /// How often to ping the server; 0 disables heartbeats.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    heartbeat_interval: Duration,

    /// How long without any frame from the server (pong or data) before
    /// the connection counts as dead. Default: twice --heartbeat-interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    heartbeat_timeout: Option<Duration>,

    /// How many stdin lines may wait in the buffer while not connected.
    #[arg(
        long = "buffer",
        value_name = "N",
        default_value = "1000",
        value_parser = parse_count,
        conflicts_with = "no_buffer"
    )]
    buffer: usize,

    /// Do not buffer while not connected: a line read then is refused and
    /// reported as `not_sent`.
    #[arg(long)]
    no_buffer: bool,

    /// What a full buffer does with one more line: `reject` (the line is
    /// reported as `not_sent`), `drop-oldest` or `drop-newest` (reported as
    /// `dropped`), or `wait:DURATION` (stop reading stdin for up to DURATION
    /// until there is room, then reject).
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "reject",
        value_parser = parse_overflow
    )]
    overflow: OverflowPolicy,

    /// How long a line may wait in the buffer before it is dropped
    /// (reported as `dropped`, reason `expired`). Default: no limit.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    message_ttl: Option<Duration>,

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

    /// At the end of stdin, before closing, wait until no message has
    /// arrived for this long (answers still on their way), for at most
    /// 5s in all. Default 0, or 500ms with --mode stateful: a
    /// reliable server's answers are not ordered before its Close, so
    /// closing at once could cut them off.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    linger: Option<Duration>,

    /// The largest message accepted, in bytes (after joining fragments);
    /// larger ones close the connection with 1009. Default 16 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_message_size: Option<usize>,

    /// The largest message the peer accepts, in bytes, when you know it: a
    /// longer line is reported as not sent instead of being sent (and
    /// closed with 1009 by the peer). In stateful mode the server's own
    /// limit from negotiate takes over once known.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    max_outbound_message_size: Option<usize>,

    /// Keep the buffer (and with --mode stateful the unacknowledged lines
    /// and the session) in this file, a redb database readable by you only:
    /// a later `rws connect` with the same --store resumes, and every line
    /// accepted before a crash is delivered exactly once. A line counts as
    /// accepted once it is on disk.
    #[arg(long, value_name = "PATH")]
    store: Option<std::path::PathBuf>,

    /// Report each stdin line once the client accepted it (with --store:
    /// once it is on disk), as `accepted N` (or an `accepted` event with
    /// --json) on stderr. For scripts that must know what is safe.
    #[arg(long)]
    print_accepted: bool,
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
        Command::Connect(args) => connect(*args),
        Command::Demo(args) => demo::run(args),
    };
    // `exit` rather than returning: the stdin reader thread may be blocked in
    // a read that would otherwise keep the process alive.
    process::exit(code);
}

// ---------------------------------------------------------------------------
// serve

fn serve(args: ServeArgs) -> i32 {
    let mut options = ServerOptions::default();
    options.resume_window = args.resume_window;
    options.shutdown_drain_timeout = args.shutdown_drain;
    options.keep_alive_interval = args.keep_alive;
    options.client_timeout = args.client_timeout;
    options.plain = if args.broadcast {
        PlainMode::Broadcast
    } else {
        PlainMode::Echo
    };
    if let Some(n) = args.max_message_size {
        options.max_message_size = n;
    }
    if let Some(n) = args.max_unacked_bytes {
        options.max_unacked_bytes = n;
    }
    let advice = ShutdownAdvice {
        reconnect_after_ms: millis(args.shutdown_reconnect_after),
        spread_ms: millis(args.shutdown_spread),
    };
    actix_rt::System::new().block_on(async move {
        // The hub and session actors live on this (the main) arbiter; the
        // workers reach them through `Send` addresses.
        let reliable = if args.broadcast {
            ReliableServer::broadcast_mode(options)
        } else {
            ReliableServer::echo(options)
        };
        let for_workers = reliable.clone();
        let server = HttpServer::new(move || {
            let reliable = for_workers.clone();
            App::new().configure(move |c| reliable_route(c, "/ws", reliable))
        })
        // Signals are ours: clients must be told to come back (1012) before
        // the HTTP server stops.
        .disable_signals()
        // Small frames (acks, short messages) must not wait out Nagle's
        // algorithm against the client's delayed ACK (a ~40 ms stall).
        .tcp_nodelay(true)
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
        let server = server.run();
        actix_rt::spawn(stop_on_signal(reliable, server.handle(), advice));
        match server.await {
            Ok(()) => 0,
            Err(e) => {
                say!("rws: server failed: {e}");
                EXIT_FAILURE
            }
        }
    })
}

/// On the first SIGINT/SIGTERM: drains every reliable session (see
/// `--shutdown-drain`) and tells every client when to come back (close
/// 1012 with `advice`), then stops the HTTP server gracefully (it waits up
/// to [`SERVE_SHUTDOWN_SECS`] for the closing sockets). A second signal
/// stops it at once.
async fn stop_on_signal(
    reliable: ReliableServer,
    handle: actix_web::dev::ServerHandle,
    advice: ShutdownAdvice,
) {
    let (tx, mut signals) = mpsc::unbounded_channel();
    actix_rt::spawn(watch_signals(tx));
    if signals.recv().await.is_none() {
        return;
    }
    say!(
        "rws: shutting down; clients are told to reconnect in {} ms (+ up to {} ms)",
        advice.reconnect_after_ms,
        advice.spread_ms
    );
    let graceful = {
        let handle = handle.clone();
        async move {
            if let Err(e) = reliable.shutdown(advice).await {
                log::warn!("shutdown advice not sent: {e}");
            }
            handle.stop(true).await;
        }
    };
    tokio::select! {
        () = graceful => {}
        _ = signals.recv() => handle.stop(false).await,
    }
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
    if let Err(msg) = check_connect_args(&args) {
        say!("rws: {msg}");
        return EXIT_SETUP;
    }
    actix_rt::System::new().block_on(run_client(args))
}

/// Checks what clap cannot see flag by flag, naming the flags (the library
/// would name its option fields instead).
fn check_connect_args(args: &ConnectArgs) -> Result<(), String> {
    if args.initial_delay > args.max_delay {
        return Err(format!(
            "--initial-delay ({:?}) must not exceed --max-delay ({:?})",
            args.initial_delay, args.max_delay
        ));
    }
    Ok(())
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

    let builder = if args.endpoints.is_empty() {
        ResilientWebSocket::builder(args.url.clone())
    } else {
        let mut urls = vec![args.url.clone()];
        urls.extend(args.endpoints.iter().cloned());
        ResilientWebSocket::builder_with_endpoints(urls)
    };
    let mut builder = builder
        .reconnect_mode(args.mode.into())
        .reconnect_delays(args.initial_delay, args.max_delay, args.max_attempts)
        .min_uptime(args.min_uptime)
        .heartbeat(args.heartbeat_interval, args.heartbeat_timeout)
        .buffering(!args.no_buffer, args.buffer)
        .overflow_policy(args.overflow)
        .on_message(printer.clone().recipient())
        .on_state(printer.clone().recipient())
        .on_error(printer.clone().recipient())
        .on_closed(printer.clone().recipient())
        .on_reconnecting(printer.clone().recipient())
        .on_reconnected(printer.clone().recipient())
        .on_dropped(printer.clone().recipient())
        .on_session_lost(printer.clone().recipient());
    if let Some(ttl) = args.message_ttl {
        builder = builder.message_ttl(ttl);
    }
    if let Some(d) = args.connect_timeout {
        builder = builder.connection_timeout(d);
    }
    if let Some(d) = args.close_timeout {
        builder = builder.close_timeout(d);
    }
    if let Some(n) = args.max_message_size {
        builder = builder.max_message_size(n);
    }
    if let Some(n) = args.max_outbound_message_size {
        builder = builder.max_outbound_message_size(n);
    }
    if let Some(path) = &args.store {
        builder = builder.durable_store(path.clone());
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
    let linger = args.linger.unwrap_or(if args.mode == Mode::Stateful {
        STATEFUL_LINGER
    } else {
        Duration::ZERO
    });
    actix_rt::spawn(forward_stdin(
        ws.clone(),
        line_rx,
        Forwarding {
            close_at_eof: (!args.echo).then_some(linger),
            // With a store each send waits for the disk: hand over what
            // stdin has ready in one batch, one commit.
            batch: args.store.is_some() && args.mode == Mode::Stateful,
            print_accepted: args.print_accepted,
        },
        printer.clone(),
        control_tx.clone(),
    ));
    actix_rt::spawn(watch_signals(control_tx));

    // The loop ends only on `Ended`, which the printer sends when the client
    // is `Disconnected` for good: a lost connection that is being retried is
    // `Reconnecting`, never `Disconnected`, so it keeps the process alive.
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

    // Let the printer finish the events already in its mailbox, so the last
    // line on stderr is the verdict below.
    let _ = printer.send(Barrier).await;
    // Lines still in the outbox were accepted but never written: the client
    // gave up, or was closed while reconnecting.
    let unsent = ws.stats().messages_buffered;
    if unsent > 0 {
        say!("rws: {unsent} buffered line(s) were not sent");
    }

    if let Some(msg) = failure {
        say!("rws: {msg}");
        EXIT_FAILURE
    } else if interrupted {
        EXIT_INTERRUPTED
    } else if let Some(e) = ended {
        match e {
            // Already says what happened: "gave up reconnecting after ...".
            Error::GaveUp { .. } => say!("rws: {e}"),
            e => say!("rws: connection closed: {e}"),
        }
        EXIT_FAILURE
    } else if unsent > 0 {
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
///
/// A line the client refuses because it is not connected (`--no-buffer`) or
/// its buffer is full is reported as [`NotSent`] and the rest go on: the
/// connection may come back. Any other failure ends the program.
///
/// How [`forward_stdin`] hands lines over.
struct Forwarding {
    /// At the end of stdin, close after lingering this long for answers (see
    /// [`linger`]); `None` keeps the connection open (`--echo`).
    close_at_eof: Option<Duration>,
    /// Hand the lines stdin has ready over as one `send_batch` (reliable
    /// mode with a store, where no line is refused and each `send` would
    /// wait for its own commit).
    batch: bool,
    /// Report accepted lines (`--print-accepted`).
    print_accepted: bool,
}

/// The most lines handed over in one batch.
const MAX_BATCH: usize = 1024;

/// Why `line` cannot be sent, if it is over the peer's known limit.
fn too_large(ws: &ResilientWebSocket, line: &str) -> Option<Error> {
    let max = ws.peer_max_message_size()?;
    (line.len() > max).then_some(Error::MessageTooLarge {
        size: line.len(),
        max,
    })
}

async fn forward_stdin(
    ws: ResilientWebSocket,
    mut lines: mpsc::Receiver<io::Result<String>>,
    how: Forwarding,
    printer: Addr<Printer>,
    control: mpsc::UnboundedSender<Control>,
) {
    let mut line_no = 0u64;
    let mut batch = Vec::new();
    while let Some(item) = lines.recv().await {
        let mut next = Some(item);
        let mut failed = None;
        // The number of the batch's last line.
        let mut last = 0;
        // Take what else is ready, up to a batch.
        while let Some(item) = next.take() {
            match item {
                Ok(line) => {
                    line_no += 1;
                    match too_large(&ws, &line) {
                        // Refused alone, so the lines around it still go
                        // (a batch stops at its first refusal).
                        Some(error) => printer.do_send(NotSent {
                            line: line_no,
                            error,
                        }),
                        None => {
                            batch.push(line);
                            last = line_no;
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if how.batch && batch.len() < MAX_BATCH {
                next = lines.try_recv().ok();
            }
        }
        let result = if how.batch {
            ws.send_batch(batch.drain(..)).await
        } else {
            match batch.pop() {
                Some(line) => ws.send(line).await,
                None => Ok(()),
            }
        };
        match result {
            Ok(()) => {
                if how.print_accepted && last > 0 {
                    printer.do_send(Accepted { line: last });
                }
            }
            Err(
                error
                @ (Error::NotConnected | Error::BufferFull(_) | Error::MessageTooLarge { .. }),
            ) => {
                printer.do_send(NotSent { line: last, error });
            }
            Err(e) => {
                let _ = control.send(Control::Failed(format!("send failed: {e}")));
                return;
            }
        }
        if let Some(e) = failed {
            let _ = control.send(Control::Failed(format!("reading stdin: {e}")));
            return;
        }
    }
    if let Some(quiet) = how.close_at_eof {
        settle(&ws).await;
        if !quiet.is_zero() {
            linger(&ws, quiet).await;
        }
        // Queued behind every line already handed to `send()`.
        let _ = ws.disconnect().await;
    }
}

/// Closing now would cancel a reconnect in progress and strand the buffered
/// lines: waits until it succeeds (they go out first) or the client gives up
/// (then the printer reports the end).
async fn settle(ws: &ResilientWebSocket) {
    while matches!(
        ws.state(),
        ConnectionState::Connecting | ConnectionState::Reconnecting
    ) {
        actix_rt::time::sleep(SETTLE_POLL).await;
    }
}

/// Waits until the outbox is empty and no message arrived for `quiet`
/// (answers to the last lines), for at most [`MAX_LINGER`]; a reconnect
/// meanwhile is waited out first.
async fn linger(ws: &ResilientWebSocket, quiet: Duration) {
    use actix_rt::time::Instant;
    let deadline = Instant::now() + MAX_LINGER;
    let mut received = ws.stats().messages_received;
    let mut last_change = Instant::now();
    loop {
        let stats = ws.stats();
        if stats.messages_received != received || stats.messages_buffered > 0 {
            received = stats.messages_received;
            last_change = Instant::now();
        }
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_change) >= quiet {
            return;
        }
        if ws.state() != ConnectionState::Connected {
            settle(ws).await;
            if ws.state() != ConnectionState::Connected {
                return;
            }
            last_change = Instant::now();
            continue;
        }
        let wake = (last_change + quiet).min(deadline);
        actix_rt::time::sleep_until(wake.min(now + SETTLE_POLL)).await;
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

/// Stdin line `line` (counting from 1) was refused by the client.
#[derive(Message)]
#[rtype(result = "()")]
struct NotSent {
    line: u64,
    error: Error,
}

/// Stdin lines up to `line` were accepted (`--print-accepted`).
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted {
    line: u64,
}

/// Receives the client's events: messages to stdout, everything else to
/// stderr; tells the main loop when the client is finally disconnected.
///
/// One actor gets every event type, so they share one mailbox and arrive in
/// the order the client published them: every message before the `Closed`
/// that follows it, every `Reconnecting` before the `Disconnected` of a
/// client that gave up.
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
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        reason: &'a str,
    },
    Reconnected {
        attempts: u32,
        downtime_ms: u64,
    },
    Dropped {
        id: u64,
        reason: &'a str,
    },
    NotSent {
        line: u64,
        error: &'a str,
    },
    Accepted {
        line: u64,
    },
    SessionLost {
        connection_id: &'a str,
        resending: usize,
    },
}

/// The library's serde name of a unit variant ("connecting", "overflow",
/// ...): those are the documented ones.
fn serde_name<T: serde::Serialize + std::fmt::Debug>(v: T) -> String {
    match serde_json::to_value(&v) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{v:?}"),
    }
}

fn state_name(s: ConnectionState) -> String {
    serde_name(s)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        // A failed reconnect attempt, and then `GaveUp`, is what ends a
        // client that gives up. Errors while connected are followed by a
        // `Closed` that carries them, errors while closing (e.g. an echo
        // refused) do not change how the connection ended, and neither does
        // a full outbox.
        let about_the_link = !matches!(msg.error, Error::BufferFull(_) | Error::NotConnected);
        if about_the_link
            && matches!(
                self.state,
                ConnectionState::Connecting | ConnectionState::Reconnecting
            )
        {
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

impl Handler<Reconnecting> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Reconnecting, _: &mut Context<Self>) {
        let reason = msg.reason.to_string();
        self.event(
            JsonEvent::Reconnecting {
                attempt: msg.attempt,
                delay_ms: millis(msg.delay),
                reason: &reason,
            },
            format_args!(
                "reconnecting: attempt {} in {:.3}s after: {reason}",
                msg.attempt,
                msg.delay.as_secs_f64()
            ),
        );
    }
}

impl Handler<Reconnected> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Reconnected, _: &mut Context<Self>) {
        let plural = if msg.attempts == 1 { "" } else { "s" };
        self.event(
            JsonEvent::Reconnected {
                attempts: msg.attempts,
                downtime_ms: millis(msg.downtime),
            },
            format_args!(
                "reconnected after {} attempt{plural} ({:.1}s down)",
                msg.attempts,
                msg.downtime.as_secs_f64()
            ),
        );
    }
}

impl Handler<MessageDropped> for Printer {
    type Result = ();

    fn handle(&mut self, msg: MessageDropped, _: &mut Context<Self>) {
        let reason = serde_name(msg.reason);
        self.event(
            JsonEvent::Dropped {
                id: msg.id.get(),
                reason: &reason,
            },
            format_args!("dropped message {} ({reason})", msg.id),
        );
    }
}

impl Handler<NotSent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: NotSent, _: &mut Context<Self>) {
        let error = msg.error.to_string();
        self.event(
            JsonEvent::NotSent {
                line: msg.line,
                error: &error,
            },
            format_args!("line {} not sent: {error}", msg.line),
        );
    }
}

impl Handler<Accepted> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Accepted, _: &mut Context<Self>) {
        self.event(
            JsonEvent::Accepted { line: msg.line },
            format_args!("accepted {}", msg.line),
        );
    }
}

impl Handler<SessionLost> for Printer {
    type Result = ();

    fn handle(&mut self, msg: SessionLost, _: &mut Context<Self>) {
        self.event(
            JsonEvent::SessionLost {
                connection_id: &msg.connection_id,
                resending: msg.resending,
            },
            format_args!(
                "session lost: {}, re-sending {}",
                msg.connection_id, msg.resending
            ),
        );
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

/// A duration that may be zero, also written as a bare `0` (for intervals
/// and delays, where zero means "none": `--heartbeat-interval 0`).
fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// A duration that must not be zero (both timeouts need time to pass).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A message count greater than zero (`--buffer`).
fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be greater than zero (--no-buffer turns buffering off)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid count {s:?}: expected a whole number")),
    }
}

/// Parses `reject`, `drop-oldest`, `drop-newest` or `wait:DURATION` (a
/// duration greater than zero).
fn parse_overflow(s: &str) -> Result<OverflowPolicy, String> {
    let s = s.trim();
    match s {
        "reject" => Ok(OverflowPolicy::Reject),
        "drop-oldest" => Ok(OverflowPolicy::DropOldest),
        "drop-newest" => Ok(OverflowPolicy::DropNewest),
        _ => match s.strip_prefix("wait:") {
            Some(d) => parse_timeout(d)
                .map(OverflowPolicy::Wait)
                .map_err(|e| format!("invalid wait in {s:?}: {e}")),
            None => Err(format!(
                "invalid overflow policy {s:?}: expected reject, drop-oldest, \
                 drop-newest or wait:DURATION (e.g. wait:2s)"
            )),
        },
    }
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
    fn intervals_may_be_zero() {
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert_eq!(parse_interval(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse_interval("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "5", "00x", "-0", "0.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} should be rejected");
        }
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

    /// Parses `rws connect ws://h/ws ARGS...`.
    fn connect_args(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        let cli = Cli::try_parse_from(["rws", "connect", "ws://h/ws"].iter().chain(args))?;
        match cli.command {
            Command::Connect(a) => Ok(*a),
            _ => panic!("expected connect"),
        }
    }

    /// Parses `rws serve ARGS...`.
    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["rws", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(a) => Ok(a),
            _ => panic!("expected serve"),
        }
    }

    #[test]
    fn serve_flags() {
        let a = serve_args(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!a.echo && !a.broadcast, "echo is implied, not set");
        assert_eq!(a.resume_window, Duration::from_secs(30));
        assert_eq!(a.max_message_size, None);
        assert_eq!(a.max_unacked_bytes, None);
        assert_eq!(a.shutdown_reconnect_after, Duration::from_secs(1));
        assert_eq!(a.shutdown_spread, Duration::from_secs(2));
        assert_eq!(a.shutdown_drain, Duration::from_secs(5));
        assert_eq!(a.keep_alive, Duration::from_secs(15));
        assert_eq!(a.client_timeout, Duration::from_secs(30));

        let a = serve_args(&[
            "--broadcast",
            "--resume-window",
            "2m",
            "--max-message-size",
            "4096",
            "--max-unacked-bytes",
            "65536",
            "--shutdown-reconnect-after",
            "0",
            "--shutdown-spread",
            "500ms",
            "--shutdown-drain",
            "0",
            "--keep-alive",
            "0",
            "--client-timeout",
            "2s",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(a.broadcast);
        assert_eq!(a.shutdown_drain, Duration::ZERO);
        assert_eq!(a.keep_alive, Duration::ZERO);
        assert_eq!(a.client_timeout, Duration::from_secs(2));
        assert_eq!(a.resume_window, Duration::from_secs(120));
        assert_eq!(a.max_message_size, Some(4096));
        assert_eq!(a.max_unacked_bytes, Some(65536));
        assert_eq!(a.shutdown_reconnect_after, Duration::ZERO);
        assert_eq!(a.shutdown_spread, Duration::from_millis(500));

        for bad in [
            &["--echo", "--broadcast"][..],
            &["--resume-window", "0s"],
            &["--max-unacked-bytes", "0"],
            &["--shutdown-spread", "soon"],
            &["--client-timeout", "0"],
        ] {
            assert!(serve_args(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn linger_flag() {
        let a = connect_args(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.linger, None);
        let a = connect_args(&["--linger", "0"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.linger, Some(Duration::ZERO));
        let a = connect_args(&["--linger", "2s"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.linger, Some(Duration::from_secs(2)));
        assert!(connect_args(&["--linger", "2"]).is_err());
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(parse_overflow("reject"), Ok(OverflowPolicy::Reject));
        assert_eq!(
            parse_overflow("drop-oldest"),
            Ok(OverflowPolicy::DropOldest)
        );
        assert_eq!(
            parse_overflow("drop-newest"),
            Ok(OverflowPolicy::DropNewest)
        );
        assert_eq!(
            parse_overflow("wait:2s"),
            Ok(OverflowPolicy::Wait(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_overflow("wait:250ms"),
            Ok(OverflowPolicy::Wait(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "wait",
            "wait:",
            "wait:0s",
            "wait:2",
            "wait 2s",
            "drop",
            "Reject",
            "drop_oldest",
        ] {
            assert!(parse_overflow(bad).is_err(), "{bad:?} should be rejected");
        }
        let a = connect_args(&["--overflow", "wait:2s"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.overflow, OverflowPolicy::Wait(Duration::from_secs(2)));
        assert!(connect_args(&["--overflow", "sometimes"]).is_err());
    }

    #[test]
    fn connect_defaults() {
        let a = connect_args(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.mode, Mode::None);
        assert!(a.endpoints.is_empty());
        assert_eq!(a.max_attempts, 0);
        assert_eq!(a.initial_delay, Duration::from_secs(1));
        assert_eq!(a.max_delay, Duration::from_secs(30));
        assert_eq!(a.min_uptime, Duration::from_secs(5));
        assert_eq!(a.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(a.heartbeat_timeout, None);
        assert_eq!(a.buffer, 1000);
        assert!(!a.no_buffer);
        assert_eq!(a.overflow, OverflowPolicy::Reject);
        assert_eq!(a.message_ttl, None);
        assert!(check_connect_args(&a).is_ok());
    }

    #[test]
    fn resilience_flags_parse() {
        let a = connect_args(&[
            "--mode",
            "stateless",
            "--max-attempts",
            "7",
            "--initial-delay",
            "50ms",
            "--max-delay",
            "2s",
            "--min-uptime",
            "0s",
            "--heartbeat-interval",
            "0",
            "--buffer",
            "10",
            "--overflow",
            "drop-oldest",
            "--message-ttl",
            "1m",
            "--endpoint",
            "ws://b/ws",
            "--endpoint",
            "ws://c/ws",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.mode, Mode::Stateless);
        assert_eq!(a.max_attempts, 7);
        assert_eq!(a.initial_delay, Duration::from_millis(50));
        assert_eq!(a.max_delay, Duration::from_secs(2));
        assert_eq!(a.min_uptime, Duration::ZERO);
        // A bare 0 is the one duration without a unit: "no heartbeats".
        assert_eq!(a.heartbeat_interval, Duration::ZERO);
        assert_eq!(a.buffer, 10);
        assert_eq!(a.overflow, OverflowPolicy::DropOldest);
        assert_eq!(a.message_ttl, Some(Duration::from_secs(60)));
        assert_eq!(a.endpoints, ["ws://b/ws", "ws://c/ws"]);

        let a = connect_args(&["--heartbeat-interval", "0s", "--heartbeat-timeout", "3s"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.heartbeat_interval, Duration::ZERO);
        assert_eq!(a.heartbeat_timeout, Some(Duration::from_secs(3)));

        let a = connect_args(&["--no-buffer"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.no_buffer);
    }

    #[test]
    fn bad_resilience_flags_are_rejected() {
        for bad in [
            &["--max-attempts", "-1"][..],
            &["--max-attempts", "many"],
            &["--initial-delay", "1"],
            &["--max-delay", "soon"],
            &["--min-uptime", "-5s"],
            &["--heartbeat-interval", "1.5s"],
            &["--heartbeat-interval", "5"],
            &["--heartbeat-timeout", "0s"],
            &["--heartbeat-timeout", "0"],
            &["--buffer", "0"],
            &["--buffer", "lots"],
            &["--buffer", "5", "--no-buffer"],
            &["--overflow", "wait:0ms"],
            &["--message-ttl", "0s"],
        ] {
            assert!(connect_args(bad).is_err(), "{bad:?} should be rejected");
        }
        let a = connect_args(&["--initial-delay", "2s", "--max-delay", "1s"])
            .unwrap_or_else(|e| panic!("{e}"));
        let err = check_connect_args(&a).expect_err("initial > max");
        assert!(
            err.contains("--initial-delay") && err.contains("--max-delay"),
            "{err}"
        );
    }

    #[test]
    fn help_covers_every_connect_flag() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("connect")
            .expect("connect subcommand")
            .render_long_help()
            .to_string();
        for flag in [
            "--mode",
            "--endpoint",
            "--max-attempts",
            "--initial-delay",
            "--max-delay",
            "--min-uptime",
            "--heartbeat-interval",
            "--heartbeat-timeout",
            "--buffer",
            "--no-buffer",
            "--overflow",
            "--message-ttl",
            "wait:DURATION",
            "\"reconnecting\"",
            "\"reconnected\"",
            "\"dropped\"",
            "\"session_lost\"",
            "--linger",
        ] {
            assert!(help.contains(flag), "`rws connect --help` lacks {flag}");
        }
    }
}
