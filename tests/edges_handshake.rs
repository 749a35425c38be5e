//! Edges of the handshake, limits, unauthenticated peers, pongs and message
//! ids (issue 11, items 1 (server), 12, 13, 15). Real sockets on 127.0.0.1;
//! scripted peers are [`RawServer`] (a server) and [`RawConn::connect`] (a
//! client). Every wait is bounded.

use std::time::Duration;

use bytes::Bytes;
use resilient_ws::{
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    server::{ReliableServer, ServerOptions},
    testing::{opcode, EventRecorder, RawConn, RawFrame, RawServer, TestServer},
    ConnectionState, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(10);

/// Ten pings of Autobahn cases 2.10/2.11: "payload-0".."payload-9".
fn ten_payloads() -> Vec<Vec<u8>> {
    (0..10)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect()
}

/// `pings` as ping frames in one buffer, so they arrive back to back
/// (masked with a zero key when sent by a client).
fn ping_burst(pings: &[Vec<u8>], masked: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pings {
        assert!(p.len() < 126);
        out.push(0x80 | opcode::PING);
        if masked {
            out.push(0x80 | p.len() as u8);
            out.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            out.push(p.len() as u8);
        }
        out.extend_from_slice(p);
    }
    out
}

/// Reads frames until `n` pongs arrived (skipping anything else); their
/// payloads in order.
async fn read_pongs(conn: &mut RawConn, n: usize) -> Vec<Vec<u8>> {
    let mut pongs = Vec::new();
    let read = async {
        while pongs.len() < n {
            let f: RawFrame = conn.read_frame().await.expect("a frame");
            if f.opcode == opcode::PONG {
                pongs.push(f.payload);
            }
        }
    };
    let done = tokio::time::timeout(WAIT, read).await;
    assert!(done.is_ok(), "only {} pongs: {:?}", pongs.len(), pongs);
    pongs
}

async fn negotiate(server: &TestServer) -> NegotiateResponse {
    let mut resp = tokio::time::timeout(
        WAIT,
        awc::Client::default()
            .post(format!("http://{}/ws/negotiate", server.addr()))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    NegotiateResponse::parse(&resp.body().await.unwrap()).unwrap()
}

/// A raw protocol client past its WELCOME.
async fn reliable_raw(server: &TestServer) -> RawConn {
    let neg = negotiate(server).await;
    let mut c = RawConn::connect(
        server.addr(),
        "/ws",
        &[("Sec-WebSocket-Protocol", SUBPROTOCOL)],
    )
    .await
    .unwrap();
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received: 0,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = tokio::time::timeout(WAIT, c.read_frame())
        .await
        .unwrap()
        .unwrap();
    let frame = Frame::decode(Bytes::from(welcome.payload)).unwrap();
    assert!(matches!(frame, Frame::Welcome { .. }), "{frame:?}");
    c
}

// ---------------------------------------------------------------------------
// Item 13: every ping of a burst gets its pong; a flood stays bounded.

#[actix_rt::test]
async fn client_answers_each_of_ten_pings_in_a_row_autobahn_2_10() {
    let server = RawServer::bind().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let pings = ten_payloads();
    conn.send_raw(&ping_burst(&pings, false)).await.unwrap();
    assert_eq!(read_pongs(&mut conn, 10).await, pings);
    assert_eq!(ws.state(), ConnectionState::Connected);
}

#[actix_rt::test]
async fn client_still_bounds_a_sustained_ping_flood() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()))
        .reconnect_mode(ReconnectMode::None)
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let pings = 20_000u32;
    let all: Vec<Vec<u8>> = (0..pings).map(|i| i.to_be_bytes().to_vec()).collect();
    conn.send_raw(&ping_burst(&all, false)).await.unwrap();
    // The newest ping is answered; pongs are far fewer than pings.
    let last = (pings - 1).to_be_bytes().to_vec();
    let mut pongs = 0u32;
    let read = async {
        loop {
            let f = conn.read_frame().await.unwrap();
            assert_eq!(f.opcode, opcode::PONG, "{f:?}");
            pongs += 1;
            if f.payload == last {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the newest ping answered");
    // The burst allowance plus one per 50 ms for however long reading took.
    assert!(pongs < 1000, "{pongs} pongs for {pings} pings");
    assert_eq!(ws.state(), ConnectionState::Connected);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_protocol_socket() {
    let (server, _reliable): (TestServer, ReliableServer) =
        TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let mut c = reliable_raw(&server).await;
    let pings = ten_payloads();
    c.send_raw(&ping_burst(&pings, true)).await.unwrap();
    assert_eq!(read_pongs(&mut c, 10).await, pings);
    server.stop().await;
}

#[actix_rt::test]
async fn server_answers_each_of_ten_pings_in_a_row_on_a_plain_socket() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    let pings = ten_payloads();
    c.send_raw(&ping_burst(&pings, true)).await.unwrap();
    assert_eq!(read_pongs(&mut c, 10).await, pings);
    server.stop().await;
}
