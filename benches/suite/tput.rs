//! Throughput: two awc baselines (a plain task, an actor) and
//! tokio-tungstenite against our client in raw and stateful mode; and role `tput`, one case alone for a
//! profiler.

use std::time::{Duration, Instant};

use actix::{io::SinkWrite, prelude::*};
use actix_http::ws::{Frame, Message as WsMessage, ProtocolError};
use bytestring::ByteString;
use futures_util::{
    sink::SinkExt,
    stream::{SplitSink, StreamExt},
};
use resilient_ws::{server::ServerOptions, testing::TestServer, IncomingMessage, ReconnectMode};
use tokio::sync::oneshot;

use super::{
    clients::{awc_client, awc_connect, ours, Framed},
    plan::{Plan, Report, BATCH},
    tungstenite::tput_tungstenite,
};

/// Baseline 1: awc's `Framed` in a plain task, written in batches (`feed`
/// each message, one `flush` per batch), read back on another task.
pub(super) async fn tput_framed(url: &str, n: usize, text: &ByteString) -> Duration {
    let framed = awc_connect(&awc_client(), url).await;
    let (mut sink, mut stream) = framed.split();
    let reader = actix_rt::spawn(async move {
        let mut left = n;
        while left > 0 {
            match stream.next().await {
                Some(Ok(Frame::Text(_))) => left -= 1,
                Some(Ok(_)) => {}
                other => panic!("baseline stream ended: {other:?}"),
            }
        }
    });
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = BATCH.min(n - sent);
        for _ in 0..k {
            sink.feed(WsMessage::Text(text.clone())).await.unwrap();
        }
        sink.flush().await.unwrap();
        sent += k;
    }
    reader.await.unwrap();
    let took = start.elapsed();
    let _ = sink.close().await;
    took
}

