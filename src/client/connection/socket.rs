//! One open socket: its sink, how far its close handshake got, and why it
//! ended. Plain data: the behaviour is the actor's (see `close.rs`).

use std::rc::Rc;

use actix::{io::SinkWrite, prelude::*};
use actix_http::ws::Message as WsMessage;
use futures_util::stream::SplitSink;

use crate::client::{
    transport::WsFramed,
    write_load::{Counted, WriteLoad},
};
use crate::{
    events::Payload,
    ws::{Assembler, PongLimiter},
    Error,
};

/// How far the close handshake of the current socket has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// No Close frame sent or received.
    Open,
    /// We are closing and first wait (up to `close_timeout`) for the
    /// durable store to hold what our last ACK claims; nothing more is
    /// written or delivered meanwhile.
    Acking,
    /// We sent Close and wait for the peer's.
    Sent,
    /// The socket is finished (the peer closed, or we failed it): our Close
    /// is written and we wait for the TCP end.
    Done,
}

pub(super) type Sink = SinkWrite<WsMessage, Counted<SplitSink<WsFramed, WsMessage>>>;

/// One open socket. Dropped (and so closed) whenever the actor stops.
pub(super) struct Socket {
    /// Which socket this is; messages from helpers about an older one are
    /// ignored.
    pub(super) gen: u64,
    pub(super) sink: Sink,
    pub(super) assembler: Assembler,
    pub(super) closing: Closing,
    /// Data may be written: in raw mode once the `on_connect` hook
    /// answered, in reliable mode after WELCOME and that answer.
    pub(super) ready: bool,
    /// Reliable mode: WELCOME came, so the peer's DATA, ACK and PONG are
    /// taken (even while the hook is still asked: the server replays at
    /// once).
    pub(super) welcomed: bool,
    /// Reliable mode: the pending ack timer.
    pub(super) ack_timer: Option<SpawnHandle>,
    /// Bytes written and not yet taken by the socket (backpressure).
    pub(super) load: Rc<WriteLoad>,
    /// Coalesces pongs under a ping flood.
    pub(super) pongs: PongLimiter,
}

impl Socket {
    /// Queues a frame for the socket, counting it for backpressure.
    pub(super) fn write(&mut self, msg: WsMessage) -> Result<(), WsMessage> {
        self.load.add(&msg);
        self.sink.write(msg)
    }
}

/// Why the current socket (or attempt) ended. The first reason recorded
/// wins: later ones are consequences.
pub(super) struct End {
    pub(super) code: Option<u16>,
    pub(super) reason: String,
    pub(super) by_us: bool,
    pub(super) error: Option<Error>,
}

pub(super) fn to_ws(p: Payload) -> WsMessage {
    match p {
        Payload::Text(t) => WsMessage::Text(t),
        Payload::Binary(b) => WsMessage::Binary(b),
    }
}
