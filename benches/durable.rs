//! The durable outbox's cost: `send()` throughput and latency of a reliable
//! client whose messages go to a redb store before `send()` returns, next to
//! the same client without a store, measured in the same run against the
//! same in-process reliable server.
//!
//! Two shapes of sender:
//! - many tasks each awaiting its own `send()` (64 of them): what group
//!   commit is for, since every commit serves all the sends waiting on it;
//! - one task streaming with `send_batch` (1 000 messages a call).
//!
//! `cargo bench --bench durable`; `RWS_BENCH_QUICK=1` runs it briefly (a
//! smoke test); `RWS_BENCH_JSON=path` adds the figures to that JSON object
//! (creating it if needed). With debug info for a profiler:
//! `cargo bench --profile profiling --bench durable` (binary in
//! `target/profiling/deps/`). Figures: docs/PERFORMANCE.md.

mod common;

use std::{
    collections::BTreeMap,
    rc::Rc,
    time::{Duration, Instant},
};

use resilient_ws::{server::ServerOptions, testing::TestServer, ReconnectMode, ResilientWebSocket};

/// Concurrent senders in the `send()` case.
const SENDERS: usize = 64;
/// Messages per `send_batch` call.
const BATCH: usize = 1000;

struct Figures {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn client(url: &str, store: Option<&std::path::Path>) -> ResilientWebSocket {
    let mut b = ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .heartbeat(Duration::ZERO, None)
        .buffering(true, 10_000);
    if let Some(path) = store {
        b = b.durable_store(path);
    }
    b.connect().await.expect("connect")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// `SENDERS` tasks, each sending `per_sender` 64-byte messages one `send()`
/// at a time.
async fn concurrent_sends(ws: &ResilientWebSocket, per_sender: usize) -> Figures {
    let payload: Rc<str> = "x".repeat(64).into();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (ws, payload) = (ws.clone(), payload.clone());
        tasks.push(actix_rt::spawn(async move {
            let mut lat = Vec::with_capacity(per_sender);
            for _ in 0..per_sender {
                let t = Instant::now();
                ws.send(payload.to_string()).await.expect("send");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("sender"));
    }
    let elapsed = start.elapsed();
    all.sort();
    Figures {
        msgs_per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(&all, 0.5),
        p99_us: pct(&all, 0.99),
    }
}

/// One task streaming `total` messages with `send_batch`.
async fn batched_sends(ws: &ResilientWebSocket, total: usize) -> Figures {
    let payload = "x".repeat(64);
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut sent = 0;
    while sent < total {
        let n = BATCH.min(total - sent);
        let t = Instant::now();
        ws.send_batch(std::iter::repeat_n(payload.as_str(), n))
            .await
            .expect("send_batch");
        lat.push(t.elapsed());
        sent += n;
    }
    let elapsed = start.elapsed();
    lat.sort();
    Figures {
        msgs_per_s: total as f64 / elapsed.as_secs_f64(),
        p50_us: pct(&lat, 0.5),
        p99_us: pct(&lat, 0.99),
    }
}

/// Runs `case` once without a store and once with a fresh redb store.
async fn both<F, Fut>(url: &str, case: F) -> (Figures, Figures)
where
    F: Fn(ResilientWebSocket) -> Fut,
    Fut: std::future::Future<Output = Figures>,
{
    let ws = client(url, None).await;
    let memory = case(ws.clone()).await;
    ws.disconnect().await.expect("disconnect");
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = client(url, Some(&dir.path().join("bench.store"))).await;
    let durable = case(ws.clone()).await;
    ws.disconnect().await.expect("disconnect");
    (memory, durable)
}

fn main() {
    let quick = std::env::var_os("RWS_BENCH_QUICK").is_some();
    let per_sender = if quick { 200 } else { 3_000 };
    let batch_total = if quick { 20_000 } else { 400_000 };
    actix_rt::System::new().block_on(async move {
        let (server, _reliable) = TestServer::reliable(ServerOptions::default()).expect("server");
        let url = server.ws_url();
        // Warm-up: the first connection pays for lazy statics and the
        // allocator's first pages.
        let _ = both(&url, |ws| async move { concurrent_sends(&ws, 20).await }).await;

        let (mem_send, dur_send) =
            both(
                &url,
                |ws| async move { concurrent_sends(&ws, per_sender).await },
            )
            .await;
        let (mem_batch, dur_batch) =
            both(
                &url,
                |ws| async move { batched_sends(&ws, batch_total).await },
            )
            .await;

        println!();
        println!(
            "durable outbox, reliable mode, 64 B messages ({} run)",
            if quick { "quick" } else { "full" }
        );
        println!(
            "{:<44}  {:>14}  {:>14}  {:>7}",
            "figure", "redb store", "no store", "ratio"
        );
        println!("{}", "-".repeat(84));
        let row = |name: &str, d: f64, m: f64, unit: &str| {
            println!(
                "{name:<44}  {:>14}  {:>14}  {:>7.3}",
                format!("{d:.0} {unit}"),
                format!("{m:.0} {unit}"),
                d / m
            );
        };
        let label = format!("send() x{SENDERS} tasks: throughput");
        row(&label, dur_send.msgs_per_s, mem_send.msgs_per_s, "msg/s");
        row(
            "send(): p50 latency",
            dur_send.p50_us,
            mem_send.p50_us,
            "us",
        );
        row(
            "send(): p99 latency",
            dur_send.p99_us,
            mem_send.p99_us,
            "us",
        );
        let label = format!("send_batch({BATCH}): throughput");
        row(&label, dur_batch.msgs_per_s, mem_batch.msgs_per_s, "msg/s");
        row(
            "send_batch: p99 per call",
            dur_batch.p99_us,
            mem_batch.p99_us,
            "us",
        );

        let mut json = BTreeMap::new();
        let mut key = |k: &str, v: f64| {
            json.insert(k.to_string(), (v * 1000.0).round() / 1000.0);
        };
        key("durable_send_msgs_per_s", dur_send.msgs_per_s);
        key("memory_send_msgs_per_s", mem_send.msgs_per_s);
        key(
            "durable_send_ratio",
            dur_send.msgs_per_s / mem_send.msgs_per_s,
        );
        key("durable_send_p50_us", dur_send.p50_us);
        key("durable_send_p99_us", dur_send.p99_us);
        key("memory_send_p99_us", mem_send.p99_us);
        key("durable_batch_msgs_per_s", dur_batch.msgs_per_s);
        key("memory_batch_msgs_per_s", mem_batch.msgs_per_s);
        key(
            "durable_batch_ratio",
            dur_batch.msgs_per_s / mem_batch.msgs_per_s,
        );
        common::write_json(&json);
        server.stop().await;
    });
}
