//! The protocol's keep-alive frames (docs/PROTOCOL.md §5a): the server
//! offers them in negotiate and answers every PING with its PONG; the Rust
//! client pings with them where they are offered, notices a blackholed
//! link through them, and falls back to WebSocket pings with a server that
//! predates them (never sending that server a frame it does not know).

mod common;

use std::time::{Duration, Instant};

use common::{decode, negotiate, negotiate_body, read_until_close, reliable_raw, stateful};
use resilient_ws::{
    protocol::{Frame, SUBPROTOCOL},
    server::ServerOptions,
    testing::{opcode, EventRecorder, FaultProxy, RawConn, RawServer, RecordedEvent, TestServer},
    ConnectionState, Error, Payload,
};

const WAIT: Duration = Duration::from_secs(20);

fn reliable_server() -> TestServer {
    TestServer::reliable_echo(ServerOptions::default())
        .unwrap()
        .0
}

/// Reads the next binary frame (skipping the server's WebSocket pings).
async fn next_protocol_frame(conn: &mut RawConn) -> Frame {
    loop {
        let f = tokio::time::timeout(WAIT, conn.read_frame())
            .await
            .expect("a frame in time")
            .unwrap();
        if f.opcode == opcode::BINARY {
            return decode(&f);
        }
        assert_eq!(f.opcode, opcode::PING, "only pings besides frames: {f:?}");
    }
}

#[actix_rt::test]
async fn the_server_offers_ping_frames_and_answers_each_ping_with_its_nonce_in_order() {
    let server = reliable_server();
    let (mut conn, neg) = reliable_raw(&server).await;
    assert!(neg.ping_frames, "negotiate offers PING frames");
    for nonce in [0, 1, 300, u64::MAX] {
        conn.send_binary(&Frame::Ping { nonce }.to_bytes())
            .await
            .unwrap();
    }
    for nonce in [0, 1, 300, u64::MAX] {
        assert_eq!(next_protocol_frame(&mut conn).await, Frame::Pong { nonce });
    }
    // The session is unharmed: data still flows and is echoed.
    conn.send_binary(&common::data(1, "after pings"))
        .await
        .unwrap();
    loop {
        match next_protocol_frame(&mut conn).await {
            Frame::Data { seq: 1, payload } => {
                assert_eq!(payload, Payload::from("after pings"));
                break;
            }
            Frame::Ack { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn a_pong_sent_to_the_server_is_a_protocol_violation() {
    let server = reliable_server();
    let (mut conn, _) = reliable_raw(&server).await;
    conn.send_binary(&Frame::Pong { nonce: 7 }.to_bytes())
        .await
        .unwrap();
    assert_eq!(read_until_close(&mut conn, |_| {}).await, Some(1002));
}

#[actix_rt::test]
async fn a_ping_frame_before_the_hello_is_refused() {
    let server = reliable_server();
    let _ = negotiate(&server).await;
    let mut conn = RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap();
    conn.send_binary(&Frame::Ping { nonce: 1 }.to_bytes())
        .await
        .unwrap();
    assert_eq!(read_until_close(&mut conn, |_| {}).await, Some(1002));
}

#[actix_rt::test]
async fn a_blackholed_link_is_noticed_through_ping_frames_and_the_session_resumes() {
    let server = reliable_server();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let timeout = Duration::from_millis(600);
    let ws = rec
        .attach(stateful(proxy.ws_url()).heartbeat(Duration::from_millis(150), Some(timeout)))
        .connect()
        .await
        .unwrap();
    // PONGs keep the link up past several timeouts and give the RTT. The
    // timeout counts from the last frame, up to one interval before the cut.
    ws.send("before").await.unwrap();
    let got = rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Message(_)))
        .await;
    assert!(got.is_some(), "the echo came back");
    actix_rt::time::sleep(timeout * 2).await;
    assert_eq!(ws.state(), ConnectionState::Connected);
    assert!(ws.stats().last_rtt.is_some(), "a PONG was timed");
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());

    proxy.blackhole(true);
    let cut_at = Instant::now();
    let dead = rec
        .wait_for(WAIT, |e| {
            matches!(e, RecordedEvent::Error(ev) if matches!(ev.error, Error::HeartbeatTimeout(_)))
        })
        .await;
    let after = cut_at.elapsed();
    assert!(dead.is_some(), "heartbeat timeout reported");
    assert!(
        after >= timeout - Duration::from_millis(250) && after < timeout + Duration::from_secs(1),
        "noticed within the timeout: {after:?}"
    );
    proxy.blackhole(false);
    assert!(rec
        .wait_for(WAIT, |e| matches!(e, RecordedEvent::Reconnected(_)))
        .await
        .is_some());
    ws.send("after").await.unwrap();
    let echoed = rec
        .wait_for(
            WAIT,
            |e| matches!(e, RecordedEvent::Message(m) if m.payload == Payload::from("after")),
        )
        .await;
    assert!(echoed.is_some(), "the resumed session echoes");
}

/// A scripted server whose negotiate says `ping_frames` (or not): the
/// frames the client sends after the WELCOME, for `window`.
async fn client_pings_against(
    offer: bool,
    answer: bool,
    window: Duration,
) -> (Vec<u8>, Vec<Frame>, EventRecorder) {
    let server = RawServer::bind().await.unwrap();
    let mut body: serde_json::Value =
        serde_json::from_str(&negotiate_body(None, 1 << 20, 100)).unwrap();
    if offer {
        body["ping_frames"] = true.into();
    }
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            stateful(server.ws_url())
                .heartbeat(Duration::from_millis(100), Some(Duration::from_millis(500))),
        )
        .build()
        .unwrap();
    let serve = async {
        server.respond_json(200, &body.to_string()).await.unwrap();
        let mut conn = server.accept_with(Some(SUBPROTOCOL)).await.unwrap();
        let hello = conn.read_frame().await.unwrap();
        assert!(matches!(decode(&hello), Frame::Hello { .. }));
        common::welcome(&mut conn, 0).await;
        conn
    };
    let (conn, res) = tokio::join!(serve, ws.connect());
    res.unwrap();
    let mut conn = conn;
    let mut opcodes = Vec::new();
    let mut frames = Vec::new();
    let until = tokio::time::Instant::now() + window;
    while let Ok(f) = tokio::time::timeout_at(until, conn.read_frame()).await {
        // A client that gave up on the link drops it without a Close.
        let Ok(f) = f else { break };
        opcodes.push(f.opcode);
        match f.opcode {
            opcode::BINARY => {
                let frame = decode(&f);
                if let (Frame::Ping { nonce }, true) = (&frame, answer) {
                    conn.send_binary(&Frame::Pong { nonce: *nonce }.to_bytes())
                        .await
                        .unwrap();
                }
                frames.push(frame);
            }
            opcode::PING if answer => conn
                .send_frame(true, opcode::PONG, &f.payload)
                .await
                .unwrap(),
            opcode::CLOSE => break,
            _ => {}
        }
    }
    drop(ws);
    (opcodes, frames, rec)
}

