//! The client against real peers on 127.0.0.1: the echo test server, and a
//! scripted raw server for the cases a well-behaved server never produces.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use resilient_ws::{
    testing::{opcode, EventRecorder, RawServer, TestServer},
    ConnectionState::*,
    Error, Negotiated, Payload, ReconnectMode, ResilientWebSocket,
};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(10);

fn builder(url: impl Into<String>) -> resilient_ws::ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url).reconnect_mode(ReconnectMode::None)
}

#[actix_rt::test]
async fn sends_and_receives_text_binary_and_json() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(builder(server.ws_url()))
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.state(), Connected);

    ws.send("hello").await.unwrap();
    ws.send(vec![0u8, 159, 146, 150]).await.unwrap();
    ws.send_json(&serde_json::json!({"n": 1, "s": "x"}))
        .await
        .unwrap();

    let got = rec.wait_messages(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Payload::Text("hello".into()));
    assert_eq!(
        got[1],
        Payload::Binary(Bytes::from_static(&[0, 159, 146, 150]))
    );
    let v: serde_json::Value = serde_json::from_str(got[2].as_text().unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"n": 1, "s": "x"}));
    ws.disconnect().await.unwrap();
    server.stop().await;
}

#[actix_rt::test]
async fn events_arrive_in_order_through_a_graceful_close() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(builder(server.ws_url()))
        .connect()
        .await
        .unwrap();
    ws.disconnect().await.unwrap();
    assert_eq!(ws.state(), Disconnected);
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert_eq!(
        rec.states(),
        vec![Connecting, Connected, Disconnecting, Disconnected]
    );
    // The echo server answered our Close: a clean close we started.
    let closed = rec.closed();
    assert_eq!(closed.len(), 1);
    assert!(closed[0].by_us);
    assert_eq!(closed[0].code, Some(1000));
    assert!(closed[0].error.is_none());
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    server.stop().await;
}

#[actix_rt::test]
async fn the_message_written_just_before_close_is_not_lost() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url()).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    for i in 0..100 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    let ws2 = ws.clone();
    let closing = actix_rt::spawn(async move { ws2.disconnect().await });
    for i in 0..100 {
        let f = conn.read_data_frame().await.unwrap();
        assert_eq!(f.payload, format!("m{i}").as_bytes());
    }
    let close = conn.read_frame().await.unwrap();
    assert_eq!(close.opcode, opcode::CLOSE);
    assert_eq!(close.close_code(), Some(1000));
    conn.send_close(1000, "").await.unwrap();
    closing.await.unwrap().unwrap();
    assert_eq!(ws.state(), Disconnected);
}

#[actix_rt::test]
async fn close_timeout_is_honoured_when_the_peer_never_answers() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();

    // From here the clock only moves when everything is idle, straight to
    // the next timer: the default 5 s close timeout.
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    let ws2 = ws.clone();
    let closing = actix_rt::spawn(async move { ws2.disconnect().await });
    let close = conn.read_frame().await.unwrap();
    assert_eq!(close.close_code(), Some(1000));
    // The peer never answers.
    closing.await.unwrap().unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(5), "waited {waited:?}");
    assert!(waited < Duration::from_secs(6), "waited {waited:?}");
    assert_eq!(ws.state(), Disconnected);
    let closed = rec.closed();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].code, None, "the peer sent no Close");
    assert!(closed[0].by_us);
    drop(conn);
}

