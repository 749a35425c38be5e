//! The client's hooks (issue 15, items 1 and 2): messages that go first on
//! every (re)connect, ahead of the backlog (`on_connect`, `preamble`), and
//! delivery receipts (`send()`'s id, `send_with_receipt`,
//! `send_confirmed`). Real servers on 127.0.0.1, faults from the real
//! proxy, short configured durations.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use common::{held_acks, server_options, stateful, wait_until, Inbox};
use resilient_ws::{
    queue::DropReason,
    server::ServerOptions,
    testing::{EventRecorder, FaultProxy, RecordedEvent, TestServer},
    ConnectionState::*,
    Error, OnConnect, OverflowPolicy, Payload, ReconnectMode, ResilientWebSocket,
    ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(20);

/// A feed's actor: answers each socket with `sub N` (N counts the sockets)
/// and remembers what each ask said.
struct Feed {
    asks: Arc<Mutex<Vec<OnConnect>>>,
}

impl Actor for Feed {
    type Context = Context<Self>;
}

impl Handler<OnConnect> for Feed {
    type Result = Vec<Payload>;

    fn handle(&mut self, ask: OnConnect, _: &mut Context<Self>) -> Vec<Payload> {
        let mut asks = self.asks.lock().unwrap();
        asks.push(ask);
        vec![format!("sub {}", asks.len()).into()]
    }
}

fn feed() -> (Recipient<OnConnect>, Arc<Mutex<Vec<OnConnect>>>) {
    let asks = Arc::new(Mutex::new(Vec::new()));
    let feed = Feed { asks: asks.clone() }.start();
    (feed.recipient(), asks)
}

/// What each ask said: (reconnect, resumed).
fn asked(asks: &Mutex<Vec<OnConnect>>) -> Vec<(bool, bool)> {
    asks.lock()
        .unwrap()
        .iter()
        .map(|a| (a.reconnect, a.resumed))
        .collect()
}

fn texts(payloads: &[Payload]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| p.as_text().unwrap_or("<binary>").to_string())
        .collect()
}

fn stateless(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateless)
        .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
}

/// Cuts the link and keeps the client out (the proxy refuses), so what is
/// sent meanwhile waits in the outbox; `reconnecting` once it is out.
async fn cut_and_hold(proxy: &FaultProxy, rec: &EventRecorder) {
    proxy.refuse(true);
    proxy.cut_all();
    assert!(
        rec.wait_state(Reconnecting, WAIT).await,
        "{:?}",
        rec.states()
    );
}

