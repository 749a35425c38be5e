//! Reliable mode end to end: the stateful client against the reliable
//! server, through the fault proxy. Exactly once and in order both ways
//! across cuts and a blackhole; backpressure; a lost session; a server
//! without the protocol.

mod common;

use std::time::Duration;

use common::{
    assert_exactly_once_in_order, held_acks, numbered, server_options, wait_until, Inbox,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use resilient_ws::{
    client::OutgoingMessage,
    server::ServerOptions,
    testing::{EventRecorder, FaultProxy, RecordedEvent, TestServer},
    ConnectionState::*,
    Error, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(60);

/// A quick stateful client (see [`common::stateful`]) with room for a
/// long stream.
fn stateful(url: String) -> ResilientWebSocketBuilder {
    common::stateful(url).buffering(true, 10_000)
}

#[actix_rt::test]
async fn twenty_thousand_each_way_survive_random_cuts_exactly_once_in_order() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let inbox = Inbox::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(proxy.ws_url()))
        .connect()
        .await
        .unwrap();

    // Cut every connection at random 50-300 ms intervals (seeded).
    let cutter = {
        let proxy = proxy.clone();
        actix_rt::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed);
            let mut cuts = 0u32;
            loop {
                actix_rt::time::sleep(Duration::from_millis(rng.random_range(50..=300))).await;
                proxy.cut_all();
                cuts += 1;
                if cuts > 1000 {
                    return;
                }
            }
        })
    };
    // Paced (100 messages every 10 ms), so the stream spans many cuts.
    let n = 20_000;
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
        if i % 100 == 99 {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let echoed = rec.wait_messages(n, WAIT).await;
    cutter.abort();
    let got: Vec<String> = echoed
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    assert_exactly_once_in_order(&inbox.texts(), &numbered("m", 0..n), "client -> server");
    assert_exactly_once_in_order(&got, &numbered("m", 0..n), "server -> client (echoes)");
    let stats = ws.stats();
    println!(
        "chaos: {n} each way, {} reconnects, {} proxy connections",
        stats.reconnects,
        proxy.connections_total()
    );
    assert!(
        stats.reconnects >= 5,
        "the proxy cut many times: {}",
        stats.reconnects
    );
    assert!(rec
        .events()
        .iter()
        .all(|e| !matches!(e, RecordedEvent::SessionLost(_))));
    ws.disconnect().await.unwrap();
    server.stop().await;
}

