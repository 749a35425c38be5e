//! Recovery and heartbeat detection, through the fault proxy.

use std::time::{Duration, Instant};

use resilient_ws::{
    testing::{FaultProxy, TestServer},
    ConnectionState, IncomingMessage, ReconnectMode, ResilientWebSocket, StateChanged,
};
use tokio::sync::mpsc;

use super::{
    clients::forward,
    plan::{Plan, Report},
};

pub(super) const RETRY_DELAY: Duration = Duration::from_millis(200);

/// One trial: cut every connection with new ones refused, send a message
/// (it waits in the outbox), heal after `hold`, and time from the healing
/// to the echo of that message.
pub(super) async fn recovery_trial(
    ws: &ResilientWebSocket,
    proxy: &FaultProxy,
    rx: &mut mpsc::UnboundedReceiver<(Instant, IncomingMessage)>,
    hold: Duration,
) -> Duration {
    proxy.refuse(true);
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(20)).await;
    ws.send("after the cut").await.expect("buffered send");
    tokio::time::sleep(hold).await;
    while rx.try_recv().is_ok() {}
    let healed = Instant::now();
    proxy.refuse(false);
    let (at, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("recovered within 10 s")
        .expect("echo");
    at.saturating_duration_since(healed)
}

pub(super) async fn bench_recovery(plan: &Plan, server: &TestServer, report: &mut Report) {
    let proxy = FaultProxy::start(server.addr()).await.expect("proxy");
    let mut worst = 0f64;
    for mode in [ReconnectMode::Stateless, ReconnectMode::Stateful] {
        let (rec, mut rx) = forward::<IncomingMessage>();
        // initial = max: a fixed delay (the backoff's jitter range is empty).
        let ws = ResilientWebSocket::builder(proxy.ws_url())
            .reconnect_mode(mode)
            .heartbeat(Duration::ZERO, None)
            .reconnect_delays(RETRY_DELAY, RETRY_DELAY, 0)
            .min_uptime(Duration::ZERO)
            .on_message(rec)
            .connect()
            .await
            .expect("connect");
        let mut times = Vec::new();
        for i in 0..plan.recovery_trials {
            // Holds that are not multiples of the delay, so the healing falls
            // at different points of the retry cycle.
            let hold = Duration::from_millis(250 + 67 * i as u64);
            times.push(recovery_trial(&ws, &proxy, &mut rx, hold).await);
        }
        ws.disconnect().await.ok();
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let max = times.iter().map(ms).fold(0.0, f64::max);
        let mean = times.iter().map(ms).sum::<f64>() / times.len() as f64;
        let name = if mode == ReconnectMode::Stateful {
            "stateful"
        } else {
            "stateless"
        };
        worst = worst.max(max);
        report.key(&format!("recovery_{name}_ms_max"), max);
        report.key(&format!("recovery_{name}_ms_mean"), mean);
        let delay = ms(&RETRY_DELAY);
        report.row(
            &format!("recovery {name} max (ms)"),
            format!("{max:.1}"),
            format!("delay {delay:.0}"),
            format!("{:+.1}ms", max - delay),
        );
        report.row(
            &format!("recovery {name} mean (ms)"),
            format!("{mean:.1}"),
            format!("delay {delay:.0}"),
            String::new(),
        );
    }
    report.key("recovery_delay_ms", RETRY_DELAY.as_secs_f64() * 1e3);
    report.key("recovery_ms", worst);
    // The healing can come just after a failed attempt, so the bound is one
    // full retry delay; what exceeds it is our overhead (connect, resend).
    report.key(
        "recovery_ms_over_delay",
        worst - RETRY_DELAY.as_secs_f64() * 1e3,
    );

    // Heartbeat: blackhole a live link, time until the client leaves
    // `Connected`, against the configured timeout.
    let interval = Duration::from_millis(100);
    let timeout = Duration::from_millis(300);
    let (rec, mut states) = forward::<StateChanged>();
    let ws = ResilientWebSocket::builder(proxy.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .heartbeat(interval, Some(timeout))
        .on_state(rec)
        .connect()
        .await
        .expect("connect");
    // Let a few pings be answered first.
    tokio::time::sleep(interval * 3).await;
    while states.try_recv().is_ok() {}
    let start = Instant::now();
    proxy.blackhole(true);
    let detected = loop {
        let (at, s) = tokio::time::timeout(Duration::from_secs(10), states.recv())
            .await
            .expect("detected within 10 s")
            .expect("state");
        if s.previous == ConnectionState::Connected {
            break at.saturating_duration_since(start);
        }
    };
    proxy.blackhole(false);
    drop(ws);
    let d = detected.as_secs_f64() * 1e3;
    let t = timeout.as_secs_f64() * 1e3;
    report.key("heartbeat_detect_ms", d);
    report.key("heartbeat_timeout_ms", t);
    report.key("heartbeat_detect_over_timeout_ms", d - t);
    report.row(
        "heartbeat detection (ms)",
        format!("{d:.1}"),
        format!("timeout {t:.0}"),
        format!("{:+.1}ms", d - t),
    );
    proxy.stop();
    eprintln!("recovery: done");
}