#[actix_rt::test]
async fn peer_close_1000_is_a_clean_end_and_other_codes_are_errors() {
    for (code, clean) in [(1000u16, true), (1011, false)] {
        let server = RawServer::bind().await.unwrap();
        let rec = EventRecorder::start();
        let ws = rec.attach(builder(server.ws_url())).build().unwrap();
        let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
        let mut conn = conn.unwrap();
        conn.send_close(code, "bye").await.unwrap();
        // The client answers with the same code (RFC 6455 §5.5.1).
        let echo = conn.read_frame().await.unwrap();
        assert_eq!(echo.close_code(), Some(code));
        // The server ends TCP after the Close handshake, as RFC 6455 says.
        drop(conn);
        assert!(rec.wait_state(Disconnected, WAIT).await);
        let closed = rec.closed();
        assert_eq!(closed[0].code, Some(code));
        assert_eq!(closed[0].reason, "bye");
        assert!(!closed[0].by_us);
        if clean {
            assert!(closed[0].error.is_none());
        } else {
            let err = closed[0].error.clone().unwrap();
            assert_eq!(err.close_code(), Some(1011));
            assert!(err.to_string().contains("1011"), "{err}");
        }
    }
}

#[actix_rt::test]
async fn after_answering_the_peers_close_the_client_ends_the_tcp_connection_itself() {
    // actix-web waits (lingers) for the client to end TCP after a server
    // close, while RFC 6455 lets either side end it once both Close frames
    // were exchanged: if the client waited too, every server-initiated
    // close would stall until one side's timer fired.
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(builder(server.ws_url()).close_timeout(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    conn.send_close(1001, "going away").await.unwrap();
    let echo = conn.read_frame().await.unwrap();
    assert_eq!(echo.close_code(), Some(1001));
    // The echo is whole (nothing of it lost to the shutdown), then EOF.
    let mut tcp = conn.into_inner();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert_eq!(rec.closed()[0].code, Some(1001));
}

#[actix_rt::test]
async fn an_abrupt_network_end_is_reported_not_hung_on() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    drop(conn.unwrap().into_inner());
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert!(matches!(rec.errors()[..], [Error::ConnectionLost]));
    assert!(matches!(rec.closed()[0].error, Some(Error::ConnectionLost)));
}

#[actix_rt::test]
async fn three_hundred_concurrent_connections_on_one_thread() {
    let server = TestServer::echo().await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..300 {
        clients.push(builder(server.ws_url()).build().unwrap());
    }
    let connects = clients.iter().map(|c| c.connect());
    let results =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(connects))
            .await
            .expect("300 connects must not hang (awc's connector limit is 100)");
    assert!(results.iter().all(Result::is_ok));
    assert!(clients.iter().all(|c| c.state() == Connected));
    // The last one still works end to end.
    let rec = EventRecorder::start();
    let last = rec
        .attach(builder(server.ws_url()))
        .connect()
        .await
        .unwrap();
    last.send("301st").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await[0].as_text(), Some("301st"));
    for c in &clients {
        c.disconnect().await.unwrap();
    }
    server.stop().await;
}

#[actix_rt::test]
async fn a_refused_upgrade_carries_the_http_status() {
    for status in [401u16, 404] {
        let server = RawServer::bind().await.unwrap();
        let rec = EventRecorder::start();
        let ws = rec.attach(builder(server.ws_url())).build().unwrap();
        let (req, res) = tokio::join!(server.refuse(status), ws.connect());
        req.unwrap();
        let err = res.unwrap_err();
        assert_eq!(err.http_status(), Some(status), "{err:?}");
        assert!(matches!(err, Error::UpgradeRejected { .. }));
        assert_eq!(ws.state(), Disconnected);
        assert!(rec.wait_state(Disconnected, WAIT).await);
        assert_eq!(rec.errors()[0].http_status(), Some(status));
    }
}

#[actix_rt::test]
async fn connection_refused_is_an_io_error() {
    // Bind then drop, so nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = builder(format!("ws://127.0.0.1:{port}/ws"))
        .connect()
        .await
        .unwrap_err();
    match err {
        Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_server_that_never_answers_the_upgrade_hits_connection_timeout() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url())
        .connection_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let (tcp, res) = tokio::join!(server.accept_tcp(), ws.connect());
    let err = res.unwrap_err();
    assert!(
        matches!(err, Error::ConnectTimeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tcp);
}

#[actix_rt::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    conn.send_text(b"fine").await.unwrap();
    conn.send_text([0xC3u8, 0x28]).await.unwrap();
    let close = conn.read_frame().await.unwrap();
    assert_eq!(close.close_code(), Some(1007));
    conn.send_close(1007, "").await.unwrap();
    assert!(rec.wait_state(Disconnected, WAIT).await);
    assert_eq!(rec.messages(), vec![Payload::Text("fine".into())]);
    let errors = rec.errors();
    assert!(
        matches!(
            &errors[..],
            [Error::Protocol {
                close_code: 1007,
                ..
            }]
        ),
        "{errors:?}"
    );
}

