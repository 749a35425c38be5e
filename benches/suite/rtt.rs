//! Round-trip latency: sequential 64 B echoes, awc's `Framed` against our
//! client in raw and stateful mode, as percentiles.

use std::time::{Duration, Instant};

use actix_http::ws::{Frame, Message as WsMessage};
use bytestring::ByteString;
use futures_util::{sink::SinkExt, stream::StreamExt};
use resilient_ws::{IncomingMessage, Payload, ReconnectMode};

use super::{
    clients::{awc_client, awc_connect, forward, ours},
    plan::{Plan, Report},
};

/// Sorted round-trip times of `trips` sequential 64 B echoes after `warmup`.
pub(super) async fn rtt_framed(url: &str, warmup: usize, trips: usize) -> Vec<Duration> {
    let mut framed = awc_connect(&awc_client(), url).await;
    let text = ByteString::from("x".repeat(64));
    let mut out = Vec::with_capacity(trips);
    for i in 0..warmup + trips {
        let t = Instant::now();
        framed.send(WsMessage::Text(text.clone())).await.unwrap();
        loop {
            match framed.next().await {
                Some(Ok(Frame::Text(_))) => break,
                Some(Ok(_)) => {}
                other => panic!("baseline stream ended: {other:?}"),
            }
        }
        if i >= warmup {
            out.push(t.elapsed());
        }
    }
    let _ = framed.close().await;
    out.sort();
    out
}

pub(super) async fn rtt_ours(
    url: &str,
    warmup: usize,
    trips: usize,
    mode: ReconnectMode,
) -> Vec<Duration> {
    let (rec, mut rx) = forward::<IncomingMessage>();
    let ws = ours(url, mode, 1000).await;
    ws.subscribe_messages(rec);
    let mut out = Vec::with_capacity(trips);
    for i in 0..warmup + trips {
        // Numbered payloads: a round trip ends with the echo of its own
        // message, never with a late or repeated one.
        let text = ByteString::from(format!("{i:064}"));
        let t = Instant::now();
        ws.send(text.clone()).await.unwrap();
        loop {
            let (_, m) = rx.recv().await.expect("echo");
            match m.payload {
                Payload::Text(got) if got == text => break,
                other => eprintln!("rtt {mode:?}: unexpected echo {other:?} for {i}"),
            }
        }
        if i >= warmup {
            out.push(t.elapsed());
        }
    }
    ws.disconnect().await.unwrap();
    out.sort();
    out
}

pub(super) fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

pub(super) async fn bench_rtt(plan: &Plan, url: &str, report: &mut Report) {
    let (w, n) = (plan.rtt_warmup, plan.rtt_trips);
    let base = rtt_framed(url, w, n).await;
    let raw = rtt_ours(url, w, n, ReconnectMode::None).await;
    let stateful = rtt_ours(url, w, n, ReconnectMode::Stateful).await;
    let stats = |v: &[Duration]| {
        [
            pct(v, 0.5),
            pct(v, 0.99),
            v.last().unwrap().as_secs_f64() * 1e6,
        ]
    };
    let b = stats(&base);
    // How many trips took over 1 ms: a tail like that (for instance a
    // 40 ms delayed-ACK stall) hides behind p50 but shows here.
    let slow = |v: &[Duration]| v.iter().filter(|d| **d > Duration::from_millis(1)).count();
    report.key("rtt_over_1ms_framed", slow(&base) as f64);
    report.key("rtt_over_1ms_raw", slow(&raw) as f64);
    report.key("rtt_over_1ms_stateful", slow(&stateful) as f64);
    report.row(
        "rtt trips > 1 ms raw",
        slow(&raw).to_string(),
        slow(&base).to_string(),
        String::new(),
    );
    report.row(
        "rtt trips > 1 ms stateful",
        slow(&stateful).to_string(),
        slow(&base).to_string(),
        String::new(),
    );
    for (p, i) in [("p50", 0), ("p99", 1), ("max", 2)] {
        report.key(&format!("rtt_{p}_framed_us"), b[i]);
    }
    for (name, v) in [("raw", &raw), ("stateful", &stateful)] {
        let s = stats(v);
        for (p, i) in [("p50", 0), ("p99", 1), ("max", 2)] {
            report.key(&format!("rtt_{p}_{name}_us"), s[i]);
            report.key(&format!("rtt_{p}_{name}_delta_us"), s[i] - b[i]);
            report.row(
                &format!("rtt {p} {name} (µs)"),
                format!("{:.1}", s[i]),
                format!("{:.1}", b[i]),
                format!("{:+.1}µs", s[i] - b[i]),
            );
        }
    }
    eprintln!("rtt: done");
}