#[actix_rt::test]
async fn raw_the_hooks_answer_goes_before_the_backlog_after_a_reconnect() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (hook, asks) = feed();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(proxy.ws_url()).on_connect(hook))
        .connect()
        .await
        .unwrap();
    // `connect()` resolves after the answer went out: it is first.
    ws.send("live").await.unwrap();
    assert_eq!(texts(&rec.wait_messages(2, WAIT).await), ["sub 1", "live"]);

    cut_and_hold(&proxy, &rec).await;
    for m in ["a", "b", "c"] {
        ws.send(m).await.unwrap();
    }
    assert!(
        wait_until(|| ws.stats().messages_buffered == 3, WAIT).await,
        "the backlog waits: {:?}",
        ws.stats()
    );
    proxy.refuse(false);
    let got = texts(&rec.wait_messages(6, WAIT).await);
    assert_eq!(got, ["sub 1", "live", "sub 2", "a", "b", "c"]);
    // Asked once per socket (the refused attempts opened none).
    assert_eq!(asked(&asks), [(false, false), (true, false)]);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_fixed_preamble_goes_first_on_every_socket_in_order() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(proxy.ws_url()).preamble(["auth", "subscribe"]))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        texts(&rec.wait_messages(2, WAIT).await),
        ["auth", "subscribe"]
    );
    cut_and_hold(&proxy, &rec).await;
    ws.send("queued").await.unwrap();
    proxy.refuse(false);
    assert_eq!(
        texts(&rec.wait_messages(5, WAIT).await),
        ["auth", "subscribe", "auth", "subscribe", "queued"]
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn stateful_the_replay_keeps_its_place_then_the_hook_then_the_backlog() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (hook, asks) = feed();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()).on_connect(hook))
        .connect()
        .await
        .unwrap();
    assert!(wait_until(|| inbox.texts() == ["sub 1"], WAIT).await);

    // Written to the socket, swallowed by the proxy: unacknowledged, they
    // stay in the window and are replayed on the resumed session.
    proxy.blackhole(true);
    ws.send("w1").await.unwrap();
    ws.send("w2").await.unwrap();
    assert!(wait_until(|| ws.stats().messages_sent >= 3, WAIT).await);
    cut_and_hold(&proxy, &rec).await;
    proxy.blackhole(false);
    ws.send("b1").await.unwrap();
    ws.send("b2").await.unwrap();
    assert!(wait_until(|| ws.stats().messages_buffered == 2, WAIT).await);
    assert_eq!(inbox.texts(), ["sub 1"], "nothing got through meanwhile");
    proxy.refuse(false);

    assert!(
        wait_until(|| inbox.len() == 6, WAIT).await,
        "{:?}",
        inbox.all()
    );
    let got = inbox.all();
    let order: Vec<(u64, &str)> = got.iter().map(|m| (m.1, m.2.as_str())).collect();
    assert_eq!(
        order,
        [
            (1, "sub 1"),
            (2, "w1"),
            (3, "w2"),
            (4, "sub 2"),
            (5, "b1"),
            (6, "b2")
        ],
        "replay first (older seqs), then the hook, then the backlog"
    );
    assert!(got.iter().all(|m| m.0 == got[0].0), "one session: {got:?}");
    assert_eq!(asked(&asks), [(false, false), (true, true)]);
    assert!(!rec
        .events()
        .iter()
        .any(|e| matches!(e, RecordedEvent::SessionLost(_))));
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn stateful_on_a_fresh_session_after_4001_the_hook_goes_before_the_backlog() {
    // Acks held: all three messages are unacknowledged when the server
    // goes away with its sessions.
    let (server, reliable) = TestServer::reliable(held_acks(Duration::from_secs(60))).unwrap();
    let inbox = Inbox::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (hook, asks) = feed();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            stateful(proxy.ws_url())
                .on_connect(hook)
                .close_timeout(Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap();
    ws.send("w1").await.unwrap();
    ws.send("w2").await.unwrap();
    assert!(wait_until(|| inbox.len() == 3, WAIT).await);

    // A new server process: it knows nothing of the session (4001).
    cut_and_hold(&proxy, &rec).await;
    server.stop().await;
    let (server2, reliable2) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox2 = Inbox::attach(&reliable2);
    proxy.set_upstream(server2.addr());
    ws.send("b1").await.unwrap();
    assert!(wait_until(|| ws.stats().messages_buffered == 1, WAIT).await);
    proxy.refuse(false);

    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::SessionLost(_)))
        .await
        .is_some());
    assert!(
        wait_until(|| inbox2.len() == 5, WAIT).await,
        "{:?}",
        inbox2.all()
    );
    let order: Vec<String> = inbox2.texts();
    // The unacknowledged window is re-sent first (at least once, in its
    // seq order), then this socket's hook, then the backlog.
    assert_eq!(order, ["sub 1", "w1", "w2", "sub 2", "b1"]);
    assert_eq!(asked(&asks), [(false, false), (true, false)]);
    ws.disconnect().await.unwrap();
    server2.stop().await;
}

#[actix_rt::test]
async fn send_returns_the_id_that_message_dropped_reports_and_its_receipt_fails_with_the_reason() {
    let rec = EventRecorder::start();
    // Never connected: everything waits in an outbox of one place.
    let ws = rec
        .attach(
            stateless("ws://127.0.0.1:9/ws")
                .buffering(true, 1)
                .overflow_policy(OverflowPolicy::DropOldest),
        )
        .build()
        .unwrap();
    let first = ws.send_with_receipt("a").await.unwrap();
    let second = ws.send("b").await.unwrap();
    assert!(
        second > first.id(),
        "ids grow: {second} after {}",
        first.id()
    );
    let id = first.id();
    let err = tokio::time::timeout(WAIT, first)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Dropped { id: i, reason: DropReason::Overflow } if i == id),
        "{err:?}"
    );
    let dropped = rec
        .wait_until(WAIT, |events| {
            events.iter().find_map(|e| match e {
                RecordedEvent::Dropped(d) => Some(d.clone()),
                _ => None,
            })
        })
        .await
        .expect("a MessageDropped");
    assert_eq!((dropped.id, dropped.reason), (id, DropReason::Overflow));
    let third = ws.try_send("c").unwrap();
    assert!(third > second);
}

