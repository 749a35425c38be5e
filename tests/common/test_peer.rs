//! A scripted protocol client over awc ([`TestPeer`]), for tests of the
//! reliable server: it opens sockets with or without the subprotocol,
//! sends the frames a test scripts and reads what the server answers.

use std::{net::SocketAddr, time::Duration};

use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use resilient_ws::{
    protocol::{Frame, NegotiateResponse, SUBPROTOCOL},
    testing::TestServer,
    Payload,
};

use super::STEP;

/// What the peer read from its socket.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    Frame(Frame),
    Text(String),
    Binary(Bytes),
    Close(Option<u16>, String),
    /// The TCP stream ended without a Close frame.
    End,
    /// Nothing within the wait.
    Timeout,
}

/// A protocol client written by hand (awc and the frame codec), for
/// tests of the server: it sends exactly the frames a test scripts.
pub struct TestPeer {
    framed: Framed<BoxedSocket, ws::Codec>,
    /// The subprotocol the server answered with.
    pub protocol: Option<String>,
    /// Whether binary messages are protocol frames (decoded) or plain.
    reliable: bool,
}

impl TestPeer {
    /// Opens a socket (with the subprotocol when `reliable`), or the HTTP
    /// status of a refused upgrade.
    pub async fn open(
        server: &TestServer,
        reliable: bool,
        headers: &[(&str, &str)],
    ) -> Result<TestPeer, u16> {
        Self::open_at(server.addr(), reliable, headers).await
    }

    /// [`TestPeer::open`] on the server at `addr` (path `/ws`).
    pub async fn open_at(
        addr: SocketAddr,
        reliable: bool,
        headers: &[(&str, &str)],
    ) -> Result<TestPeer, u16> {
        let mut req = awc::Client::default().ws(format!("ws://{addr}/ws"));
        if reliable {
            req = req.protocols([SUBPROTOCOL]);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match tokio::time::timeout(STEP, req.connect())
            .await
            .expect("connect in time")
        {
            Ok((resp, framed)) => Ok(TestPeer {
                framed,
                protocol: resp
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap().to_owned()),
                reliable,
            }),
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    pub async fn connect(server: &TestServer) -> TestPeer {
        Self::open(server, true, &[]).await.expect("upgrade")
    }

    /// Opens a socket and sends HELLO; does not read the answer.
    pub async fn hello_with(
        server: &TestServer,
        headers: &[(&str, &str)],
        neg: &NegotiateResponse,
        last_received: u64,
        first_seq: u64,
    ) -> TestPeer {
        let mut p = Self::open(server, true, headers).await.expect("upgrade");
        p.send_frame(Frame::Hello {
            connection_id: neg.connection_id.clone(),
            reconnect_token: neg.reconnect_token.clone(),
            last_received,
            first_seq,
        })
        .await;
        p
    }

    /// Opens a socket, sends HELLO and expects WELCOME; returns it.
    pub async fn attach(
        server: &TestServer,
        neg: &NegotiateResponse,
        last_received: u64,
    ) -> (TestPeer, bool, u64) {
        let mut p = Self::hello_with(server, &[], neg, last_received, 1).await;
        match p.recv(STEP).await {
            In::Frame(Frame::Welcome {
                resumed,
                last_received,
            }) => (p, resumed, last_received),
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    pub async fn send_frame(&mut self, f: Frame) {
        self.send(ws::Message::Binary(f.to_bytes())).await;
    }

    pub async fn send(&mut self, m: ws::Message) {
        tokio::time::timeout(STEP, self.framed.send(m))
            .await
            .expect("send in time")
            .expect("send");
    }

    pub async fn data(&mut self, seq: u64, payload: impl Into<Payload>) {
        self.send_frame(Frame::Data {
            seq,
            payload: payload.into(),
        })
        .await;
    }

    pub async fn ack(&mut self, seq: u64) {
        self.send_frame(Frame::Ack { seq }).await;
    }

    /// The next meaningful thing from the socket (pings answered, pongs
    /// skipped), within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> In {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return In::Timeout,
                Ok(item) => item,
            };
            match item {
                None | Some(Err(_)) => return In::End,
                Some(Ok(ws::Frame::Binary(b))) if self.reliable => {
                    return In::Frame(Frame::decode(b).expect("server frames decode"))
                }
                Some(Ok(ws::Frame::Binary(b))) => return In::Binary(b),
                Some(Ok(ws::Frame::Text(t))) => {
                    return In::Text(String::from_utf8(t.to_vec()).unwrap())
                }
                Some(Ok(ws::Frame::Close(r))) => {
                    return In::Close(
                        r.as_ref().map(|r| r.code.into()),
                        r.and_then(|r| r.description).unwrap_or_default(),
                    )
                }
                Some(Ok(ws::Frame::Ping(p))) => {
                    let _ = self.framed.send(ws::Message::Pong(p)).await;
                }
                Some(Ok(ws::Frame::Pong(_))) => {}
                Some(Ok(ws::Frame::Continuation(_))) => panic!("unexpected continuation"),
            }
        }
    }

    /// Reads until a Close frame (skipping everything else); its code and
    /// reason, `None` if the stream ended or timed out first.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            match self.recv(STEP).await {
                In::Close(code, reason) => return Some((code.unwrap_or(1005), reason)),
                In::End | In::Timeout => return None,
                _ => {}
            }
        }
    }

    /// Reads server DATA until `n` arrived (skipping acks); panics on
    /// anything else.
    pub async fn recv_data(&mut self, n: usize) -> Vec<(u64, Payload)> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.recv(STEP).await {
                In::Frame(Frame::Data { seq, payload }) => got.push((seq, payload)),
                In::Frame(Frame::Ack { .. }) => {}
                other => panic!("expected DATA, got {other:?} after {}", got.len()),
            }
        }
        got
    }

    /// Collects everything but pings for `window`.
    pub async fn drain(&mut self, window: Duration) -> Vec<In> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                In::Timeout => return got,
                i @ (In::End | In::Close(..)) => {
                    got.push(i);
                    return got;
                }
                i => got.push(i),
            }
        }
    }

    /// Sends our Close and waits for the answer.
    /// Closes the socket with 1001 (going away): the socket ends, the
    /// session stays resumable. (A 1000 would end the session.)
    pub async fn close(mut self) {
        let _ = self
            .framed
            .send(ws::Message::Close(Some(ws::CloseCode::Away.into())))
            .await;
        let _ = self.expect_close().await;
    }
}

/// The seqs of the DATA frames among `ins`.
pub fn data_seqs(ins: &[In]) -> Vec<u64> {
    ins.iter()
        .filter_map(|i| match i {
            In::Frame(Frame::Data { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect()
}

/// A text payload's text.
pub fn text(p: &Payload) -> &str {
    p.as_text().expect("a text payload")
}
