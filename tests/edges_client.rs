//! Client edge cases (issue 11, items 1, 2, 6, 8, 9): oversized messages and
//! replays a peer refuses, the ack before a close, the resume claims of a
//! HELLO, no orphan actors after the last handle is dropped, and timers that
//! belong to their moment.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_too_large, connect_recorded, data, decode, negotiate_body, read_until_close, stateful,
    wait_until, welcome,
};
use resilient_ws::{
    protocol::{Frame, SUBPROTOCOL},
    server::ServerOptions,
    testing::{opcode, EventRecorder, FaultProxy, RawConn, RawServer, RecordedEvent, TestServer},
    ConnectionState, Error, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(30);

/// Item 9: the close timer of one `disconnect()` (armed while the last acks
/// were awaited) must not release a later `disconnect()` early: the second
/// one waits its own `close_timeout` for its acks.
#[actix_rt::test]
async fn an_old_disconnect_timer_does_not_cut_a_later_close_short() {
    let mut opts = ServerOptions::default();
    opts.ack_threshold = 1;
    let (server, _reliable) = TestServer::reliable_echo(opts).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let close_timeout = Duration::from_secs(2);
    let ws = stateful(proxy.ws_url())
        .close_timeout(close_timeout)
        .connect()
        .await
        .unwrap();

    // The first disconnect finds its message unacknowledged (so it arms the
    // close timer) and is released early by the ack.
    let t1 = Instant::now();
    ws.send("one").await.unwrap();
    ws.disconnect().await.unwrap();
    assert!(t1.elapsed() < close_timeout, "released by the ack");

    ws.connect().await.unwrap();
    // The second disconnect's message is never acknowledged.
    proxy.blackhole(true);
    ws.send("two").await.unwrap();
    actix_rt::time::sleep_until((t1 + close_timeout / 2).into()).await;
    let t2 = Instant::now();
    let closing = {
        let ws = ws.clone();
        actix_rt::spawn(async move { ws.disconnect().await })
    };
    assert!(
        wait_until(|| ws.state() == ConnectionState::Disconnecting, WAIT).await,
        "the close starts eventually"
    );
    let waited = t2.elapsed();
    assert!(
        waited >= close_timeout * 9 / 10,
        "the second disconnect waited only {waited:?} for its acks (its own close_timeout is \
         {close_timeout:?}): an earlier disconnect's timer released it"
    );
    proxy.blackhole(false);
    closing.await.unwrap().unwrap();
}

/// Serves one negotiate and one socket; returns the socket and its HELLO.
async fn scripted_session(server: &RawServer, max_message_size: usize) -> (RawConn, Frame) {
    scripted_session_acking(server, max_message_size, 50).await
}

/// As `scripted_session`, telling the client to ack within `ack_interval_ms`.
async fn scripted_session_acking(
    server: &RawServer,
    max_message_size: usize,
    ack_interval_ms: u64,
) -> (RawConn, Frame) {
    server
        .respond_json(
            200,
            &negotiate_body(None, max_message_size, ack_interval_ms),
        )
        .await
        .unwrap();
    let mut conn = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
    let hello = conn.read_data_frame().await.unwrap();
    let hello = Frame::decode(hello.payload.into()).unwrap();
    (conn, hello)
}

async fn read_proto(conn: &mut RawConn) -> Frame {
    let f = conn.read_data_frame().await.unwrap();
    Frame::decode(f.payload.into()).unwrap()
}

/// Item 6: a fresh session's HELLO claims `first_seq` from the outbox's own
/// window at the moment it is built. An ACK the queue has not handled yet
/// (its handling delayed here) must not make the HELLO claim too little:
/// the server would then see a gap on the first message and close 1002,
/// again on every resume.
// The slow-ack hook exists in debug builds only (not in release code).
#[cfg(debug_assertions)]
#[actix_rt::test]
async fn a_fresh_sessions_hello_claims_what_the_window_will_send_even_with_a_slow_ack_path() {
    let server = RawServer::bind().await.unwrap();
    let ws = stateful(server.ws_url())
        .test_ack_delay(Duration::from_millis(500))
        .build()
        .unwrap();
    let serve = async {
        let (mut conn, hello) = scripted_session(&server, 1 << 20).await;
        assert!(
            matches!(hello, Frame::Hello { first_seq: 1, .. }),
            "{hello:?}"
        );
        welcome(&mut conn, 0).await;
        conn
    };
    let (mut conn, res) = tokio::join!(serve, ws.connect());
    res.unwrap();
    for i in 1..=3 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    for seq in 1..=3 {
        let f = read_proto(&mut conn).await;
        assert!(matches!(f, Frame::Data { seq: s, .. } if s == seq), "{f:?}");
    }
    // Everything is acknowledged; then the session is gone at once.
    conn.send_binary(&Frame::Ack { seq: 3 }.to_bytes())
        .await
        .unwrap();
    conn.send_close(4001, "session gone").await.unwrap();

    let (mut conn, hello) = scripted_session(&server, 1 << 20).await;
    let Frame::Hello { first_seq, .. } = hello else {
        panic!("not a HELLO: {hello:?}");
    };
    assert_eq!(
        first_seq, 4,
        "messages 1-3 were acknowledged: the fresh session starts at 4"
    );
    welcome(&mut conn, first_seq - 1).await;
    ws.send("m4").await.unwrap();
    let f = read_proto(&mut conn).await;
    assert!(
        matches!(f, Frame::Data { seq, .. } if seq == first_seq),
        "the first message after the HELLO carries its first_seq: {f:?}"
    );
}

/// Reads frames up to the client's Close; returns the protocol frames
/// before it and the Close's code.
async fn frames_until_close(conn: &mut RawConn) -> (Vec<Frame>, Option<u16>) {
    let mut frames = Vec::new();
    let code = read_until_close(conn, |f| {
        if f.opcode == opcode::BINARY {
            frames.push(decode(&f));
        }
    })
    .await;
    (frames, code)
}

/// Item 2: a Close the client initiates (disconnect's 1000, and the 1002 of
/// a protocol violation) follows the pending ACK, so the server does not
/// keep (and later replay) what the client already delivered. With a
/// durable store too, where the ACK waits for its `Delivered` commit.
#[actix_rt::test]
async fn the_pending_ack_goes_out_before_a_close_the_client_initiates() {
    for durable in [false, true] {
        for violation in [false, true] {
            let what = format!("durable {durable}, violation {violation}");
            let dir = tempfile::tempdir().unwrap();
            let server = RawServer::bind().await.unwrap();
            let rec = EventRecorder::start();
            let mut b = rec.attach(stateful(server.ws_url()));
            if durable {
                b = b.durable_store(dir.path().join("client.redb"));
            }
            let ws = b.build().unwrap();
            // The client would hold its ack for a minute.
            let serve = async {
                let (mut conn, _) = scripted_session_acking(&server, 1 << 20, 60_000).await;
                welcome(&mut conn, 0).await;
                conn
            };
            let (mut conn, res) = tokio::join!(serve, ws.connect());
            res.unwrap();
            conn.send_binary(&data(1, "a")).await.unwrap();
            conn.send_binary(&data(2, "b")).await.unwrap();
            assert_eq!(rec.wait_messages(2, WAIT).await.len(), 2, "{what}");
            let closing = if violation {
                // A gap: the client fails the socket with 1002.
                conn.send_binary(&data(4, "d")).await.unwrap();
                None
            } else {
                let ws = ws.clone();
                Some(actix_rt::spawn(async move { ws.disconnect().await }))
            };
            let (frames, code) = frames_until_close(&mut conn).await;
            assert_eq!(code, Some(if violation { 1002 } else { 1000 }), "{what}");
            assert!(
                matches!(frames.last(), Some(Frame::Ack { seq: 2 })),
                "{what}: the ACK of both deliveries precedes the Close: {frames:?}"
            );
            let _ = conn.send_close(code.unwrap(), "").await;
            if let Some(closing) = closing {
                closing.await.unwrap().unwrap();
            } else {
                ws.disconnect().await.unwrap();
            }
        }
    }
}

/// Item 1: the server's `max_message_size` from negotiate is kept, and
/// `send()` refuses a larger message at once: nothing is queued or replayed,
/// and what is sent after it flows.
#[actix_rt::test]
async fn reliable_send_refuses_a_message_over_the_servers_limit() {
    let mut opts = ServerOptions::default();
    opts.max_message_size = 1024;
    let (server, _reliable) = TestServer::reliable_echo(opts).unwrap();
    let (ws, rec) = connect_recorded(stateful(server.ws_url())).await;
    let big = "x".repeat(2000);
    let err = ws.send(big.clone()).await.unwrap_err();
    assert_too_large(&err, 2000, 1024);
    let err = ws.try_send(big).unwrap_err();
    assert!(matches!(err, Error::MessageTooLarge { .. }), "{err:?}");
    assert_eq!(ws.stats().messages_buffered, 0, "nothing queued");
    ws.send("x".repeat(1024)).await.unwrap();
    ws.send("after").await.unwrap();
    let got = rec.wait_messages(2, WAIT).await;
    assert_eq!(got.len(), 2, "what follows is delivered: {got:?}");
    assert_eq!(got[1].as_text(), Some("after"));
    assert!(
        rec.closed().is_empty(),
        "no socket ended: {:?}",
        rec.closed()
    );
    ws.disconnect().await.unwrap();
}

/// Item 1, raw mode: with the peer's limit given as an option, `send()`
/// refuses a larger message.
#[actix_rt::test]
async fn raw_send_refuses_a_message_over_the_configured_peer_limit() {
    let server = TestServer::echo().await.unwrap();
    let (ws, rec) = connect_recorded(
        ResilientWebSocket::builder(server.ws_url()).max_outbound_message_size(100),
    )
    .await;
    let err = ws.send(vec![7u8; 101]).await.unwrap_err();
    assert_too_large(&err, 101, 100);
    assert!(matches!(
        ws.try_send("y".repeat(101)).unwrap_err(),
        Error::MessageTooLarge { .. }
    ));
    ws.send("z".repeat(100)).await.unwrap();
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got[0].as_text().map(str::len), Some(100));
    assert!(
        ResilientWebSocket::builder(server.ws_url())
            .max_outbound_message_size(0)
            .build()
            .is_err(),
        "a zero limit is a configuration error"
    );
    ws.disconnect().await.unwrap();
}

