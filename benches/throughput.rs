//! One-connection throughput: 64 B messages pipelined to the in-process echo
//! server and counted back, for raw awc inside an actor with `SinkWrite`
//! (the baseline) and for `ResilientWebSocket`, measured in the same run.
//!
//! `cargo bench --bench throughput`; `RWS_BENCH_QUICK=1` runs a short pass.

use std::time::{Duration, Instant};

use actix::{io::SinkWrite, prelude::*};
use actix_http::ws::{Frame, Message as WsMessage, ProtocolError};
use futures_util::stream::{SplitSink, StreamExt};
use resilient_ws::{
    server::ServerOptions, testing::TestServer, IncomingMessage, ReconnectMode, ResilientWebSocket,
};
use tokio::sync::oneshot;

type Framed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Counts echoes and reports when `n` arrived.
struct Counter {
    left: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Counter {
    fn tick(&mut self) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        }
    }
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Counter {
    type Result = ();
    fn handle(&mut self, _: IncomingMessage, _: &mut Context<Self>) {
        self.tick();
    }
}

/// The baseline: awc's socket owned by an actor, written through `SinkWrite`.
struct RawClient {
    sink: Option<SinkWrite<WsMessage, SplitSink<Framed, WsMessage>>>,
    counter: Counter,
}

impl Actor for RawClient {
    type Context = Context<Self>;
}

impl actix::io::WriteHandler<ProtocolError> for RawClient {}

impl StreamHandler<Result<Frame, ProtocolError>> for RawClient {
    fn handle(&mut self, item: Result<Frame, ProtocolError>, _: &mut Context<Self>) {
        if let Ok(Frame::Text(_)) = item {
            self.counter.tick();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Burst(usize, bytestring::ByteString);

impl Handler<Burst> for RawClient {
    type Result = ();
    fn handle(&mut self, b: Burst, _: &mut Context<Self>) {
        let sink = self.sink.as_mut().expect("connected");
        for _ in 0..b.0 {
            let _ = sink.write(WsMessage::Text(b.1.clone()));
        }
    }
}

const CHUNK: usize = 1000;

async fn run_baseline(url: &str, n: usize, payload: &str) -> Duration {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .finish();
    let (_, framed) = client.ws(url).connect().await.expect("baseline connect");
    let (tx, rx) = oneshot::channel();
    let addr = RawClient::create(|ctx| {
        let (sink, stream) = framed.split();
        ctx.add_stream(stream);
        RawClient {
            sink: Some(SinkWrite::new(sink, ctx)),
            counter: Counter {
                left: n,
                done: Some(tx),
            },
        }
    });
    let text = bytestring::ByteString::from(payload.to_string());
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = CHUNK.min(n - sent);
        addr.send(Burst(k, text.clone())).await.unwrap();
        sent += k;
    }
    rx.await.unwrap();
    start.elapsed()
}

async fn run_resilient(url: &str, n: usize, payload: &str, mode: ReconnectMode) -> Duration {
    let (tx, rx) = oneshot::channel();
    let counter = Counter {
        left: n,
        done: Some(tx),
    }
    .start();
    let ws = ResilientWebSocket::builder(url)
        .reconnect_mode(mode)
        .buffering(true, 100_000)
        .on_message(counter.recipient())
        .connect()
        .await
        .expect("connect");
    let text = bytestring::ByteString::from(payload.to_string());
    let start = Instant::now();
    for _ in 0..n {
        ws.send(text.clone()).await.unwrap();
    }
    rx.await.unwrap();
    let took = start.elapsed();
    ws.disconnect().await.unwrap();
    took
}

fn main() {
    let quick = std::env::var_os("RWS_BENCH_QUICK").is_some();
    let n = if quick { 20_000 } else { 200_000 };
    let rounds = if quick { 1 } else { 3 };
    let payload = "x".repeat(64);
    actix_rt::System::new().block_on(async move {
        // One reliable echo server answers both: plain clients (baseline,
        // raw mode) get plain echo, the stateful client the protocol.
        let (server, _reliable) =
            TestServer::reliable_echo(ServerOptions::default()).expect("server");
        let url = server.ws_url();
        // Warm up every path once, then keep the best of a few rounds.
        run_baseline(&url, n / 10, &payload).await;
        run_resilient(&url, n / 10, &payload, ReconnectMode::None).await;
        run_resilient(&url, n / 10, &payload, ReconnectMode::Stateful).await;
        let mut base = Duration::MAX;
        let mut ours = Duration::MAX;
        let mut stateful = Duration::MAX;
        for _ in 0..rounds {
            base = base.min(run_baseline(&url, n, &payload).await);
            ours = ours.min(run_resilient(&url, n, &payload, ReconnectMode::None).await);
            stateful =
                stateful.min(run_resilient(&url, n, &payload, ReconnectMode::Stateful).await);
        }
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!("throughput, one connection, {n} x 64 B echoed (best of {rounds})");
        println!("{:<28}{:>14}{:>10}", "client", "msgs/s", "ratio");
        println!(
            "{:<28}{:>14.0}{:>10.2}",
            "awc + SinkWrite (baseline)",
            rate(base),
            1.0
        );
        println!(
            "{:<28}{:>14.0}{:>10.2}",
            "resilient-ws raw mode",
            rate(ours),
            rate(ours) / rate(base)
        );
        println!(
            "{:<28}{:>14.0}{:>10.2}",
            "resilient-ws stateful mode",
            rate(stateful),
            rate(stateful) / rate(base)
        );
        server.stop().await;
    });
}
