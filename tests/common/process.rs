//! Child processes: a guard that kills and reaps, and `rws serve` as a
//! child (its binary exists when the `cli` feature is on; a test that
//! starts one says so with `required-features`).

use std::{
    io::{BufRead, BufReader},
    ops::{Deref, DerefMut},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
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

/// A signal [`signal`] sends to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL: a crash, nothing is cleaned up.
    Kill,
    /// SIGTERM: a graceful stop (`rws serve` drains and says 1012).
    Term,
    /// SIGSTOP: a pause (a long GC, a VM migration): sockets stay open,
    /// nothing is read or written until SIGCONT.
    Stop,
    /// SIGCONT: the end of a SIGSTOP pause.
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Term => "TERM",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// Sends `sig` to the process `pid` with the `kill` command (no crate for
/// signals); panics if `kill` fails (the process is gone, say).
pub fn signal(pid: u32, sig: Signal) {
    let status = Command::new("kill")
        .args(["-s", sig.name(), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {} {pid} failed", sig.name());
}

/// `rws serve` as a child process, killed on drop.
pub struct RwsServe {
    /// The process.
    pub child: ChildGuard,
    /// What it listens on: `ws://ADDR/ws`.
    pub url: String,
    /// What it was started with, so [`RwsServe::restart`] can start it
    /// again the same way on the same address.
    spec: ServeSpec,
    /// Its stderr lines so far (this run's).
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How an `rws serve` was started: arguments after `--bind ADDR`, and
/// environment variables added to the test's (whose `RUST_LOG` and
/// `RWS_TOKEN` are removed first).
#[derive(Debug, Clone, Default)]
pub struct ServeSpec {
    /// The arguments after `serve --bind ADDR`.
    pub args: Vec<String>,
    /// Environment variables set for it (`RUST_LOG`, say).
    pub env: Vec<(String, String)>,
}

impl ServeSpec {
    /// A spec with these arguments and no environment.
    pub fn new<S: AsRef<str>>(args: &[S]) -> ServeSpec {
        ServeSpec {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Sets `name=value` in its environment.
    pub fn env(mut self, name: &str, value: &str) -> ServeSpec {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl RwsServe {
    /// Starts `rws serve --bind ADDR ARGS...` and waits for its
    /// `listening on` line; `Err` with its stderr if it exited first (the
    /// port is still taken, say). Its stderr is drained to the end, so it
    /// never blocks on a full pipe.
    pub fn try_start(addr: &str, args: &[&str]) -> Result<RwsServe, String> {
        Self::try_start_spec(addr, &ServeSpec::new(args))
    }

    /// [`RwsServe::try_start`] with a [`ServeSpec`] (arguments and
    /// environment). Its stderr lines are kept: see [`RwsServe::stderr`].
    pub fn try_start_spec(addr: &str, spec: &ServeSpec) -> Result<RwsServe, String> {
        let mut child = ChildGuard(
            rws_command()
                .args(["serve", "--bind", addr])
                .args(&spec.args)
                // Its output and its token are the test's arguments' alone.
                .env_remove("RUST_LOG")
                .env_remove("RWS_TOKEN")
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rws serve"),
        );
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = lines.clone();
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
                if tx.is_some() {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(seen));
            }
        });
        match rx.recv_timeout(STEP) {
            Ok(Ok(url)) => Ok(RwsServe {
                child,
                url,
                spec: spec.clone(),
                stderr: lines,
            }),
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
        Self::start_spec(addr, &ServeSpec::new(args))
    }

    /// [`RwsServe::start`] with a [`ServeSpec`].
    pub fn start_spec(addr: &str, spec: &ServeSpec) -> RwsServe {
        let deadline = Instant::now() + STEP;
        loop {
            match Self::try_start_spec(addr, spec) {
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

/// Signals and restarts, for the tests of a cluster of `rws serve` nodes.
impl RwsServe {
    /// [`RwsServe::start_spec`] off this thread, so the actors of the
    /// test's own System keep running meanwhile.
    pub async fn start_spec_async(addr: &str, spec: &ServeSpec) -> RwsServe {
        let (addr, spec) = (addr.to_owned(), spec.clone());
        tokio::task::spawn_blocking(move || Self::start_spec(&addr, &spec))
            .await
            .unwrap()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: Signal) {
        signal(self.child.id(), sig);
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// SIGKILL, and waits (bounded) until the process is gone: a crash.
    pub async fn kill_hard(&mut self) -> ExitStatus {
        self.signal(Signal::Kill);
        self.wait_exit().await
    }

    /// Starts it again on the same address with the same arguments and
    /// environment, once the old process is gone (it must have exited or
    /// been killed: this waits for that, bounded), retrying while the port
    /// is still taken. The stderr kept from here on is the new run's.
    pub async fn restart(&mut self) {
        self.wait_exit().await;
        let fresh = Self::start_spec_async(self.addr(), &self.spec).await;
        *self = fresh;
    }

    /// Its stderr lines so far (of this run).
    pub fn stderr(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The `SocketAddr` it listens on.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        self.addr()
            .parse()
            .expect("rws serve printed a socket address")
    }
}