/// Item 1, the loop: a message queued before the server's limit was known
/// is refused by the server (1009) on every replay. After a bounded number
/// of identical refusals without progress the client ends with a terminal
/// error naming the cause, instead of reconnecting forever.
#[actix_rt::test]
async fn a_replay_the_server_refuses_again_and_again_ends_with_a_clear_error() {
    let mut opts = ServerOptions::default();
    opts.max_message_size = 1024;
    let (server, _reliable) = TestServer::reliable_echo(opts).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(stateful(proxy.ws_url())).build().unwrap();
    // Not connected: the limit is not known yet, so it is accepted.
    ws.send("x".repeat(2000)).await.unwrap();
    let _ = ws.connect().await;
    let ended = rec
        .wait_for(Duration::from_secs(10), |e| {
            matches!(e, RecordedEvent::Error(e) if matches!(e.error, Error::PeerRefusesReplay { .. }))
        })
        .await;
    let Some(RecordedEvent::Error(e)) = ended else {
        panic!(
            "no terminal error after {} connections; errors: {:?}",
            proxy.connections_total(),
            rec.errors()
        );
    };
    assert!(
        matches!(
            e.error,
            Error::PeerRefusesReplay {
                close_code: 1009,
                refusals: 3
            }
        ),
        "{:?}",
        e.error
    );
    assert!(e.error.to_string().contains("1009"), "{}", e.error);
    assert!(rec.wait_state(ConnectionState::Disconnected, WAIT).await);
    assert!(wait_until(|| ws.state() == ConnectionState::Disconnected, WAIT).await);
    let refused = rec
        .closed()
        .iter()
        .filter(|c| c.code == Some(1009) && !c.by_us)
        .count();
    assert_eq!(refused, 3, "no more attempts after it: {:?}", rec.closed());
}

