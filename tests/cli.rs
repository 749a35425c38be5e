//! End-to-end tests of the `rws` binary: `rws serve` (the reliable server,
//! which also serves plain WebSocket clients) as a child process, and tiny
//! hand-written WebSocket servers (plain `TcpListener`) for the cases the
//! echo server cannot produce (a 1011 close, frames of a chosen type).
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

/// `rws serve` on a free port, killed on drop.
struct EchoServer {
    child: ChildGuard,
    url: String,
}

impl EchoServer {
    /// The `HOST:PORT` it listens on.
    fn addr(&self) -> String {
        self.url
            .trim_start_matches("ws://")
            .trim_end_matches("/ws")
            .to_string()
    }
}

fn start_echo_server() -> EchoServer {
    start_server(&["--echo"])
}

/// `rws serve --bind 127.0.0.1:0 ARGS...`, once it listens.
fn start_server(args: &[&str]) -> EchoServer {
    let server = try_start_server("127.0.0.1:0", args)
        .unwrap_or_else(|stderr| panic!("rws serve failed:\n{stderr}"));
    assert!(
        server.url.starts_with("ws://127.0.0.1:"),
        "unexpected address line: {}",
        server.url
    );
    assert!(
        !server.url.ends_with(":0/ws"),
        "the real port must be printed: {}",
        server.url
    );
    server
}

/// `rws serve --echo --bind ADDR` again on the address of a server that was
/// just killed. The port may be busy for a moment, so binding is retried
/// for up to 2 s.
fn restart_echo_server(addr: &str) -> EchoServer {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match try_start_echo_server(addr) {
            Ok(server) => return server,
            Err(stderr) if Instant::now() < deadline => {
                assert!(
                    stderr.contains("cannot listen"),
                    "rws serve failed:\n{stderr}"
                );
                thread::sleep(Duration::from_millis(50));
            }
            Err(stderr) => panic!("could not listen on {addr} again within 2 s:\n{stderr}"),
        }
    }
}

/// Starts `rws serve --echo --bind ADDR` and waits for its address line;
/// `Err` with its stderr if it exited first (e.g. the port is taken).
fn try_start_echo_server(addr: &str) -> Result<EchoServer, String> {
    try_start_server(addr, &["--echo"])
}

/// Starts `rws serve --bind ADDR ARGS...` and waits for its address line;
/// `Err` with its stderr if it exited first.
fn try_start_server(addr: &str, args: &[&str]) -> Result<EchoServer, String> {
    let mut cmd = rws();
    cmd.args(["serve", "--bind", addr])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn rws serve"));
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        let mut seen = String::new();
        // Keep draining after the address line so the server never blocks
        // on a full stderr pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(url.to_string()));
                }
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        // The server exited without listening.
        if let Some(tx) = tx {
            let _ = tx.send(Err(seen));
        }
    });
    let url = rx
        .recv_timeout(TIMEOUT)
        .expect("rws serve did not print `listening on ...` in time")?;
    Ok(EchoServer { child, url })
}

// ---------------------------------------------------------------------------
// A child the test talks to while it runs.

/// Which output pipe of a [`Running`] child.
#[derive(Clone, Copy, Debug)]
enum Pipe {
    Stdout,
    Stderr,
}

/// A child whose stdin the test writes on demand and whose stdout and
/// stderr it reads line by line as they come. Killed on drop.
struct Running {
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every line read so far, per pipe, for checks and failure messages.
    seen_stdout: Vec<String>,
    seen_stderr: Vec<String>,
}

/// Reads a pipe line by line on a thread; the channel closes at its end.
fn read_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("spawn rws"));
        let stdin = child.0.stdin.take();
        let stdout = read_lines(child.0.stdout.take().expect("stdout"));
        let stderr = read_lines(child.0.stderr.take().expect("stderr"));
        Running {
            child,
            stdin,
            stdout,
            stderr,
            seen_stdout: Vec::new(),
            seen_stderr: Vec::new(),
        }
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to rws: {e}\n{}", self.dump()));
    }

    /// Ends the child's input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Moves the lines that already arrived into `seen_*`.
    fn drain(&mut self) {
        while let Ok(l) = self.stdout.try_recv() {
            self.seen_stdout.push(l);
        }
        while let Ok(l) = self.stderr.try_recv() {
            self.seen_stderr.push(l);
        }
    }

    fn dump(&mut self) -> String {
        self.drain();
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.seen_stdout.join("\n"),
            self.seen_stderr.join("\n")
        )
    }

    /// Waits (up to [`TIMEOUT`]) for the next line on `pipe` that matches
    /// `pred`, skipping others, and returns it.
    fn wait_for(&mut self, pipe: Pipe, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let rx = match pipe {
                Pipe::Stdout => &self.stdout,
                Pipe::Stderr => &self.stderr,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    match pipe {
                        Pipe::Stdout => self.seen_stdout.push(line.clone()),
                        Pipe::Stderr => self.seen_stderr.push(line.clone()),
                    }
                    if hit {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no {what} on {pipe:?} within {TIMEOUT:?}\n{}", self.dump())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{pipe:?} ended without {what}\n{}", self.dump())
                }
            }
        }
    }

    /// Waits for the `--json` event named `name` on stderr; returns it.
    fn wait_event(&mut self, name: &str) -> serde_json::Value {
        let line = self.wait_for(Pipe::Stderr, &format!("{name:?} event"), |l| {
            event_name(l).as_deref() == Some(name)
        });
        serde_json::from_str(&line).expect("checked above")
    }

    /// Waits (up to `limit`) for the child to exit and for the ends of its
    /// output; returns the status. Kills it and panics after `limit`.
    fn finish(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.0.kill();
                panic!("rws did not exit within {limit:?}\n{}", self.dump());
            }
            thread::sleep(Duration::from_millis(10));
        };
        for (rx, seen) in [
            (&self.stdout, &mut self.seen_stdout),
            (&self.stderr, &mut self.seen_stderr),
        ] {
            // The pipes end with the process (nothing else holds them).
            while let Ok(line) = rx.recv_timeout(TIMEOUT) {
                seen.push(line);
            }
        }
        status
    }

    /// Checks every stdout line seen so far.
    fn assert_stdout(&mut self, expected: &[&str]) {
        if self.seen_stdout != expected {
            panic!("expected stdout lines {expected:?}\n{}", self.dump());
        }
    }

    fn assert_exit(&mut self, status: ExitStatus, code: i32) {
        if status.code() != Some(code) {
            panic!("expected exit status {code}, got {status}\n{}", self.dump());
        }
    }
}

