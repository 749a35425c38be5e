//! Edges of the durable store and of a session that cannot be resumed:
//! a commit that fails is not progress (nothing in it reaches the server,
//! its `send()`s fail, the sequence does not move), a store writer that dies
//! is reported and refuses sends, and a stateful client whose server stays
//! unreachable past the resume window gives the session up and fails over.
//!
//! Peers are real servers on 127.0.0.1, faults come from a user's
//! `QueueStore` that fails on demand and from stopping a server.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::{assert_too_large, connect_recorded, held_acks, wait_until, Inbox};
use resilient_ws::{
    queue::{MemoryStore, QueueStore, StoreError, StoreOp, StoredState},
    server::ServerOptions,
    testing::{EventRecorder, RecordedEvent, TestServer},
    ConnectionState::*,
    Error, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(30);

/// A user's store: a `MemoryStore` whose commits fail (or panic) while a
/// switch is on.
struct FlakyStore {
    inner: Arc<Mutex<MemoryStore>>,
    fail: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
}

impl QueueStore for FlakyStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        self.inner.lock().unwrap().load()
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if self.panic.load(Ordering::SeqCst) {
            panic!("test store: commit panics on purpose");
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Other("test store: disk unplugged".into()));
        }
        self.inner.lock().unwrap().commit(ops)
    }
}

struct Switches {
    fail: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
    /// What the store holds (shared with the client's writer thread).
    stored: Arc<Mutex<MemoryStore>>,
}

fn flaky() -> (FlakyStore, Switches) {
    let fail = Arc::new(AtomicBool::new(false));
    let panic = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(Mutex::new(MemoryStore::default()));
    (
        FlakyStore {
            inner: stored.clone(),
            fail: fail.clone(),
            panic: panic.clone(),
        },
        Switches {
            fail,
            panic,
            stored,
        },
    )
}

/// A quick stateful client (see [`common::stateful`]) that buffers while
/// disconnected and gives a close 200 ms.
fn stateful(url: String) -> ResilientWebSocketBuilder {
    common::stateful(url)
        .buffering(true, 1000)
        .close_timeout(Duration::from_millis(200))
}

fn texts(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(s, t)| (*s, t.to_string())).collect()
}

/// The client sends "kept0" (not connected: into the outbox), "lost" while
/// the store's commits fail (that `send()` fails with a store error),
/// "kept1" once they work again, then connects and sends "kept2". The
/// server must get the three kept ones only.
async fn send_around_a_failed_commit(ws: &ResilientWebSocket, sw: &Switches) {
    ws.send("kept0").await.unwrap();
    sw.fail.store(true, Ordering::SeqCst);
    let err = ws.send("lost").await.unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    sw.fail.store(false, Ordering::SeqCst);
    ws.send("kept1").await.unwrap();
    ws.connect().await.unwrap();
    ws.send("kept2").await.unwrap();
}

/// Waits until the server got three messages: "kept0" to "kept2", with
/// the seqs 1 to 3 (a failed commit took no seq).
async fn assert_got_the_kept_ones(inbox: &Inbox) {
    assert!(wait_until(|| inbox.len() >= 3, WAIT).await);
    assert_eq!(
        inbox.seq_texts(),
        texts(&[(1, "kept0"), (2, "kept1"), (3, "kept2")])
    );
}

/// Whether the client reports a store error (waits for it, bounded).
async fn store_error_reported(rec: &EventRecorder) -> bool {
    rec.wait_for(
        WAIT,
        |e| matches!(e, RecordedEvent::Error(ev) if matches!(ev.error, Error::Store(_))),
    )
    .await
    .is_some()
}

