//! A server socket's incoming side before any protocol: whole messages
//! ([`Joined`]: fragments joined by the shared `ws` layer's
//! [`Assembler`], so the limits and UTF-8 checks are the client's too) and
//! what each means for the reader ([`Step`]), and how a socket ends for
//! it ([`Step::ending`]).

use actix_http::ws::Frame as WsFrame;
use actix_ws::{AggregatedMessage, CloseReason, Message, MessageStream, ProtocolError};
use bytes::Bytes;
use futures_util::StreamExt;

use super::socket_tx::Outgoing;

use crate::{
    close_code,
    protocol::Frame,
    ws::{self, codec_violation, Assembler},
    Payload,
};

/// What one incoming WebSocket message means for the reader.
#[derive(Debug)]
pub(crate) enum Step {
    /// A protocol frame (DATA or ACK) for the session.
    Frame(Frame),
    /// A ping to answer.
    Ping(Bytes),
    /// Nothing to do (a pong).
    Skip,
    /// The client closed; answer with its code.
    Closed(Option<CloseReason>),
    /// Close with this code and reason.
    Violation(u16, String),
    /// The connection ended without a Close frame.
    End,
}

impl Step {
    /// What the writer does to end the socket for this step, the same for
    /// the plain and the protocol socket: the client's Close is answered
    /// with its code (and no reason), a violation closes with its code and
    /// reason, anything else ends without a Close frame.
    pub(crate) fn ending(self) -> Outgoing {
        match self {
            Step::Closed(reason) => Outgoing::Close(reason.map(|r| CloseReason {
                code: r.code,
                description: None,
            })),
            Step::Violation(code, text) => Outgoing::Close(Some(ws::close_reason(code, &text))),
            _ => Outgoing::Stop,
        }
    }
}

fn stream_error(e: ProtocolError) -> Step {
    match e {
        ProtocolError::Overflow => {
            Step::Violation(close_code::MESSAGE_TOO_BIG, "message too big".to_owned())
        }
        ProtocolError::Io(e) => match codec_violation(&e) {
            Some((code, reason)) => Step::Violation(code, reason.to_owned()),
            None => Step::End,
        },
        e => Step::Violation(close_code::PROTOCOL_ERROR, e.to_string()),
    }
}

/// A socket's messages with fragments joined by the shared
/// [`Assembler`]: the message size and fragment count limits and UTF-8
/// checks are the same on both ends.
pub(crate) struct Joined {
    inner: MessageStream,
    assembler: Assembler,
}

/// One item of [`Joined`]: a message, or how to end the socket.
pub(crate) type JoinedItem = Option<Result<AggregatedMessage, Step>>;

impl Joined {
    pub(crate) fn new(
        stream: MessageStream,
        max_message_size: usize,
        max_fragments: usize,
    ) -> Self {
        Joined {
            inner: stream.max_frame_size(max_message_size),
            assembler: Assembler::with_limits(max_message_size, max_fragments),
        }
    }

    /// The same socket with other limits (a protocol socket's grow once
    /// its HELLO arrived). Called between messages: nothing is half
    /// joined.
    pub(crate) fn relimit(self, max_message_size: usize, max_fragments: usize) -> Self {
        Self::new(self.inner, max_message_size, max_fragments)
    }

    /// The next whole message (or control frame).
    pub(crate) async fn next(&mut self) -> JoinedItem {
        loop {
            let msg = match self.inner.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(stream_error(e))),
            };
            let frame = match msg {
                Message::Text(t) => WsFrame::Text(t.into_bytes()),
                Message::Binary(b) => WsFrame::Binary(b),
                Message::Continuation(item) => WsFrame::Continuation(item),
                Message::Ping(p) => WsFrame::Ping(p),
                Message::Pong(p) => WsFrame::Pong(p),
                Message::Close(r) => WsFrame::Close(r),
                Message::Nop => continue,
            };
            let item = match self.assembler.push(frame) {
                Ok(ws::Inbound::Partial) => continue,
                Ok(ws::Inbound::Message(Payload::Text(t))) => AggregatedMessage::Text(t),
                Ok(ws::Inbound::Message(Payload::Binary(b))) => AggregatedMessage::Binary(b),
                Ok(ws::Inbound::Ping(p)) => AggregatedMessage::Ping(p),
                Ok(ws::Inbound::Pong(p)) => AggregatedMessage::Pong(p),
                Ok(ws::Inbound::Close(r)) => AggregatedMessage::Close(r),
                Err(e) => {
                    let code = e.close_code().unwrap_or(close_code::PROTOCOL_ERROR);
                    return Some(Err(Step::Violation(code, e.to_string())));
                }
            };
            return Some(Ok(item));
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_ws::CloseCode;

    use super::*;

    #[test]
    fn a_socket_ends_by_answering_the_close_or_naming_the_violation() {
        let asked = Some(CloseReason {
            code: CloseCode::Away,
            description: Some("bye".to_owned()),
        });
        match Step::Closed(asked).ending() {
            Outgoing::Close(Some(r)) => {
                assert_eq!(r.code, CloseCode::Away, "the client's code");
                assert_eq!(r.description, None, "not its reason");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(Step::Closed(None).ending(), Outgoing::Close(None)));
        match Step::Violation(close_code::MESSAGE_TOO_BIG, "too big".to_owned()).ending() {
            Outgoing::Close(Some(r)) => {
                assert_eq!(u16::from(r.code), close_code::MESSAGE_TOO_BIG);
                assert_eq!(r.description.as_deref(), Some("too big"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(Step::End.ending(), Outgoing::Stop));
    }
}
