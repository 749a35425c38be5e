//! `rws serve` (a child process): the reliable protocol's negotiate, plain
//! clients on the same path, broadcast, and the shutdown on SIGTERM that
//! tells stateful clients when to come back.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    thread,
    time::Duration,
};

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares (`rws serve` as a child,
// a child read line by line, runs with a deadline) are in `common::cli`.
mod common;

/// `POST /ws/negotiate` by hand; returns the status code and the body.
fn negotiate(addr: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
        .write_all(
            format!(
                "POST /ws/negotiate HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    (status, body.to_string())
}

#[test]
fn serve_speaks_the_reliable_protocol_and_still_echoes_plain_clients() {
    let server = start_server(&[
        "--echo",
        "--resume-window",
        "45s",
        "--max-message-size",
        "4096",
        "--max-unacked-bytes",
        "65536",
    ]);
    let (status, body) = negotiate(server.addr());
    assert_eq!(status, 200, "{body}");
    let n: serde_json::Value = serde_json::from_str(&body).expect("negotiate JSON");
    assert_eq!(n["protocol"], "rws.reliable.v1", "{n}");
    assert_eq!(n["connection_id"].as_str().map(str::len), Some(32), "{n}");
    assert_eq!(n["resume_window_ms"], 45_000, "{n}");
    assert_eq!(n["max_message_size"], 4096, "{n}");
    assert_eq!(n["max_unacked_bytes"], 65_536, "{n}");

    // A plain client (no subprotocol, --mode none) on the same path.
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let out = run(cmd, Input::Bytes(b"plain one\nplain two\n".to_vec()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "plain one\nplain two\n", "{}", out.stderr);
}

#[test]
fn stateful_connect_gets_every_line_back_in_order() {
    let server = start_echo_server();
    let input: String = (0..200)
        .map(|i| format!("line {i:03}: {}\n", "y".repeat(i % 23)))
        .collect();
    let mut cmd = rws();
    cmd.args(["connect", "--mode", "stateful", "--json", &server.url]);
    let out = run(cmd, Input::Bytes(input.clone().into_bytes()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout.lines().count(), 200, "stderr:\n{}", out.stderr);
    assert!(
        out.stdout == input,
        "the lines came back changed or reordered"
    );
    assert!(
        !out.stderr.contains("\"session_lost\""),
        "no session may be lost:\n{}",
        out.stderr
    );
}

#[test]
fn broadcast_server_relays_a_line_to_every_plain_client() {
    let server = start_server(&["--broadcast"]);
    let client = || {
        let mut cmd = rws();
        cmd.args(["connect", &server.url]);
        Running::start(cmd)
    };
    let (mut a, mut b) = (client(), client());
    a.wait_for(Pipe::Stderr, "connected state", is_connected_event);
    b.wait_for(Pipe::Stderr, "connected state", is_connected_event);
    a.write_line("from a");
    b.wait_for(Pipe::Stdout, "a's line", |l| l == "from a");
    // Everyone gets the broadcast, the sender included.
    a.wait_for(Pipe::Stdout, "a's own line", |l| l == "from a");
    b.write_line("from b");
    a.wait_for(Pipe::Stdout, "b's line", |l| l == "from b");
    b.wait_for(Pipe::Stdout, "b's own line", |l| l == "from b");
    for c in [&mut a, &mut b] {
        c.close_stdin();
        let status = c.finish(TIMEOUT);
        c.assert_exit(status, 0);
        c.assert_stdout(&["from a", "from b"]);
    }
}

#[test]
fn serve_modes_are_exclusive() {
    let mut cmd = rws();
    cmd.args(["serve", "--echo", "--broadcast", "--bind", "127.0.0.1:0"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 2);
    assert!(out.stderr.contains("--broadcast"), "{}", out.stderr);
}

#[cfg(unix)]
#[test]
fn sigterm_tells_stateful_clients_when_to_come_back() {
    let mut server = start_server(&[
        "--echo",
        "--shutdown-reconnect-after",
        "200ms",
        "--shutdown-spread",
        "100ms",
    ]);
    let addr = server.addr().to_owned();
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--mode",
        "stateful",
        "--json",
        "--initial-delay",
        "50ms",
        "--max-delay",
        "100ms",
        &server.url,
    ]);
    let mut client = Running::connected(cmd);
    client.write_line("before");
    client.wait_for(Pipe::Stdout, "echo of `before`", |l| l == "before");
    // Give the server time to ack `before` (within its 100 ms ack interval),
    // so the lost session below has nothing to re-send.
    thread::sleep(Duration::from_millis(400));

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let closed = client.wait_event("closed");
    assert_eq!(closed["code"], 1012, "{closed}");
    let reconnecting = client.wait_event("reconnecting");
    let reason = reconnecting["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("1012") && reason.contains("\"reconnect_after_ms\":200"),
        "{reconnecting}"
    );
    // The server's advice (200 ms + up to 100 ms), not the client's backoff.
    let delay = reconnecting["delay_ms"].as_u64().expect("delay_ms");
    assert!((200..=300).contains(&delay), "{reconnecting}");
    let status = server.wait_exit_blocking(Duration::from_secs(10));
    assert!(status.success(), "rws serve exited with {status}");

    // A new server process does not know the session: the client is told
    // (session_lost), starts a fresh one and goes on.
    let _server = RwsServe::start(&addr, &["--echo"]);
    let lost = client.wait_event("session_lost");
    assert!(lost["connection_id"].is_string(), "{lost}");
    // An unacknowledged line is sent again (at least once across a lost
    // session, docs/PROTOCOL.md §7); normally `before` was acked.
    let resending = lost["resending"].as_u64().expect("resending");
    assert!(resending <= 1, "{lost}");
    client.wait_event("reconnected");
    client.write_line("after");
    client.wait_for(Pipe::Stdout, "echo of `after`", |l| l == "after");
    client.close_stdin();
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 0);
    if resending == 0 {
        client.assert_stdout(&["before", "after"]);
    } else {
        client.assert_stdout(&["before", "before", "after"]);
    }
}
