//! Idle memory per connection, client and server, in child processes.

use super::{
    child::ChildProc,
    plan::{Plan, Report},
};

/// Client and server KiB per idle connection of `kind`, at `n` connections.
pub(super) fn idle_memory(kind: &str, n: usize) -> (f64, f64) {
    let mut server = ChildProc::spawn("server", &[]);
    let url = server.line();
    let mut client = ChildProc::spawn("client", &[kind.into(), n.to_string(), url]);
    assert_eq!(client.line(), "ready");
    server.say("rss");
    let server_before: f64 = server.line().parse().unwrap();
    client.say("go");
    let held = client.line();
    let (before, after) = held.split_once(' ').unwrap();
    let (before, after): (f64, f64) = (before.parse().unwrap(), after.parse().unwrap());
    server.say("rss");
    let server_after: f64 = server.line().parse().unwrap();
    client.finish();
    server.finish();
    (
        (after - before) / n as f64,
        (server_after - server_before) / n as f64,
    )
}

pub(super) fn bench_memory(plan: &Plan, report: &mut Report) {
    // Each connection costs the client one descriptor and the server one
    // (in another process), so N must stay below `ulimit -n` of each.
    let limit = fd_limit();
    for &n in &plan.idle_conns {
        if limit.is_some_and(|l| n + 64 > l) {
            eprintln!("memory: skipping {n} connections: `ulimit -n` is {limit:?}");
            report.row(
                &format!("idle {n} (skipped: ulimit -n)"),
                String::new(),
                String::new(),
                String::new(),
            );
            continue;
        }
        let (base, base_srv) = idle_memory("baseline", n);
        let (raw, raw_srv) = idle_memory("raw", n);
        let (stateful, stateful_srv) = idle_memory("stateful", n);
        // The ratios and keys without a count suffix use the first size.
        let first = n == plan.idle_conns[0];
        for (name, v, srv) in [("raw", raw, raw_srv), ("stateful", stateful, stateful_srv)] {
            if first {
                report.key(&format!("idle_rss_kib_{name}"), v);
                report.key(&format!("idle_rss_kib_{name}_over_baseline"), v - base);
            }
            report.key(&format!("idle_rss_kib_{name}_at_{n}"), v);
            report.key(&format!("server_rss_kib_per_session_{name}_at_{n}"), srv);
            report.row(
                &format!("idle client KiB/conn {name} @{n}"),
                format!("{v:.1}"),
                format!("{base:.1}"),
                format!("{:+.1}KiB", v - base),
            );
            report.row(
                &format!("server KiB/session {name} @{n}"),
                format!("{srv:.1}"),
                format!("{base_srv:.1}"),
                format!("{:+.1}KiB", srv - base_srv),
            );
        }
        if first {
            report.key("idle_rss_kib_baseline", base);
            report.key("idle_conns", n as f64);
        }
        report.key(&format!("idle_rss_kib_baseline_at_{n}"), base);
        report.key(
            &format!("server_rss_kib_per_session_baseline_at_{n}"),
            base_srv,
        );
        eprintln!("memory {n}: done");
    }
}

/// The soft `ulimit -n`, read from /proc (no libc dependency needed).
pub(super) fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
