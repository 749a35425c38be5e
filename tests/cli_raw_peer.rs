//! `rws connect` against a tiny hand-written WebSocket server (a plain
//! `TcpListener`, one connection scripted by the test) for what the echo
//! server cannot produce: a 1011 or 1000 close from the peer, frames of a
//! chosen type, and a look at the upgrade request's headers.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
};

use common::{accept_upgrade, cli::*, read_client_frame};

// The helpers every `tests/cli_*.rs` file shares (`rws serve` as a child,
// a child read line by line, runs with a deadline) are in `common::cli`.
mod common;

// ---------------------------------------------------------------------------
// A raw RFC 6455 server: one connection, scripted by the test.

/// Accepts one connection on a free port, completes the upgrade and runs
/// `script` on the socket with the request head. Returns the URL and a
/// channel for the script's result (closed if the script panicked).
fn raw_server<T: Send + 'static>(
    script: impl FnOnce(TcpStream, String) -> T + Send + 'static,
) -> (String, mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(TIMEOUT)).expect("timeout");
        let head = accept_upgrade(&mut stream);
        let _ = tx.send(script(stream, head));
    });
    (url, rx)
}

/// Reads the next text, binary or close frame, skipping pings and pongs
/// (a heartbeat is not what these tests are about).
fn read_data_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let (op, payload) = read_client_frame(stream);
        if op != 0x9 && op != 0xA {
            return (op, payload);
        }
    }
}

/// An unmasked server Close frame with `code` and no reason.
fn close_frame(code: u16) -> [u8; 4] {
    let [hi, lo] = code.to_be_bytes();
    [0x88, 0x02, hi, lo]
}

/// Runs the server side of a close handshake: sends Close with `code`,
/// reads the client's Close, and returns its payload. The stream is then
/// dropped: the server ends the TCP connection first, as RFC 6455 §7.1.1
/// asks (a client may wait for that).
fn close_handshake(mut stream: TcpStream, code: u16) -> Vec<u8> {
    stream.write_all(&close_frame(code)).expect("write close");
    let (op, payload) = read_data_frame(&mut stream);
    assert_eq!(op, 0x8, "expected the client's Close, got opcode {op:#x}");
    payload
}

#[test]
fn server_close_1011_exits_1() {
    let (url, done) = raw_server(|s, _| close_handshake(s, 1011));
    let mut cmd = rws();
    cmd.args(["connect", &url]);
    // Stdin stays open: only the server's Close may end the connection.
    let out = run(cmd, Input::Open);
    assert_exit(&out, 1);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("rws: connection closed") && last.contains("1011"),
        "unclear error: {}",
        out.stderr
    );
    let reply = done.recv_timeout(TIMEOUT).expect("raw server failed");
    assert_eq!(reply, [0x03, 0xF3], "the client's Close should echo 1011");
}

#[test]
fn server_close_1000_exits_0() {
    let (url, done) = raw_server(|s, _| close_handshake(s, 1000));
    let mut cmd = rws();
    cmd.args(["connect", &url]);
    let out = run(cmd, Input::Open);
    assert_exit(&out, 0);
    assert!(
        out.stderr.contains("closed by peer, code 1000"),
        "{}",
        out.stderr
    );
    done.recv_timeout(TIMEOUT).expect("raw server failed");
}

#[test]
fn echo_mode_keeps_message_types() {
    let (url, done) = raw_server(|mut s, _| {
        s.write_all(&[0x81, 0x05]).expect("write");
        s.write_all(b"hello").expect("write");
        s.write_all(&[0x82, 0x03, 1, 2, 3]).expect("write");
        let first = read_data_frame(&mut s);
        let second = read_data_frame(&mut s);
        close_handshake(s, 1000);
        (first, second)
    });
    let mut cmd = rws();
    cmd.args(["connect", "--echo", &url]);
    // Stdin ends at once: with --echo that must not close the connection.
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, "hello\nbase64:AQID\n");
    let (first, second) = done.recv_timeout(TIMEOUT).expect("raw server failed");
    assert_eq!(
        first,
        (0x1, b"hello".to_vec()),
        "text must come back as text"
    );
    assert_eq!(
        second,
        (0x2, vec![1, 2, 3]),
        "binary must come back as binary"
    );
}

#[test]
fn headers_protocol_and_token_are_sent_but_token_never_printed() {
    let (url, done) = raw_server(|s, head| {
        close_handshake(s, 1000);
        head.to_ascii_lowercase()
    });
    let mut cmd = rws();
    cmd.args([
        "connect",
        &url,
        "--header",
        "X-Test: yes",
        "--protocol",
        "chat.v1",
    ])
    .env("RWS_TOKEN", "s3cret-T0ken");
    let out = run(cmd, Input::Open);
    assert_exit(&out, 0);
    let head = done.recv_timeout(TIMEOUT).expect("raw server failed");
    assert!(head.contains("\r\nx-test: yes\r\n"), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-protocol: chat.v1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nauthorization: bearer s3cret-t0ken\r\n"),
        "{head}"
    );
    assert!(!out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"));
}
