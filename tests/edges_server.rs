//! Server correctness edges (issue 11, items 2, 4, 5, 10, 11): drain on
//! shutdown, inbound backpressure, `send_to` that waits, close codes with
//! one meaning, server heartbeats. Real sockets on 127.0.0.1; scripted
//! clients are [`RawConn`]; timers are short configured durations and every
//! wait is bounded.

use std::time::Duration;

use bytes::Bytes;
use resilient_ws::{
    close_code,
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    server::{ReliableServer, ServerOptions},
    testing::{opcode, RawConn, RawFrame, TestServer},
    Payload,
};

const WAIT: Duration = Duration::from_secs(20);

async fn negotiate(server: &TestServer) -> NegotiateResponse {
    let req = awc::Client::default().post(format!("http://{}/ws/negotiate", server.addr()));
    let mut resp = tokio::time::timeout(WAIT, req.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.body().await.unwrap();
    NegotiateResponse::parse(&body).unwrap()
}

/// A raw protocol client: negotiate, upgrade, HELLO, WELCOME.
async fn reliable_raw(server: &TestServer) -> (RawConn, NegotiateResponse) {
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
    let welcome = c.read_frame().await.unwrap();
    assert!(
        matches!(decode(&welcome), Frame::Welcome { .. }),
        "{welcome:?}"
    );
    (c, neg)
}

fn decode(f: &RawFrame) -> Frame {
    assert_eq!(f.opcode, opcode::BINARY, "{f:?}");
    Frame::decode(Bytes::from(f.payload.clone())).unwrap()
}

fn data(seq: u64, payload: impl Into<Payload>) -> Vec<u8> {
    Frame::Data {
        seq,
        payload: payload.into(),
    }
    .to_bytes()
    .to_vec()
}

/// Reads frames until a Close; its code (`None`: the stream ended first).
async fn close_code_of(conn: &mut RawConn) -> Option<u16> {
    let read = async {
        loop {
            match conn.read_frame().await {
                Ok(f) if f.opcode == opcode::CLOSE => return f.close_code(),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a close in time")
}

/// Waits (bounded) until `check` holds, polling every few ms.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Item 10: close codes mean one thing.

/// A reliable client that acks the echoes without reading them is dropped
/// as "too slow" with 1013 (try again later: the session stays and the
/// client resumes), not with 1008, which a client treats as terminal.
#[actix_rt::test]
async fn a_too_slow_reliable_socket_is_closed_with_1013_not_1008() {
    let (server, reliable): (TestServer, ReliableServer) =
        TestServer::reliable_echo(ServerOptions {
            max_unacked_bytes: 256 * 1024,
            ..ServerOptions::default()
        })
        .unwrap();
    let (mut c, _neg) = reliable_raw(&server).await;
    let chunk = vec![7u8; 32 * 1024];
    let mut seq = 0u64;
    while reliable.stats().attached == 1 {
        seq += 1;
        assert!(seq < 20_000, "never dropped as too slow");
        c.send_binary(&data(seq, chunk.clone())).await.unwrap();
        if seq > 4 {
            // Blind acks for the echoes, 4 behind: within the window.
            c.send_binary(&Frame::Ack { seq: seq - 4 }.to_bytes())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(reliable.sessions(), 1, "the session stays");
    assert_eq!(
        close_code_of(&mut c).await,
        Some(close_code::TRY_AGAIN_LATER)
    );
    server.stop().await;
}