/// The `"event"` of a `--json` stderr line, if it is one.
fn event_name(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("event")?.as_str().map(str::to_string)
}

fn is_connected_event(line: &str) -> bool {
    // Human and JSON forms.
    line.ends_with("-> connected") || line.contains("\"current\":\"connected\"")
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

/// A row of the demo summary: `sent, received, lost, duplicated, out of
/// order` of the stream called `name`.
fn demo_row(stdout: &str, name: &str) -> [u64; 5] {
    let numbers: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} row in:\n{stdout}"))
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("{name:?} row: {w:?}\n{stdout}"))
        })
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|n| panic!("{name:?} row has {n:?}\n{stdout}"))
}

/// The number after `name` on its line of the demo summary.
fn demo_value(stdout: &str, name: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{stdout}"))
}

#[test]
fn demo_delivers_every_message_once_in_order_through_cuts() {
    let mut cmd = rws();
    cmd.args(["demo", "--messages", "3000", "--seed", "7"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    for stream in ["client -> server", "echoed back", "server -> client"] {
        assert_eq!(
            demo_row(&out.stdout, stream),
            [3000, 3000, 0, 0, 0],
            "{stream}: sent, received, lost, duplicated, out of order\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("seed 7"), "{}", out.stdout);
    assert!(
        demo_value(&out.stdout, "reconnects") > 0,
        "the cuts must have forced reconnects\n{}",
        out.stdout
    );
    assert!(demo_value(&out.stdout, "proxy cuts") > 0, "{}", out.stdout);
    assert_eq!(
        demo_value(&out.stdout, "sessions lost"),
        0,
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some("nothing lost, nothing duplicated"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("cut #1 at "), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// The reliable server

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
    let (status, body) = negotiate(&server.addr());
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

/// Waits (up to `limit`) for a server child to exit.
fn wait_exit(server: &mut EchoServer, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.child.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "rws serve did not exit within {limit:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
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
    let addr = server.addr();
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
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
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
    let status = wait_exit(&mut server, Duration::from_secs(10));
    assert!(status.success(), "rws serve exited with {status}");

    // A new server process does not know the session: the client is told
    // (session_lost), starts a fresh one and goes on.
    let _server = restart_echo_server(&addr);
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

// ---------------------------------------------------------------------------
// Reconnecting

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
    let addr = server.addr();
    let mut cmd = rws();
    cmd.arg("connect")
        .args(QUICK_RETRY)
        .args(["--json", &server.url]);
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
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

    let _server = restart_echo_server(&addr);
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
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
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
    let addr = server.addr();
    let mut cmd = rws();
    cmd.arg("connect").args(QUICK_RETRY).arg(&server.url);
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
    drop(server);
    client.wait_for(Pipe::Stderr, "reconnect announcement", |l| {
        l.starts_with("reconnecting: attempt 1 in ")
    });
    // The end of input must not cancel the reconnect and strand the line.
    client.write_line("late");
    client.close_stdin();
    thread::sleep(Duration::from_millis(200));
    let _server = restart_echo_server(&addr);
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
    let addr = server.addr();
    let mut cmd = rws();
    cmd.arg("connect")
        .args(QUICK_RETRY)
        .args(["--no-buffer", "--json", &server.url]);
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
    drop(server);
    client.wait_event("reconnecting");
    client.write_line("lost");
    let not_sent = client.wait_event("not_sent");
    assert_eq!(not_sent["line"], 1, "{not_sent}");
    assert_eq!(not_sent["error"], "not connected", "{not_sent}");

    let _server = restart_echo_server(&addr);
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
    let mut client = Running::start(cmd);
    client.wait_for(Pipe::Stderr, "connected state", is_connected_event);
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