#[actix_rt::test]
async fn a_failed_commit_sends_nothing_and_the_sequence_does_not_advance() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let (store, sw) = flaky();
    let ws = stateful(server.ws_url())
        .store(store)
        .connect()
        .await
        .unwrap();

    ws.send("m0").await.unwrap();
    assert!(wait_until(|| inbox.len() == 1, WAIT).await);

    sw.fail.store(true, Ordering::SeqCst);
    for text in ["lost1", "lost2", "lost3"] {
        let err = ws.send(text).await.unwrap_err();
        assert!(matches!(err, Error::Store(_)), "{text}: {err:?}");
    }
    // A burst whose commit fails: every send() in it fails.
    let burst = futures_util::future::join_all((0..20).map(|i| ws.send(format!("lostb{i}")))).await;
    assert!(
        burst.iter().all(|r| matches!(r, Err(Error::Store(_)))),
        "{burst:?}"
    );

    sw.fail.store(false, Ordering::SeqCst);
    ws.send("m1").await.unwrap();
    ws.send("m2").await.unwrap();
    assert!(wait_until(|| inbox.len() >= 3, WAIT).await);
    // m2 is the last one sent and arrives in order: anything a failed send()
    // had would have arrived before it.
    assert_eq!(
        inbox.seq_texts(),
        texts(&[(1, "m0"), (2, "m1"), (3, "m2")]),
        "the failed sends never reached the server and took no seq"
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_message_whose_commit_failed_in_the_outbox_is_never_sent() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let (store, sw) = flaky();
    // Not connected yet: the messages wait in the outbox.
    let ws = stateful(server.ws_url()).store(store).build().unwrap();
    send_around_a_failed_commit(&ws, &sw).await;
    assert_got_the_kept_ones(&inbox).await;
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_store_writer_that_dies_is_reported_and_sends_fail_clearly() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let (store, sw) = flaky();
    let (ws, rec) = connect_recorded(stateful(server.ws_url()).store(store)).await;
    ws.send("m0").await.unwrap();
    assert!(wait_until(|| inbox.len() == 1, WAIT).await);

    sw.panic.store(true, Ordering::SeqCst);
    let first = actix_rt::time::timeout(WAIT, ws.send("lost1"))
        .await
        .expect("send() must not hang when the store writer dies");
    assert!(matches!(first, Err(Error::Store(_))), "{first:?}");
    assert!(
        store_error_reported(&rec).await,
        "an error event says the store failed"
    );
    // Later sends fail clearly too, even with the switch off: the writer is
    // gone and the store's state unknown.
    sw.panic.store(false, Ordering::SeqCst);
    let later = actix_rt::time::timeout(WAIT, ws.send("lost2"))
        .await
        .expect("send() must not hang after the writer died");
    let Err(Error::Store(e)) = later else {
        panic!("{later:?}");
    };
    assert!(e.to_string().contains("writer"), "{e}");
    assert!(ws.try_send("lost3").is_err(), "try_send refuses too");
    // The server never saw any of them: the connection still works, and an
    // echo of the session's state shows only m0.
    assert_eq!(inbox.seq_texts(), texts(&[(1, "m0")]));
    assert_eq!(ws.state(), Connected);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_stored_message_whose_seq_failed_to_commit_goes_back_and_is_sent_once() {
    let (server, reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let (store, sw) = flaky();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()).store(store))
        .build()
        .unwrap();
    // Accepted (durably) while not connected.
    ws.send("kept0").await.unwrap();
    ws.send("kept1").await.unwrap();
    // The commit giving them their seqs on connect fails...
    sw.fail.store(true, Ordering::SeqCst);
    ws.connect().await.unwrap();
    assert!(
        store_error_reported(&rec).await,
        "the failed commit is reported"
    );
    assert_eq!(inbox.len(), 0, "nothing of a failed commit is sent");
    // ...and once the store works, they go out (retried), once, in order,
    // with the seqs they would have had.
    sw.fail.store(false, Ordering::SeqCst);
    assert!(wait_until(|| inbox.len() >= 2, WAIT).await);
    ws.send("kept2").await.unwrap();
    assert_got_the_kept_ones(&inbox).await;
    ws.disconnect().await.unwrap();
}

// ---- A session that cannot be resumed is given up (issue 11, item 7) ----

#[actix_rt::test]
async fn past_the_resume_window_a_stateful_client_fails_over_with_a_fresh_session() {
    // Acks held long, so the messages are still unacked when A dies.
    let (server_a, reliable_a) =
        TestServer::reliable(held_acks(Duration::from_millis(300))).unwrap();
    let (server_b, reliable_b) = TestServer::reliable(held_acks(Duration::from_secs(30))).unwrap();
    let (inbox_a, inbox_b) = (Inbox::attach(&reliable_a), Inbox::attach(&reliable_b));
    let proxy_a = resilient_ws::testing::FaultProxy::start(server_a.addr())
        .await
        .unwrap();
    let (ws, rec) = connect_recorded(
        ResilientWebSocket::builder_with_endpoints(vec![proxy_a.ws_url(), server_b.ws_url()])
            .reconnect_mode(ReconnectMode::Stateful)
            .reconnect_delays(Duration::from_millis(5), Duration::from_millis(40), 0)
            .min_uptime(Duration::ZERO)
            .heartbeat(Duration::ZERO, None)
            .close_timeout(Duration::from_millis(200)),
    )
    .await;
    for i in 0..5 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    assert!(wait_until(|| inbox_a.len() == 5, WAIT).await);
    // A is down for good: the proxy refuses every new connection.
    proxy_a.refuse(true);
    proxy_a.cut_all();
    let lost = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::SessionLost(_)))
        .await;
    let Some(RecordedEvent::SessionLost(lost)) = lost else {
        let events = rec.events();
        panic!(
            "no SessionLost event; {} events, the last: {:?}",
            events.len(),
            events.last()
        );
    };
    assert_eq!(lost.resending, 5, "all five were unacked");
    assert_eq!(lost.connection_id, inbox_a.all()[0].0);
    assert!(
        wait_until(|| inbox_b.len() >= 5, WAIT).await,
        "the client fails over to B; last event: {:?}",
        rec.events().last()
    );
    ws.send("m5").await.unwrap();
    assert!(wait_until(|| inbox_b.len() >= 6, WAIT).await);
    let got = inbox_b.all();
    assert!(
        got.iter().all(|m| m.0 == got[0].0),
        "one fresh session on B"
    );
    assert_ne!(got[0].0, inbox_a.all()[0].0);
    // Re-sent with their original ids, then the new one.
    assert_eq!(
        inbox_b.seq_texts(),
        texts(&[
            (1, "m0"),
            (2, "m1"),
            (3, "m2"),
            (4, "m3"),
            (5, "m4"),
            (6, "m5")
        ])
    );
    assert_eq!(ws.state(), Connected);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn shutdown_advice_of_u64_max_is_capped_and_never_overflows() {
    let raw = resilient_ws::testing::RawServer::bind().await.unwrap();
    let url = raw.ws_url();
    let advice = resilient_ws::protocol::ShutdownAdvice {
        reconnect_after_ms: u64::MAX,
        spread_ms: u64::MAX,
    };
    let server = actix_rt::spawn(async move {
        let mut conn = raw.accept().await.unwrap();
        conn.send_close(1012, &advice.to_reason()).await.unwrap();
        (raw, conn)
    });
    let (ws, rec) = connect_recorded(
        ResilientWebSocket::builder(url)
            .reconnect_mode(ReconnectMode::Stateless)
            .heartbeat(Duration::ZERO, None)
            .min_uptime(Duration::ZERO),
    )
    .await;
    let again = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnecting(_)))
        .await;
    let Some(RecordedEvent::Reconnecting(again)) = again else {
        panic!("no Reconnecting event: {:?}", rec.events());
    };
    let cap = Duration::from_millis(resilient_ws::protocol::ShutdownAdvice::MAX_MS);
    assert!(
        again.delay >= cap,
        "waits at least the (capped) advice: {:?}",
        again.delay
    );
    assert!(again.delay <= cap * 2, "capped: {:?}", again.delay);
    let _server = server.await.unwrap();
    ws.disconnect().await.unwrap();
}

