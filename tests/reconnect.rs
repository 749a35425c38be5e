//! Reconnect: backoff, giving up, terminal errors, server restarts,
//! store-and-forward across an outage, failover, and what a restart leaves
//! behind. Real servers on 127.0.0.1; timers under paused time or short
//! configured durations.

use std::{net::SocketAddr, time::Duration};

use resilient_ws::{
    testing::{EventRecorder, RawServer, TestServer},
    ConnectionState::*,
    Error, ExponentialBackoff, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn stateless(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateless)
        .heartbeat(Duration::ZERO, None)
}

#[actix_rt::test]
async fn backoff_delays_grow_with_jitter_and_max_attempts_ends_in_disconnected() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(server.ws_url()).reconnect_delays(
            Duration::from_secs(1),
            Duration::from_secs(8),
            6,
        ))
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    // From now on the clock jumps from timer to timer: 1 + 2 + ... s of
    // backoff pass in no real time.
    tokio::time::pause();
    drop(conn.unwrap());
    drop(server);
    assert!(rec.wait_state(Disconnected, Duration::from_secs(600)).await);

    let reconnecting = rec.reconnecting();
    let attempts: Vec<u32> = reconnecting.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4, 5, 6]);
    let policy = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(8), 6);
    for r in &reconnecting {
        assert!(r.delay >= Duration::from_secs(1), "{r:?}");
        assert!(r.delay <= policy.ceiling(r.attempt), "{r:?}");
    }
    assert!(matches!(reconnecting[0].reason, Error::ConnectionLost));
    assert!(
        matches!(&reconnecting[1].reason, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    );
    // Giving up: Disconnected with the last error.
    let errors = rec.errors();
    let last = errors.last().unwrap();
    assert!(
        matches!(last, Error::GaveUp { attempts: 6, last } if matches!(**last, Error::Io(_))),
        "{last:?}"
    );
    assert_eq!(
        rec.states(),
        vec![Connecting, Connected, Reconnecting, Disconnected]
    );
}

#[actix_rt::test]
async fn a_401_on_reconnect_stops_without_retrying() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(server.ws_url()).reconnect_delays(
            Duration::from_millis(10),
            Duration::from_millis(20),
            0,
        ))
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    drop(conn.unwrap());
    server.refuse(401).await.unwrap();
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert_eq!(rec.reconnecting().len(), 1, "one attempt, then stop");
    let last = rec.errors().last().cloned().unwrap();
    assert!(
        matches!(last, Error::GaveUp { attempts: 1, .. }),
        "{last:?}"
    );
    assert_eq!(last.http_status(), Some(401));
    // Nothing else knocks.
    let more = tokio::time::timeout(Duration::from_millis(200), server.accept_tcp()).await;
    assert!(more.is_err(), "no attempt after a terminal 401");
}

#[actix_rt::test]
async fn a_server_restarted_on_the_same_port_gets_the_client_back_with_buffered_messages() {
    let first = TestServer::echo().await.unwrap();
    let addr = first.addr();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(first.ws_url()).reconnect_delays(
            Duration::from_millis(50),
            Duration::from_millis(200),
            0,
        ))
        .connect()
        .await
        .unwrap();
    ws.send("before").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await.len(), 1);

    first.kill().await;
    assert!(rec.wait_state(Reconnecting, WAIT).await);
    // Sent while the server is down: buffered, then delivered in order.
    for i in 0..20 {
        ws.send(format!("during {i}")).await.unwrap();
    }
    let second = TestServer::echo_at(addr, Default::default()).unwrap();
    assert!(rec
        .wait_for(WAIT, |e| matches!(
            e,
            resilient_ws::testing::RecordedEvent::Reconnected(_)
        ))
        .await
        .is_some());
    ws.send("after").await.unwrap();
    let got = rec.wait_messages(22, WAIT).await;
    let texts: Vec<String> = got
        .iter()
        .map(|p| p.as_text().unwrap().to_string())
        .collect();
    let mut expected = vec!["before".to_string()];
    expected.extend((0..20).map(|i| format!("during {i}")));
    expected.push("after".into());
    assert_eq!(texts, expected, "in order, none lost, none twice");
    assert_eq!(ws.stats().reconnects, 1);
    assert_eq!(ws.state(), Connected);
    ws.disconnect().await.unwrap();
    second.stop().await;
}

