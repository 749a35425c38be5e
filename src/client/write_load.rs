//! Backpressure on the socket's write side.
//!
//! actix's `SinkWrite` queues whatever it is given without bound: against a
//! peer that stops reading (or a link that stalls), every message `send()`
//! accepts would pile up in memory. So the connection counts the bytes it
//! hands to the `SinkWrite` that have not yet been taken by the socket's
//! codec (the [`Counted`] sink below sees them leave). Above
//! [`HIGH_WATERMARK`] it tells the queue actor to hold further messages in
//! the outbox, where the outbox's bound and overflow policy apply and
//! `send()` feels it; below [`LOW_WATERMARK`] the flow resumes. In reliable
//! mode the unacknowledged window bounds this already; in raw mode this is
//! the only bound.

use std::{
    cell::Cell,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix::Recipient;
use actix_http::ws::Message as WsMessage;
use futures_util::Sink;

use super::queue_actor::messages::LinkState;

/// Bytes waiting for the socket above which the outbox holds new messages.
pub(crate) const HIGH_WATERMARK: usize = 1024 * 1024;
/// Bytes waiting for the socket below which the flow resumes.
pub(crate) const LOW_WATERMARK: usize = HIGH_WATERMARK / 4;

/// The write-side load of one socket, shared by the connection (which adds)
/// and the [`Counted`] sink (which takes away).
pub(crate) struct WriteLoad {
    queued: Cell<usize>,
    paused: Cell<bool>,
    gen: u64,
    /// The outbox, told when to hold and when to resume.
    queue: Recipient<LinkState>,
}

impl WriteLoad {
    pub(crate) fn new(gen: u64, queue: Recipient<LinkState>) -> Rc<WriteLoad> {
        Rc::new(WriteLoad {
            queued: Cell::new(0),
            paused: Cell::new(false),
            gen,
            queue,
        })
    }

    /// A message was handed to the `SinkWrite`.
    pub(crate) fn add(&self, msg: &WsMessage) {
        let queued = self.queued.get() + size(msg);
        self.queued.set(queued);
        if queued > HIGH_WATERMARK && !self.paused.get() {
            self.paused.set(true);
            self.queue.do_send(LinkState::Paused { gen: self.gen });
        }
    }

    fn taken(&self, msg: &WsMessage) {
        let queued = self.queued.get().saturating_sub(size(msg));
        self.queued.set(queued);
        if queued < LOW_WATERMARK && self.paused.get() {
            self.paused.set(false);
            self.queue.do_send(LinkState::Resumed { gen: self.gen });
        }
    }
}

/// What a message weighs in the write queue.
fn size(msg: &WsMessage) -> usize {
    // The frame header is small and bounded; the body is what grows.
    match msg {
        WsMessage::Text(t) => t.len(),
        WsMessage::Binary(b) | WsMessage::Ping(b) | WsMessage::Pong(b) => b.len(),
        _ => 0,
    }
}

/// The socket's sink, telling its [`WriteLoad`] what the codec took.
pub(crate) struct Counted<S> {
    inner: S,
    load: Rc<WriteLoad>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, load: Rc<WriteLoad>) -> Self {
        Counted { inner, load }
    }
}

impl<S: Sink<WsMessage> + Unpin> Sink<WsMessage> for Counted<S> {
    type Error = S::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: WsMessage) -> Result<(), S::Error> {
        self.load.taken(&item);
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
