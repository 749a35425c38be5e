//! One `rws serve --redis` node of `rws demo --redis`: a child process of
//! this same binary, on an address it keeps across a restart, its stderr
//! passed on line by line with its name in front.

use std::{
    io::{self, BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a node may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a restart keeps trying while the old process's port is still
/// being released.
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node is started with, kept for its restart.
#[derive(Debug, Clone)]
pub(super) struct NodeSpec {
    /// This binary.
    pub(super) exe: PathBuf,
    /// `--node-id`, and the prefix of its stderr lines.
    pub(super) name: String,
    /// The arguments after `serve --bind ADDR --node-id NAME`.
    pub(super) args: Vec<String>,
}

/// A running node; killed and reaped when dropped, so the demo never
/// leaves one behind.
pub(super) struct Node {
    spec: NodeSpec,
    child: Child,
    /// `HOST:PORT` it listens on (the same after a restart).
    addr: String,
}

impl Node {
    /// Starts the node on `bind` (port 0: a free one) and waits for its
    /// `listening on` line. Blocking: call it off the actix arbiter.
    ///
    /// # Errors
    /// If it cannot be spawned, or exits (or stays silent) before it
    /// listens: the error holds what it printed.
    pub(super) fn start(spec: NodeSpec, bind: &str) -> io::Result<Node> {
        let mut child = Command::new(&spec.exe)
            .args(["serve", "--bind", bind, "--node-id", &spec.name])
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let Some(stderr) = child.stderr.take() else {
            return Err(io::Error::other("no stderr pipe"));
        };
        let (tx, rx) = mpsc::channel();
        let name = spec.name.clone();
        thread::spawn(move || {
            let mut ready = Some(tx);
            let mut early = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                say!("[node {name}] {line}");
                if let Some(url) = line.strip_prefix("listening on ") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(url.trim().to_owned()));
                    }
                } else if ready.is_some() {
                    early.push_str(&line);
                    early.push('\n');
                }
            }
            if let Some(tx) = ready {
                let _ = tx.send(Err(early));
            }
        });
        let fail = |child: &mut Child, why: String| {
            let _ = child.kill();
            let _ = child.wait();
            io::Error::other(why)
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(url)) => {
                let rest = url.strip_prefix("ws://").unwrap_or(&url);
                let addr = rest.strip_suffix("/ws").unwrap_or(rest).to_owned();
                Ok(Node { spec, child, addr })
            }
            Ok(Err(printed)) => Err(fail(
                &mut child,
                format!("node {} did not start: {}", spec.name, printed.trim()),
            )),
            Err(_) => Err(fail(
                &mut child,
                format!(
                    "node {} printed no address within {} s",
                    spec.name,
                    START_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// `--node-id`.
    pub(super) fn name(&self) -> &str {
        &self.spec.name
    }

    /// `HOST:PORT` it listens on.
    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    /// SIGKILL (a crash: no drain, no close frame), and waits until it is
    /// gone. Blocking.
    pub(super) fn kill(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Starts it again on the same address, retrying while the killed
    /// process's port is not free yet. Blocking.
    ///
    /// # Errors
    /// As [`Node::start`], once [`RESTART_TIMEOUT`] has passed.
    pub(super) fn restart(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match Node::start(self.spec.clone(), &self.addr) {
                Ok(fresh) => {
                    // The old child was reaped by `kill`; dropping it is a
                    // no-op kill.
                    *self = fresh;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline && e.to_string().contains("cannot listen") => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
