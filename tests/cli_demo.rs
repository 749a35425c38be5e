//! `rws demo`: a reliable server, a cutting fault proxy and a stateful
//! client in one process deliver every message once, in order.

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares (`rws serve` as a child,
// a child read line by line, runs with a deadline) are in `common::cli`.
mod common;

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

/// A stdout that fails (here a full disk: /dev/full) is reported like
/// `rws connect` reports it, with exit status 1, not a panic.
#[cfg(target_os = "linux")]
#[test]
fn demo_reports_a_failing_stdout_instead_of_panicking() {
    use std::{io::Read, process::Stdio};

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut cmd = rws();
    cmd.args(["demo", "--messages", "10", "--server-messages", "0"])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn rws demo"));
    let mut stderr = child.0.stderr.take().expect("stderr");
    // The demo's stderr is a few dozen lines: it fits the pipe, so the
    // child cannot block on it before it exits.
    let status = wait_child(&mut child.0, TIMEOUT)
        .unwrap_or_else(|| panic!("rws demo did not exit within {TIMEOUT:?}"));
    let mut err = String::new();
    stderr.read_to_string(&mut err).expect("read stderr");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("rws: writing to stdout: ") && last.contains("No space left"),
        "unclear error: {err}"
    );
}
