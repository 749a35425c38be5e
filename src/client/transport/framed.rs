//! [`WsFramed`]: the socket as awc hands it over (frames in, messages
//! out), with two changes on the write side: closing it first writes what
//! is still buffered, and a burst is written to the kernel in a few large
//! writes instead of one per 8 KiB; one on the read side: while the
//! peer streams, it is read in large reads too ([`ReadAhead`]); and an
//! idle socket holds no buffers (see [`WsFramed::release_read_buf`]).

use std::{
    cell::Cell,
    io,
    pin::Pin,
    task::{ready, Context as TaskContext, Poll},
    thread::LocalKey,
};

use actix_codec::{Framed, FramedParts};
use actix_http::ws::ProtocolError;
use awc::{
    ws::{Codec, Frame as WsFrame, Message as WsMessage},
    BoxedSocket,
};
use bytes::BytesMut;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
/// under 15 KiB (at 64 KiB it would double to 128 KiB). A connection
/// keeps that buffer while it writes bursts, and releases it after two
/// flushes in a row of less than [`BURST_BYTES`] (heartbeat pings are
/// such flushes).
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
    /// `None` only inside [`WsFramed::with_parts`].
    framed: Option<Framed<BoxedSocket, Codec>>,
    /// Roughly how many bytes the codec holds that were not written out
    /// yet (messages given since the last completed flush).
    unflushed: usize,
    /// The codec's read buffer was released when the last read found
    /// nothing.
    read_released: bool,
    /// The codec's write buffer was released after the last flush and
    /// nothing was written since.
    write_released: bool,
    /// The last completed flush wrote a burst (see [`BURST_BYTES`]).
    last_was_burst: bool,
}

