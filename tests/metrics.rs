//! The `metrics` feature: a recorder installed once for this test binary
//! (metrics-util's atomic `Registry` behind a few lines of `Recorder`)
//! sees what `MetricsReporter` reports for real clients and servers on
//! 127.0.0.1, faults from the `FaultProxy`. Each test names its reporter,
//! so the tests (run in parallel, one global recorder) read only their
//! own series. One test renders through metrics-exporter-prometheus
//! instead (a recorder local to its thread), as a scrape would see it.
//!
//! Not metrics-util's `DebuggingRecorder`: its snapshots reset every
//! counter and gauge they read, so a gauge the reporter set a moment
//! before a snapshot reads 0 at the next one, and a counter kept with
//! `absolute` is counted again after each reset.

mod common;

use std::{
    sync::{atomic::Ordering, OnceLock},
    time::{Duration, Instant},
};

use common::{attach_raw, data, decode, reliable_raw, stateful, wait_until, Inbox};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use resilient_ws::{
    metrics::{names, MetricsReporter},
    protocol::Frame,
    server::{ReliableServer, ServerOptions},
    testing::{opcode, EventRecorder, FaultProxy, RawConn, TestServer},
    ConnectionState::Connected,
    OverflowPolicy, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(20);
/// The reporters here read the stats this often: the waits below poll
/// for a condition, so short is only faster.
const TICK: Duration = Duration::from_millis(20);

/// Keeps every metric in an atomic registry that reading does not reset.
struct TestRecorder(Registry<Key, AtomicStorage>);

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

fn registry() -> &'static Registry<Key, AtomicStorage> {
    static REGISTRY: OnceLock<&'static Registry<Key, AtomicStorage>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let recorder: &'static TestRecorder = Box::leak(Box::new(TestRecorder(Registry::atomic())));
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        &recorder.0
    })
}

/// What one series (a name and its labels) shows now.
#[derive(Debug, Default, Clone)]
struct Series {
    counter: u64,
    gauge: f64,
    samples: Vec<f64>,
}

fn read(name: &str, labels: &[(&str, &str)]) -> Series {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(k.to_string(), v.to_string()))
        .collect();
    let key = Key::from_parts(name.to_string(), labels);
    let r = registry();
    Series {
        counter: r
            .get_counter_handles()
            .get(&key)
            .map_or(0, |c| c.load(Ordering::SeqCst)),
        gauge: r
            .get_gauge_handles()
            .get(&key)
            .map_or(0.0, |g| f64::from_bits(g.load(Ordering::SeqCst))),
        samples: r
            .get_histogram_handles()
            .get(&key)
            .map_or_else(Vec::new, |h| h.data()),
    }
}

/// `name{k=v,...}`, for failure messages.
fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