#[actix_rt::test]
async fn a_receipt_fails_as_expired_when_its_time_to_live_passes() {
    let ws = stateless("ws://127.0.0.1:9/ws")
        .message_ttl(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = tokio::time::timeout(WAIT, ws.send_confirmed("late"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Dropped {
                reason: DropReason::Expired,
                ..
            }
        ),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn raw_a_receipt_resolves_once_written_also_for_a_message_that_waited() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(stateless(server.ws_url())).build().unwrap();
    // Sent before connecting: it waits in the outbox with its receipt.
    let early = ws.send_with_receipt("early").await.unwrap();
    let early_id = early.id();
    futures::pin_mut!(early);
    assert!(
        futures::poll!(early.as_mut()).is_pending(),
        "not written yet"
    );
    ws.connect().await.unwrap();
    let confirmed = tokio::time::timeout(WAIT, early).await.unwrap().unwrap();
    assert_eq!(confirmed, early_id);
    // Connected: straight to the socket, confirmed once written.
    let id = tokio::time::timeout(WAIT, ws.send_confirmed("now"))
        .await
        .unwrap()
        .unwrap();
    assert!(id > early_id);
    assert_eq!(texts(&rec.wait_messages(2, WAIT).await), ["early", "now"]);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn stateful_a_receipt_resolves_when_the_server_acknowledged_not_before() {
    // Acks come every 2 s: long enough to see the message delivered but
    // not yet acknowledged.
    let options = server_options(|o| {
        o.ack_interval = Duration::from_secs(2);
        o.ack_threshold = 1_000_000;
    });
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let inbox = Inbox::attach(&reliable);
    let ws = stateful(server.ws_url()).connect().await.unwrap();
    let receipt = ws.send_with_receipt("order 42").await.unwrap();
    let id = receipt.id();
    futures::pin_mut!(receipt);
    assert!(wait_until(|| inbox.texts() == ["order 42"], WAIT).await);
    assert!(
        futures::poll!(receipt.as_mut()).is_pending(),
        "delivered but not acknowledged yet"
    );
    let confirmed = tokio::time::timeout(WAIT, receipt).await.unwrap().unwrap();
    assert_eq!(confirmed, id);
    // And the short form.
    let next = tokio::time::timeout(WAIT, ws.send_confirmed("order 43"))
        .await
        .unwrap()
        .unwrap();
    assert!(next > id);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_receipt_fails_with_the_error_that_stopped_the_client() {
    // Nothing listens there: the first connect fails and the client stops.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = ResilientWebSocket::builder(format!("ws://127.0.0.1:{port}/ws"))
        .reconnect_mode(ReconnectMode::None)
        .build()
        .unwrap();
    let receipt = ws.send_with_receipt("never").await.unwrap();
    let connect = ws.connect().await.unwrap_err();
    let err = tokio::time::timeout(WAIT, receipt)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(connect, Error::Io(_)), "{connect:?}");
    assert!(matches!(err, Error::Io(_)), "the connect's error: {err:?}");
    // The message itself stays for a later connect().
    assert_eq!(ws.stats().messages_buffered, 1);
}

/// A hook that takes its time on reconnects (a subscription looked up
/// elsewhere, say).
struct SlowFeed;

impl Actor for SlowFeed {
    type Context = Context<Self>;
}

impl Handler<OnConnect> for SlowFeed {
    type Result = ResponseActFuture<Self, Vec<Payload>>;

    fn handle(&mut self, ask: OnConnect, _: &mut Context<Self>) -> Self::Result {
        let delay = if ask.reconnect {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        };
        Box::pin(
            actix::clock::sleep(delay)
                .into_actor(self)
                .map(|(), _, _| vec!["sub".into()]),
        )
    }
}

#[actix_rt::test]
async fn stateful_data_the_server_replays_while_the_hook_thinks_is_delivered() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()).on_connect(SlowFeed.start().recipient()))
        .connect()
        .await
        .unwrap();
    assert_eq!(texts(&rec.wait_messages(1, WAIT).await), ["sub"]);
    // Sent while the client is away: the server replays it right after
    // its WELCOME on the resumed session, while the hook is still asked.
    cut_and_hold(&proxy, &rec).await;
    assert_eq!(reliable.broadcast("news"), 1);
    proxy.refuse(false);
    let got = texts(&rec.wait_messages(3, WAIT).await);
    assert_eq!(got, ["sub", "news", "sub"], "{:?}", rec.errors().last());
    assert!(rec.wait_state(Connected, WAIT).await);
    assert!(
        rec.errors()
            .iter()
            .all(|e| matches!(e, Error::ConnectionLost)),
        "only the cut: {:?}",
        rec.errors()
    );
    assert_eq!(ws.stats().reconnects, 1);
    ws.disconnect().await.unwrap();
}
