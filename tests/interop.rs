//! Interop in raw mode with third-party WebSocket stacks: the client against
//! a Python `websockets` server and a Node `ws` server (text and binary, a
//! server restart mid-stream, the server's close codes), and `rws serve`
//! answering a Python and a Node client.
//!
//! The peers live in `tests/interop/`; `tests/interop/setup.sh` installs
//! what they need (pip, npm), run once by these tests themselves (and by
//! `.ci/run` up front). If it cannot install, they fail; they never skip.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use common::{ChildGuard, RwsServe};
use resilient_ws::{
    testing::{EventRecorder, RecordedEvent},
    ConnectionState::*,
    Error, Payload, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

// `rws serve` as a child (`RwsServe`).
mod common;

/// The longest any single wait in these tests lasts.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The third-party peers

#[derive(Debug, Clone, Copy)]
enum Stack {
    Python,
    Node,
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The Python with `websockets`: tests/interop/.venv's when setup.sh had to
/// make one (a PEP 668 "externally managed" python3), else python3 on PATH.
fn python() -> PathBuf {
    let venv = interop_dir().join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Python => "python websockets",
            Stack::Node => "node ws",
        }
    }

    /// The interpreter and the script for one of the peers.
    fn command(self, script: &str) -> Command {
        let mut cmd = match self {
            Stack::Python => Command::new(python()),
            Stack::Node => Command::new("node"),
        };
        cmd.arg(interop_dir().join(script));
        cmd
    }

    fn server_script(self) -> &'static str {
        match self {
            Stack::Python => "py_server.py",
            Stack::Node => "node_server.js",
        }
    }

    fn client_script(self) -> &'static str {
        match self {
            Stack::Python => "py_client.py",
            Stack::Node => "node_client.js",
        }
    }

    /// Installs the peers on first use (tests/interop/setup.sh, once per
    /// test run), so `cargo test` works on a fresh machine; fails (never
    /// skips) when they cannot be installed.
    fn require_installed(self) {
        static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        let setup = SETUP.get_or_init(|| {
            let out = Command::new("bash")
                .arg(interop_dir().join("setup.sh"))
                .output()
                .map_err(|e| format!("cannot run setup.sh: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "tests/interop/setup.sh failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        });
        if let Err(e) = setup {
            panic!("{e}");
        }
        const HINT: &str = "run `bash tests/interop/setup.sh` and see what it says";
        match self {
            Stack::Python => {
                let out = Command::new(python())
                    .args(["-c", "import websockets"])
                    .output();
                match out {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => panic!(
                        "the Python `websockets` module is not installed ({}): {HINT}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => panic!("{} cannot be run ({e}): {HINT}", python().display()),
                }
            }
            Stack::Node => {
                let ws = interop_dir().join("node_modules/ws/package.json");
                assert!(
                    ws.exists(),
                    "the Node `ws` package is not installed ({} is missing): {HINT}",
                    ws.display()
                );
                if let Err(e) = Command::new("node").arg("--version").output() {
                    panic!("node cannot be run ({e}): {HINT}");
                }
            }
        }
    }
}

/// A third-party peer's process, killed (and reaped) when dropped (its
/// `ChildGuard`). Its output is read by threads: its stdout's lines come
/// through `lines`, its stderr is passed to the test's stderr.
struct Peer {
    child: ChildGuard,
    what: String,
    lines: std_mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(mut cmd: Command, what: String) -> Peer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        );
        let (tx, lines) = std_mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (watched, passed) = (stdout, stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(watched).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let tag = what.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(passed).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
            }
        });
        Peer { child, what, lines }
    }

    /// The next line of the watched stream, waiting up to `timeout`.
    fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{}: no output line within {timeout:?} (exit status: {status:?})",
                    self.what
                )
            }
        }
    }

    /// Kills the process and waits for it to be gone (its port is free):
    /// what dropping its `ChildGuard` does.
    fn kill(self) {
        drop(self);
    }

    /// Waits for the process to exit on its own, up to `timeout`; kills it
    /// and fails if it does not.
    async fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The reader thread ends with the pipe; collect what it read.
                let mut lines = Vec::new();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    lines.push(l);
                }
                return (status, lines);
            }
            if Instant::now() > deadline {
                let what = self.what.clone();
                drop(self);
                panic!("{what}: did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A third-party echo server (see tests/interop/py_server.py and
/// node_server.js).
struct EchoServer {
    stack: Stack,
    port: u16,
    peer: Peer,
}

impl EchoServer {
    /// Starts one on a free port (`None`) or on `port`.
    fn start(stack: Stack, port: Option<u16>) -> EchoServer {
        stack.require_installed();
        let mut cmd = stack.command(stack.server_script());
        if let Some(p) = port {
            cmd.arg(p.to_string());
        }
        let what = format!("{} server", stack.name());
        let mut peer = Peer::spawn(cmd, what.clone());
        let line = peer.next_line(WAIT);
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: first line is not a port: {line:?}"));
        EchoServer { stack, port, peer }
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// Kills the process: every connection ends without a Close frame.
    fn kill(self) -> (Stack, u16) {
        let (stack, port) = (self.stack, self.port);
        self.peer.kill();
        (stack, port)
    }
}

// ---------------------------------------------------------------------------
// The client side

fn client(url: String) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateless)
        .reconnect_delays(Duration::from_millis(50), Duration::from_millis(200), 0)
        .heartbeat(Duration::from_millis(200), Some(Duration::from_secs(1)))
        .connection_timeout(Duration::from_secs(5))
        .close_timeout(Duration::from_secs(2))
}

fn text(s: &str) -> Payload {
    Payload::from(s)
}

fn binary(b: &[u8]) -> Payload {
    Payload::from(b)
}

async fn text_and_binary_round_trip(stack: Stack) {
    let server = EchoServer::start(stack, None);
    let rec = EventRecorder::start();
    let ws = rec
        .attach(client(server.ws_url()))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the {} server: {e}", stack.name()));

    let sent = vec![
        text("hello, interop"),
        binary(&[0, 1, 2, 0xfe, 0xff]),
        text("héllo ✓ – utf-8"),
        binary(&[]),
        text(""),
        binary(&vec![0x5a; 70_000]), // over 64 KiB: the 8-byte length form
    ];
    for p in &sent {
        ws.send(p.clone()).await.unwrap();
    }
    let got = rec.wait_messages(sent.len(), WAIT).await;
    assert_eq!(got, sent, "echoed unchanged, types preserved, in order");

    // Heartbeats are answered: the link stays up well past the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ws.state(), Connected);
    assert!(rec.reconnecting().is_empty(), "{:?}", rec.reconnecting());
    assert!(
        ws.stats().last_rtt.is_some(),
        "pongs seen: {:?}",
        ws.stats()
    );

    ws.disconnect().await.unwrap();
    assert_eq!(ws.state(), Disconnected);
    let closed = rec.closed();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].by_us && closed[0].error.is_none(), "{closed:?}");
}

