//! The fault proxy between a real client and the echo test server: it
//! forwards, and each fault looks to the client like the network failure it
//! stands for.

use std::time::{Duration, Instant};

use bytes::Bytes;
use resilient_ws::{
    testing::{EventRecorder, FaultProxy, TestServer},
    ConnectionState::*,
    Error, Payload, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(10);

fn builder(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url).reconnect_mode(ReconnectMode::None)
}

/// Connects a recorded client through the proxy and checks one echo.
async fn echo_client(proxy: &FaultProxy) -> (ResilientWebSocket, EventRecorder) {
    let rec = EventRecorder::start();
    let ws = tokio::time::timeout(WAIT, rec.attach(builder(proxy.ws_url())).connect())
        .await
        .expect("connect must not hang")
        .unwrap();
    ws.send("hello").await.unwrap();
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_text(), Some("hello"));
    (ws, rec)
}

#[actix_rt::test]
async fn messages_echo_through_the_proxy() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    assert_eq!(proxy.upstream(), server.addr());
    assert_eq!(proxy.ws_url(), format!("ws://{}/ws", proxy.addr()));

    let (ws, rec) = echo_client(&proxy).await;
    ws.send(vec![1u8, 2, 3]).await.unwrap();
    let got = rec.wait_messages(2, WAIT).await;
    assert_eq!(got[1], Payload::Binary(Bytes::from_static(&[1, 2, 3])));
    assert_eq!(proxy.connections_total(), 1);
    assert_eq!(proxy.connections_open(), 1);

    // A clean close passes through too, and the proxy lets go of the
    // connection once both ends closed.
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .unwrap()
        .unwrap();
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert!(proxy.wait_open(0, WAIT).await);
    server.stop().await;
}

#[actix_rt::test]
async fn cut_all_looks_like_a_lost_connection_and_new_ones_still_work() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (ws, rec) = echo_client(&proxy).await;
    let (_ws2, rec2) = echo_client(&proxy).await;
    assert_eq!(proxy.connections_open(), 2);

    proxy.cut_all();
    for rec in [&rec, &rec2] {
        assert!(rec.wait_state(Disconnected, WAIT).await);
        assert!(
            matches!(rec.errors()[..], [Error::ConnectionLost]),
            "{:?}",
            rec.errors()
        );
        assert!(matches!(rec.closed()[0].error, Some(Error::ConnectionLost)));
    }
    assert_eq!(ws.state(), Disconnected);
    assert!(proxy.wait_open(0, WAIT).await, "cut tasks must end");

    let (_ws3, _) = echo_client(&proxy).await;
    assert_eq!(proxy.connections_total(), 3);
    assert_eq!(proxy.connections_open(), 1);
    server.stop().await;
}

#[actix_rt::test]
async fn a_blackhole_holds_everything_until_it_lifts() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (ws, rec) = echo_client(&proxy).await;

    proxy.blackhole(true);
    ws.send("into the void").await.unwrap();
    assert_eq!(
        rec.wait_messages(2, Duration::from_millis(300)).await.len(),
        1
    );
    // Still open on both sides: a dead link, not a closed one.
    assert_eq!(ws.state(), Connected);
    assert_eq!(proxy.connections_open(), 1);

    // The message waited in the socket buffers, not lost: it arrives once
    // the link comes back.
    proxy.blackhole(false);
    let got = rec.wait_messages(2, WAIT).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].as_text(), Some("into the void"));
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    server.stop().await;
}

#[actix_rt::test]
async fn new_connections_hang_in_a_blackhole() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.blackhole(true);
    let ws = builder(proxy.ws_url())
        .connection_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = tokio::time::timeout(WAIT, ws.connect()).await.unwrap();
    assert!(r.as_ref().is_err_and(Error::is_timeout), "{r:?}");
    assert_eq!(proxy.connections_total(), 1);
    server.stop().await;
}

