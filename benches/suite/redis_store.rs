//! Sessions in Redis against sessions in memory (issue 13), in the same
//! run: stateful throughput at 64 B and 1 KiB and the stateful round trip
//! (p50, p99) against two reliable echo servers in child processes (two
//! workers each, `RWS_BENCH_SERVER_WORKERS` to change), one with each
//! store, and the Redis commands per message read from
//! `INFO commandstats`. Needs `-F redis` and a `redis-server` on `PATH`
//! (a private one is started on a free port, without persistence); without
//! one the section says so and is skipped.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytestring::ByteString;
use resilient_ws::ReconnectMode;

use super::{
    child::ChildProc,
    plan::{Plan, Report},
    rtt::{pct, rtt_ours},
    tput::tput_ours,
};

/// The commands the store runs only inside its Lua scripts (read from
/// src/server/store/scripts.rs), or only inside a commit's `MULTI`/`EXEC`
/// next to the script (a batch's `XADD`): `INFO commandstats` counts them
/// as well as the `EVALSHA` that ran them, or that the transaction holds,
/// so they are not round trips. `multi` and `exec` are the transaction's
/// frame (its one round trip is counted by its `EVALSHA`).
const SCRIPTED: [&str; 16] = [
    "hmget",
    "hset",
    "hget",
    "hincrby",
    "pexpire",
    "xtrim",
    "xrange",
    "xrevrange",
    "xadd",
    "xdel",
    "exists",
    "time",
    "del",
    "publish",
    "multi",
    "exec",
];

/// A private `redis-server`, killed on drop.
pub(super) struct RedisChild {
    child: Child,
    pub(super) url: String,
}

impl RedisChild {
    pub(super) fn start() -> Option<RedisChild> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = RedisChild {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.query(&mut redis::cmd("PING")).is_none() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(redis)
    }

    fn query(&self, cmd: &mut redis::Cmd) -> Option<String> {
        let client = redis::Client::open(self.url.as_str()).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        cmd.query(&mut c).ok()
    }

    /// Commands Redis ran since the last `CONFIG RESETSTAT`, but for the
    /// ones this bench sends itself.
    /// Also their names and counts, for the log. `INFO commandstats`
    /// counts the commands a script runs too; see [`SCRIPTED`].
    fn calls(&self) -> (Vec<(String, u64)>, String) {
        let info = self
            .query(redis::cmd("INFO").arg("commandstats"))
            .unwrap_or_default();
        let counted: Vec<(&str, u64)> = info
            .lines()
            .filter(|l| !l.starts_with("cmdstat_info:") && !l.starts_with("cmdstat_config"))
            .filter_map(|l| {
                let name = l.strip_prefix("cmdstat_")?.split(':').next()?;
                let calls = l.split("calls=").nth(1)?.split(',').next()?.parse().ok()?;
                Some((name, calls))
            })
            .collect();
        let owned = counted.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        let names = counted
            .iter()
            .map(|(name, calls)| format!("{name} {calls}"))
            .collect::<Vec<_>>()
            .join(", ");
        (owned, names)
    }

    fn reset_stats(&self) {
        let _ = self.query(redis::cmd("CONFIG").arg("RESETSTAT"));
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn bench_redis(plan: &Plan, report: &mut Report) {
    let Some(redis) = RedisChild::start() else {
        eprintln!("redis: no redis-server on PATH (or it did not answer); skipped");
        return;
    };
    // Both servers are child processes with the workers `rws serve` runs
    // here (as the tput section's): in this process a one-worker server
    // would run each session on its socket's thread, and before that on
    // the clients' thread, charging the server's work to the clients.
    let workers = std::env::var("RWS_BENCH_SERVER_WORKERS").unwrap_or_else(|_| "2".into());
    let mut memory = ChildProc::spawn("server", &["0".into(), workers.clone()]);
    let mut in_redis = ChildProc::spawn(
        "server",
        &[
            "0".into(),
            workers,
            "redis".into(),
            redis.url.clone(),
            "rws".into(),
            "bench".into(),
        ],
    );
    let (mem_url, redis_url) = (memory.line(), in_redis.line());
    let n = plan.tput_msgs;
    let stateful = ReconnectMode::Stateful;
    for (label, size) in [("64b", 64usize), ("1k", 1024)] {
        let text = ByteString::from("x".repeat(size));
        let w = (n / 10).max(1000);
        tput_ours(&mem_url, w, &text, stateful).await;
        tput_ours(&redis_url, w, &text, stateful).await;
        // Best of the rounds, interleaved so drift hits both alike; the
        // commands are counted over the last Redis round.
        let mut best = [Duration::MAX; 2];
        let (mut calls, mut names) = (Vec::new(), String::new());
        for _ in 0..plan.tput_rounds {
            best[0] = best[0].min(tput_ours(&mem_url, n, &text, stateful).await);
            redis.reset_stats();
            best[1] = best[1].min(tput_ours(&redis_url, n, &text, stateful).await);
            (calls, names) = redis.calls();
        }
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        let (mem, red) = (rate(best[0]), rate(best[1]));
        report.key(
            &format!("redis_tput_{label}_memory_msgs_per_s"),
            mem.round(),
        );
        report.key(&format!("redis_tput_{label}_redis_msgs_per_s"), red.round());
        report.key(&format!("redis_tput_{label}_ratio"), red / mem);
        report.row(
            &format!("tput {label} stateful, Redis store (msgs/s)"),
            format!("{red:.0}"),
            format!("{mem:.0}"),
            format!("{:.3}", red / mem),
        );
        // Each of the n messages is echoed: 2n messages moved, one way or
        // the other. Round trips: the commands a node sent (the connection's
        // setup, the sweeper and the lease included); all: the commands
        // its scripts ran as well (an XADD per message among them).
        let all: u64 = calls.iter().map(|(_, c)| c).sum();
        let trips: u64 = calls
            .iter()
            .filter(|(name, _)| !SCRIPTED.contains(&name.as_str()))
            .map(|(_, c)| c)
            .sum();
        let per_msg = |c: u64| c as f64 / (2 * n) as f64;
        report.key(
            &format!("redis_round_trips_per_msg_{label}"),
            per_msg(trips),
        );
        report.key(&format!("redis_cmds_per_msg_{label}"), per_msg(all));
        report.row(
            &format!("Redis round trips per message {label}"),
            format!("{:.4}", per_msg(trips)),
            String::new(),
            String::new(),
        );
        report.row(
            &format!("Redis commands per message {label} (in scripts too)"),
            format!("{:.4}", per_msg(all)),
            String::new(),
            String::new(),
        );
        eprintln!("redis throughput {label}: done ({all} commands for {n} echoed: {names})");
    }
    let (w, trips) = (plan.rtt_warmup, plan.rtt_trips);
    let mem = rtt_ours(&mem_url, w, trips, stateful).await;
    let red = rtt_ours(&redis_url, w, trips, stateful).await;
    for (p, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (m, r) = (pct(&mem, q), pct(&red, q));
        report.key(&format!("redis_rtt_{p}_memory_us"), m);
        report.key(&format!("redis_rtt_{p}_redis_us"), r);
        report.row(
            &format!("rtt {p} stateful, Redis store (µs)"),
            format!("{r:.1}"),
            format!("{m:.1}"),
            format!("{:+.1}µs", r - m),
        );
    }
    memory.finish();
    in_redis.finish();
    eprintln!("redis: done");
}