#[actix_rt::test]
async fn a_blackholed_link_mid_stream_resumes_without_loss() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            stateful(proxy.ws_url())
                .heartbeat(Duration::from_millis(100), Some(Duration::from_millis(400))),
        )
        .connect()
        .await
        .unwrap();
    let n = 2_000;
    for i in 0..n / 2 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    proxy.blackhole(true);
    for i in n / 2..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Error(ev) if matches!(ev.error, Error::HeartbeatTimeout(_))))
        .await
        .is_some());
    proxy.blackhole(false);
    let got: Vec<String> = rec
        .wait_messages(n, WAIT)
        .await
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    assert_exactly_once_in_order(&got, &numbered("m", 0..n), "echoes across a blackhole");
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn the_sender_blocks_on_a_full_window_and_resumes_when_acks_arrive() {
    let mut options = ServerOptions::default();
    options.ack_interval = Duration::from_millis(50);
    options.max_unacked_bytes = 1_000;
    let (server, _reliable) = TestServer::reliable(options).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let ws = stateful(proxy.ws_url())
        .buffering(true, 5)
        .connect()
        .await
        .unwrap();
    // Nothing gets through, so no acks: 10 x 100 B fill the 1000 B window,
    // 5 more fill the outbox, and the next send waits.
    proxy.blackhole(true);
    for i in 0..15 {
        tokio::time::timeout(Duration::from_secs(5), ws.send("x".repeat(100)))
            .await
            .unwrap_or_else(|_| panic!("send {i} should not block yet"))
            .unwrap();
    }
    assert!(
        wait_until(|| ws.stats().messages_buffered == 5, WAIT).await,
        "{:?}",
        ws.stats()
    );
    // Its first poll hands it to the outbox, which parks it; an answer from
    // the outbox after that shows it was decided there.
    let blocked = ws.send("y".repeat(100));
    futures::pin_mut!(blocked);
    assert!(futures::poll!(blocked.as_mut()).is_pending());
    let refused = ws.sender().send(OutgoingMessage::new("z")).await.unwrap();
    assert!(matches!(refused, Err(Error::BufferFull(5))), "{refused:?}");
    assert!(
        futures::poll!(blocked.as_mut()).is_pending(),
        "the 16th send waits for acks"
    );
    assert_eq!(ws.stats().messages_dropped, 0, "never drops");
    // Acks flow again: the sender is released.
    proxy.blackhole(false);
    tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("released by acks")
        .unwrap();
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn after_the_resume_window_the_client_starts_fresh_and_resends_unacked() {
    // Acks held long, so messages are still unacked when the link dies.
    let (server, reliable) = TestServer::reliable(held_acks(Duration::from_millis(200))).unwrap();
    let inbox = Inbox::attach(&reliable);
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            stateful(proxy.ws_url())
                .reconnect_delays(Duration::from_millis(600), Duration::from_millis(600), 0)
                // The server holds acks for 30 s here; do not wait for them.
                .close_timeout(Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap();
    for i in 0..5 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    assert!(wait_until(|| inbox.len() == 5, Duration::from_secs(5)).await);
    // The link dies; the client is back only after the window closed.
    proxy.cut_all();
    let lost = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::SessionLost(_)))
        .await;
    let Some(RecordedEvent::SessionLost(lost)) = lost else {
        panic!("no SessionLost event");
    };
    assert_eq!(lost.resending, 5, "all five were unacked");
    assert!(rec.wait_state(Connected, WAIT).await);
    ws.send("m5").await.unwrap();
    assert!(wait_until(|| inbox.len() == 11, Duration::from_secs(10)).await);
    let got = inbox.all();
    // At least once across a lost session: the old session delivered 0..5,
    // the new one gets them again with the same ids, then m5.
    let first: Vec<_> = got[..5].iter().map(|m| (m.1, m.2.clone())).collect();
    let again: Vec<_> = got[5..10].iter().map(|m| (m.1, m.2.clone())).collect();
    assert_eq!(first, again, "re-sent with their original ids");
    assert_ne!(got[0].0, got[5].0, "in a new session");
    assert_eq!((got[10].1, got[10].2.as_str()), (6, "m5"));
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn stateful_against_a_plain_server_is_a_clear_error() {
    let plain = TestServer::echo().await.unwrap();
    let err = stateful(plain.ws_url()).connect().await.unwrap_err();
    assert!(matches!(err, Error::ProtocolNotSupported(_)), "{err:?}");
    assert!(err.to_string().contains("reliable protocol"), "{err}");
}

#[actix_rt::test]
async fn a_reliable_server_still_answers_plain_clients() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()).reconnect_mode(ReconnectMode::None))
        .connect()
        .await
        .unwrap();
    ws.send("plain").await.unwrap();
    assert_eq!(
        rec.wait_messages(1, Duration::from_secs(5)).await[0].as_text(),
        Some("plain")
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_graceful_close_waits_until_the_server_has_everything() {
    let mut options = ServerOptions::default();
    // Acks come late: a close that did not wait for them would leave
    // messages unacknowledged (and, on a lossy link, undelivered).
    options.ack_interval = Duration::from_millis(300);
    options.ack_threshold = 1_000_000;
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let inbox = Inbox::attach(&reliable);
    let ws = stateful(server.ws_url()).connect().await.unwrap();
    for i in 0..100 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    let start = std::time::Instant::now();
    ws.disconnect().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "waited for the acks"
    );
    assert_eq!(ws.stats().messages_sent, 100);
    assert_exactly_once_in_order(&inbox.texts(), &numbered("m", 0..100), "before the close");
    server.stop().await;
}

#[actix_rt::test]
async fn a_flood_far_larger_than_the_outbox_is_delivered_once_with_send_waiting() {
    // A small window, so the outbox fills and send() has to wait.
    let mut options = ServerOptions::default();
    options.max_unacked_bytes = 4096;
    let (server, reliable) = TestServer::reliable_echo(options).unwrap();
    let inbox = Inbox::attach(&reliable);
    let rec = EventRecorder::start();
    // An outbox of 500 and an unpaced flood of 30 000: send() must wait,
    // and every message it accepted must arrive.
    let ws = rec
        .attach(stateful(server.ws_url()).buffering(true, 500))
        .connect()
        .await
        .unwrap();
    let n = 30_000;
    for i in 0..n {
        ws.send(format!("m{i}")).await.unwrap();
    }
    let got: Vec<String> = rec
        .wait_messages(n, WAIT)
        .await
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    assert!(
        rec.errors().is_empty(),
        "{:?}",
        &rec.errors()[..3.min(rec.errors().len())]
    );
    assert_exactly_once_in_order(&inbox.texts(), &numbered("m", 0..n), "client -> server");
    assert_exactly_once_in_order(&got, &numbered("m", 0..n), "echoes");
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn disconnect_ends_the_session_and_a_later_connect_starts_a_fresh_one() {
    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()))
        .connect()
        .await
        .unwrap();
    ws.send("one").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await.len(), 1);
    assert_eq!(reliable.sessions(), 1);
    ws.disconnect().await.unwrap();
    // The server let the session go at once, not after the resume window.
    assert!(wait_until(|| reliable.sessions() == 0, Duration::from_secs(5)).await);
    ws.connect().await.unwrap();
    ws.send("two").await.unwrap();
    let got = rec.wait_messages(2, WAIT).await;
    assert_eq!(got[1].as_text(), Some("two"));
    assert!(
        rec.events()
            .iter()
            .all(|e| !matches!(e, RecordedEvent::SessionLost(_))),
        "a fresh session after our own close is not a lost one"
    );
    ws.disconnect().await.unwrap();
}