#[actix_rt::test]
async fn python_websockets_echoes_text_and_binary() {
    text_and_binary_round_trip(Stack::Python).await;
}

#[actix_rt::test]
async fn node_ws_echoes_text_and_binary() {
    text_and_binary_round_trip(Stack::Node).await;
}

async fn restart_mid_stream(stack: Stack) {
    let first = EchoServer::start(stack, None);
    let rec = EventRecorder::start();
    let ws = rec.attach(client(first.ws_url())).connect().await.unwrap();
    ws.send("before").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await, vec![text("before")]);

    let (stack, port) = first.kill();
    assert!(
        rec.wait_state(Reconnecting, WAIT).await,
        "the client noticed the dead server: {:?}",
        rec.events()
    );
    // Sent while the server is down: buffered, delivered in order on return.
    let mut expected = vec![text("before")];
    for i in 0..20 {
        let p = if i % 2 == 0 {
            text(&format!("during {i}"))
        } else {
            binary(format!("during {i}").as_bytes())
        };
        ws.send(p.clone()).await.unwrap();
        expected.push(p);
    }
    // A few refused attempts happen before the server is back (the first
    // Reconnecting is the loss, each next one a refused attempt).
    let refused = rec
        .wait_until(WAIT, |events| {
            let n = events
                .iter()
                .filter(|e| matches!(e, RecordedEvent::Reconnecting(_)))
                .count();
            (n >= 3).then_some(n)
        })
        .await;
    assert!(refused.is_some(), "{:?}", rec.events());
    assert_eq!(rec.messages().len(), 1, "nothing echoed while down");
    let _second = EchoServer::start(stack, Some(port));
    assert!(
        rec.wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnected(_)))
            .await
            .is_some(),
        "reconnected to the restarted server: {:?}",
        rec.events()
    );
    ws.send("after").await.unwrap();
    expected.push(text("after"));
    let got = rec.wait_messages(expected.len(), WAIT).await;
    assert_eq!(got, expected, "in order, none lost");
    // None twice: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.messages().len(), expected.len(), "none twice");
    assert_eq!(ws.stats().reconnects, 1, "{:?}", ws.stats());
    assert_eq!(ws.state(), Connected);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn python_websockets_restart_mid_stream_delivers_the_buffered_messages() {
    restart_mid_stream(Stack::Python).await;
}

#[actix_rt::test]
async fn node_ws_restart_mid_stream_delivers_the_buffered_messages() {
    restart_mid_stream(Stack::Node).await;
}

/// Connects, asks the server to close with `code`, and returns the client
/// and its recorder once the Close arrived.
async fn server_closes_with(
    stack: Stack,
    code: u16,
) -> (EchoServer, ResilientWebSocket, EventRecorder) {
    let server = EchoServer::start(stack, None);
    let rec = EventRecorder::start();
    let ws = rec.attach(client(server.ws_url())).connect().await.unwrap();
    ws.send(format!("close:{code}")).await.unwrap();
    let closed = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Closed(_)))
        .await;
    let Some(RecordedEvent::Closed(closed)) = closed else {
        panic!(
            "{}: no Closed event for {code}: {:?}",
            stack.name(),
            rec.events()
        );
    };
    assert_eq!(closed.code, Some(code), "{closed:?}");
    assert!(!closed.by_us, "{closed:?}");
    (server, ws, rec)
}

