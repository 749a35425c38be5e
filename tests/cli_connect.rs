//! `rws connect` end to end against `rws serve` (a child process): lines
//! in, echoes out, the `--json` events, stdin that is not UTF-8, lines over
//! the peer's limit, and the exit status of a refused connection or bad
//! arguments.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares (`rws serve` as a child,
// a child read line by line, runs with a deadline) are in `common::cli`.
mod common;

#[test]
fn connect_echoes_1000_lines_in_order() {
    let server = start_echo_server();
    let input: String = (0..1000)
        .map(|i| format!("line {i:04}: {}\n", "x".repeat(i % 37)))
        .collect();
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let started = Instant::now();
    let out = run(cmd, Input::Bytes(input.clone().into_bytes()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout.lines().count(), 1000, "stderr:\n{}", out.stderr);
    assert!(
        out.stdout == input,
        "the lines came back changed or reordered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "1000 lines took {:?}",
        started.elapsed()
    );
}

#[test]
fn json_events_on_stderr() {
    let server = start_echo_server();
    let mut cmd = rws();
    cmd.args(["connect", "--json", &server.url]);
    let out = run(cmd, Input::Bytes(b"hi\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "hi\n");
    let events: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "state" && e["current"] == "connected"),
        "no connected event in {events:?}"
    );
    let closed = events
        .iter()
        .find(|e| e["event"] == "closed")
        .unwrap_or_else(|| panic!("no closed event in {events:?}"));
    assert_eq!(closed["by_us"], true);
    assert_eq!(closed["error"], serde_json::Value::Null);
    assert_eq!(
        events.last().map(|e| &e["current"]),
        Some(&serde_json::json!("disconnected"))
    );
}

#[test]
fn connect_refused_exits_2() {
    // A port that was free a moment ago: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut cmd = rws();
    cmd.args(["connect", "--connect-timeout", "5s"])
        .arg(format!("ws://127.0.0.1:{port}/ws"));
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 2);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("rws: ") && last.to_lowercase().contains("refused"),
        "unclear error: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_utf8_on_stdin_exits_1() {
    let server = start_echo_server();
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let out = run(cmd, Input::Bytes(b"ok\n\xff\xfe\n".to_vec()));
    assert_exit(&out, 1);
    assert!(
        out.stderr.contains("line 2 is not valid UTF-8"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_arguments_exit_2() {
    let mut cmd = rws();
    cmd.args(["connect", "ws://127.0.0.1:1/ws", "--connect-timeout", "5"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 2);
    assert!(out.stderr.contains("500ms"), "{}", out.stderr);

    let mut cmd = rws();
    cmd.args(["serve", "--bind", "not-an-address"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 2);
    assert!(
        out.stderr.starts_with("rws: cannot listen on"),
        "{}",
        out.stderr
    );
}

/// The reported case end to end: a stateful `rws connect` through
/// `rws serve --echo` with a line over the server's message size limit
/// used to reconnect about eight times a second forever (the server closed
/// with 1009, the client replayed the line) and delivered nothing after it.
/// Now the line is reported as not sent and the others flow; in raw mode
/// the same with `--max-outbound-message-size`.
#[test]
fn a_line_over_the_servers_limit_is_reported_and_the_rest_is_delivered() {
    let server = start_server(&["--echo", "--max-message-size", "1000"]);
    let input = format!("before\n{}\nafter\n", "x".repeat(2000));
    for mode in ["stateful", "none"] {
        let mut cmd = rws();
        cmd.args(["connect", &server.url, "--mode", mode]);
        if mode == "none" {
            // Raw mode knows the peer's limit only when told.
            cmd.args(["--max-outbound-message-size", "1000"]);
        }
        let out = run(cmd, Input::Bytes(input.clone().into_bytes()));
        let err = &out.stderr;
        assert!(out.status.success(), "{mode}: {}\n{err}", out.status);
        assert_eq!(out.stdout, "before\nafter\n", "{mode}: stderr:\n{err}");
        assert!(
            err.contains("line 2 not sent") && err.contains("exceeds the limit"),
            "{mode}: {err}"
        );
        assert!(!err.contains("reconnecting"), "{mode}: {err}");
    }
}
