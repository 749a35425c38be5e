//! The bench's child processes: this binary re-run in a role
//! (`RWS_BENCH_ROLE`), driven over its stdin/stdout.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// Re-runs this binary in a role; its stdin/stdout are the control channel.
pub(super) struct ChildProc {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: BufReader<ChildStdout>,
}

impl ChildProc {
    pub(super) fn spawn(role: &str, args: &[String]) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env("RWS_BENCH_ROLE", role)
            .env("RWS_BENCH_ARGS", args.join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        ChildProc {
            child,
            stdin,
            stdout,
        }
    }

    pub(super) fn say(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    pub(super) fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("child output");
        assert!(!l.is_empty(), "child exited early");
        l.trim().to_string()
    }

    /// Closing stdin tells the child to exit.
    pub(super) fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