async fn normal_close_is_final(stack: Stack) {
    let (_server, ws, rec) = server_closes_with(stack, 1000).await;
    assert!(
        rec.wait_state(Disconnected, WAIT).await,
        "{:?}",
        rec.events()
    );
    // Give a wrong reconnect time to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rec.reconnecting().is_empty(), "{:?}", rec.reconnecting());
    assert_eq!(rec.states(), vec![Connecting, Connected, Disconnected]);
    assert_eq!(ws.state(), Disconnected);
    assert!(rec.closed()[0].error.is_none(), "{:?}", rec.closed());
}

async fn abnormal_close_reconnects(stack: Stack, code: u16) {
    let (_server, ws, rec) = server_closes_with(stack, code).await;
    let reconnecting = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnecting(_)))
        .await;
    let Some(RecordedEvent::Reconnecting(r)) = reconnecting else {
        panic!("no Reconnecting after {code}: {:?}", rec.events());
    };
    assert_eq!(r.reason.close_code(), Some(code), "{r:?}");
    assert!(
        matches!(&r.reason, Error::Closed { code: c, .. } if *c == code),
        "{r:?}"
    );
    assert!(
        rec.wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnected(_)))
            .await
            .is_some(),
        "no Reconnected after {code}: {:?}",
        rec.events()
    );
    assert_eq!(ws.state(), Connected);
    // And the new socket works.
    ws.send("back").await.unwrap();
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got, vec![text("back")]);
    ws.disconnect().await.unwrap();
}

async fn policy_violation_is_terminal(stack: Stack) {
    let (_server, ws, rec) = server_closes_with(stack, 1008).await;
    assert!(
        rec.wait_state(Disconnected, WAIT).await,
        "{:?}",
        rec.events()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ws.state(), Disconnected);
    let errors = rec.errors();
    let last = errors.last().expect("an error was reported");
    assert!(
        matches!(last, Error::GaveUp { last, .. } if last.close_code() == Some(1008)),
        "GaveUp with the 1008 close as its last error: {last:?} (all: {errors:?})"
    );
    // Terminal at once: no reconnect attempt is announced or made, and the
    // state goes straight to Disconnected, never through Reconnecting.
    assert!(rec.reconnecting().is_empty(), "{:?}", rec.reconnecting());
    let states = rec.states();
    assert!(!states.contains(&Reconnecting), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == Connected).count(),
        1,
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&Disconnected), "{states:?}");
    assert!(
        matches!(
            last,
            Error::GaveUp {
                attempts: 0 | 1,
                ..
            }
        ),
        "{last:?}"
    );
}

#[actix_rt::test]
async fn python_websockets_close_1000_is_final() {
    normal_close_is_final(Stack::Python).await;
}

#[actix_rt::test]
async fn node_ws_close_1000_is_final() {
    normal_close_is_final(Stack::Node).await;
}

#[actix_rt::test]
async fn python_websockets_close_1001_reconnects() {
    abnormal_close_reconnects(Stack::Python, 1001).await;
}

#[actix_rt::test]
async fn node_ws_close_1001_reconnects() {
    abnormal_close_reconnects(Stack::Node, 1001).await;
}

#[actix_rt::test]
async fn python_websockets_close_1011_reconnects() {
    abnormal_close_reconnects(Stack::Python, 1011).await;
}

#[actix_rt::test]
async fn node_ws_close_1011_reconnects() {
    abnormal_close_reconnects(Stack::Node, 1011).await;
}

#[actix_rt::test]
async fn python_websockets_close_1008_gives_up() {
    policy_violation_is_terminal(Stack::Python).await;
}

#[actix_rt::test]
async fn node_ws_close_1008_gives_up() {
    policy_violation_is_terminal(Stack::Node).await;
}

// ---------------------------------------------------------------------------
// `rws serve` answering third-party clients

async fn rws_serve_answers(stack: Stack) {
    stack.require_installed();
    let server = RwsServe::start_async("127.0.0.1:0", &["--echo"]).await;
    let url = &server.url;
    let mut cmd = stack.command(stack.client_script());
    cmd.arg(url);
    let client = Peer::spawn(cmd, format!("{} client", stack.name()));
    let (status, out) = client.wait_exit(WAIT + Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "{} client against {url}: {status}, stdout {out:?}",
        stack.name()
    );
    assert_eq!(out, vec!["OK".to_string()]);
}

#[actix_rt::test]
async fn rws_serve_answers_a_python_websockets_client() {
    rws_serve_answers(Stack::Python).await;
}

#[actix_rt::test]
async fn rws_serve_answers_a_node_ws_client() {
    rws_serve_answers(Stack::Node).await;
}
