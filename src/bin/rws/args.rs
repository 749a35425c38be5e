//! The command line: `rws serve`, `rws connect` and `rws demo`, their flags
//! and help, and the checks clap cannot make flag by flag.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use resilient_ws::{OverflowPolicy, ReconnectMode};

use crate::{
    demo,
    parse::{parse_count, parse_header, parse_interval, parse_overflow, parse_size, parse_timeout},
};

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
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

// No `Debug`: it would print the tokens.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on; port 0 picks a free port. The bound address
    /// is printed on stderr as `listening on ws://ADDR/ws`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) bind: String,

    /// Send every message back to its sender (the default). Plain WebSocket
    /// clients are echoed too.
    #[arg(long, conflicts_with = "broadcast")]
    pub(crate) echo: bool,

    /// Send every message to every client, the sender included. Plain
    /// WebSocket clients join the broadcast (best effort: one that falls far
    /// behind is closed with 1013).
    #[arg(long)]
    pub(crate) broadcast: bool,

    /// How long a reliable session outlives its socket, so a client can
    /// resume it without losing a message.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub(crate) resume_window: Duration,

    /// The largest message accepted, in bytes; larger ones close the socket
    /// with 1009. Default 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_message_size: Option<usize>,

    /// The bound on sent-but-unacknowledged bytes per session and direction
    /// (the reliable protocol's window). Default 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_unacked_bytes: Option<usize>,

    /// On SIGINT/SIGTERM, clients are told (close 1012) to come back after
    /// this long plus a random part of --shutdown-spread.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub(crate) shutdown_reconnect_after: Duration,

    /// The width of the random spread added to --shutdown-reconnect-after,
    /// so clients do not all return at once.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub(crate) shutdown_spread: Duration,

    /// On SIGINT/SIGTERM, how long each reliable session may drain: it acks
    /// what it delivered, stops taking messages, sends what it has queued
    /// and waits this long at most for the client's acks before closing
    /// with 1012.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub(crate) shutdown_drain: Duration,

    /// How often the server pings each client; 0 turns the server's
    /// heartbeat off.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_interval)]
    pub(crate) keep_alive: Duration,

    /// How long a client may stay silent (no frame, no pong) before the
    /// server closes it with 1001 and frees it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub(crate) client_timeout: Duration,

    /// Require this auth token: negotiate and the socket must carry it as
    /// `Authorization: Bearer TOKEN` or, for browsers, in the socket URL's
    /// `access_token` query parameter (docs/PROTOCOL.md §2); without it
    /// they get 401. For tests and demos: a command line is visible to
    /// other local users.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) auth_token: Option<String>,

    /// A token that is known but refused with 403 (with --auth-token).
    #[arg(long, value_name = "TOKEN", requires = "auth_token")]
    pub(crate) forbidden_token: Option<String>,

    /// Also serve the files of DIR over HTTP (GET /NAME; / is index.html),
    /// e.g. a page using the JavaScript client.
    #[arg(long = "static", value_name = "DIR")]
    pub(crate) static_dir: Option<std::path::PathBuf>,

    /// Keep the sessions in the Redis at URL (`redis://host:port/`), shared
    /// by every `rws serve` started with it: a client resumes on any of
    /// them (docs/SCALING.md). Without it sessions live in this process.
    #[arg(long, value_name = "URL")]
    pub(crate) redis: Option<String>,

    /// This node's id among those sharing the Redis (with --redis; unique
    /// per process). Default: HOSTNAME-PID.
    #[arg(long, value_name = "NAME", requires = "redis")]
    pub(crate) node_id: Option<String>,

    /// The prefix of every Redis key and channel (with --redis), so that
    /// several clusters share one Redis.
    #[arg(long, value_name = "P", default_value = "rws", requires = "redis")]
    pub(crate) redis_prefix: String,
}

// No `Debug`: it would print the token.
#[derive(Args)]
pub(crate) struct ConnectArgs {
    /// The WebSocket URL (ws:// or wss://).
    pub(crate) url: String,

    /// Send every received message back unchanged (text as text, binary as
    /// binary). The end of stdin then does not close the connection.
    #[arg(long)]
    pub(crate) echo: bool,

    /// Print connection events on stderr as JSON lines.
    #[arg(long)]
    pub(crate) json: bool,

