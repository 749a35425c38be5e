//! The benchmark suite: throughput, round-trip latency, idle memory and
//! recovery, each measured in the same run as a raw awc baseline against
//! the same server, so ratios compare like with like on whatever machine
//! runs it.
//!
//! `cargo bench --bench suite` runs the full suite; `RWS_BENCH_QUICK=1`
//! runs every case briefly (a smoke test); `RWS_BENCH_JSON=path` also
//! writes the figures as one flat JSON object; `RWS_BENCH_ONLY=tput,rtt`
//! runs only the named sections (memory, tput, rtt, recovery, storm,
//! scale, and with `-F redis` redis: the Redis session store against
//! memory, and failover: two Redis-backed nodes, one killed);
//! `RWS_BENCH_SERVER=inproc` runs throughput and latency against a server
//! in this process instead of a child process, `RWS_BENCH_SERVER_WORKERS=N`
//! gives that child N actix-web workers (default 2). Figures and how they were
//! read: docs/PERFORMANCE.md.
//!
//! To profile, build with debug info in the `profiling` profile (release
//! plus line tables; the release profile itself carries none) and run one
//! case alone (`role_tput`):
//! `cargo bench --profile profiling --bench suite --no-run`, then
//! `RWS_BENCH_ROLE=tput RWS_BENCH_ARGS="stateful 64 200000" valgrind
//! --tool=callgrind target/profiling/deps/suite-<hash>` (or `perf record -g`).
//!
//! The memory and reconnect-storm figures come from child processes (this
//! same binary, re-run with `RWS_BENCH_ROLE` set): one runs the server, one
//! holds the idle client connections. That keeps the client's and the server's resident
//! memory apart and keeps each measurement free of the allocator's
//! leftovers from earlier cases (freed memory that glibc keeps would
//! otherwise be reused and make later cases look cheaper).

//!
//! One module per measured section (`tput.rs`, `rtt.rs`, `memory.rs`,
//! `recovery.rs`, `storm.rs`, `scale.rs`) in `benches/suite/`, beside what they share:
//! `plan.rs` (sizes and the report), `clients.rs` (baselines and our client),
//! `roles.rs` (the child processes).

mod child;
mod clients;
// Shared with benches/durable.rs.
#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "redis")]
mod failover;
mod memory;
mod plan;
mod recovery;
#[cfg(feature = "redis")]
mod redis_store;
mod roles;
mod rtt;
mod scale;
mod storm;
mod tput;
mod tungstenite;

use std::time::Instant;

use resilient_ws::{server::ServerOptions, testing::TestServer};

use self::{
    child::ChildProc,
    memory::bench_memory,
    plan::{Plan, Report},
    recovery::bench_recovery,
    roles::{role_client, role_server},
    rtt::bench_rtt,
    scale::{bench_scale, role_scale},
    storm::bench_storm,
    tput::{bench_throughput, role_tput},
};

fn main() {
    match std::env::var("RWS_BENCH_ROLE").as_deref() {
        Ok("server") => return role_server(&std::env::var("RWS_BENCH_ARGS").unwrap_or_default()),
        Ok("client") => return role_client(&std::env::var("RWS_BENCH_ARGS").unwrap()),
        Ok("tput") => return role_tput(&std::env::var("RWS_BENCH_ARGS").unwrap()),
        Ok("scale") => return role_scale(&std::env::var("RWS_BENCH_ARGS").unwrap()),
        _ => {}
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    let mut report = Report::default();
    eprintln!(
        "resilient-ws bench suite ({} mode)",
        if plan.quick { "quick" } else { "full" }
    );
    // Memory first and out of process, so nothing else here affects it.
    if plan.runs("memory") {
        bench_memory(&plan, &mut report);
    }
    // Out of process too: a server child per worker count, two client
    // children.
    if plan.runs("scale") {
        bench_scale(&plan, &mut report);
    }
    let mut report = actix_rt::System::new().block_on(async move {
        // One reliable echo server answers every client: plain clients
        // (baselines, raw mode) get a plain echo, stateful ones the protocol.
        let (server, _reliable) =
            TestServer::reliable_echo(ServerOptions::default()).expect("server");
        // Throughput and latency are measured against the same server code
        // in a child process, as a deployment has it: in this process its
        // session actors would run on the clients' thread, so the server's
        // protocol work would be charged to the stateful client (and not to
        // the baselines, whose plain echo runs on the server's worker).
        // `RWS_BENCH_SERVER=inproc` measures that arrangement instead.
        let inproc = std::env::var("RWS_BENCH_SERVER").is_ok_and(|v| v == "inproc");
        // Two workers unless `RWS_BENCH_SERVER_WORKERS` says otherwise: what
        // `rws serve` runs on a 2-core machine. With one, a session runs on
        // its socket's thread (one worker is one thread); with two, a
        // stream's socket and session run on two threads.
        let workers = std::env::var("RWS_BENCH_SERVER_WORKERS").unwrap_or_else(|_| "2".into());
        report.key("server_workers", workers.parse().unwrap_or(0.0));
        // Uncounted: the storm counter (a `MessageReceived` subscriber on
        // the child's main thread) would add a hop to a third thread per
        // message that `rws serve` does not have (docs/PERFORMANCE.md).
        let mut child = (!inproc && (plan.runs("tput") || plan.runs("rtt")))
            .then(|| ChildProc::spawn("server", &["0".into(), workers, "uncounted".into()]));
        let url = match child.as_mut() {
            Some(c) => c.line(),
            None => server.ws_url(),
        };
        report.key("server_in_process", if child.is_some() { 0.0 } else { 1.0 });
        if plan.runs("tput") {
            bench_throughput(&plan, &url, &mut report).await;
        }
        if plan.runs("rtt") {
            bench_rtt(&plan, &url, &mut report).await;
        }
        if let Some(c) = child {
            c.finish();
        }
        #[cfg(feature = "redis")]
        if plan.runs("redis") {
            redis_store::bench_redis(&plan, &mut report).await;
        }
        if plan.runs("recovery") {
            bench_recovery(&plan, &server, &mut report).await;
        }
        server.stop().await;
        if plan.runs("storm") {
            bench_storm(&plan, &mut report).await;
        }
        #[cfg(feature = "redis")]
        if plan.runs("failover") {
            failover::bench_failover(&plan, &mut report).await;
        }
        report
    });
    report.key("suite_seconds", started.elapsed().as_secs_f64());
    report.print();
    report.write_json();
    // Lost messages are a correctness failure, not a slow figure: fail the
    // run (CI's quick run included) after the table is out.
    for key in [
        "storm_lost",
        "failover_lost_or_doubled",
        "redis_storm_lost_or_doubled",
    ] {
        if report.json.get(key).is_some_and(|&l| l > 0.0) {
            eprintln!("{key}: messages were lost or doubled (see the table)");
            std::process::exit(1);
        }
    }
}
