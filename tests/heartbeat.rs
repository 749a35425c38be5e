//! Heartbeats: pings carry on a quiet link, a blackholed (half-open) link is
//! declared dead within the heartbeat timeout, and the client reconnects.

use std::time::{Duration, Instant};

use resilient_ws::{
    testing::{EventRecorder, FaultProxy, RawServer, RecordedEvent, TestServer},
    ConnectionState::*,
    Error, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn a_blackholed_link_is_detected_within_the_timeout_and_the_client_reconnects() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let timeout = Duration::from_millis(600);
    let ws = rec
        .attach(
            ResilientWebSocket::builder(proxy.ws_url())
                .reconnect_mode(ReconnectMode::Stateless)
                .reconnect_delays(Duration::from_millis(10), Duration::from_millis(20), 0)
                .heartbeat(Duration::from_millis(150), Some(timeout)),
        )
        .connect()
        .await
        .unwrap();
    // Pings are answered: the link stays up past several timeouts.
    actix_rt::time::sleep(timeout * 2).await;
    assert_eq!(ws.state(), Connected);
    assert!(ws.stats().last_rtt.is_some(), "a pong was measured");
    assert!(rec.errors().is_empty());

    // Half-open: TCP stays up, nothing gets through.
    proxy.blackhole(true);
    let cut_at = Instant::now();
    let dead = rec
        .wait_for(WAIT, |e| {
            matches!(e, RecordedEvent::Error(ev) if matches!(ev.error, Error::HeartbeatTimeout(_)))
        })
        .await;
    let detected_after = cut_at.elapsed();
    assert!(dead.is_some(), "heartbeat timeout reported");
    assert!(
        detected_after >= timeout - Duration::from_millis(150),
        "{detected_after:?}"
    );
    assert!(
        detected_after < timeout + Duration::from_millis(500),
        "detected within the timeout plus a small margin: {detected_after:?}"
    );
    proxy.blackhole(false);
    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnected(_)))
        .await
        .is_some());
    ws.send("alive again").await.unwrap();
    assert_eq!(
        rec.wait_messages(1, WAIT).await[0].as_text(),
        Some("alive again")
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn pings_go_out_on_the_interval_and_any_frame_counts_as_life() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(server.ws_url())
                .reconnect_mode(ReconnectMode::None)
                .heartbeat(Duration::from_secs(30), None),
        )
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    tokio::time::pause();
    // The peer never answers pings but keeps sending data: still alive.
    for _ in 0..4 {
        let ping = conn.read_frame().await.unwrap();
        assert_eq!(ping.opcode, resilient_ws::testing::opcode::PING);
        assert_eq!(ping.payload.len(), 8, "the ping carries its send time");
        conn.send_text("data").await.unwrap();
    }
    assert_eq!(ws.state(), Connected);
    // Now silence: dead after the default timeout, twice the interval.
    let start = tokio::time::Instant::now();
    assert!(rec.wait_state(Disconnected, Duration::from_secs(300)).await);
    let silent = start.elapsed();
    assert!(
        silent >= Duration::from_secs(60) - Duration::from_secs(1),
        "{silent:?}"
    );
    assert!(silent <= Duration::from_secs(61), "{silent:?}");
    assert!(matches!(
        rec.errors()[..],
        [Error::HeartbeatTimeout(d)] if d == Duration::from_secs(60)
    ));
}

#[actix_rt::test]
async fn a_zero_interval_disables_heartbeats() {
    let server = RawServer::bind().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .heartbeat(Duration::ZERO, None)
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    tokio::time::pause();
    let nothing = tokio::time::timeout(Duration::from_secs(3600), conn.read_frame()).await;
    assert!(nothing.is_err(), "no ping in an hour: {nothing:?}");
    assert_eq!(ws.state(), Connected);
    assert_eq!(ws.stats().live_socket_tasks, 1, "no heartbeat watch");
}
