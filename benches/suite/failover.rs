//! Failover (`-F redis`, section `failover`): stateful clients spread over
//! two server nodes (child processes) whose sessions live in Redis, behind
//! a round-robin proxy without affinity; one node is killed (SIGKILL). The
//! time from the kill until every client's next message came back, and
//! whether any was lost or doubled: 1 000 clients, and the 5 000 of the
//! reconnect storm (100 and 100 in `RWS_BENCH_QUICK` mode).

use std::{
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use actix::prelude::*;
use futures_util::StreamExt;
use resilient_ws::{
    testing::FaultProxy, ConnectionState, IncomingMessage, Payload, ReconnectMode,
    ResilientWebSocket,
};
use tokio::sync::mpsc;

use super::{
    child::ChildProc,
    memory::fd_limit,
    plan::{Plan, Report},
    redis_store::RedisChild,
    storm::{await_states, Tagged, STORM_DELAYS},
};

pub(super) async fn bench_failover(plan: &Plan, report: &mut Report) {
    let Some(redis) = RedisChild::start() else {
        eprintln!("failover: no redis-server on PATH (or it did not answer); skipped");
        return;
    };
    failover(plan, &redis.url, plan.failover_clients, "failover", report).await;
    failover(plan, &redis.url, plan.storm_clients, "redis_storm", report).await;
}

/// A unique key prefix per node group, so runs sharing the CI's Redis never
/// see each other's sessions.
fn prefix(what: &str) -> String {
    format!("bench-{what}-{}", std::process::id())
}

/// A server child process with Redis-backed sessions (see `role_server`).
fn redis_node(port: u16, url: &str, prefix: &str, node: &str) -> ChildProc {
    ChildProc::spawn(
        "server",
        &[
            port.to_string(),
            "redis".into(),
            url.into(),
            prefix.into(),
            node.into(),
        ],
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Counts each client's echoes of its own numbered messages.
struct Echoes {
    index: usize,
    tx: mpsc::UnboundedSender<(usize, Instant, String)>,
}

impl Actor for Echoes {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Echoes {
    type Result = ();
    fn handle(&mut self, m: IncomingMessage, _: &mut Context<Self>) {
        if let Payload::Text(t) = m.payload {
            let _ = self.tx.send((self.index, Instant::now(), t.to_string()));
        }
    }
}

/// `n` stateful clients over two Redis-backed nodes behind a round-robin
/// proxy (no affinity, no health check: a dead node stays in the
/// rotation, as behind a plain L4 balancer); each sends a message, one node
/// is killed (SIGKILL), every client sends another: the time from the kill
/// until each client's second message came back (every client, the ones
/// on the surviving node included), and whether any message was lost or
/// doubled.
async fn failover(_plan: &Plan, redis: &str, n: usize, key: &str, report: &mut Report) {
    // Three descriptors per client here (its socket, the proxy's two).
    if fd_limit().is_some_and(|l| 3 * n + 64 > l) {
        eprintln!(
            "{key}: skipping {n} clients: `ulimit -n` is {:?}",
            fd_limit()
        );
        report.row(
            &format!("{key} (skipped: ulimit -n)"),
            String::new(),
            String::new(),
            String::new(),
        );
        return;
    }
    let group = prefix(key);
    let ports = [free_port(), free_port()];
    let mut a = redis_node(ports[0], redis, &group, "a");
    let mut b = redis_node(ports[1], redis, &group, "b");
    let _ = (a.line(), b.line());
    let upstreams: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let proxy = FaultProxy::start_round_robin(upstreams)
        .await
        .expect("proxy");
    let url = proxy.ws_url();
    let (state_tx, mut states) = mpsc::unbounded_channel();
    let (echo_tx, mut echoes) = mpsc::unbounded_channel();
    let connect = |index: usize| {
        let on_state = Tagged::new(index, state_tx.clone()).start().recipient();
        let on_echo = Echoes {
            index,
            tx: echo_tx.clone(),
        }
        .start()
        .recipient();
        ResilientWebSocket::builder(url.as_str())
            .reconnect_mode(ReconnectMode::Stateful)
            // Heartbeats find a node that died without a word; a kill
            // closes the sockets, so they are only a backstop here.
            .heartbeat(Duration::from_secs(1), Some(Duration::from_secs(2)))
            .reconnect_delays(STORM_DELAYS.0, STORM_DELAYS.1, 0)
            .min_uptime(Duration::ZERO)
            .buffering(true, 16)
            .on_state(on_state)
            .on_message(on_echo)
            .connect()
    };
    let clients: Vec<ResilientWebSocket> = futures_util::stream::iter(0..n)
        .map(connect)
        .buffered(32)
        .map(|r| r.expect("failover client connects"))
        .collect()
        .await;
    for (i, ws) in clients.iter().enumerate() {
        ws.send(format!("{i} 1")).await.expect("send");
    }
    let mut got = vec![Vec::<String>::new(); n];
    let mut first = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first < n {
        match tokio::time::timeout_at(deadline, echoes.recv()).await {
            Ok(Some((i, _, t))) => {
                first += usize::from(got[i].is_empty());
                got[i].push(t);
            }
            _ => break,
        }
    }
    assert_eq!(first, n, "{key}: every client's first message came back");
    while states.try_recv().is_ok() {}

    let killed = Instant::now();
    a.child.kill().expect("kill node a");
    let _ = a.child.wait();
    for (i, ws) in clients.iter().enumerate() {
        ws.send(format!("{i} 2")).await.expect("buffered send");
    }
    let mut back: Vec<Option<Instant>> = vec![None; n];
    let mut left = n;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while left > 0 {
        match tokio::time::timeout_at(deadline, echoes.recv()).await {
            Ok(Some((i, at, t))) => {
                if t.ends_with(" 2") && back[i].is_none() {
                    back[i] = Some(at);
                    left -= 1;
                }
                got[i].push(t);
            }
            _ => break,
        }
    }
    // Reconnected clients: how many sockets the kill moved.
    let moved = await_states(&mut states, n, Duration::from_millis(1), |s| {
        s.current == ConnectionState::Connected
    })
    .await
    .iter()
    .flatten()
    .count();
    // Late duplicates would arrive right behind; give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok((i, _, t)) = echoes.try_recv() {
        got[i].push(t);
    }
    let exact = got
        .iter()
        .enumerate()
        .filter(|(i, g)| **g == [format!("{i} 1"), format!("{i} 2")])
        .count();
    let mut times: Vec<f64> = back
        .iter()
        .flatten()
        .map(|t| t.saturating_duration_since(killed).as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let all = if times.len() == n {
        times.last().copied().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    futures_util::stream::iter(clients)
        .for_each_concurrent(64, |ws| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.disconnect()).await;
        })
        .await;
    b.finish();
    proxy.stop();
    let lost_or_doubled = n - exact;
    report.key(&format!("{key}_clients"), n as f64);
    report.key(&format!("{key}_moved"), moved as f64);
    report.key(&format!("{key}_p50_ms"), pick(0.5));
    report.key(&format!("{key}_p99_ms"), pick(0.99));
    report.key(&format!("{key}_all_ms"), all);
    report.key(&format!("{key}_lost_or_doubled"), lost_or_doubled as f64);
    report.row(
        &format!("{key} {n} clients, 1 of 2 nodes killed: p50 / p99 / all (ms)"),
        format!("{:.0} / {:.0} / {all:.0}", pick(0.5), pick(0.99)),
        format!("{moved} moved"),
        String::new(),
    );
    report.row(
        &format!("{key} clients not exactly-once"),
        lost_or_doubled.to_string(),
        "0".into(),
        String::new(),
    );
    eprintln!("{key}: done");
}