/// A scripted reliable server that breaks the sequence rules: the client
/// closes with 1002 and the session is intact (it resumes with the same id
/// and what it had delivered).
#[actix_rt::test]
async fn a_server_that_breaks_the_rules_gets_1002_and_the_session_survives() {
    use resilient_ws::protocol::{new_connection_id, new_reconnect_token, Frame, SUBPROTOCOL};
    use resilient_ws::testing::{opcode, RawServer};

    #[derive(Debug)]
    enum Bad {
        Gap,
        Backwards,
        AckForUnsent,
        Malformed,
        Text,
    }
    for bad in [
        Bad::Gap,
        Bad::Backwards,
        Bad::AckForUnsent,
        Bad::Malformed,
        Bad::Text,
    ] {
        let server = RawServer::bind().await.unwrap();
        let id = new_connection_id();
        let body = serde_json::json!({
            "protocol": SUBPROTOCOL, "version": 1, "connection_id": id,
            "reconnect_token": new_reconnect_token(), "url": null,
            "resume_window_ms": 30000, "max_message_size": 1048576,
            "max_unacked_bytes": 1048576, "ack_interval_ms": 100, "ack_threshold": 64
        })
        .to_string();
        let rec = EventRecorder::start();
        let ws = rec
            .attach(stateful(server.ws_url()).close_timeout(Duration::from_millis(200)))
            .build()
            .unwrap();
        let serve = async {
            server.respond_json(200, &body).await.unwrap();
            let mut conn = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
            let hello = conn.read_frame().await.unwrap();
            let hello = Frame::decode(hello.payload.into()).unwrap();
            assert!(matches!(&hello, Frame::Hello { connection_id, .. } if *connection_id == id));
            let welcome = Frame::Welcome {
                resumed: false,
                last_received: 0,
            };
            conn.send_binary(&welcome.to_bytes()).await.unwrap();
            conn
        };
        let (conn, res) = tokio::join!(serve, ws.connect());
        res.unwrap();
        let mut conn = conn;
        let data = |seq: u64, t: &str| {
            Frame::Data {
                seq,
                payload: t.into(),
            }
            .to_bytes()
        };
        let delivered = match bad {
            Bad::Gap => {
                conn.send_binary(&data(1, "a")).await.unwrap();
                conn.send_binary(&data(3, "c")).await.unwrap();
                1
            }
            Bad::Backwards => {
                conn.send_binary(&data(1, "a")).await.unwrap();
                conn.send_binary(&data(2, "b")).await.unwrap();
                conn.send_binary(&data(2, "b")).await.unwrap();
                2
            }
            Bad::AckForUnsent => {
                conn.send_binary(&Frame::Ack { seq: 5 }.to_bytes())
                    .await
                    .unwrap();
                0
            }
            Bad::Malformed => {
                conn.send_binary(&[0x7f, 1, 2]).await.unwrap();
                0
            }
            Bad::Text => {
                conn.send_text("not a frame").await.unwrap();
                0
            }
        };
        // Skip the client's acks; the next thing that matters is its Close.
        let close = loop {
            let f = conn.read_frame().await.unwrap();
            if f.opcode == opcode::CLOSE {
                break f;
            }
        };
        assert_eq!(close.close_code(), Some(1002), "{bad:?}");
        drop(conn);
        assert_eq!(
            rec.messages().len(),
            delivered,
            "{bad:?}: delivered before the violation"
        );
        // The client comes back to the same session, stating what it has.
        let mut again = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        let hello = Frame::decode(again.read_frame().await.unwrap().payload.into()).unwrap();
        match hello {
            Frame::Hello {
                connection_id,
                last_received,
                ..
            } => {
                assert_eq!(connection_id, id, "{bad:?}: same session");
                assert_eq!(last_received, delivered as u64, "{bad:?}");
            }
            other => panic!("{bad:?}: expected HELLO, got {other:?}"),
        }
        drop(again);
        ws.disconnect().await.unwrap();
    }
}

#[actix_rt::test]
async fn a_flood_against_a_full_window_keeps_the_sequence_in_order() {
    // A burst collected while the window had room must reach the socket
    // before messages the next ack releases from the outbox: the other way
    // round the server sees the sequence go backwards (1002), and the
    // client pays a reconnect for it.
    let (server, reliable) = TestServer::reliable(server_options(|o| {
        o.max_unacked_bytes = 64 * 1024;
    }))
    .unwrap();
    let inbox = Inbox::attach(&reliable);
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateful(server.ws_url()))
        .connect()
        .await
        .unwrap();
    let n = 100_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        ws.send_batch(chunk.iter().map(|i| format!("m{i}")))
            .await
            .unwrap();
    }
    assert!(wait_until(|| inbox.len() >= n, WAIT).await);
    assert_exactly_once_in_order(&inbox.texts(), &numbered("m", 0..n), "server");
    assert!(
        rec.closed().is_empty(),
        "no socket closed: {:?}",
        rec.closed()
    );
    assert_eq!(ws.stats().reconnects, 0);
}
