//! End-to-end tests of the `rws` binary: `rws serve` as a child process, and
//! tiny hand-written WebSocket servers (plain `TcpListener`) for the cases
//! the echo server cannot produce (a 1011 close, frames of a chosen type).
//!
//! Every wait has a deadline, and every child is killed on drop, so a broken
//! binary fails a test instead of hanging it or leaking processes.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The longest any one step (a child's run, a server's read) may take.
const TIMEOUT: Duration = Duration::from_secs(20);

fn rws() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rws"));
    // Output checks below assume the default log level.
    cmd.env_remove("RUST_LOG").env_remove("RWS_TOKEN");
    cmd
}

/// Kills the child when dropped, so a failing assertion does not leave a
/// server running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What to do with the child's stdin.
enum Input {
    /// Write these bytes, then close stdin (end of input).
    Bytes(Vec<u8>),
    /// Keep stdin open until the child exits, so end of input cannot be what
    /// ends the connection.
    Open,
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion with a deadline; panics (after killing it) if it
/// takes longer than [`TIMEOUT`].
fn run(mut cmd: Command, input: Input) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard(cmd.spawn().expect("spawn rws"));
    let child = &mut guard.0;
    // Readers and the writer run on threads: a child blocked on a full pipe
    // would otherwise never exit.
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    let stdin = child.stdin.take().expect("stdin");
    let _open_stdin: Option<ChildStdin> = match input {
        Input::Bytes(bytes) => {
            thread::spawn(move || {
                let mut stdin = stdin;
                // The child may exit before reading it all; that is its
                // business, the test checks the outcome.
                let _ = stdin.write_all(&bytes);
            });
            None
        }
        Input::Open => Some(stdin),
    };
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default();
            panic!("rws did not exit within {TIMEOUT:?}; stderr:\n{err}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let collect = |rx: mpsc::Receiver<String>| rx.recv_timeout(TIMEOUT).expect("output pipe");
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// Reads a pipe to its end on a thread; the text arrives on the channel.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// `rws serve --echo` on a free port, killed on drop.
struct EchoServer {
    _child: ChildGuard,
    url: String,
}

fn start_echo_server() -> EchoServer {
    let mut cmd = rws();
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--echo"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn rws serve"));
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        // Keep draining after the address line so the server never blocks
        // on a full stderr pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.to_string());
                }
            }
        }
    });
    let url = rx
        .recv_timeout(TIMEOUT)
        .expect("rws serve did not print `listening on ...` in time");
    assert!(
        url.starts_with("ws://127.0.0.1:"),
        "unexpected address line: {url}"
    );
    assert!(
        !url.ends_with(":0/ws"),
        "the real port must be printed: {url}"
    );
    EchoServer { _child: child, url }
}

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

/// Reads the upgrade request and answers 101; returns the request head.
fn accept_upgrade(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read upgrade request");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ASCII request head");
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .expect("Sec-WebSocket-Key header");
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).expect("base64 is ASCII");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).expect("write 101");
    head
}

/// Reads one client frame (clients must mask); returns opcode and payload.
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).expect("frame header");
    assert!(h[0] & 0x80 != 0, "expected unfragmented frames");
    assert!(h[1] & 0x80 != 0, "client frames must be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).expect("length");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).expect("length");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask).expect("mask");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("payload");
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (h[0] & 0x0f, payload)
}

/// Reads the next text, binary or close frame, skipping pings and pongs
/// (a heartbeat is not what these tests are about).
fn read_data_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let (op, payload) = read_frame(stream);
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

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Tests

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

#[test]
fn demo_delivers_every_message_once_in_order() {
    let mut cmd = rws();
    cmd.args(["demo", "--messages", "2000"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    for line in [
        "sent          2000",
        "received      2000",
        "lost          0",
        "duplicated    0",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
}