/// Baseline 2: awc's socket owned by an actor and written through
/// `SinkWrite`. The driver `do_send`s every burst at once and never waits
/// for a reply, so the actor writes as fast as its mailbox feeds it (the
/// older `benches/throughput.rs` awaited a reply per burst, which stalled
/// the pipe and flattered our raw mode).
pub(super) struct ActorClient {
    sink: SinkWrite<WsMessage, SplitSink<Framed, WsMessage>>,
    left: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for ActorClient {
    type Context = Context<Self>;
}

impl actix::io::WriteHandler<ProtocolError> for ActorClient {}

impl StreamHandler<Result<Frame, ProtocolError>> for ActorClient {
    fn handle(&mut self, item: Result<Frame, ProtocolError>, _: &mut Context<Self>) {
        if let Ok(Frame::Text(_)) = item {
            self.left -= 1;
            if self.left == 0 {
                if let Some(d) = self.done.take() {
                    let _ = d.send(());
                }
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Burst(usize, ByteString);

impl Handler<Burst> for ActorClient {
    type Result = ();
    fn handle(&mut self, b: Burst, _: &mut Context<Self>) {
        for _ in 0..b.0 {
            let _ = self.sink.write(WsMessage::Text(b.1.clone()));
        }
    }
}

pub(super) async fn tput_actor(url: &str, n: usize, text: &ByteString) -> Duration {
    let framed = awc_connect(&awc_client(), url).await;
    let (tx, rx) = oneshot::channel();
    let addr = ActorClient::create(|ctx| {
        let (sink, stream) = framed.split();
        ctx.add_stream(stream);
        ActorClient {
            sink: SinkWrite::new(sink, ctx),
            left: n,
            done: Some(tx),
        }
    });
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = BATCH.min(n - sent);
        addr.do_send(Burst(k, text.clone()));
        sent += k;
    }
    rx.await.unwrap();
    let took = start.elapsed();
    addr.do_send(Stop);
    took
}

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Stop;

impl Handler<Stop> for ActorClient {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.sink.close();
        ctx.stop();
    }
}

/// Ours: `send()` per message (it waits only when the mailbox is full),
/// echoes counted by a subscriber.
pub(super) async fn tput_ours(
    url: &str,
    n: usize,
    text: &ByteString,
    mode: ReconnectMode,
) -> Duration {
    let (tx, rx) = oneshot::channel();
    let counter = Countdown {
        left: n,
        done: Some(tx),
    }
    .start();
    let ws = ours(url, mode, n).await;
    ws.subscribe_messages(counter.recipient());
    let start = Instant::now();
    for _ in 0..n {
        ws.send(text.clone()).await.unwrap();
    }
    rx.await.unwrap();
    let took = start.elapsed();
    ws.disconnect().await.unwrap();
    took
}

pub(super) struct Countdown {
    left: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Countdown {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Countdown {
    type Result = ();
    fn handle(&mut self, _: IncomingMessage, _: &mut Context<Self>) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        }
    }
}

pub(super) async fn bench_throughput(plan: &Plan, url: &str, report: &mut Report) {
    let n = plan.tput_msgs;
    for (label, size) in [("64b", 64usize), ("1k", 1024)] {
        let text = ByteString::from("x".repeat(size));
        // Warm every path once (connection setup, allocator, caches).
        let w = (n / 10).max(1000);
        tput_framed(url, w, &text).await;
        tput_actor(url, w, &text).await;
        tput_ours(url, w, &text, ReconnectMode::None).await;
        tput_ours(url, w, &text, ReconnectMode::Stateful).await;
        tput_tungstenite(url, w, &text).await;
        // Best of the rounds, interleaved so drift hits every client alike.
        let mut best = [Duration::MAX; 4];
        let mut tt = Duration::MAX;
        for _ in 0..plan.tput_rounds {
            best[0] = best[0].min(tput_framed(url, n, &text).await);
            best[1] = best[1].min(tput_actor(url, n, &text).await);
            best[2] = best[2].min(tput_ours(url, n, &text, ReconnectMode::None).await);
            best[3] = best[3].min(tput_ours(url, n, &text, ReconnectMode::Stateful).await);
            tt = tt.min(tput_tungstenite(url, n, &text).await);
        }
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        // MB/s counts payload bytes one way (each message is also echoed).
        let mbs = |d: Duration| rate(d) * size as f64 / 1e6;
        let base = rate(best[1]);
        let names = ["framed", "actor", "raw", "stateful"];
        for (i, name) in names.iter().enumerate() {
            let r = rate(best[i]);
            let ratio = r / base;
            report.key(&format!("tput_{label}_{name}_msgs_per_s"), r.round());
            report.key(&format!("tput_{label}_{name}_mb_per_s"), mbs(best[i]));
            if i != 1 {
                report.key(&format!("tput_{label}_{name}_ratio"), ratio);
            }
            report.row(
                &format!("tput {label} {name} (msgs/s)"),
                format!("{r:.0}"),
                if i == 1 {
                    String::new()
                } else {
                    format!("{base:.0}")
                },
                if i == 1 {
                    String::new()
                } else {
                    format!("{ratio:.3}")
                },
            );
            report.row(
                &format!("tput {label} {name} (MB/s)"),
                format!("{:.1}", mbs(best[i])),
                if i == 1 {
                    String::new()
                } else {
                    format!("{:.1}", mbs(best[1]))
                },
                String::new(),
            );
        }
        // The second baseline: our raw mode over tokio-tungstenite.
        let (raw, tt_rate) = (rate(best[2]), rate(tt));
        report.key(
            &format!("tput_{label}_tungstenite_msgs_per_s"),
            tt_rate.round(),
        );
        report.key(&format!("tput_{label}_tt_ratio"), raw / tt_rate);
        report.row(
            &format!("tput {label} raw over tokio-tungstenite"),
            format!("{raw:.0}"),
            format!("tt {tt_rate:.0}"),
            format!("{:.3}", raw / tt_rate),
        );
        eprintln!("throughput {label}: done");
    }
}

/// Role `tput`, `RWS_BENCH_ARGS="MODE SIZE N [URL]"` (run by hand, for
/// profiling one case under perf or callgrind in the `profiling` profile):
/// one throughput run of our client in MODE (raw or stateful) against the
/// in-process server (or URL), after a short warm-up.
pub(super) fn role_tput(args: &str) {
    let mut it = args.split(' ');
    let mode = match it.next() {
        Some("stateful") => ReconnectMode::Stateful,
        _ => ReconnectMode::None,
    };
    let size: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or(64);
    let n: usize = it.next().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let external = it.next().map(str::to_owned);
    actix_rt::System::new().block_on(async move {
        let (server, _reliable) =
            TestServer::reliable_echo(ServerOptions::default()).expect("server");
        let url = external.unwrap_or_else(|| server.ws_url());
        let text = ByteString::from("x".repeat(size));
        tput_ours(&url, (n / 10).max(1000), &text, mode).await;
        let took = tput_ours(&url, n, &text, mode).await;
        println!("{:.0} msgs/s", n as f64 / took.as_secs_f64());
        server.stop().await;
    });
}
