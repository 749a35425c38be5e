//! Child processes: a guard that kills and reaps, and `rws serve` as a
//! child (its binary exists when the `cli` feature is on; a test that
//! starts one says so with `required-features`).

use std::{
    io::{BufRead, BufReader},
    ops::{Deref, DerefMut},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::STEP;

/// A child process (an `rws` the test started) that is killed and reaped
/// when dropped, so a failing test leaves no process behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The `rws` binary. Looked up when used, not at compile time, so the test
/// files that never start it build without the `cli` feature.
pub fn rws_command() -> Command {
    // Not `env!`: that would fail to compile every test file that declares
    // `mod common` when the binary is not built (the `cli` feature off).
    let Some(bin) = option_env!("CARGO_BIN_EXE_rws") else {
        panic!("this test needs the rws binary: run it with the `cli` feature");
    };
    Command::new(bin)
}

/// Waits (up to `limit`) for `child` to exit, off any async runtime; `None`
/// if it is still running then (the caller decides how to fail, with what
/// it knows of the child).
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `rws serve` as a child process, killed on drop.
pub struct RwsServe {
    /// The process.
    pub child: ChildGuard,
    /// What it listens on: `ws://ADDR/ws`.
    pub url: String,
}

impl RwsServe {
    /// Starts `rws serve --bind ADDR ARGS...` and waits for its
    /// `listening on` line; `Err` with its stderr if it exited first (the
    /// port is still taken, say). Its stderr is drained to the end, so it
    /// never blocks on a full pipe.
    pub fn try_start(addr: &str, args: &[&str]) -> Result<RwsServe, String> {
        let mut child = ChildGuard(
            rws_command()
                .args(["serve", "--bind", addr])
                .args(args)
                // Its output and its token are the test's arguments' alone.
                .env_remove("RUST_LOG")
                .env_remove("RWS_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rws serve"),
        );
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(url.trim().to_owned()));
                    }
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(seen));
            }
        });
        match rx.recv_timeout(STEP) {
            Ok(Ok(url)) => Ok(RwsServe { child, url }),
            Ok(Err(stderr)) => {
                let _ = child.wait();
                Err(stderr)
            }
            Err(_) => panic!("rws serve printed no address in time"),
        }
    }

    /// Starts `rws serve` on `addr`, retrying while the port is still
    /// taken (a restart on the same port).
    pub fn start(addr: &str, args: &[&str]) -> RwsServe {
        let deadline = Instant::now() + STEP;
        loop {
            match Self::try_start(addr, args) {
                Ok(s) => return s,
                Err(e) if Instant::now() < deadline && e.contains("cannot listen") => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("rws serve failed:\n{e}"),
            }
        }
    }

    /// [`RwsServe::start`] off this thread, so the actors of the test's
    /// own System keep running meanwhile.
    pub async fn start_async(addr: &str, args: &'static [&'static str]) -> RwsServe {
        let addr = addr.to_owned();
        tokio::task::spawn_blocking(move || Self::start(&addr, args))
            .await
            .unwrap()
    }

    /// The `HOST:PORT` it listens on.
    pub fn addr(&self) -> &str {
        let rest = self.url.strip_prefix("ws://").unwrap_or(&self.url);
        rest.strip_suffix("/ws").unwrap_or(rest)
    }

    /// Waits (up to `limit`) for the process to exit, blocking this thread
    /// (for the tests without an actix System); panics after `limit`.
    pub fn wait_exit_blocking(&mut self, limit: Duration) -> ExitStatus {
        wait_child(&mut self.child, limit)
            .unwrap_or_else(|| panic!("rws serve did not exit within {limit:?}"))
    }

    /// Waits (bounded) for the process to exit; its status. Async: the
    /// test's System goes on running meanwhile.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "rws serve did not exit in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