    /// What to do when the connection is lost. Without `stateless` (or
    /// `stateful`) the command exits when the connection ends.
    #[arg(long, value_enum, default_value_t = Mode::None)]
    pub(crate) mode: Mode,

    /// A failover endpoint (repeatable), tried after URL: the first
    /// connection tries each endpoint once in turn, and a reconnect moves on
    /// to the next one after every failure.
    #[arg(long = "endpoint", value_name = "URL")]
    pub(crate) endpoints: Vec<String>,

    /// How many reconnect attempts after a loss before giving up (exit
    /// status 1); 0 retries forever. Only with --mode stateless/stateful.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) max_attempts: u32,

    /// The shortest wait before a reconnect attempt, e.g. 500ms, 2s; the
    /// longest doubles with each attempt up to --max-delay (the wait is
    /// random in between).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub(crate) initial_delay: Duration,

    /// The longest wait before a reconnect attempt. Must not be less than
    /// --initial-delay.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub(crate) max_delay: Duration,

    /// How long a connection must stay up before the attempt count starts
    /// again from 1, so a server that accepts and drops at once still sees
    /// growing delays.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub(crate) min_uptime: Duration,

    /// How often to ping the server; 0 disables heartbeats.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub(crate) heartbeat_interval: Duration,

    /// How long without any frame from the server (pong or data) before
    /// the connection counts as dead. Default: twice --heartbeat-interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) heartbeat_timeout: Option<Duration>,

    /// How many stdin lines may wait in the buffer while not connected.
    #[arg(
        long = "buffer",
        value_name = "N",
        default_value = "1000",
        value_parser = parse_count,
        conflicts_with = "no_buffer"
    )]
    pub(crate) buffer: usize,

    /// Do not buffer while not connected: a line read then is refused and
    /// reported as `not_sent`.
    #[arg(long)]
    pub(crate) no_buffer: bool,

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
    pub(crate) overflow: OverflowPolicy,

    /// How long a line may wait in the buffer before it is dropped
    /// (reported as `dropped`, reason `expired`). Default: no limit.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) message_ttl: Option<Duration>,

    /// An extra header for the upgrade request (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// A subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "P")]
    pub(crate) protocols: Vec<String>,

    /// Bearer token for the `Authorization` header (default: $RWS_TOKEN).
    /// Never printed.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,

    /// How long connecting (TCP, TLS and upgrade) may take, e.g. 500ms, 2s,
    /// 1m. Default 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) connect_timeout: Option<Duration>,

    /// How long a graceful close waits for the server's Close frame.
    /// Default 5s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) close_timeout: Option<Duration>,

    /// At the end of stdin, before closing, wait until no message has
    /// arrived for this long (answers still on their way), for at most
    /// 5s in all. Default 0, or 500ms with --mode stateful: a
    /// reliable server's answers are not ordered before its Close, so
    /// closing at once could cut them off.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) linger: Option<Duration>,

    /// The largest message accepted, in bytes (after joining fragments);
    /// larger ones close the connection with 1009. Default 16 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_message_size: Option<usize>,

    /// The largest message the peer accepts, in bytes, when you know it: a
    /// longer line is reported as not sent instead of being sent (and
    /// closed with 1009 by the peer). In stateful mode the server's own
    /// limit from negotiate takes over once known.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_outbound_message_size: Option<usize>,

    /// Keep the buffer (and with --mode stateful the unacknowledged lines
    /// and the session) in this file, a redb database readable by you only:
    /// a later `rws connect` with the same --store resumes, and every line
    /// accepted before a crash is delivered exactly once. A line counts as
    /// accepted once it is on disk.
    #[arg(long, value_name = "PATH")]
    pub(crate) store: Option<std::path::PathBuf>,

    /// Report each stdin line once the client accepted it (with --store:
    /// once it is on disk), as `accepted N` (or an `accepted` event with
    /// --json) on stderr. For scripts that must know what is safe.
    #[arg(long)]
    pub(crate) print_accepted: bool,
}

/// `--mode`, mapped onto [`ReconnectMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
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

/// Checks what clap cannot see flag by flag, naming the flags (the library
/// would name its option fields instead).
pub(crate) fn check_connect_args(args: &ConnectArgs) -> Result<(), String> {
    if args.initial_delay > args.max_delay {
        return Err(format!(
            "--initial-delay ({:?}) must not exceed --max-delay ({:?})",
            args.initial_delay, args.max_delay
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