thread_local! {
    /// The last read buffer a socket of this thread released, for the next
    /// socket of the thread that reads: a socket answering one message at
    /// a time would otherwise allocate and free 8 KiB per read (glibc
    /// serves that size outside its per-thread cache: about half a
    /// microsecond of round-trip time for both buffers). One per thread,
    /// whatever the number of sockets.
    static SPARE_READ_BUF: Cell<Option<BytesMut>> = const { Cell::new(None) };
    /// The same for write buffers.
    static SPARE_WRITE_BUF: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// Keeps `buf` as the thread's spare (dropping the one before); dropped
/// instead while the thread ends.
fn spare(key: &'static LocalKey<Cell<Option<BytesMut>>>, buf: BytesMut) {
    let _ = key.try_with(|s| s.set(Some(buf)));
}

/// A flush of less than this is no burst. After two such flushes in a row
/// the write buffer is released (`Framed` reserves 8 KiB again at the
/// next message, as much as it held before, only not while idle).
const BURST_BYTES: usize = 8 * 1024;

impl WsFramed {
    pub(crate) fn new(framed: Framed<BoxedSocket, Codec>) -> Self {
        // What awc read past the handshake stays in the codec's buffer.
        let framed = framed.into_map_io(|io| Box::new(ReadAhead::new(io)) as BoxedSocket);
        let mut this = WsFramed {
            framed: Some(framed),
            unflushed: 0,
            read_released: false,
            write_released: false,
            last_was_burst: false,
        };
        // The handshake left both of awc's 8 KiB buffers behind, its
        // request written out and its response read: an idle socket needs
        // neither.
        this.release_write_buf();
        this.release_read_buf();
        this
    }

    fn framed(&mut self) -> Pin<&mut Framed<BoxedSocket, Codec>> {
        Pin::new(self.framed.as_mut().expect("WsFramed outside with_parts"))
    }

    /// Changes the codec's buffers: `Framed` lends them out only by
    /// value. The parts keep its flags, so nothing read is lost.
    fn with_parts(&mut self, f: impl FnOnce(&mut FramedParts<BoxedSocket, Codec>)) {
        let mut parts = self.framed.take().expect("not nested").into_parts();
        f(&mut parts);
        self.framed = Some(Framed::from_parts(parts));
    }

    /// Releases the read buffer when it holds no part of a frame.
    ///
    /// Idle client memory: awc's `Framed` keeps an 8 KiB read buffer for
    /// the life of the socket, most of a raw client's idle memory beside
    /// the socket itself. Called when a read found nothing more to read:
    /// the next read allocates a fresh one (`Framed` reserves 8 KiB
    /// before every read), so a busy socket pays one allocation per
    /// wake-up, an idle one holds nothing. Frames already handed out keep
    /// their bytes alive on their own (they are views into the buffer).
    fn release_read_buf(&mut self) {
        let framed = self.framed.as_ref().expect("not nested");
        if !self.read_released && framed.is_read_buf_empty() {
            self.with_parts(|p| spare(&SPARE_READ_BUF, std::mem::take(&mut p.read_buf)));
            self.read_released = true;
        }
    }

    /// Gives a released buffer back (the thread's spare, if any) before
    /// `Framed` reserves one.
    fn reclaim(&mut self, spare: &'static LocalKey<Cell<Option<BytesMut>>>, read: bool) {
        // `try_with`: nothing to take while the thread ends.
        if let Some(buf) = spare.try_with(Cell::take).ok().flatten() {
            self.with_parts(|p| {
                if read {
                    p.read_buf = buf;
                } else {
                    p.write_buf = buf;
                }
            });
        }
    }

    /// Releases the write buffer when everything in it was written.
    fn release_write_buf(&mut self) {
        if self.write_released {
            return;
        }
        let framed = self.framed.as_ref().expect("not nested");
        if framed.is_write_buf_empty() {
            self.with_parts(|p| spare(&SPARE_WRITE_BUF, std::mem::take(&mut p.write_buf)));
            self.write_released = true;
        }
    }

    /// The capacities of the codec's read and write buffers.
    #[cfg(test)]
    fn buffer_capacities(&mut self) -> (usize, usize) {
        let mut caps = (0, 0);
        self.with_parts(|p| caps = (p.read_buf.capacity(), p.write_buf.capacity()));
        caps
    }

    fn write_out(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ProtocolError>> {
        ready!(self.framed().poll_flush(cx))?;
        // A connection that streams keeps its grown buffer (up to 64 KiB)
        // rather than grow one again, copying, for each burst; one that
        // wrote no burst in its last two flushes releases it. Only one
        // small flush would not do: bursts and lone messages alternate in
        // a stream, and throughput then pays for the copies.
        let burst = std::mem::take(&mut self.unflushed) >= BURST_BYTES;
        if !burst && !self.last_was_burst {
            self.release_write_buf();
        }
        self.last_was_burst = burst;
        Poll::Ready(Ok(()))
    }
}

/// The largest read from the socket while the peer streams.
pub(crate) const READ_AHEAD_BYTES: usize = 64 * 1024;

/// A read that brings at least this much means more is probably waiting:
/// the next reads go through the read-ahead buffer.
const BUSY_READ: usize = 8 * 1024;

/// The socket under awc's `Framed`, reading ahead while the peer streams.
///
/// `Framed` reads at most the free room of its buffer, which it keeps at
/// about 8 KiB: one `recv` per 8 KiB (after the write side's change, a
/// fifth of the client's time in the stateful 1 KiB profile). While reads come
/// back full, this reads up to [`READ_AHEAD_BYTES`] at once into a buffer
/// of its own and hands `Framed` its 8 KiB from there (a copy in memory
/// instead of a system call). When reads come back small again the buffer
/// is dropped once emptied: an idle connection holds none.
struct ReadAhead {
    io: BoxedSocket,
    /// Empty, or `READ_AHEAD_BYTES` long while the peer streams.
    buf: Vec<u8>,
    /// The unread bytes of `buf`: `start..end`.
    start: usize,
    end: usize,
    /// The last read from the socket brought `BUSY_READ` or more.
    busy: bool,
}

impl ReadAhead {
    fn new(io: BoxedSocket) -> Self {
        ReadAhead {
            io,
            buf: Vec::new(),
            start: 0,
            end: 0,
            busy: false,
        }
    }

    /// Hands out buffered bytes; drops the buffer once it is empty and
    /// the peer no longer streams.
    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let n = (self.end - self.start).min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if !self.busy {
                self.buf = Vec::new();
            }
        }
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start < this.end {
            this.serve(out);
            return Poll::Ready(Ok(()));
        }
        if !this.busy {
            // Straight into the caller's buffer, as without this layer.
            let before = out.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
            this.busy = out.filled().len() - before >= BUSY_READ;
            return Poll::Ready(Ok(()));
        }
        if this.buf.is_empty() {
            this.buf = vec![0; READ_AHEAD_BYTES];
        }
        let mut ahead = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut ahead))?;
        let n = ahead.filled().len();
        this.busy = n >= BUSY_READ;
        this.start = 0;
        this.end = n;
        if n == 0 {
            // The end of the stream: nothing put in `out` says so.
            this.buf = Vec::new();
            return Poll::Ready(Ok(()));
        }
        this.serve(out);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        if std::mem::take(&mut self.read_released) {
            self.reclaim(&SPARE_READ_BUF, true);
        }
        let next = self.framed().poll_next(cx);
        if next.is_pending() {
            // Nothing more to read for now: perhaps for a long time.
            self.release_read_buf();
        }
        next
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
        // `Framed` reserves its 8 KiB again first if it was released and
        // the thread has no spare.
        if std::mem::take(&mut self.write_released) {
            self.reclaim(&SPARE_WRITE_BUF, false);
        }
        self.unflushed += encoded_len(&item);
        self.framed().start_send(item)
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
        self.framed().poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        cell::{Cell, RefCell},
        collections::VecDeque,
        rc::Rc,
    };

    use actix_codec::Encoder;
    use bytes::BytesMut;
    use futures_util::{SinkExt, StreamExt};

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

    /// A socket with bytes waiting to be read, chunk by chunk (each chunk
    /// what the kernel holds at one moment; a test may add more while it
    /// runs); counts the reads. Writes vanish. Once it has no chunk: the
    /// end of the stream if `ends`, else nothing to read yet.
    struct Feed {
        chunks: Rc<RefCell<VecDeque<Vec<u8>>>>,
        reads: Rc<Cell<usize>>,
        ends: bool,
    }

    impl Feed {
        /// A feed of `chunks` that ends after them.
        fn ending(chunks: impl IntoIterator<Item = Vec<u8>>, reads: Rc<Cell<usize>>) -> Self {
            Feed {
                chunks: Rc::new(RefCell::new(chunks.into_iter().collect())),
                reads,
                ends: true,
            }
        }

        /// A feed that waits for what the test puts in `chunks`.
        fn open(chunks: Rc<RefCell<VecDeque<Vec<u8>>>>) -> Self {
            Feed {
                chunks,
                reads: Rc::default(),
                ends: false,
            }
        }
    }

    impl AsyncRead for Feed {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads.set(self.reads.get() + 1);
            let mut chunks = self.chunks.borrow_mut();
            let Some(chunk) = chunks.front_mut() else {
                return if self.ends {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            };
            let n = chunk.len().min(out.remaining());
            out.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                chunks.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Feed {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// `n` server frames of 1 KiB, the i-th filled with byte i.
    fn server_frames(n: usize) -> Vec<u8> {
        let mut codec = Codec::new();
        let mut out = BytesMut::new();
        for i in 0..n {
            let body = bytes::Bytes::from(vec![i as u8; 1024]);
            codec.encode(WsMessage::Binary(body), &mut out).unwrap();
        }
        out.to_vec()
    }

    #[actix_rt::test]
    async fn a_stream_of_frames_is_read_in_few_large_reads_and_arrives_intact() {
        let reads = Rc::new(Cell::new(0));
        let feed = Feed::ending([server_frames(200)], reads.clone());
        let io: BoxedSocket = Box::new(feed);
        let mut framed = WsFramed::new(Framed::new(io, Codec::new().client_mode()));
        let mut got = 0;
        while let Some(frame) = framed.next().await {
            match frame.unwrap() {
                WsFrame::Binary(b) => {
                    assert_eq!(b.len(), 1024);
                    assert!(b.iter().all(|&x| x == got as u8), "frame {got} intact");
                    got += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, 200);
        // 205 KiB: 26 reads of 8 KiB without the read-ahead.
        assert!(reads.get() <= 8, "{} reads", reads.get());
    }

    #[test]
    fn the_read_ahead_buffer_is_dropped_once_the_stream_slows() {
        let reads = Rc::new(Cell::new(0));
        let feed = Feed::ending([vec![1u8; 100 * 1024], vec![2u8; 10]], reads);
        let mut ahead = ReadAhead::new(Box::new(feed));
        let waker = futures_util::task::noop_waker();
        let mut cx = TaskContext::from_waker(&waker);
        let mut seen = Vec::new();
        while seen.len() < 100 * 1024 + 10 {
            let mut room = [0u8; 8192];
            let mut out = ReadBuf::new(&mut room);
            let Poll::Ready(Ok(())) = Pin::new(&mut ahead).poll_read(&mut cx, &mut out) else {
                panic!("the feed is always ready");
            };
            assert!(!out.filled().is_empty(), "no early end");
            seen.extend_from_slice(out.filled());
        }
        assert!(seen[..100 * 1024].iter().all(|&b| b == 1));
        assert_eq!(&seen[100 * 1024..], &[2u8; 10]);
        assert_eq!(ahead.buf.capacity(), 0, "an idle socket holds no buffer");
    }

    /// Polls `framed` until it has nothing to read; answers the frames.
    fn drain(framed: &mut WsFramed) -> Vec<WsFrame> {
        let waker = futures_util::task::noop_waker();
        let mut cx = TaskContext::from_waker(&waker);
        let mut frames = Vec::new();
        while let Poll::Ready(frame) = Pin::new(&mut *framed).poll_next(&mut cx) {
            frames.push(frame.expect("no end").expect("a frame"));
        }
        frames
    }

    #[actix_rt::test]
    async fn an_idle_socket_holds_no_buffers_and_what_follows_arrives_whole() {
        let incoming = Rc::new(RefCell::new(VecDeque::new()));
        let io: BoxedSocket = Box::new(Feed::open(incoming.clone()));
        let mut framed = WsFramed::new(Framed::new(io, Codec::new().client_mode()));
        assert_eq!(
            framed.buffer_capacities(),
            (0, 0),
            "none after the handshake"
        );
        assert!(drain(&mut framed).is_empty());
        assert_eq!(framed.buffer_capacities(), (0, 0), "none while waiting");

        // A lone message: written, then its buffer is released.
        framed.send(WsMessage::Text("hi".into())).await.unwrap();
        assert_eq!(framed.buffer_capacities().1, 0, "released after the flush");

        // Three frames and a half, then the rest of the fourth: the half
        // stays buffered while the socket waits, and arrives whole.
        let bytes = server_frames(4);
        let cut = bytes.len() - 500;
        incoming.borrow_mut().push_back(bytes[..cut].to_vec());
        let first = drain(&mut framed);
        assert_eq!(first.len(), 3);
        assert!(framed.buffer_capacities().0 > 0, "the half frame is kept");
        incoming.borrow_mut().push_back(bytes[cut..].to_vec());
        let rest = drain(&mut framed);
        assert_eq!(rest.len(), 1);
        for (i, frame) in first.iter().chain(&rest).enumerate() {
            let WsFrame::Binary(b) = frame else {
                panic!("unexpected {frame:?}");
            };
            assert_eq!(b.len(), 1024);
            assert!(b.iter().all(|&x| x == i as u8), "frame {i} intact");
        }
        assert_eq!(framed.buffer_capacities().0, 0, "released once read");

        // A burst keeps its (grown) buffer for the next one, and so does
        // one small flush after it; the second releases it.
        for _ in 0..20 {
            framed.feed(kib()).await.unwrap();
        }
        framed.flush().await.unwrap();
        assert!(!framed.write_released, "kept after a burst");
        framed
            .send(WsMessage::Text("a lone one".into()))
            .await
            .unwrap();
        assert!(!framed.write_released, "kept after one small flush");
        framed
            .send(WsMessage::Text("idle now".into()))
            .await
            .unwrap();
        assert_eq!(framed.buffer_capacities().1, 0);
    }

    /// Whether the thread holds a spare buffer in `key`.
    fn has_spare(key: &'static LocalKey<Cell<Option<BytesMut>>>) -> bool {
        let buf = key.take();
        let some = buf.is_some();
        key.set(buf);
        some
    }

    #[actix_rt::test]
    async fn a_released_buffer_is_the_next_sockets_of_the_thread() {
        let incoming = Rc::new(RefCell::new(VecDeque::new()));
        let io: BoxedSocket = Box::new(Feed::open(incoming.clone()));
        let mut framed = WsFramed::new(Framed::new(io, Codec::new().client_mode()));
        assert!(has_spare(&SPARE_READ_BUF) && has_spare(&SPARE_WRITE_BUF));
        // The next write takes the write spare; its flush gives it back.
        framed.feed(WsMessage::Text("hi".into())).await.unwrap();
        assert!(!has_spare(&SPARE_WRITE_BUF), "taken, not allocated");
        framed.flush().await.unwrap();
        assert!(has_spare(&SPARE_WRITE_BUF));
        // The next read takes the read spare, and gives it back once it
        // found nothing more.
        incoming.borrow_mut().push_back(server_frames(1));
        let waker = futures_util::task::noop_waker();
        let mut cx = TaskContext::from_waker(&waker);
        let Poll::Ready(Some(Ok(WsFrame::Binary(b)))) = Pin::new(&mut framed).poll_next(&mut cx)
        else {
            panic!("the frame");
        };
        assert_eq!(b.len(), 1024);
        assert!(!has_spare(&SPARE_READ_BUF), "in use");
        assert!(drain(&mut framed).is_empty());
        assert!(has_spare(&SPARE_READ_BUF));
    }
}
