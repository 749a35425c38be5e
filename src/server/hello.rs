//! A protocol socket's first phase: waiting for the client's HELLO
//! (docs/PROTOCOL.md §4). The socket is not authenticated by a session yet,
//! so it may cost little: the stream's limits are a HELLO's size (a larger
//! message is closed with 1009), and what comes before the HELLO may add
//! up to one HELLO's size too, counting two bytes of frame header per
//! message (more is closed with 1008). The checks are a plain state machine
//! ([`HelloPhase`]) so they are tested without a socket.

use std::{sync::Arc, time::Duration};

use actix_ws::AggregatedMessage;
use bytes::Bytes;

use super::{
    joined::{Joined, Step},
    keep_alive::PongSlot,
    socket_tx::{answer_ping, SocketTx},
};
use crate::{
    close_code,
    protocol::{Frame, MAX_HELLO_LEN},
};

/// The HELLO fields the reader needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) connection_id: String,
    pub(crate) reconnect_token: String,
    pub(crate) last_received: u64,
    pub(crate) first_seq: u64,
}

/// What one message before the HELLO means.
#[derive(Debug)]
pub(crate) enum HelloStep {
    /// Keep waiting.
    Wait,
    /// Keep waiting; answer this ping first.
    Ping(Bytes),
    /// The HELLO, or how to end the socket.
    Done(Result<Hello, Step>),
}

/// The pre-HELLO checks of one socket.
#[derive(Debug, Default)]
pub(crate) struct HelloPhase {
    /// Bytes of pings and pongs so far, with two bytes of header each.
    before_hello: usize,
}

impl HelloPhase {
    /// Judges one whole message that arrived before the HELLO.
    pub(crate) fn on_message(&mut self, msg: AggregatedMessage) -> HelloStep {
        if let AggregatedMessage::Ping(p) | AggregatedMessage::Pong(p) = &msg {
            self.before_hello += p.len() + 2;
            if self.before_hello > MAX_HELLO_LEN {
                return HelloStep::Done(Err(Step::Violation(
                    close_code::POLICY_VIOLATION,
                    "too much before HELLO".to_owned(),
                )));
            }
        }
        let verdict = match msg {
            AggregatedMessage::Ping(p) => return HelloStep::Ping(p),
            AggregatedMessage::Pong(_) => return HelloStep::Wait,
            AggregatedMessage::Close(r) => Err(Step::Closed(r)),
            AggregatedMessage::Text(_) => Err(Step::Violation(
                close_code::PROTOCOL_ERROR,
                "text message".to_owned(),
            )),
            AggregatedMessage::Binary(b) => match Frame::decode(b) {
                Ok(Frame::Hello {
                    connection_id,
                    reconnect_token,
                    last_received,
                    first_seq,
                }) => Ok(Hello {
                    connection_id,
                    reconnect_token,
                    last_received,
                    first_seq,
                }),
                Ok(_) => Err(Step::Violation(
                    close_code::PROTOCOL_ERROR,
                    "the first frame must be HELLO".to_owned(),
                )),
                Err(e) => Err(Step::Violation(
                    e.close_code(),
                    format!("malformed frame: {e}"),
                )),
            },
        };
        HelloStep::Done(verdict)
    }
}

/// Waits for the HELLO (answering pings) until `timeout`; `Err` is how to
/// end the socket.
pub(crate) async fn wait_hello(
    stream: &mut Joined,
    tx: &SocketTx,
    pongs: &Arc<PongSlot>,
    timeout: Duration,
) -> Result<Hello, Step> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut phase = HelloPhase::default();
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(item) => item,
            Err(_) => {
                return Err(Step::Violation(
                    close_code::PROTOCOL_ERROR,
                    "no HELLO in time".to_owned(),
                ))
            }
        };
        let msg = match item {
            None => return Err(Step::End),
            Some(Err(step)) => return Err(step),
            Some(Ok(m)) => m,
        };
        match phase.on_message(msg) {
            HelloStep::Wait => {}
            HelloStep::Ping(p) => answer_ping(tx, pongs, p),
            HelloStep::Done(verdict) => return verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_ws::{CloseCode, CloseReason};

    use super::*;

    fn hello_bytes() -> Bytes {
        Frame::Hello {
            connection_id: "c1".to_owned(),
            reconnect_token: "t1".to_owned(),
            last_received: 7,
            first_seq: 3,
        }
        .to_bytes()
    }

    fn violation(step: HelloStep) -> (u16, String) {
        match step {
            HelloStep::Done(Err(Step::Violation(code, text))) => (code, text),
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn a_hello_after_pings_and_pongs_is_accepted() {
        let mut phase = HelloPhase::default();
        assert!(matches!(
            phase.on_message(AggregatedMessage::Ping(Bytes::from_static(b"hi"))),
            HelloStep::Ping(p) if p == "hi"
        ));
        assert!(matches!(
            phase.on_message(AggregatedMessage::Pong(Bytes::new())),
            HelloStep::Wait
        ));
        match phase.on_message(AggregatedMessage::Binary(hello_bytes())) {
            HelloStep::Done(Ok(h)) => assert_eq!(
                h,
                Hello {
                    connection_id: "c1".to_owned(),
                    reconnect_token: "t1".to_owned(),
                    last_received: 7,
                    first_seq: 3,
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn control_frames_before_the_hello_may_add_up_to_one_hello() {
        let mut phase = HelloPhase::default();
        let ping = Bytes::from(vec![0u8; 123]);
        let mut total = 0;
        while total + ping.len() + 2 <= MAX_HELLO_LEN {
            total += ping.len() + 2;
            assert!(matches!(
                phase.on_message(AggregatedMessage::Ping(ping.clone())),
                HelloStep::Ping(_)
            ));
        }
        let (code, text) = violation(phase.on_message(AggregatedMessage::Pong(ping)));
        assert_eq!(code, close_code::POLICY_VIOLATION);
        assert_eq!(text, "too much before HELLO");
    }

    #[test]
    fn anything_but_a_hello_ends_the_socket() {
        let (code, text) =
            violation(HelloPhase::default().on_message(AggregatedMessage::Text("hello".into())));
        assert_eq!(
            (code, text.as_str()),
            (close_code::PROTOCOL_ERROR, "text message")
        );

        let ack = Frame::Ack { seq: 1 }.to_bytes();
        let (code, text) =
            violation(HelloPhase::default().on_message(AggregatedMessage::Binary(ack)));
        assert_eq!(
            (code, text.as_str()),
            (close_code::PROTOCOL_ERROR, "the first frame must be HELLO")
        );

        let (code, text) = violation(
            HelloPhase::default()
                .on_message(AggregatedMessage::Binary(Bytes::from_static(&[0xff, 1]))),
        );
        assert!(text.starts_with("malformed frame"), "{text}");
        assert_ne!(code, close_code::NORMAL);

        let close = Some(CloseReason {
            code: CloseCode::Normal,
            description: None,
        });
        assert!(matches!(
            HelloPhase::default().on_message(AggregatedMessage::Close(close)),
            HelloStep::Done(Err(Step::Closed(Some(r)))) if r.code == CloseCode::Normal
        ));
    }
}
