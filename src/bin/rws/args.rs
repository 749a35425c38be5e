//! The command line: `rws serve`, `rws connect` and `rws demo`, their flags
//! and help, and the checks clap cannot make flag by flag.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use resilient_ws::{OverflowPolicy, ReconnectMode};

use crate::{
    demo,
    parse::{
        parse_count, parse_failed_resume_limit, parse_header, parse_interval, parse_limit,
        parse_overflow, parse_path, parse_query_param, parse_size, parse_timeout,
        FailedResumeLimitArg,
    },
};

const CONNECT_AFTER_HELP: &str = "\
Output:
  stdout  one line per received message: a text message as-is (a text message
          that contains newlines spans several lines); a binary message as
          `base64:` followed by its standard (padded) base64 encoding, e.g.
          the bytes 01 02 03 print as `base64:AQID`. That form is ambiguous
          (a text message may contain newlines, or start with `base64:`):
          with --jsonl each message is one JSON object on one line instead,
            {\"kind\":\"text\",\"seq\":1,\"data\":\"two\\nlines\"}
            {\"kind\":\"binary\",\"seq\":2,\"data\":\"AQID\"}
          `data` is the text itself (a JSON string) or the bytes in standard
          base64; `seq` (the server's sequence number) only in stateful mode.
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
  order. With --binary base64 (or hex) every line is the encoding of one
  binary message instead (`AQID` or `010203`: the bytes 01 02 03; an empty
  line is an empty message); a line that does not decode is reported as
  `not_sent` with the reason, and the lines after it are still sent. At the end of stdin the connection is closed gracefully once every
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

TLS (wss://):
  The server's certificate is checked against the built-in Mozilla roots, or
  only the CA certificates of --ca FILE (PEM; for a self-signed server, its
  certificate). --cert FILE --key FILE present a client certificate.
  -k/--insecure checks nothing and says so on stderr: use it for tests only.

Sizes and durations:
  Sizes are bytes (65536) or a number with a unit: 64KiB, 16MiB (powers of
  1024), 64kB, 16MB (powers of 1000). Durations take a unit: 500ms, 2s,
  1m30s, 1.5h (humantime); the intervals that may be 0 also take a bare 0.

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

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the reliable WebSocket server at /ws (or --path; negotiate at
    /// /ws/negotiate); plain WebSocket clients may use /ws too. With
    /// --tls-cert and --tls-key it serves wss://.
    Serve(Box<ServeArgs>),
    /// Connect to a WebSocket server: stdin lines go out as text messages
    /// (or binary ones with --binary), received messages come out on stdout
    /// (as JSON lines with --jsonl).
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
    /// is printed on stderr as `listening on ws://ADDR/ws` (wss:// with
    /// --tls-cert, the route of --path).
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
    /// heartbeat off. Also --heartbeat-interval (the client's name).
    #[arg(
        long,
        visible_alias = "heartbeat-interval",
        value_name = "DURATION",
        default_value = "15s",
        value_parser = parse_interval
    )]
    pub(crate) keep_alive: Duration,

    /// How long a client may stay silent (no frame, no pong) before the
    /// server closes it with 1001 and frees it. Also --heartbeat-timeout.
    #[arg(
        long,
        visible_alias = "heartbeat-timeout",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_timeout
    )]
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

    /// The route of the WebSocket endpoint (negotiate at PATH/negotiate),
    /// e.g. --path /feed.
    #[arg(long, value_name = "PATH", default_value = "/ws", value_parser = parse_path)]
    pub(crate) path: String,

    /// Serve wss:// (TLS) with this certificate chain (PEM, the server's
    /// own certificate first); needs --tls-key. E.g. --tls-cert cert.pem.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1), e.g.
    /// --tls-key key.pem.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,

    /// The most frames one fragmented client message may come in; more
    /// close the socket with 1009. Default 1024.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) max_fragments: Option<usize>,

    /// The query parameter of the socket URL that may carry the token for
    /// --auth-token (browsers cannot send the header). Default
    /// access_token.
    #[arg(long, value_name = "NAME", default_value = "access_token", value_parser = parse_query_param)]
    pub(crate) token_query_param: String,

    /// Failed resumes (a wrong reconnect token) allowed per client address
    /// within a window, as N/DURATION, e.g. 20/1m (the default); over it,
    /// that address's sockets get 429 until the window ends. `off` turns
    /// the limit off.
    #[arg(
        long,
        value_name = "N/DURATION",
        default_value = "20/1m",
        value_parser = parse_failed_resume_limit
    )]
    pub(crate) failed_resume_limit: FailedResumeLimitArg,

    /// How many live sessions the server holds in all; one more negotiate
    /// gets 503. Default 100000.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) max_sessions: Option<usize>,

    /// How many live sessions one authenticated identity may hold; one
    /// more negotiate gets 429. Default 100.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) max_sessions_per_identity: Option<usize>,

    /// How long a new protocol socket may take to send its HELLO before it
    /// is closed with 1002. Default 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) hello_timeout: Option<Duration>,

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

    /// With --redis: how long an attached session waits for Redis to
    /// answer again (taking no messages meanwhile) before it closes its
    /// socket with 1013 "session store unavailable"; the client resumes
    /// later and nothing is lost.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_timeout,
        requires = "redis"
    )]
    pub(crate) store_unavailable_timeout: Duration,
    /// How many worker threads serve the clients; the sessions are spread
    /// over them (a session runs on the worker of its socket: its first
    /// one, or with --redis each one). One worker is one thread. Default:
    /// the number of physical CPU cores, as actix-web picks.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) workers: Option<usize>,
}

