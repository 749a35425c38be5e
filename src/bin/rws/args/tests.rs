//! The flags as clap parses them: defaults, conflicts, and the help text.

use std::time::Duration;

use clap::Parser as _;
use resilient_ws::OverflowPolicy;

use super::*;

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
        Command::Serve(a) => Ok(*a),
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
fn overflow_flag() {
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
        // Decimals are humantime's (1.5s is accepted); a unit still counts.
        &["--heartbeat-interval", "1.5x"],
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
