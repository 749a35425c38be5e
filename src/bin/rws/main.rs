//! `rws`: a command-line WebSocket client and server built on
//! `resilient-ws`.
//!
//! - `rws serve` runs the reliable protocol at `/ws` (or `--path`; negotiate
//!   at `/ws/negotiate`), over TLS with `--tls-cert`/`--tls-key`, echoing
//!   (`--echo`, the default) or broadcasting (`--broadcast`) every message; plain WebSocket clients on the same path
//!   are echoed or join the broadcast. On SIGINT/SIGTERM it tells every
//!   client (close 1012) when to come back, then stops.
//! - `rws connect URL` sends stdin lines as text messages (with `--binary`,
//!   as binary messages in base64 or hex) and prints the messages it
//!   receives on stdout (with `--jsonl`, one JSON object each); connection
//!   events go to stderr. `--ca`, `--cert`/`--key` and `-k` set up TLS. With
//!   `--mode stateless` (or `stateful`) it reconnects after a loss, and exits
//!   only once the client is `Disconnected` for good (it gave up, or the
//!   connection closed normally).
//! - `rws demo` runs a reliable server, a fault proxy that keeps cutting
//!   connections and a stateful client in one process, and checks that
//!   numbered messages arrive exactly once and in order both ways.
//!
//! # Layout
//!
//! - `args.rs`: the command line (clap), and the checks clap cannot make.
//! - `parse.rs`: the value parsers of the flags (durations, sizes, ...).
//! - `serve.rs`: `rws serve`.
//! - `connect.rs`: `rws connect`: builds the client, runs its main loop.
//! - `control.rs`: what the tasks of `connect` report to that loop.
//! - `stdin.rs`: stdin lines to the client, and the end of input.
//! - `printer.rs`: the client's events to stdout and stderr.
//! - `signals.rs`: SIGINT/SIGTERM, for `serve` and `connect`.
//! - `tls.rs`: the rustls configs of `connect` (`--ca`, `--cert`, `-k`) and
//!   `serve` (`--tls-cert`, `--tls-key`).
//! - `demo.rs`: `rws demo`.

use std::{process, time::Duration};

use clap::Parser;

/// Exit code: the connection ended with an error, or a local failure.
const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage, a failed bind, or a failed initial connect.
const EXIT_SETUP: i32 = 2;
/// Exit code: interrupted by SIGINT/SIGTERM (128 + SIGINT, as shells report).
const EXIT_INTERRUPTED: i32 = 130;

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

// After `say!`, so the modules can use it.
mod args;
mod connect;
mod control;
mod demo;
mod parse;
mod printer;
mod serve;
mod signals;
mod static_files;
mod stdin;
mod tls;

/// Whole milliseconds, saturating: how durations appear in `--json` events
/// and in the shutdown advice.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn main() {
    let cli = args::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let code = match cli.command {
        args::Command::Serve(args) => serve::run(*args),
        args::Command::Connect(args) => connect::run(*args),
        args::Command::Demo(args) => demo::run(args),
    };
    // `exit` rather than returning: the stdin reader thread may be blocked in
    // a read that would otherwise keep the process alive.
    process::exit(code);
}