// No `Debug`: it would print the token.
#[derive(Args)]
pub(crate) struct ConnectArgs {
    /// The WebSocket URL (ws:// or wss://).
    /// E.g. ws://127.0.0.1:8080/ws or wss://example.com/feed.
    pub(crate) url: String,

    /// Send every received message back unchanged (text as text, binary as
    /// binary). The end of stdin then does not close the connection.
    /// E.g. --echo.
    #[arg(long)]
    pub(crate) echo: bool,

    /// Print connection events on stderr as JSON lines.
    /// E.g. --json.
    #[arg(long)]
    pub(crate) json: bool,

    /// What to do when the connection is lost. Without `stateless` (or
    /// `stateful`) the command exits when the connection ends.
    /// E.g. --mode stateful.
    ///
    /// The library's default differs: `ReconnectMode::Stateless` (a
    /// service reconnects unless told not to). This command, made for
    /// pipes and scripts, ends with status 1 instead of retrying forever
    /// unasked.
    #[arg(long, value_enum, default_value_t = Mode::None)]
    pub(crate) mode: Mode,

    /// A failover endpoint (repeatable), tried after URL: the first
    /// connection tries each endpoint once in turn, and a reconnect moves on
    /// to the next one after every failure.
    /// E.g. --endpoint ws://backup:8080/ws.
    #[arg(long = "endpoint", value_name = "URL")]
    pub(crate) endpoints: Vec<String>,

    /// How many reconnect attempts after a loss before giving up (exit
    /// status 1); 0 retries forever. Only with --mode stateless/stateful.
    /// E.g. --max-attempts 10.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) max_attempts: u32,

    /// The shortest wait before a reconnect attempt, e.g. 500ms, 2s; the
    /// longest doubles with each attempt up to --max-delay (the wait is
    /// random in between).
    /// E.g. --initial-delay 500ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub(crate) initial_delay: Duration,

    /// The longest wait before a reconnect attempt. Must not be less than
    /// --initial-delay.
    /// E.g. --max-delay 1m30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub(crate) max_delay: Duration,

    /// How long a connection must stay up before the attempt count starts
    /// again from 1, so a server that accepts and drops at once still sees
    /// growing delays.
    /// E.g. --min-uptime 10s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval)]
    pub(crate) min_uptime: Duration,

    /// How often to ping the server; 0 disables heartbeats.
    /// E.g. --heartbeat-interval 15s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub(crate) heartbeat_interval: Duration,

    /// How long without any frame from the server (pong or data) before
    /// the connection counts as dead. Default: twice --heartbeat-interval.
    /// E.g. --heartbeat-timeout 45s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) heartbeat_timeout: Option<Duration>,

    /// How many stdin lines may wait in the buffer while not connected.
    /// E.g. --buffer 5000.
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
    /// E.g. --no-buffer.
    #[arg(long)]
    pub(crate) no_buffer: bool,