/// Item 8: when the last handle is dropped without `disconnect()`, the
/// client closes its socket and all four actors stop, whatever it was doing:
/// connected (reliable, heartbeats on), reconnecting to a peer that refuses,
/// or never connected.
#[actix_rt::test]
async fn dropping_the_last_handle_closes_the_client_and_stops_every_actor() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();

    // Connected.
    let (ws, rec) =
        connect_recorded(stateful(proxy.ws_url()).heartbeat(Duration::from_millis(100), None))
            .await;
    let stats = ws.stats_reader();
    assert_eq!(stats().live_actors, 4);
    let other = ws.clone();
    drop(ws);
    other.send("still here").await.unwrap();
    assert_eq!(
        rec.wait_messages(1, WAIT).await.len(),
        1,
        "a clone keeps it"
    );
    drop(other);
    assert!(
        wait_until(|| stats().live_actors == 0, WAIT).await,
        "connected: {} actors still alive after the last handle was dropped",
        stats().live_actors
    );
    assert!(
        proxy.wait_open(0, WAIT).await,
        "the socket was closed: {} open",
        proxy.connections_open()
    );
    assert_eq!(stats().live_socket_tasks, 0);

    // Reconnecting against a peer that refuses every attempt.
    let ws = stateful(proxy.ws_url()).connect().await.unwrap();
    let stats = ws.stats_reader();
    proxy.refuse(true);
    proxy.cut_all();
    assert!(wait_until(|| ws.state() == ConnectionState::Reconnecting, WAIT).await);
    drop(ws);
    assert!(
        wait_until(|| stats().live_actors == 0, WAIT).await,
        "reconnecting: {} actors still alive",
        stats().live_actors
    );
    proxy.refuse(false);

    // Never connected.
    let ws = ResilientWebSocket::builder(proxy.ws_url()).build().unwrap();
    let stats = ws.stats_reader();
    assert!(wait_until(|| stats().live_actors == 4, WAIT).await);
    drop(ws);
    assert!(
        wait_until(|| stats().live_actors == 0, WAIT).await,
        "idle: {} actors still alive",
        stats().live_actors
    );

    // Durable: the store is released too (its lock), so a new client opens it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.redb");
    let ws = stateful(proxy.ws_url())
        .durable_store(&path)
        .connect()
        .await
        .unwrap();
    let stats = ws.stats_reader();
    ws.send("kept").await.unwrap();
    drop(ws);
    assert!(
        wait_until(|| stats().live_actors == 0, WAIT).await,
        "durable: {} actors still alive",
        stats().live_actors
    );
    let mut reopened = None;
    assert!(
        wait_until(
            || {
                reopened = stateful(proxy.ws_url()).durable_store(&path).build().ok();
                reopened.is_some()
            },
            WAIT
        )
        .await,
        "the store stays locked by the dropped client"
    );
}
