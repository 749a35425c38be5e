//! `rws connect --mode stateless` (and `none`) through a restart of
//! `rws serve`: reconnecting, giving up, the end of stdin while
//! reconnecting, and `--no-buffer`.

use std::{
    thread,
    time::{Duration, Instant},
};

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares (`rws serve` as a child,
// a child read line by line, runs with a deadline) are in `common::cli`.
mod common;

/// The reconnect flags of these tests: quick retries, so a restart is seen
/// within a few hundred milliseconds.
const QUICK_RETRY: [&str; 6] = [
    "--mode",
    "stateless",
    "--initial-delay",
    "50ms",
    "--max-delay",
    "100ms",
];

#[test]
fn stateless_reconnects_to_a_restarted_server() {
    let server = start_echo_server();
    let addr = server.addr().to_owned();
    let mut cmd = rws();
    cmd.arg("connect")
        .args(QUICK_RETRY)
        .args(["--json", &server.url]);
    let mut client = Running::connected(cmd);
    client.write_line("before");
    client.wait_for(Pipe::Stdout, "echo of `before`", |l| l == "before");

    drop(server);
    let reconnecting = client.wait_event("reconnecting");
    assert!(
        reconnecting["attempt"].as_u64() >= Some(1),
        "{reconnecting}"
    );
    let delay = reconnecting["delay_ms"].as_u64().expect("delay_ms");
    assert!(
        (50..=100).contains(&delay),
        "delay outside the flags: {reconnecting}"
    );
    assert!(reconnecting["reason"].is_string(), "{reconnecting}");
    // Sent while down: buffered, and written first once the server is back.
    client.write_line("while-down");

    let _server = RwsServe::start(&addr, &["--echo"]);
    let reconnected = client.wait_event("reconnected");
    assert!(reconnected["attempts"].as_u64() >= Some(1), "{reconnected}");
    assert!(reconnected["downtime_ms"].is_u64(), "{reconnected}");
    client.write_line("after");
    client.wait_for(Pipe::Stdout, "echo of `after`", |l| l == "after");

    client.close_stdin();
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 0);
    client.assert_stdout(&["before", "while-down", "after"]);
    let states = client
        .seen_stderr
        .iter()
        .filter(|l| l.contains("\"current\":\"reconnecting\""))
        .count();
    assert_eq!(
        states,
        1,
        "one outage, one reconnecting state\n{}",
        client.dump()
    );
}

#[test]
fn stateless_gives_up_after_max_attempts() {
    let server = start_echo_server();
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--mode",
        "stateless",
        "--max-attempts",
        "2",
        "--initial-delay",
        "20ms",
        "--max-delay",
        "40ms",
        &server.url,
    ]);
    let mut client = Running::connected(cmd);
    let killed = Instant::now();
    drop(server);
    let status = client.finish(Duration::from_secs(10));
    client.assert_exit(status, 1);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "giving up took {:?}",
        killed.elapsed()
    );
    let dump = client.dump();
    for attempt in [1, 2] {
        let prefix = format!("reconnecting: attempt {attempt} in 0.0");
        assert!(
            client.seen_stderr.iter().any(|l| l.starts_with(&prefix)),
            "no {prefix:?} line\n{dump}"
        );
    }
    assert!(
        !client
            .seen_stderr
            .iter()
            .any(|l| l.starts_with("reconnecting: attempt 3")),
        "more attempts than --max-attempts\n{dump}"
    );
    let last = client.seen_stderr.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("rws: gave up reconnecting after 2 attempts"),
        "unclear verdict\n{dump}"
    );
}

#[test]
fn end_of_stdin_while_reconnecting_waits_for_the_connection() {
    let server = start_echo_server();
    let addr = server.addr().to_owned();
    let mut cmd = rws();
    cmd.arg("connect").args(QUICK_RETRY).arg(&server.url);
    let mut client = Running::connected(cmd);
    drop(server);
    client.wait_for(Pipe::Stderr, "reconnect announcement", |l| {
        l.starts_with("reconnecting: attempt 1 in ")
    });
    // The end of input must not cancel the reconnect and strand the line.
    client.write_line("late");
    client.close_stdin();
    thread::sleep(Duration::from_millis(200));
    let _server = RwsServe::start(&addr, &["--echo"]);
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 0);
    client.assert_stdout(&["late"]);
    assert!(
        client
            .seen_stderr
            .iter()
            .any(|l| l.starts_with("reconnected after ") && l.ends_with("s down)")),
        "{}",
        client.dump()
    );
}

#[test]
fn no_buffer_reports_lines_read_while_down_and_goes_on() {
    let server = start_echo_server();
    let addr = server.addr().to_owned();
    let mut cmd = rws();
    cmd.arg("connect")
        .args(QUICK_RETRY)
        .args(["--no-buffer", "--json", &server.url]);
    let mut client = Running::connected(cmd);
    drop(server);
    client.wait_event("reconnecting");
    client.write_line("lost");
    let not_sent = client.wait_event("not_sent");
    assert_eq!(not_sent["line"], 1, "{not_sent}");
    assert_eq!(not_sent["error"], "not connected", "{not_sent}");

    let _server = RwsServe::start(&addr, &["--echo"]);
    client.wait_event("reconnected");
    client.write_line("kept");
    client.wait_for(Pipe::Stdout, "echo of `kept`", |l| l == "kept");
    client.close_stdin();
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 0);
    client.assert_stdout(&["kept"]);
}

#[test]
fn mode_none_exits_when_the_connection_is_lost() {
    let server = start_echo_server();
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let mut client = Running::connected(cmd);
    drop(server);
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 1);
    let dump = client.dump();
    assert!(
        !client
            .seen_stderr
            .iter()
            .any(|l| l.starts_with("reconnecting")),
        "--mode none must not reconnect\n{dump}"
    );
    let last = client.seen_stderr.last().cloned().unwrap_or_default();
    assert!(last.starts_with("rws: connection closed"), "{dump}");
}