    /// What a full buffer does with one more line: `reject` (the line is
    /// reported as `not_sent`), `drop-oldest` or `drop-newest` (reported as
    /// `dropped`), or `wait:DURATION` (stop reading stdin for up to DURATION
    /// until there is room, then reject).
    /// E.g. --overflow drop-oldest.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "reject",
        value_parser = parse_overflow
    )]
    pub(crate) overflow: OverflowPolicy,

    /// How long a line may wait in the buffer before it is dropped
    /// (reported as `dropped`, reason `expired`). Default: no limit.
    /// E.g. --message-ttl 1m.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) message_ttl: Option<Duration>,

    /// An extra header for the upgrade request (repeatable).
    /// E.g. -H "X-Client: demo".
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// A subprotocol to offer (repeatable).
    /// E.g. --protocol chat.v2.
    #[arg(long = "protocol", value_name = "P")]
    pub(crate) protocols: Vec<String>,

    /// Bearer token for the `Authorization` header (default: $RWS_TOKEN).
    /// Never printed.
    /// E.g. --token "$TOKEN".
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,

    /// How long connecting (TCP, TLS and upgrade) may take, e.g. 500ms, 2s,
    /// 1m. Default 10s.
    /// E.g. --connect-timeout 3s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) connect_timeout: Option<Duration>,

    /// How long a graceful close waits for the server's Close frame.
    /// Default 5s.
    /// E.g. --close-timeout 1s.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) close_timeout: Option<Duration>,

    /// At the end of stdin, before closing, wait until no message has
    /// arrived for this long (answers still on their way), for at most
    /// 5s in all. Default 0, or 500ms with --mode stateful: a
    /// reliable server's answers are not ordered before its Close, so
    /// closing at once could cut them off.
    /// E.g. --linger 200ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) linger: Option<Duration>,

    /// The largest message accepted, in bytes (after joining fragments);
    /// larger ones close the connection with 1009. Default 16 MiB.
    /// E.g. --max-message-size 16MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_message_size: Option<usize>,

    /// The largest message the peer accepts, in bytes, when you know it: a
    /// longer line is reported as not sent instead of being sent (and
    /// closed with 1009 by the peer). In stateful mode the server's own
    /// limit from negotiate takes over once known.
    /// E.g. --max-outbound-message-size 1MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub(crate) max_outbound_message_size: Option<usize>,

    /// Keep the buffer (and with --mode stateful the unacknowledged lines
    /// and the session) in this file, a redb database readable by you only:
    /// a later `rws connect` with the same --store resumes, and every line
    /// accepted before a crash is delivered exactly once. A line counts as
    /// accepted once it is on disk.
    /// E.g. --store ~/.rws/outbox.redb.
    #[arg(long, value_name = "PATH")]
    pub(crate) store: Option<std::path::PathBuf>,

    /// Report each stdin line once the client accepted it (with --store:
    /// once it is on disk), as `accepted N` (or an `accepted` event with
    /// --json) on stderr. For scripts that must know what is safe.
    /// E.g. --print-accepted.
    #[arg(long)]
    pub(crate) print_accepted: bool,

    /// Use PATH as the URL's path (and every --endpoint's), keeping its
    /// query, e.g. --path /feed.
    #[arg(long, value_name = "PATH", value_parser = parse_path)]
    pub(crate) path: Option<String>,

    /// Trust only the CA certificates in FILE (PEM) for wss://, instead of
    /// the built-in Mozilla roots, e.g. --ca ca.pem (a self-signed server:
    /// its own certificate).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub(crate) ca: Option<std::path::PathBuf>,

    /// Present this client certificate (PEM chain) to a server that asks
    /// for one; needs --key. E.g. --cert client.pem.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,

    /// The private key of --cert (PEM), e.g. --key client.key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,

    /// Do not check the server's TLS certificate (for tests against a
    /// self-signed server; prefer --ca). Prints a warning: anyone on the
    /// path can read and change the connection. E.g. -k.
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,

    /// Stdin lines are binary messages in this encoding: `base64`
    /// (standard, padded: AQID is the bytes 01 02 03) or `hex` (010203).
    /// A line that does not decode is reported as `not_sent` and the
    /// others go on. E.g. --binary base64.
    #[arg(long, value_enum, value_name = "ENCODING")]
    pub(crate) binary: Option<BinaryEncoding>,

    /// Print each received message on stdout as one JSON object per line:
    /// {"kind":"text","seq":1,"data":"..."} or
    /// {"kind":"binary","seq":2,"data":"<base64>"} (`seq` only with
    /// --mode stateful), so multi-line text and binary cannot be confused.
    /// E.g. --jsonl.
    #[arg(long)]
    pub(crate) jsonl: bool,

    /// The most frames one fragmented message may come in; more close the
    /// connection with 1009. Default 4096. E.g. --max-fragments 64.
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub(crate) max_fragments: Option<usize>,

    /// Send the token (--token or $RWS_TOKEN) in this query parameter of
    /// the negotiate and socket URLs instead of the Authorization header,
    /// for servers written for browsers. URLs are often logged: use only
    /// when needed. E.g. --token-query-param access_token.
    #[arg(long, value_name = "NAME", value_parser = parse_query_param)]
    pub(crate) token_query_param: Option<String>,

    /// A text message sent first on every connect and reconnect, ahead of
    /// the stdin lines buffered meanwhile (repeatable, sent in order): a
    /// feed's subscribe or auth message, e.g.
    /// `--preamble '{"op":"subscribe","topic":"ticker"}'`. With --mode
    /// stateful a resumed session's unacknowledged lines are replayed first.
    #[arg(long = "preamble", value_name = "LINE")]
    pub(crate) preamble: Vec<String>,
}

/// `--binary`: how a stdin line spells a binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BinaryEncoding {
    /// Standard base64 with padding (RFC 4648 §4).
    Base64,
    /// Hexadecimal, two digits a byte, either case.
    Hex,
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
