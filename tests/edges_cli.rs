//! The `rws` binary at the edges: a line longer than the server accepts.
//!
//! Reproduces the reported case end to end: a stateful `rws connect`
//! through `rws serve --echo` with a line over the server's message size
//! limit used to reconnect about eight times a second forever (the server
//! closed with 1009, the client replayed the line) and delivered nothing
//! after it. Now the line is reported as not sent and the others flow.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

const TIMEOUT: Duration = Duration::from_secs(20);

fn rws() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rws"));
    cmd.env_remove("RUST_LOG").env_remove("RWS_TOKEN");
    cmd
}

/// Kills the child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rws serve --bind 127.0.0.1:0 ARGS...`, once it prints its URL.
fn serve(args: &[&str]) -> (ChildGuard, String) {
    let mut child = ChildGuard(
        rws()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rws serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the URL so the server never blocks on a
            // full pipe.
            if let Some(url) = line.strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.to_string());
                }
            }
        }
    });
    let url = rx.recv_timeout(TIMEOUT).expect("rws serve printed its URL");
    (child, url)
}

fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

#[test]
fn a_line_over_the_servers_limit_is_reported_and_the_rest_is_delivered() {
    let (_server, url) = serve(&["--echo", "--max-message-size", "1000"]);
    for mode in ["stateful", "none"] {
        let mut cmd = rws();
        cmd.args(["connect", &url, "--mode", mode]);
        if mode == "none" {
            // Raw mode knows the peer's limit only when told.
            cmd.args(["--max-outbound-message-size", "1000"]);
        }
        let mut child = ChildGuard(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn rws connect"),
        );
        let stdout = read_all(child.0.stdout.take().unwrap());
        let stderr = read_all(child.0.stderr.take().unwrap());
        let mut stdin = child.0.stdin.take().unwrap();
        let long = "x".repeat(2000);
        write!(stdin, "before\n{long}\nafter\n").unwrap();
        drop(stdin);
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{mode}: rws connect did not finish (reconnecting forever?)"
            );
            thread::sleep(Duration::from_millis(20));
        };
        let out = stdout.recv_timeout(TIMEOUT).unwrap();
        let err = stderr.recv_timeout(TIMEOUT).unwrap();
        assert!(status.success(), "{mode}: {status}\n{err}");
        assert_eq!(out, "before\nafter\n", "{mode}: stderr:\n{err}");
        assert!(
            err.contains("line 2 not sent") && err.contains("exceeds the limit"),
            "{mode}: {err}"
        );
        assert!(!err.contains("reconnecting"), "{mode}: {err}");
    }
}
