//! Helpers shared by the `tests/cli_*.rs` files, which test the `rws`
//! binary end to end: running it with a deadline, `rws serve` as a child on
//! a free port, and a child the test talks to line by line while it runs.
//! Each of those files says `mod common;` and `use common::cli::*;` (not
//! re-exported at `common`'s root: `run`, `Output` and `TIMEOUT` are names
//! other test files use for other things). The child-process basics
//! (`ChildGuard`, the `rws` binary, `rws serve` as a child) are
//! `common::process`'s, shared with the other files that start `rws`.
//!
//! Every wait has a deadline, and every child is killed on drop, so a broken
//! binary fails a test instead of hanging it or leaking processes.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

pub use super::{wait_child, ChildGuard, RwsServe};

/// The longest any one step (a child's run, a server's read) may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The `rws` binary with the environment the output checks assume (the
/// default log level, no token from the environment).
pub fn rws() -> Command {
    let mut cmd = super::rws_command();
    cmd.env_remove("RUST_LOG").env_remove("RWS_TOKEN");
    cmd
}

/// What to do with the child's stdin.
pub enum Input {
    /// Write these bytes, then close stdin (end of input).
    Bytes(Vec<u8>),
    /// Keep stdin open until the child exits, so end of input cannot be what
    /// ends the connection.
    Open,
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with a deadline; panics (after killing it) if it
/// takes longer than [`TIMEOUT`].
pub fn run(mut cmd: Command, input: Input) -> Output {
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
    let Some(status) = wait_child(child, TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        let err = stderr
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        panic!("rws did not exit within {TIMEOUT:?}; stderr:\n{err}");
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

/// `rws serve --echo` on a free port, once it listens.
pub fn start_echo_server() -> RwsServe {
    start_server(&["--echo"])
}

/// `rws serve --bind 127.0.0.1:0 ARGS...`, once it listens, and checks
/// that it printed the port it really got.
pub fn start_server(args: &[&str]) -> RwsServe {
    let server = RwsServe::start("127.0.0.1:0", args);
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

// ---------------------------------------------------------------------------
// A child the test talks to while it runs.

/// Which output pipe of a [`Running`] child.
#[derive(Clone, Copy, Debug)]
pub enum Pipe {
    Stdout,
    Stderr,
}

/// A child whose stdin the test writes on demand and whose stdout and
/// stderr it reads line by line as they come. Killed on drop.
pub struct Running {
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every line read so far, per pipe, for checks and failure messages.
    pub seen_stdout: Vec<String>,
    pub seen_stderr: Vec<String>,
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
    pub fn start(mut cmd: Command) -> Running {
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

    /// [`Running::start`], then waits for its first connected state line
    /// (human or `--json` form): where every `rws connect` test begins.
    pub fn connected(cmd: Command) -> Running {
        let mut child = Running::start(cmd);
        child.wait_for(Pipe::Stderr, "connected state", is_connected_event);
        child
    }

    pub fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to rws: {e}\n{}", self.dump()));
    }

    /// Ends the child's input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Moves the lines that already arrived into `seen_*`.
    pub fn drain(&mut self) {
        while let Ok(l) = self.stdout.try_recv() {
            self.seen_stdout.push(l);
        }
        while let Ok(l) = self.stderr.try_recv() {
            self.seen_stderr.push(l);
        }
    }

    pub fn dump(&mut self) -> String {
        self.drain();
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.seen_stdout.join("\n"),
            self.seen_stderr.join("\n")
        )
    }

    /// Waits (up to [`TIMEOUT`]) for the next line on `pipe` that matches
    /// `pred`, skipping others, and returns it.
    pub fn wait_for(
        &mut self,
        pipe: Pipe,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> String {
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
    pub fn wait_event(&mut self, name: &str) -> serde_json::Value {
        let line = self.wait_for(Pipe::Stderr, &format!("{name:?} event"), |l| {
            event_name(l).as_deref() == Some(name)
        });
        serde_json::from_str(&line).expect("checked above")
    }

    /// Waits (up to `limit`) for the child to exit and for the ends of its
    /// output; returns the status. Kills it and panics after `limit`.
    pub fn finish(&mut self, limit: Duration) -> ExitStatus {
        let Some(status) = wait_child(&mut self.child.0, limit) else {
            let _ = self.child.0.kill();
            panic!("rws did not exit within {limit:?}\n{}", self.dump());
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
    pub fn assert_stdout(&mut self, expected: &[&str]) {
        if self.seen_stdout != expected {
            panic!("expected stdout lines {expected:?}\n{}", self.dump());
        }
    }

    pub fn assert_exit(&mut self, status: ExitStatus, code: i32) {
        if status.code() != Some(code) {
            panic!("expected exit status {code}, got {status}\n{}", self.dump());
        }
    }
}

/// The `"event"` of a `--json` stderr line, if it is one.
pub fn event_name(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("event")?.as_str().map(str::to_string)
}

pub fn is_connected_event(line: &str) -> bool {
    // Human and JSON forms.
    line.ends_with("-> connected") || line.contains("\"current\":\"connected\"")
}

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}