/// Waits until the series satisfies `ok`; panics with what it showed.
async fn wait_series(name: &str, labels: &[(&str, &str)], ok: impl Fn(&Series) -> bool) -> Series {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = read(name, labels);
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got there: {s:?}",
            series_key(name, labels)
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_cut_through_the_proxy_counts_a_reconnect_and_heartbeats_give_rtt_samples() {
    registry();
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(proxy.ws_url())
                .reconnect_mode(ReconnectMode::Stateless)
                .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
                .heartbeat(Duration::from_millis(30), Some(Duration::from_secs(5))),
        )
        .connect()
        .await
        .unwrap();
    let reporting = MetricsReporter::new("cut").interval(TICK).client(&ws);
    let me = [("client", "cut")];

    let up = wait_series(names::CLIENT_CONNECTED, &me, |s| s.gauge == 1.0).await;
    assert_eq!(up.gauge, 1.0, "connected before the reporter started");
    let rtt = wait_series(names::CLIENT_HEARTBEAT_RTT, &me, |s| s.samples.len() >= 2).await;
    assert!(
        rtt.samples.iter().all(|&x| x > 0.0 && x < 5.0),
        "RTTs in seconds: {:?}",
        rtt.samples
    );
    assert_eq!(read(names::CLIENT_RECONNECTS, &me).counter, 0);

    proxy.cut_all();
    // One cut, one reconnect (more only if the loaded box also missed a
    // heartbeat for 5 s): each with its attempt and its downtime.
    let reconnects = wait_series(names::CLIENT_RECONNECTS, &me, |s| s.counter >= 1)
        .await
        .counter;
    let attempts = read(names::CLIENT_RECONNECT_ATTEMPTS, &me).counter;
    assert!(
        attempts >= reconnects,
        "an attempt precedes each reconnect: {attempts} < {reconnects}"
    );
    let downtime = wait_series(names::CLIENT_DOWNTIME, &me, |s| {
        s.samples.len() as u64 >= reconnects
    })
    .await;
    assert!(
        downtime.samples.iter().all(|&x| (0.0..20.0).contains(&x)),
        "downtimes in seconds: {:?}",
        downtime.samples
    );
    assert!(rec.wait_state(Connected, WAIT).await);
    wait_series(names::CLIENT_CONNECTED, &me, |s| s.gauge == 1.0).await;

    // Messages each way, from the stats.
    for i in 0..3 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    rec.wait_messages(3, WAIT).await;
    wait_series(names::CLIENT_SENT, &me, |s| s.counter == 3).await;
    wait_series(names::CLIENT_RECEIVED, &me, |s| s.counter == 3).await;
    let batches = wait_series(names::CLIENT_WRITE_BATCHES, &me, |s| s.counter >= 1).await;
    assert!(batches.counter <= 3, "{batches:?}");
    assert!(reporting.is_running());
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn dropped_messages_are_counted_by_reason_and_the_outbox_is_a_gauge() {
    registry();
    // Nothing listens on port 1: the client stays offline and buffers.
    let ws = ResilientWebSocket::builder("ws://127.0.0.1:1/ws")
        .reconnect_mode(ReconnectMode::Stateless)
        .buffering(true, 2)
        .overflow_policy(OverflowPolicy::DropOldest)
        .build()
        .unwrap();
    let _reporting = MetricsReporter::new("offline").interval(TICK).client(&ws);
    let me = [("client", "offline")];
    for i in 0..5 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    let overflow = [("client", "offline"), ("reason", "overflow")];
    wait_series(names::CLIENT_DROPPED, &overflow, |s| s.counter == 3).await;
    wait_series(names::CLIENT_BUFFERED, &me, |s| s.gauge == 2.0).await;
    assert_eq!(read(names::CLIENT_CONNECTED, &me).gauge, 0.0);
    let expired = [("client", "offline"), ("reason", "expired")];
    assert_eq!(read(names::CLIENT_DROPPED, &expired).counter, 0);
}

#[actix_rt::test]
async fn the_reporter_stops_with_the_client_and_never_keeps_it_alive() {
    registry();
    let server = TestServer::echo().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .connect()
        .await
        .unwrap();
    let stats = ws.stats_reader();
    let reporting = MetricsReporter::new("dropped").interval(TICK).client(&ws);
    wait_series(names::CLIENT_CONNECTED, &[("client", "dropped")], |s| {
        s.gauge == 1.0
    })
    .await;
    drop(ws);
    let deadline = Instant::now() + WAIT;
    while reporting.is_running() || stats().live_actors != 0 {
        assert!(
            Instant::now() < deadline,
            "reporter running: {}, client actors: {}",
            reporting.is_running(),
            stats().live_actors
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        read(names::CLIENT_CONNECTED, &[("client", "dropped")]).gauge,
        0.0
    );
}

#[actix_rt::test]
async fn the_server_reports_sessions_resumes_messages_and_expiry() {
    registry();
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let reporting = MetricsReporter::new("srv").interval(TICK).server(&reliable);
    let me = [("server", "srv")];
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(common::stateful(proxy.ws_url()))
        .connect()
        .await
        .unwrap();

    wait_series(names::SERVER_SESSIONS, &me, |s| s.gauge == 1.0).await;
    wait_series(names::SERVER_ATTACHED, &me, |s| s.gauge == 1.0).await;
    wait_series(names::SERVER_OPENED, &me, |s| s.counter == 1).await;
    assert_eq!(read(names::SERVER_RESUMES, &me).counter, 0);

    ws.send("before").await.unwrap();
    proxy.cut_all();
    wait_series(names::SERVER_RESUMES, &me, |s| s.counter >= 1).await;
    ws.send("after").await.unwrap();
    rec.wait_messages(2, WAIT).await;
    wait_series(names::SERVER_RECEIVED, &me, |s| s.counter == 2).await;
    // The echoes, acknowledged by the client (by ACK or by its HELLO).
    wait_series(names::SERVER_ACKED, &me, |s| s.counter == 2).await;
    assert_eq!(
        read(names::SERVER_OPENED, &me).counter,
        1,
        "resumed, not new"
    );

    // The application ends the session: one expiry, reason "closed".
    let opened = inbox.opened();
    assert_eq!(opened.len(), 1, "{opened:?}");
    reliable.close_session(&opened[0]).unwrap();
    let closed = [("server", "srv"), ("reason", "closed")];
    wait_series(names::SERVER_EXPIRED, &closed, |s| s.counter == 1).await;
    wait_series(names::SERVER_SESSIONS, &me, |s| s.gauge == 0.0).await;
    assert!(reporting.is_running());
    drop(ws);
}

#[actix_rt::test]
async fn a_prometheus_exporter_renders_the_client_metrics_with_help_and_labels() {
    // This test's thread (where the client's actors and the reporter run:
    // the test's actix System) records into a Prometheus recorder of its
    // own instead of the binary's global one.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = prometheus.handle();
    let _local = metrics::set_default_local_recorder(&prometheus);

    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(proxy.ws_url())
                .reconnect_mode(ReconnectMode::Stateless)
                .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
                .heartbeat(Duration::from_millis(30), Some(Duration::from_secs(5))),
        )
        .connect()
        .await
        .unwrap();
    MetricsReporter::new("prom").interval(TICK).client(&ws);
    proxy.cut_all();

    let wanted = [
        "# HELP rws_client_reconnects_total Successful reconnects after a loss",
        "# TYPE rws_client_reconnects_total counter",
        r#"rws_client_connected{client="prom"} 1"#,
        "# TYPE rws_client_heartbeat_rtt_seconds summary",
        "# TYPE rws_client_downtime_seconds summary",
    ];
    let deadline = Instant::now() + WAIT;
    loop {
        let text = handle.render();
        let reconnected = text
            .lines()
            .any(|l| l.starts_with(r#"rws_client_reconnects_total{client="prom"} "#));
        if reconnected && wanted.iter().all(|w| text.lines().any(|l| l == *w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all of {wanted:?} in:\n{text}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rec.wait_state(Connected, WAIT).await);
    ws.disconnect().await.unwrap();
}

/// The DATA seqs of the next `n` DATA frames on `c` (ACKs skipped).
async fn read_data(c: &mut RawConn, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let f = tokio::time::timeout(WAIT, c.read_frame())
            .await
            .expect("a frame in time")
            .expect("a frame");
        if f.opcode != opcode::BINARY {
            continue; // the server's keep-alive pings
        }
        if let Frame::Data { seq, .. } = decode(&f) {
            seqs.push(seq);
        }
    }
    seqs
}

/// Waits until `server`'s stats show `received` and `acked`; panics with
/// what they showed.
async fn wait_counts(server: &ReliableServer, received: u64, acked: u64, what: &str) {
    let ok = wait_until(
        || {
            let s = server.stats();
            s.messages_received == received && s.messages_acked == acked
        },
        WAIT,
    )
    .await;
    let s = server.stats();
    assert!(
        ok,
        "{what}: want received {received}, acked {acked}; stats {s:?}"
    );
}

/// A scripted client: 3 messages, ACK 1; a new socket whose HELLO claims 2
/// (an implicit ack) and that replays 1..=3 (duplicates) before 4; ACK 4.
/// Every message counts once, each acknowledgement once.
async fn scripted_counts(http: &TestServer, server: &ReliableServer) {
    let (mut c1, neg) = reliable_raw(http).await;
    for (i, m) in ["a", "b", "c"].iter().enumerate() {
        c1.send_binary(&data(i as u64 + 1, *m)).await.unwrap();
    }
    assert_eq!(read_data(&mut c1, 3).await, vec![1, 2, 3], "the echoes");
    wait_counts(server, 3, 0, "three delivered, nothing acked").await;
    c1.send_binary(&Frame::Ack { seq: 1 }.to_bytes())
        .await
        .unwrap();
    wait_counts(server, 3, 1, "ACK 1").await;

    drop(c1);
    assert!(
        wait_until(|| server.stats().attached == 0, WAIT).await,
        "{:?}",
        server.stats()
    );
    let mut c2 = attach_raw(http, &neg, 2).await;
    for (i, m) in ["a", "b", "c", "d"].iter().enumerate() {
        c2.send_binary(&data(i as u64 + 1, *m)).await.unwrap();
    }
    // The echo of 3 replayed, then the echo of 4.
    assert_eq!(read_data(&mut c2, 2).await, vec![3, 4], "replay and echo");
    wait_counts(server, 4, 2, "replays not counted; the HELLO acked 2").await;
    c2.send_binary(&Frame::Ack { seq: 4 }.to_bytes())
        .await
        .unwrap();
    wait_counts(server, 4, 4, "ACK 4").await;
}

/// A real stateful client through a proxy that cuts it mid-stream: `n`
/// messages each way, counted exactly once.
async fn client_counts(http: &TestServer, server: &ReliableServer, n: usize) {
    let proxy = FaultProxy::start(http.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()))
        .connect()
        .await
        .unwrap();
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
        if i == n / 2 {
            proxy.cut_all();
        }
    }
    rec.wait_messages(n, WAIT).await;
    proxy.cut_all();
    ws.send("last").await.unwrap();
    rec.wait_messages(n + 1, WAIT).await;
    let n = n as u64 + 1;
    wait_counts(server, n, n, "every message each way once").await;
    ws.disconnect().await.unwrap();
    assert_eq!(server.stats().messages_received, n, "{:?}", server.stats());
    assert_eq!(server.stats().messages_acked, n, "{:?}", server.stats());
}

#[actix_rt::test]
async fn server_stats_count_each_message_once_through_replays_in_memory() {
    let (http, server) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    scripted_counts(&http, &server).await;
    let (http, server) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    client_counts(&http, &server, 200).await;
}

#[cfg(feature = "redis")]
#[actix_rt::test]
async fn server_stats_count_each_message_once_through_replays_with_redis() {
    use resilient_ws::server::{RedisSessionStore, SessionStore};
    let redis = common::TestRedis::start();
    let node = |name: &'static str| {
        let url = redis.url().to_owned();
        async move {
            let store = RedisSessionStore::connect(&url, "node-a")
                .await
                .expect("connect to redis")
                .with_prefix(common::TestRedis::unique_prefix(name));
            let mut options = ServerOptions::default();
            options.store = SessionStore::Redis(store);
            let server = ReliableServer::echo(options);
            let http = TestServer::serve_reliable(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                &server,
            )
            .expect("bind");
            (http, server)
        }
    };
    let (http, server) = node("scripted").await;
    scripted_counts(&http, &server).await;
    let (http, server) = node("client").await;
    client_counts(&http, &server, 200).await;
}

#[actix_rt::test]
async fn an_echo_server_acks_at_once_while_its_reporter_is_held() {
    registry();
    let (http, server) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    // The reporter runs on an arbiter of its own, which the test then
    // holds: were the reporter a MessageReceived subscriber, the echo
    // server would ack nothing until it took the messages.
    let arbiter = actix_rt::Arbiter::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let s = server.clone();
    arbiter.spawn(async move {
        let reporting = MetricsReporter::new("held").interval(TICK).server(&s);
        let _ = started_tx.send(reporting);
    });
    let reporting = started_rx.await.unwrap();
    arbiter.spawn(async move {
        // Blocks the reporter's thread until the test drops the gate.
        let _ = gate_rx.recv();
    });

    let (mut c, _) = reliable_raw(&http).await;
    let n = 50u64;
    for i in 1..=n {
        c.send_binary(&data(i, "x")).await.unwrap();
    }
    let acked = tokio::time::timeout(WAIT, async {
        loop {
            let f = c.read_frame().await.expect("a frame");
            if f.opcode != opcode::BINARY {
                continue; // the server's keep-alive pings
            }
            if let Frame::Ack { seq } = decode(&f) {
                if seq == n {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "no ACK {n} while the reporter was held: {:?}",
        server.stats()
    );
    assert_eq!(server.stats().inbound_backlog, 0, "{:?}", server.stats());
    assert_eq!(server.stats().messages_received, n);

    drop(gate_tx);
    let me = [("server", "held")];
    wait_series(names::SERVER_RECEIVED, &me, |s| s.counter == n).await;
    reporting.stop();
    arbiter.stop();
}