#[actix_rt::test]
async fn an_oversize_message_closes_with_1009_whole_or_fragmented() {
    for fragmented in [false, true] {
        let server = RawServer::bind().await.unwrap();
        let rec = EventRecorder::start();
        let ws = rec
            .attach(builder(server.ws_url()).max_message_size(1024))
            .build()
            .unwrap();
        let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
        let mut conn = conn.unwrap();
        conn.send_binary(&[7; 1024]).await.unwrap(); // exactly the limit: fine
        if fragmented {
            conn.send_frame(false, opcode::BINARY, &[1; 600])
                .await
                .unwrap();
            conn.send_frame(true, opcode::CONTINUATION, &[2; 600])
                .await
                .unwrap();
        } else {
            conn.send_binary(&[1; 1025]).await.unwrap();
        }
        let close = conn.read_frame().await.unwrap();
        assert_eq!(close.close_code(), Some(1009), "fragmented: {fragmented}");
        drop(conn);
        assert!(rec.wait_state(Disconnected, WAIT).await);
        assert_eq!(rec.messages().len(), 1);
        assert!(matches!(
            rec.errors()[..],
            [Error::MessageTooLarge { max: 1024, .. }]
        ));
    }
}

#[actix_rt::test]
async fn fragments_are_joined_and_pings_answered() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    conn.send_frame(false, opcode::TEXT, "hé".as_bytes())
        .await
        .unwrap();
    // A control frame may come between fragments.
    conn.send_frame(true, opcode::PING, b"are you there")
        .await
        .unwrap();
    conn.send_frame(false, opcode::CONTINUATION, b"llo ")
        .await
        .unwrap();
    conn.send_frame(true, opcode::CONTINUATION, b"world")
        .await
        .unwrap();
    let pong = conn.read_frame().await.unwrap();
    assert_eq!(pong.opcode, opcode::PONG);
    assert_eq!(pong.payload, b"are you there");
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got, vec![Payload::Text("héllo world".into())]);
    let answer = async {
        let close = conn.read_frame().await.unwrap();
        conn.send_close(close.close_code().unwrap(), "")
            .await
            .unwrap();
    };
    let (_, res) = tokio::join!(answer, ws.disconnect());
    res.unwrap();
}

#[actix_rt::test]
async fn headers_subprotocol_and_token_reach_the_server() {
    let server = RawServer::bind().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let ws = builder(server.ws_url())
        .header("X-Tenant", "acme")
        .protocol("chat.v2")
        .protocol("chat.v1")
        .auth_token(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("tok-{n}")) }
        })
        .build()
        .unwrap();
    for round in 0..2 {
        let (conn, ()) = tokio::join!(server.accept_with(Some("chat.v1")), async {
            ws.connect().await.unwrap()
        });
        let conn = conn.unwrap();
        let req = &conn.request;
        assert_eq!(req.header("x-tenant"), Some("acme"));
        assert_eq!(
            req.header("sec-websocket-protocol"),
            Some("chat.v2,chat.v1")
        );
        // A fresh token per attempt, in the header and never in the URL.
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer tok-{round}").as_str())
        );
        assert!(!req.path.contains("tok-"));
        assert_eq!(ws.protocol().as_deref(), Some("chat.v1"));
        drop(conn);
        // The dropped socket ends this round; wait until the client saw it.
        for _ in 0..200 {
            if ws.state() == Disconnected {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ws.state(), Disconnected);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn a_subprotocol_that_was_not_offered_is_a_handshake_error() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url()).protocol("a").build().unwrap();
    let (_conn, res) = tokio::join!(server.accept_with(Some("b")), ws.connect());
    assert!(matches!(res, Err(Error::Handshake(_))), "{res:?}");
}