/// A raw-mode (`Stateless`) client of `server` on `store`, not connected,
/// its events in `rec`.
fn raw_client(
    server: &TestServer,
    store: impl QueueStore,
    rec: &EventRecorder,
) -> ResilientWebSocket {
    rec.attach(
        ResilientWebSocket::builder(server.ws_url())
            .reconnect_mode(ReconnectMode::Stateless)
            .heartbeat(Duration::ZERO, None)
            .buffering(true, 100)
            .store(store),
    )
    .build()
    .unwrap()
}

#[actix_rt::test]
async fn raw_mode_a_message_whose_commit_failed_is_never_sent() {
    let server = TestServer::echo().await.unwrap();
    let (store, sw) = flaky();
    let rec = EventRecorder::start();
    let ws = raw_client(&server, store, &rec);
    // Not connected: they wait in the (stored) outbox.
    send_around_a_failed_commit(&ws, &sw).await;
    let echoed = rec.wait_messages(3, WAIT).await;
    let texts: Vec<_> = echoed
        .iter()
        .map(|p| p.as_text().unwrap_or("<binary>").to_string())
        .collect();
    assert_eq!(
        texts,
        ["kept0", "kept1", "kept2"],
        "the echo server got exactly these"
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn raw_mode_a_sent_message_whose_removal_failed_to_commit_is_removed_later() {
    let server = TestServer::echo().await.unwrap();
    let (store, sw) = flaky();
    let rec = EventRecorder::start();
    let ws = raw_client(&server, store, &rec);
    ws.send("k0").await.unwrap();
    ws.send("k1").await.unwrap();
    assert_eq!(sw.stored.lock().unwrap().load().unwrap().outbox.len(), 2);
    // They are sent on connect; the commit saying so fails.
    sw.fail.store(true, Ordering::SeqCst);
    ws.connect().await.unwrap();
    assert_eq!(rec.wait_messages(2, WAIT).await.len(), 2);
    assert!(
        store_error_reported(&rec).await,
        "the failed commit is reported"
    );
    sw.fail.store(false, Ordering::SeqCst);
    // Recorded again (on the retry timer): a restart would not send them twice.
    assert!(
        wait_until(
            || sw.stored.lock().unwrap().load().unwrap().outbox.is_empty(),
            WAIT
        )
        .await,
        "the store still holds sent messages: {:?}",
        sw.stored.lock().unwrap().load().unwrap().outbox
    );
    ws.disconnect().await.unwrap();
}

/// A client started again on a store already knows the server's message
/// size limit from the stored session: an oversize `send()` is refused at
/// once, before any socket.
#[actix::test]
async fn a_restarted_client_knows_the_servers_limit_from_its_store() {
    let mut store = MemoryStore::default();
    store
        .commit(&[StoreOp::Session(Some(resilient_ws::queue::StoredSession {
            connection_id: "0123456789abcdef0123456789abcdef".into(),
            reconnect_token: "t".into(),
            socket_url: "ws://127.0.0.1:9/ws".into(),
            max_message_size: Some(100),
            ..Default::default()
        }))])
        .unwrap();
    let ws = ResilientWebSocket::builder("ws://127.0.0.1:9/ws")
        .reconnect_mode(ReconnectMode::Stateful)
        .store(store)
        .build()
        .unwrap();
    let err = ws.send(vec![0u8; 101]).await.unwrap_err();
    assert_too_large(&err, 101, 100);
    // One within the limit is accepted (durably: send() waited for it).
    ws.send(vec![0u8; 100]).await.unwrap();
}
