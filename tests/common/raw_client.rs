//! A scripted client of the reliable protocol (a [`RawConn`]), for tests of
//! what the server does with frames a well-behaved client would not send;
//! and reading a raw socket, from either side.

use std::net::SocketAddr;

use awc::http::header::HeaderValue;
use bytes::Bytes;
use resilient_ws::{
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    testing::{opcode, RawConn, RawFrame, TestServer},
    Payload,
};

use super::STEP;

/// POSTs negotiate to `server` with `headers`: the parsed answer, or the
/// HTTP status when it is not 200.
pub async fn negotiate_with(
    server: &TestServer,
    headers: &[(&str, &str)],
) -> Result<NegotiateResponse, u16> {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    negotiate_at(server.addr(), &headers).await
}

/// POSTs negotiate to the server at `addr` with `headers` (bytes, so a
/// test can send a value that is not text): the parsed answer, or the
/// HTTP status when it is not 200.
pub async fn negotiate_at(
    addr: SocketAddr,
    headers: &[(&str, &[u8])],
) -> Result<NegotiateResponse, u16> {
    let mut req = awc::Client::default().post(format!("http://{addr}/ws/negotiate"));
    for (k, v) in headers {
        req = req.insert_header((*k, HeaderValue::from_bytes(v).unwrap()));
    }
    let mut resp = tokio::time::timeout(STEP, req.send())
        .await
        .expect("negotiate in time")
        .expect("negotiate request");
    if resp.status().as_u16() != 200 {
        return Err(resp.status().as_u16());
    }
    let body = resp.body().await.expect("negotiate body");
    Ok(NegotiateResponse::parse(&body).expect("a valid negotiate response"))
}

/// POSTs negotiate to `server`, which must answer 200.
pub async fn negotiate(server: &TestServer) -> NegotiateResponse {
    negotiate_with(server, &[]).await.expect("negotiate 200")
}

/// A socket upgraded with the protocol's subprotocol; nothing sent yet.
pub async fn protocol_socket(server: &TestServer) -> RawConn {
    protocol_socket_at(server.addr()).await
}

/// The same, of the server at `addr` (`/ws`).
pub async fn protocol_socket_at(addr: std::net::SocketAddr) -> RawConn {
    RawConn::connect(addr, "/ws", &[("Sec-WebSocket-Protocol", SUBPROTOCOL)])
        .await
        .unwrap()
}

/// A protocol socket attached to `neg`'s session: HELLO (claiming
/// `last_received`) sent, WELCOME read.
pub async fn attach_raw(
    server: &TestServer,
    neg: &NegotiateResponse,
    last_received: u64,
) -> RawConn {
    let mut c = protocol_socket(server).await;
    let hello = Frame::Hello {
        connection_id: neg.connection_id.clone(),
        reconnect_token: neg.reconnect_token.clone(),
        last_received,
        first_seq: 1,
    };
    c.send_binary(&hello.to_bytes()).await.unwrap();
    let welcome = tokio::time::timeout(STEP, c.read_frame())
        .await
        .expect("a WELCOME in time")
        .unwrap();
    assert!(
        matches!(decode(&welcome), Frame::Welcome { .. }),
        "{welcome:?}"
    );
    c
}

/// A raw protocol client of a fresh session: negotiate, upgrade, HELLO,
/// WELCOME.
pub async fn reliable_raw(server: &TestServer) -> (RawConn, NegotiateResponse) {
    let neg = negotiate(server).await;
    let conn = attach_raw(server, &neg, 0).await;
    (conn, neg)
}

/// The protocol frame a binary WebSocket frame carries.
pub fn decode(f: &RawFrame) -> Frame {
    assert_eq!(f.opcode, opcode::BINARY, "{f:?}");
    Frame::decode(Bytes::from(f.payload.clone())).unwrap()
}

/// A DATA frame, encoded.
pub fn data(seq: u64, payload: impl Into<Payload>) -> Vec<u8> {
    Frame::Data {
        seq,
        payload: payload.into(),
    }
    .to_bytes()
    .to_vec()
}

/// Reads frames until a Close, handing each other frame to `each`; the
/// Close's code (`None`: the stream ended first).
pub async fn read_until_close(conn: &mut RawConn, mut each: impl FnMut(RawFrame)) -> Option<u16> {
    let read = async {
        loop {
            match conn.read_frame().await {
                Ok(f) if f.opcode == opcode::CLOSE => return f.close_code(),
                Ok(f) => each(f),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("a close in time")
}

/// Reads frames until a Close; its code (`None`: the stream ended first).
pub async fn close_code_of(conn: &mut RawConn) -> Option<u16> {
    read_until_close(conn, |_| {}).await
}

/// Reads frames, every one a pong, until the pong of the ping carrying
/// `last`; how many pongs came. For ping floods, where pongs are coalesced
/// but the newest ping must be answered.
pub async fn pongs_until(conn: &mut RawConn, last: &[u8]) -> u32 {
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
    tokio::time::timeout(STEP, read)
        .await
        .expect("the newest ping answered");
    pongs
}