#[actix_rt::test]
async fn the_negotiate_hook_can_change_url_and_token() {
    let server = RawServer::bind().await.unwrap();
    let real_url = format!("ws://{}/negotiated?x=1", server.addr());
    let ws = builder("ws://127.0.0.1:1/unused")
        .auth_token(|| async { Ok("first".to_string()) })
        .negotiate(move |req| {
            let url = real_url.clone();
            async move {
                assert_eq!(req.auth_token.as_deref(), Some("first"));
                Ok(Negotiated::new(url, Some("second".into())))
            }
        })
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let conn = conn.unwrap();
    assert_eq!(conn.request.path, "/negotiated?x=1");
    assert_eq!(conn.request.header("authorization"), Some("Bearer second"));
}

#[actix_rt::test]
async fn a_failing_token_provider_is_an_auth_error_and_nothing_is_sent() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url())
        .auth_token(|| async { Err(Error::Auth("token expired".into())) })
        .build()
        .unwrap();
    let err = ws.connect().await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth(m) if m.contains("expired")),
        "{err:?}"
    );
    // Nobody connected.
    let accepted = tokio::time::timeout(Duration::from_millis(100), server.accept_tcp()).await;
    assert!(accepted.is_err());
}

#[actix_rt::test]
async fn messages_sent_before_connect_are_buffered_and_sent_in_order() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    for i in 0..5 {
        ws.send(format!("early {i}")).await.unwrap();
    }
    ws.connect().await.unwrap();
    ws.send("late").await.unwrap();
    let got = rec.wait_messages(6, WAIT).await;
    let texts: Vec<_> = got.iter().map(|p| p.as_text().unwrap()).collect();
    assert_eq!(
        texts,
        ["early 0", "early 1", "early 2", "early 3", "early 4", "late"]
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn without_buffering_a_send_while_disconnected_is_refused() {
    let ws = builder("ws://127.0.0.1:1/ws")
        .buffering(false, 0)
        .build()
        .unwrap();
    assert!(matches!(ws.send("x").await, Err(Error::NotConnected)));
    let ws = builder("ws://127.0.0.1:1/ws")
        .buffering(true, 2)
        .build()
        .unwrap();
    ws.send("a").await.unwrap();
    ws.send("b").await.unwrap();
    // The outbox decides (no count to lag behind): refused at once.
    assert!(matches!(ws.send("c").await, Err(Error::BufferFull(2))));
}

#[actix_rt::test]
async fn bad_urls_and_options_are_clear_errors() {
    let err = builder("http//nope").connect().await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl(_)), "{err:?}");
    let err = builder("ftp://127.0.0.1/ws").connect().await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl(_)), "{err:?}");
    let err = builder("ws://x/ws")
        .connection_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    let err = builder("ws://x/ws")
        .header("bad header", "v")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}

#[test]
fn building_outside_a_system_is_a_clear_error() {
    let err = builder("ws://127.0.0.1:1/ws").build().unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(m) if m.contains("System")));
}

#[actix_rt::test]
async fn disconnect_while_connecting_abandons_the_attempt() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(builder(server.ws_url())).build().unwrap();
    let ws2 = ws.clone();
    let connecting = actix_rt::spawn(async move { ws2.connect().await });
    let _tcp = server.accept_tcp().await.unwrap();
    ws.disconnect().await.unwrap();
    assert!(connecting.await.unwrap().is_err());
    assert_eq!(ws.state(), Disconnected);
    let _ = rec.wait_state(Disconnected, WAIT).await;
    assert_eq!(rec.states(), vec![Connecting, Disconnected]);
}
