//! Helpers shared by the cases: awc baseline sockets, our client as the
//! benches configure it, events forwarded into channels, resident memory.

use std::time::{Duration, Instant};

use actix::prelude::*;
use resilient_ws::{ReconnectMode, ResilientWebSocket};
use tokio::sync::mpsc;

/// The socket awc hands over, as the baselines hold it.
pub(super) type Framed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Forwards every message of type `M` into a channel, with its arrival time,
/// so async code can await events from a client's subscribers.
pub(super) struct Forward<M>(mpsc::UnboundedSender<(Instant, M)>);

impl<M: 'static + Unpin> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M> Handler<M> for Forward<M>
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    type Result = ();
    fn handle(&mut self, m: M, _: &mut Context<Self>) {
        let _ = self.0.send((Instant::now(), m));
    }
}

pub(super) fn forward<M>() -> (Recipient<M>, mpsc::UnboundedReceiver<(Instant, M)>)
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

pub(super) fn awc_client() -> awc::Client {
    // No pool limit: the memory case holds thousands of sockets.
    awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .finish()
}

pub(super) async fn awc_connect(client: &awc::Client, url: &str) -> Framed {
    client.ws(url).connect().await.expect("awc connect").1
}

/// One of our clients with heartbeats off (they would only add pings to
/// what is measured) and an outbox that can hold a whole throughput run.
pub(super) async fn ours(url: &str, mode: ReconnectMode, outbox: usize) -> ResilientWebSocket {
    ResilientWebSocket::builder(url)
        .reconnect_mode(mode)
        .heartbeat(Duration::ZERO, None)
        .buffering(true, outbox.max(1))
        .connect()
        .await
        .expect("connect")
}

pub(super) fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