#[actix_rt::test]
async fn the_client_pings_with_frames_where_offered_and_stays_up_on_their_pongs() {
    let (opcodes, frames, rec) =
        client_pings_against(true, true, Duration::from_millis(1200)).await;
    let pings = frames
        .iter()
        .filter(|f| matches!(f, Frame::Ping { .. }))
        .count();
    assert!(pings >= 3, "PING frames every 100 ms: {frames:?}");
    assert!(
        !opcodes.contains(&opcode::PING),
        "no WebSocket pings where PING frames are offered: {opcodes:?}"
    );
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[actix_rt::test]
async fn unanswered_ping_frames_end_in_a_heartbeat_timeout() {
    let (_, frames, rec) = client_pings_against(true, false, Duration::from_millis(2000)).await;
    assert!(frames.iter().any(|f| matches!(f, Frame::Ping { .. })));
    let timed_out = rec
        .wait_for(WAIT, |e| {
            matches!(e, RecordedEvent::Error(ev) if matches!(ev.error, Error::HeartbeatTimeout(_)))
        })
        .await;
    assert!(timed_out.is_some(), "{:?}", rec.errors());
}

#[actix_rt::test]
async fn with_a_server_that_predates_ping_frames_the_client_uses_websocket_pings() {
    let (opcodes, frames, rec) =
        client_pings_against(false, true, Duration::from_millis(1200)).await;
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Ping { .. })),
        "never a frame the older server does not know: {frames:?}"
    );
    let pings = opcodes.iter().filter(|o| **o == opcode::PING).count();
    assert!(pings >= 3, "WebSocket pings every 100 ms: {opcodes:?}");
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}