#[actix_rt::test]
async fn latency_delays_each_direction() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (ws, rec) = echo_client(&proxy).await;

    let latency = Duration::from_millis(200);
    proxy.set_latency(latency);
    let start = Instant::now();
    ws.send("slow").await.unwrap();
    let got = rec.wait_messages(2, WAIT).await;
    let rtt = start.elapsed();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].as_text(), Some("slow"));
    // Once out, once back.
    assert!(rtt >= 2 * latency, "round trip {rtt:?}");
    assert!(rtt < Duration::from_secs(5), "round trip {rtt:?}");

    // Order survives the delay.
    for i in 0..20 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    let got = rec.wait_messages(22, WAIT).await;
    let texts: Vec<_> = got[2..].iter().map(|p| p.as_text().unwrap()).collect();
    let want: Vec<_> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want);

    proxy.set_latency(Duration::ZERO);
    let start = Instant::now();
    ws.send("fast").await.unwrap();
    rec.wait_messages(23, WAIT).await;
    // Under the round trip it would take with the latency still on.
    assert!(start.elapsed() < 2 * latency, "took {:?}", start.elapsed());
    server.stop().await;
}

#[actix_rt::test]
async fn refused_connections_fail_fast() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    proxy.refuse(true);
    let ws = builder(proxy.ws_url()).build().unwrap();
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), ws.connect())
        .await
        .expect("a refused connect must fail fast");
    assert!(
        matches!(
            r,
            Err(Error::Io(_) | Error::ConnectionLost | Error::Handshake(_))
        ),
        "{r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(ws.state(), Disconnected);
    assert_eq!(proxy.connections_total(), 1);
    assert_eq!(proxy.connections_open(), 0);

    proxy.refuse(false);
    echo_client(&proxy).await;
    assert_eq!(proxy.connections_total(), 2);
    server.stop().await;
}

#[actix_rt::test]
async fn set_upstream_moves_new_connections() {
    let first = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(first.addr()).await.unwrap();
    let (ws, _) = echo_client(&proxy).await;
    ws.disconnect().await.unwrap();
    assert!(proxy.wait_open(0, WAIT).await);
    first.stop().await;

    // The upstream is down: the proxy closes the client's connection.
    let r = tokio::time::timeout(WAIT, builder(proxy.ws_url()).connect())
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(proxy.wait_open(0, WAIT).await);

    // The server comes back on another port.
    let second = TestServer::echo().await.unwrap();
    proxy.set_upstream(second.addr());
    assert_eq!(proxy.upstream(), second.addr());
    echo_client(&proxy).await;
    second.stop().await;
}

#[actix_rt::test]
async fn stopping_closes_everything() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let (_ws, rec) = echo_client(&proxy).await;

    // Any handle can stop it; the others see it stopped.
    let observer = proxy.clone();
    proxy.stop();
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert!(matches!(rec.errors()[..], [Error::ConnectionLost]));
    assert!(observer.wait_open(0, WAIT).await);

    // The port is closed now.
    let r = tokio::time::timeout(WAIT, builder(observer.ws_url()).connect())
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(observer.connections_total(), 1);
    server.stop().await;
}

#[actix_rt::test]
async fn dropping_the_last_handle_stops_the_proxy() {
    let server = TestServer::echo().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let url = proxy.ws_url();
    let (_ws, rec) = echo_client(&proxy).await;
    drop(proxy);
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert!(matches!(rec.errors()[..], [Error::ConnectionLost]));
    let r = tokio::time::timeout(WAIT, builder(url).connect())
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    server.stop().await;
}

#[test]
fn works_on_a_multi_thread_runtime_too() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A plain TCP echo upstream.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        let proxy = FaultProxy::start(upstream_addr).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(WAIT, c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping");
        proxy.cut_all();
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "a cut is an EOF");
        assert!(proxy.wait_open(0, WAIT).await);
    });
}