#[actix_rt::test]
async fn the_first_connect_fails_over_to_the_next_endpoint() {
    let server = TestServer::echo().await.unwrap();
    let dead = format!("ws://{}/ws", free_port());
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder_with_endpoints(vec![dead, server.ws_url()])
                .reconnect_mode(ReconnectMode::Stateless),
        )
        .connect()
        .await
        .unwrap();
    ws.send("via the second").await.unwrap();
    assert_eq!(
        rec.wait_messages(1, WAIT).await[0].as_text(),
        Some("via the second")
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_lost_connection_fails_over_to_the_next_endpoint() {
    let a = TestServer::echo().await.unwrap();
    let b = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder_with_endpoints(vec![a.ws_url(), b.ws_url()])
                .reconnect_mode(ReconnectMode::Stateless)
                .reconnect_delays(Duration::from_millis(10), Duration::from_millis(20), 0),
        )
        .connect()
        .await
        .unwrap();
    a.kill().await;
    assert!(rec
        .wait_for(WAIT, |e| matches!(
            e,
            resilient_ws::testing::RecordedEvent::Reconnected(_)
        ))
        .await
        .is_some());
    ws.send("on b").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await[0].as_text(), Some("on b"));
    ws.disconnect().await.unwrap();
    b.stop().await;
}

#[actix_rt::test]
async fn mode_none_does_not_reconnect() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let _ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()).reconnect_mode(ReconnectMode::None))
        .connect()
        .await
        .unwrap();
    server.kill().await;
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert!(rec.reconnecting().is_empty());
    assert!(!rec.states().contains(&Reconnecting));
}

#[actix_rt::test]
async fn a_restart_leaves_nothing_of_the_old_socket_running() {
    let server = TestServer::echo().await.unwrap();
    let addr = server.addr();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(server.ws_url())
                .reconnect_mode(ReconnectMode::Stateless)
                .reconnect_delays(Duration::from_millis(10), Duration::from_millis(20), 0)
                .heartbeat(Duration::from_millis(100), Some(Duration::from_secs(5))),
        )
        .connect()
        .await
        .unwrap();
    // One socket stream and one heartbeat watch.
    assert_eq!(ws.stats().live_socket_tasks, 2);
    let mut server = server;
    for round in 1..=3u64 {
        server.kill().await;
        server = TestServer::echo_at(addr, Default::default()).unwrap();
        let back = rec
            .wait_until(WAIT, |events| {
                let n = events
                    .iter()
                    .filter(|e| matches!(e, resilient_ws::testing::RecordedEvent::Reconnected(_)))
                    .count() as u64;
                (n >= round).then_some(())
            })
            .await;
        assert!(back.is_some(), "round {round}");
        assert_eq!(ws.stats().live_socket_tasks, 2, "round {round}");
    }
    assert_eq!(ws.stats().reconnects, 3);
    ws.disconnect().await.unwrap();
    assert_eq!(ws.stats().live_socket_tasks, 0);
    server.stop().await;
}

#[actix_rt::test]
async fn disconnect_while_waiting_to_reconnect_stops_trying() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(stateless(server.ws_url()).reconnect_delays(
            Duration::from_secs(60),
            Duration::from_secs(60),
            0,
        ))
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    drop(conn.unwrap());
    assert!(rec.wait_state(Reconnecting, WAIT).await);
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect does not wait for the retry timer")
        .unwrap();
    assert_eq!(ws.state(), Disconnected);
}

#[actix_rt::test]
async fn the_attempt_count_resets_only_after_min_uptime() {
    for (min_uptime, expect_growth) in [(Duration::from_secs(60), true), (Duration::ZERO, false)] {
        let server = RawServer::bind().await.unwrap();
        let url = server.ws_url();
        // A flapping server: accepts every upgrade, then drops it at once.
        let flapper = actix_rt::spawn(async move {
            loop {
                match server.accept().await {
                    Ok(conn) => drop(conn),
                    Err(_) => return,
                }
            }
        });
        let rec = EventRecorder::start();
        let ws = rec
            .attach(
                stateless(url)
                    .reconnect_delays(Duration::from_millis(5), Duration::from_millis(10), 0)
                    .min_uptime(min_uptime),
            )
            .connect()
            .await
            .unwrap();
        let five = rec
            .wait_until(WAIT, |events| {
                let n = events
                    .iter()
                    .filter(|e| matches!(e, resilient_ws::testing::RecordedEvent::Reconnecting(_)))
                    .count();
                (n >= 5).then_some(())
            })
            .await;
        assert!(five.is_some());
        ws.disconnect().await.unwrap();
        flapper.abort();
        let attempts: Vec<u32> = rec
            .reconnecting()
            .iter()
            .map(|r| r.attempt)
            .take(5)
            .collect();
        if expect_growth {
            assert_eq!(
                attempts,
                vec![1, 2, 3, 4, 5],
                "short-lived connections keep backing off"
            );
        } else {
            assert_eq!(
                attempts,
                vec![1, 1, 1, 1, 1],
                "each stable connection resets the count"
            );
        }
    }
}
