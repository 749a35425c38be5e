//! [`WsFramed`]: the socket as awc hands it over (frames in, messages
//! out), with two changes on the write side: closing it first writes what
//! is still buffered, and a burst is written to the kernel in a few large
//! writes instead of one per 8 KiB.

use std::{
    pin::Pin,
    task::{ready, Context as TaskContext, Poll},
};

use actix_codec::Framed;
use actix_http::ws::ProtocolError;
use awc::{
    ws::{Codec, Frame as WsFrame, Message as WsMessage},
    BoxedSocket,
};
use futures_util::{Sink, Stream};

/// Bytes encoded since the last write to the socket above which the next
/// message first writes them out.
///
/// awc's `Framed` writes its buffer out as soon as it holds 8 KiB (its
/// `poll_ready`): a burst of 1 KiB messages cost one `send` system call
/// per 8 messages, and on loopback each carried the receiving side's TCP
/// work too; the profile of stateful 1 KiB throughput had a third of the
/// client's time under those calls. The `SinkWrite` in front still
/// flushes at the end of every burst it writes, so a lone message leaves
/// at once as before: only a burst waits, and only until this much of it
/// is encoded.
///
/// 48 KiB, not 64: the codec's buffer grows by doubling when less than
/// 1 KiB of it is free, so stopping here keeps it at 64 KiB for messages
/// under 15 KiB (at 64 KiB it would double to 128 KiB). A connection that
/// once wrote a burst keeps that buffer (awc's own: 8 KiB, or the largest
/// message).
pub(crate) const WRITE_BATCH_BYTES: usize = 48 * 1024;

/// The socket as awc hands it over, except for the write side (see the
/// module docs).
///
/// Closing: awc's `Framed::close` flushes only the I/O object and shuts it
/// down, not the codec's write buffer, so a Close frame written just before
/// `close()` is lost. With this wrapper, `SinkWrite::close()` right after
/// writing the echo of a peer's Close sends that frame and then ends our
/// half of the TCP connection, which is what actix-web waits for: after a
/// WebSocket response it lingers, reading, until the client closes or
/// `client_disconnect_timeout` (1 s) passes, while the client waits for
/// the server to close first. That cost every server-initiated close
/// (4001 session gone, 1012 restart, 4002 replaced) a second before the
/// client could reconnect.
pub(crate) struct WsFramed {
    framed: Framed<BoxedSocket, Codec>,
    /// Roughly how many bytes the codec holds that were not written out
    /// yet (messages given since the last completed flush).
    unflushed: usize,
}

impl WsFramed {
    pub(crate) fn new(framed: Framed<BoxedSocket, Codec>) -> Self {
        WsFramed {
            framed,
            unflushed: 0,
        }
    }

    fn write_out(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ProtocolError>> {
        ready!(Pin::new(&mut self.framed).poll_flush(cx))?;
        self.unflushed = 0;
        Poll::Ready(Ok(()))
    }
}

/// What a message adds to the codec's buffer: its body and at most 14
/// bytes of frame header.
fn encoded_len(msg: &WsMessage) -> usize {
    let body = match msg {
        WsMessage::Text(t) => t.len(),
        WsMessage::Binary(b) | WsMessage::Ping(b) | WsMessage::Pong(b) => b.len(),
        WsMessage::Continuation(item) => match item {
            actix_http::ws::Item::FirstText(b)
            | actix_http::ws::Item::FirstBinary(b)
            | actix_http::ws::Item::Continue(b)
            | actix_http::ws::Item::Last(b) => b.len(),
        },
        WsMessage::Close(r) => r
            .as_ref()
            .map_or(0, |r| 2 + r.description.as_ref().map_or(0, String::len)),
        WsMessage::Nop => 0,
    };
    body + 14
}

impl Stream for WsFramed {
    type Item = Result<WsFrame, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.framed).poll_next(cx)
    }
}

impl Sink<WsMessage> for WsFramed {
    type Error = ProtocolError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        // `Framed` takes any number of messages into its buffer; its own
        // `poll_ready` only writes out early, at 8 KiB. Here: at
        // `WRITE_BATCH_BYTES`.
        if self.unflushed < WRITE_BATCH_BYTES {
            return Poll::Ready(Ok(()));
        }
        self.write_out(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: WsMessage) -> Result<(), ProtocolError> {
        self.unflushed += encoded_len(&item);
        Pin::new(&mut self.framed).start_send(item)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        self.write_out(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        ready!(self.write_out(cx))?;
        Pin::new(&mut self.framed).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, io, rc::Rc};

    use futures_util::SinkExt;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::*;

    /// A socket that takes every write whole and records its size.
    struct Recorder(Rc<RefCell<Vec<usize>>>);

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.borrow_mut().push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn framed() -> (WsFramed, Rc<RefCell<Vec<usize>>>) {
        let writes = Rc::new(RefCell::new(Vec::new()));
        let io: BoxedSocket = Box::new(Recorder(writes.clone()));
        let codec = Codec::new().client_mode();
        (WsFramed::new(Framed::new(io, codec)), writes)
    }

    fn kib() -> WsMessage {
        WsMessage::Binary(bytes::Bytes::from(vec![7u8; 1024]))
    }

    #[actix_rt::test]
    async fn a_burst_is_written_in_few_large_writes() {
        let (mut sink, writes) = framed();
        // 200 KiB, fed as `SinkWrite` does (ready, send; one flush at the end).
        for _ in 0..200 {
            sink.feed(kib()).await.unwrap();
        }
        sink.flush().await.unwrap();
        let writes = writes.borrow();
        let total: usize = writes.iter().sum();
        assert!(total > 200 * 1024, "everything written: {total}");
        // awc's own threshold (8 KiB) made this about 26 writes.
        assert!(
            writes.len() <= 200 * 1024 / WRITE_BATCH_BYTES + 1,
            "{} writes: {writes:?}",
            writes.len()
        );
        assert!(writes.iter().all(|&n| n <= WRITE_BATCH_BYTES + 2048));
        assert!(writes.len() >= 4, "{writes:?}");
    }

    #[actix_rt::test]
    async fn a_lone_message_leaves_on_flush_and_close_writes_what_is_buffered() {
        let (mut sink, writes) = framed();
        sink.send(WsMessage::Text("hi".into())).await.unwrap();
        assert_eq!(writes.borrow().len(), 1, "written at the flush");
        sink.feed(kib()).await.unwrap();
        assert_eq!(
            writes.borrow().len(),
            1,
            "buffered until the flush or close"
        );
        sink.close().await.unwrap();
        assert_eq!(writes.borrow().len(), 2);
        assert!(writes.borrow()[1] > 1024);
    }
}
