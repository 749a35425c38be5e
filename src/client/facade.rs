//! `ResilientWebSocket`: the handle users hold (its builder is in
//! `builder.rs`).

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{
    admission::{Admission, Ticket},
    connection::{
        messages::{Connect, Subscribe},
        ConnectionActor,
    },
    event_stream::EventStream,
    queue_actor::{
        inbox::{InboxTx, Refused},
        messages::{CloseAfterFlush, Enqueue, OutgoingMessage},
        QueueActor,
    },
    receipt::Receipt,
    shared::Shared,
    stats::Stats,
};
use crate::{
    events::{
        Closed, ConnectionState, ErrorEvent, IncomingMessage, MessageDropped, Payload, Reconnected,
        Reconnecting, SessionLost, StateChanged,
    },
    options::ClientOptions,
    queue::MessageId,
    Error, Result,
};

/// Hears when the durable store committed a message.
type Commit = oneshot::Receiver<Result<(), crate::queue::StoreError>>;

/// A message the outbox took: its id, and what to wait on for it.
struct Taken {
    id: MessageId,
    /// With a durable store: its commit.
    commit: Option<Commit>,
    /// With `send_with_receipt()`.
    receipt: Option<Receipt>,
}

/// A resilient WebSocket client.
///
/// A cheap, cloneable handle (`Send`) to the client's actors. Build one with
/// [`ResilientWebSocket::builder`] inside a running actix `System`.
///
/// Dropping the last clone without [`disconnect`](Self::disconnect) closes
/// the client the same way (outbox flushed, last acks awaited up to
/// `close_timeout`, Close 1000) and then stops all of its actors.
///
/// # Examples
/// ```no_run
/// use resilient_ws::ResilientWebSocket;
///
/// #[actix::main]
/// async fn main() -> Result<(), resilient_ws::Error> {
///     let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws")
///         .connect()
///         .await?;
///     ws.send("hello").await?;
///     ws.disconnect().await
/// }
/// ```
#[derive(Clone)]
pub struct ResilientWebSocket {
    pub(super) conn: Addr<ConnectionActor>,
    pub(super) queue: Addr<QueueActor>,
    pub(super) shared: Arc<Shared>,
    pub(super) opts: Arc<ClientOptions>,
    /// With a durable store, `send()` waits for its commit.
    pub(super) durable: bool,
    /// The check `send()` shares with the outbox's `OutgoingMessage`.
    pub(super) admission: Admission,
    /// Where `send()` leaves its messages for the outbox: one wake-up of
    /// the `QueueActor` per burst, not an actix message per message.
    pub(super) inbox: InboxTx,
    /// Shared by every clone: the last one's drop closes the client.
    pub(super) _close_on_drop: Arc<CloseOnDrop>,
}

/// Closes the client when the last [`ResilientWebSocket`] handle is
/// dropped, as `disconnect()` would (the outbox flushed, the last acks
/// awaited up to `close_timeout`, a 1000 Close). Without handles nothing
/// else holds the connection actor, so it stops for good after that close
/// and takes the other actors with it.
pub(super) struct CloseOnDrop {
    pub(super) queue: Addr<QueueActor>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let (tx, _) = oneshot::channel();
        self.queue.do_send(CloseAfterFlush(tx));
    }
}

impl std::fmt::Debug for ResilientWebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientWebSocket")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl ResilientWebSocket {
    /// Opens the connection; resolves once connected.
    ///
    /// Returns at once if already connected; joins the attempt in progress if
    /// connecting.
    ///
    /// # Errors
    /// Why the attempt failed: [`Error::UpgradeRejected`] with the HTTP status,
    /// [`Error::ConnectTimeout`], [`Error::Io`] (refused, reset), [`Error::Tls`],
    /// [`Error::Auth`], ...
    pub async fn connect(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.conn
            .send(Connect(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Hands a text or binary message to the client without waiting for it to
    /// be written. While not connected it waits in the outbox (when
    /// `enable_message_buffering`) and goes out first on (re)connect.
    ///
    /// Waits only when the client's inbox is full (backpressure), or for
    /// a place in a full outbox under [`OverflowPolicy::Wait`](crate::OverflowPolicy::Wait) (and in
    /// reliable mode, which never drops): the outbox decides and answers. With a durable
    /// store ([`ClientOptions::persistent`]) it also waits until the message
    /// is on disk (one commit serves every message sent meanwhile), so what
    /// `send()` accepted survives a crash of the process.
    ///
    /// # Errors
    /// [`Error::NotConnected`] when not connected and buffering is off or a
    /// close is in progress; [`Error::BufferFull`] when the outbox is full
    /// and the overflow policy rejects (or the wait timed out);
    /// [`Error::MessageTooLarge`] when the message is larger than the peer
    /// accepts (reliable mode: the server's `max_message_size` from
    /// negotiate; else [`ClientOptions::max_outbound_message_size`]), at
    /// once and with nothing queued; [`Error::Shutdown`] when the client is
    /// gone; [`Error::Store`] when the durable store failed to commit it.
    ///
    /// Returns the message's id: the one a [`MessageDropped`] reports
    /// should the outbox drop it. To hear when it is delivered, use
    /// [`send_confirmed`](Self::send_confirmed).
    pub async fn send(&self, payload: impl Into<Payload>) -> Result<MessageId> {
        self.send_with_priority(payload, 0).await
    }

    /// Sends a message and waits until it is delivered: in reliable mode
    /// until the server acknowledged it, in the other modes until it was
    /// written to the socket. Answers its id.
    ///
    /// # Errors
    /// As for [`send`](Self::send) when the message is refused; once it
    /// was accepted, as its [`Receipt`] fails: [`Error::Dropped`] with the
    /// reason when the outbox dropped it (overflow, time to live), the
    /// error that stopped the client when it stopped first.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(ws: resilient_ws::ResilientWebSocket) -> resilient_ws::Result<()> {
    /// let id = ws.send_confirmed("order 42").await?;
    /// println!("message {id} delivered");
    /// # Ok(()) }
    /// ```
    pub async fn send_confirmed(&self, payload: impl Into<Payload>) -> Result<MessageId> {
        self.send_with_receipt(payload).await?.await
    }

    /// Like [`send`](Self::send), with a [`Receipt`]: a future that
    /// resolves once the message is delivered (see
    /// [`send_confirmed`](Self::send_confirmed)), so many messages can be
    /// in flight while their receipts are awaited later. Only messages
    /// sent this way carry a receipt: a plain `send()` pays nothing for it.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub async fn send_with_receipt(&self, payload: impl Into<Payload>) -> Result<Receipt> {
        let taken = self.enqueue(payload.into(), 0, true, true).await?;
        Self::durable(taken.commit).await?;
        taken.receipt.ok_or(Error::Shutdown)
    }

    /// Like [`send`](Self::send), with a priority: while messages wait in the
    /// outbox, higher priorities go out first (FIFO within a priority).
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub async fn send_with_priority(
        &self,
        payload: impl Into<Payload>,
        priority: u8,
    ) -> Result<MessageId> {
        let taken = self.enqueue(payload.into(), priority, true, false).await?;
        Self::durable(taken.commit).await?;
        Ok(taken.id)
    }

    /// Sends several messages in order, like that many [`send`](Self::send)s,
    /// but with a durable store it waits for the disk once, at the end:
    /// the way to stream many messages through a durable client fast.
    ///
    /// # Errors
    /// As for [`send`](Self::send). It stops at the first message refused;
    /// the ones before it were accepted.
    pub async fn send_batch<P: Into<Payload>>(
        &self,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<()> {
        let mut payloads = payloads.into_iter().peekable();
        let mut durable = None;
        while let Some(p) = payloads.next() {
            // Commits happen in order: the last message's is the batch's.
            let last = payloads.peek().is_none();
            durable = self.enqueue(p.into(), 0, last, false).await?.commit;
        }
        Self::durable(durable).await
    }

    /// Admits one message and hands it to the queue actor; with a durable
    /// store and `wait`, returns what hears of its commit.
    ///
    /// With a credit (or under a policy that never refuses) the message is
    /// certainly taken: it is handed over without waiting for a reply. With
    /// none, the queue actor decides (refuse, or wait for a place) and
    /// answers; only then does `send()` wait for it.
    ///
    /// The id is numbered here, so `send()` returns it without a round
    /// trip; a receipt (its channel) only when asked for.
    async fn enqueue(
        &self,
        payload: Payload,
        priority: u8,
        wait: bool,
        with_receipt: bool,
    ) -> Result<Taken> {
        let ticket = self.admission.admit(&payload)?;
        let id = self.shared.next_message_id();
        let (receipt, receipt_tx) = if with_receipt {
            let (r, tx) = Receipt::new(id);
            (Some(r), Some(tx))
        } else {
            (None, None)
        };
        let (done, durable) = if self.durable && wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (answer, answered) = if ticket == Ticket::Ask {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let msg = Enqueue {
            payload,
            priority,
            done,
            ticket,
            answer,
            id,
            receipt: receipt_tx,
        };
        if self.inbox.send(msg).await.is_err() {
            self.admission.untake(ticket);
            return Err(Error::Shutdown);
        }
        if let Some(rx) = answered {
            rx.await.map_err(|_| Error::Shutdown)??;
        }
        Ok(Taken {
            id,
            commit: durable,
            receipt,
        })
    }

    /// Waits for a commit, if there is one to wait for.
    async fn durable(rx: Option<Commit>) -> Result<()> {
        match rx {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(result) => result.map_err(Error::Store),
                Err(_) => Err(Error::Shutdown),
            },
        }
    }

    /// Like [`send`](Self::send), but never waits: a full inbox or outbox
    /// (counting the messages handed over that the client has not taken
    /// in yet) is [`Error::BufferFull`]. With a durable store it does not wait for
    /// the commit either: use `send()` for that guarantee.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn try_send(&self, payload: impl Into<Payload>) -> Result<MessageId> {
        let payload = payload.into();
        let ticket = match self.admission.admit(&payload)? {
            // No credit: asking would mean waiting for the answer.
            Ticket::Ask => return Err(self.admission.full()),
            t => t,
        };
        let id = self.shared.next_message_id();
        let msg = Enqueue {
            payload,
            priority: 0,
            done: None,
            ticket,
            answer: None,
            id,
            receipt: None,
        };
        self.inbox.try_send(msg).map(|()| id).map_err(|e| {
            self.admission.untake(ticket);
            match e {
                Refused::Full => Error::BufferFull(self.opts.max_buffered_messages),
                Refused::Closed => Error::Shutdown,
            }
        })
    }

    /// A [`Recipient`] of [`OutgoingMessage`]: how an actor of yours sends
    /// through this client. Depend on the recipient, not on the client, and
    /// the actor's unit tests can hand it a recorder instead of a network.
    ///
    /// The message is checked and taken like [`try_send`](Self::try_send):
    /// it never waits (a full outbox answers [`Error::BufferFull`]) and
    /// with a durable store it answers once the message is accepted, not
    /// once it is on disk. `send(..).await` gives that answer; `do_send`
    /// ignores it. The recipient does not keep the client alive: once the
    /// last handle is dropped (and the client closed), sending through it
    /// fails with [`MailboxError::Closed`](actix::MailboxError::Closed).
    ///
    /// # Examples
    /// ```no_run
    /// use actix::prelude::*;
    /// use resilient_ws::{client::OutgoingMessage, ResilientWebSocket};
    ///
    /// /// An actor that reports readings; it knows only where to send them.
    /// struct Reporter {
    ///     out: Recipient<OutgoingMessage>,
    /// }
    ///
    /// impl Actor for Reporter {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// #[derive(Message)]
    /// #[rtype(result = "()")]
    /// struct Reading(f64);
    ///
    /// impl Handler<Reading> for Reporter {
    ///     type Result = ();
    ///     fn handle(&mut self, r: Reading, _: &mut Context<Self>) {
    ///         self.out.do_send(OutgoingMessage::new(format!("reading {}", r.0)));
    ///     }
    /// }
    ///
    /// # async fn f() -> Result<(), resilient_ws::Error> {
    /// let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws").connect().await?;
    /// let reporter = Reporter { out: ws.sender() }.start();
    /// reporter.do_send(Reading(21.5));
    /// # Ok(()) }
    /// ```
    pub fn sender(&self) -> Recipient<OutgoingMessage> {
        self.queue.clone().recipient()
    }

    /// Serializes `value` as JSON and sends it as a text message.
    ///
    /// # Errors
    /// [`Error::Serialize`], or as for [`send`](Self::send).
    pub async fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<MessageId> {
        let text = serde_json::to_string(value).map_err(|e| Error::Serialize(e.to_string()))?;
        self.send(text).await
    }

    /// The largest message the peer accepts, when known: in reliable mode
    /// the server's `max_message_size` from negotiate, else
    /// [`ClientOptions::max_outbound_message_size`]. `send()` refuses
    /// larger messages with [`Error::MessageTooLarge`].
    pub fn peer_max_message_size(&self) -> Option<usize> {
        self.shared.peer_max_message_size()
    }

    /// The current connection state (read without a round trip).
    pub fn state(&self) -> ConnectionState {
        self.shared.state()
    }

    /// The subprotocol the server selected on the current socket, if any.
    pub fn protocol(&self) -> Option<String> {
        self.shared.protocol.lock().expect("protocol lock").clone()
    }

    /// The options this client runs with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Closes gracefully: messages already handed over are written, a Close
    /// frame (1000) follows, and the peer's Close is awaited for up to
    /// `close_timeout` before the socket is dropped. Resolves when the
    /// client is `Disconnected`. In reliable mode the Close waits (up to
    /// `close_timeout`) until the server acknowledged everything sent.
    ///
    /// # Errors
    /// [`Error::Shutdown`] if the client's actors are gone.
    pub async fn disconnect(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        // Through the outbox, so everything sent before is written first.
        self.queue
            .send(CloseAfterFlush(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// Subscribes to state changes.
    pub fn subscribe_state(&self, r: Recipient<StateChanged>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Subscribes to incoming messages.
    pub fn subscribe_messages(&self, r: Recipient<IncomingMessage>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Subscribes to errors.
    pub fn subscribe_errors(&self, r: Recipient<ErrorEvent>) {
        // The outbox reports its own errors (a full outbox).
        self.queue.do_send(Subscribe(r.clone()));
        self.conn.do_send(Subscribe(r));
    }

    /// Reliable mode: subscribes to session-lost reports.
    pub fn subscribe_session_lost(&self, r: Recipient<SessionLost>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Subscribes to dropped-message reports (overflow policy, TTL).
    pub fn subscribe_dropped(&self, r: Recipient<MessageDropped>) {
        self.queue.do_send(Subscribe(r));
    }

    /// Subscribes to socket-closed events.
    pub fn subscribe_closed(&self, r: Recipient<Closed>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Subscribes to reconnect announcements (before each wait).
    pub fn subscribe_reconnecting(&self, r: Recipient<Reconnecting>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Subscribes to reconnect successes.
    pub fn subscribe_reconnected(&self, r: Recipient<Reconnected>) {
        self.conn.do_send(Subscribe(r));
    }

    /// Every event of this client (state changes, messages, errors,
    /// closes, reconnects, drops, lost sessions) as one
    /// [`Stream`](futures_util::Stream) of [`ClientEvent`](crate::ClientEvent), for code that
    /// does not want to write an actor.
    ///
    /// It sees the events from the moment its subscription reaches the
    /// client: call it before [`connect`](Self::connect) to see them all.
    /// Events come in the order the client reported them (a message
    /// dropped by the outbox may come earlier or later than a connection
    /// event that happened at the same time: they come from two actors).
    /// Each call gives a stream of its own, with every event.
    ///
    /// A slow consumer slows the peer, never the client's memory: like a
    /// slow actor subscriber, once
    /// [`max_inbound_backlog`](ClientOptions::max_inbound_backlog)
    /// messages (or `max_inbound_backlog_bytes`) wait for the stream, the
    /// socket is not read until it catches up; nothing is dropped. So a
    /// stream that is never polled stops the client reading: drop the
    /// streams you do not read. Other events (rare next to messages) wait
    /// for the stream as they would in a slow actor's mailbox.
    ///
    /// The stream ends once the client is gone (every handle dropped and
    /// the client closed). Called off the actix System's threads (where
    /// the stream cannot be fed), it yields one [`Error::InvalidConfig`]
    /// event and ends.
    ///
    /// # Examples
    /// ```no_run
    /// use futures::StreamExt;
    /// use resilient_ws::{ClientEvent, ResilientWebSocket};
    ///
    /// # async fn f() -> Result<(), resilient_ws::Error> {
    /// let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws").build()?;
    /// let mut events = ws.events();
    /// ws.connect().await?;
    /// ws.send("hello").await?;
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         ClientEvent::Message(m) => println!("got {:?}", m.payload),
    ///         ClientEvent::State(s) => println!("now {:?}", s.current),
    ///         other => println!("{other:?}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> EventStream {
        let (stream, feed) = EventStream::start();
        let Some(feed) = feed else { return stream };
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<StateChanged>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<IncomingMessage>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<ErrorEvent>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<Closed>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<Reconnecting>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<Reconnected>()));
        self.conn
            .do_send(Subscribe(feed.clone().recipient::<SessionLost>()));
        // The outbox reports its own errors and the messages it drops.
        self.queue
            .do_send(Subscribe(feed.clone().recipient::<ErrorEvent>()));
        self.queue
            .do_send(Subscribe(feed.recipient::<MessageDropped>()));
        stream
    }

    /// The client's counters (reconnects, messages, last heartbeat RTT).
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// A reader of [`stats`](Self::stats) that does not keep the client
    /// alive: for tests that drop every handle and then check
    /// [`Stats::live_actors`].
    #[doc(hidden)]
    pub fn stats_reader(&self) -> impl Fn() -> Stats + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.counters.snapshot()
    }

    /// Turns on the heartbeat RTT histogram with these labels (the first
    /// call wins): `crate::metrics`'s client reporter calls it.
    #[cfg(feature = "metrics")]
    pub(crate) fn report_rtt(&self, labels: Vec<metrics::Label>) {
        let _ = self.shared.counters.rtt_labels.set(labels);
    }
}

#[cfg(test)]
mod tests {
    //! The handle's side of admission, on a client that is never connected
    //! (nothing listens on port 1): what is refused before any credit is
    //! taken, and that a refusal leaves the credits whole.

    use super::*;

    fn offline(max: usize) -> crate::ResilientWebSocketBuilder {
        ResilientWebSocket::builder("ws://127.0.0.1:1/ws")
            .reconnect_mode(crate::ReconnectMode::Stateless)
            .buffering(true, max)
    }

    fn credits(ws: &ResilientWebSocket) -> isize {
        ws.admission
            .credits()
            .expect("Reject needs credits")
            .available()
    }

    #[actix_rt::test]
    async fn try_send_without_a_credit_is_refused_at_once() {
        let ws = offline(1).build().unwrap();
        ws.try_send("a").unwrap();
        assert!(matches!(ws.try_send("b"), Err(Error::BufferFull(1))));
        assert_eq!(credits(&ws), 0);
    }

    #[actix_rt::test]
    async fn a_send_the_outbox_refuses_takes_no_place() {
        let ws = offline(1).build().unwrap();
        ws.send("a").await.unwrap();
        assert!(matches!(ws.send("b").await, Err(Error::BufferFull(1))));
        assert_eq!(credits(&ws), 0);
        assert_eq!(ws.stats().messages_buffered, 1);
    }

    #[actix_rt::test]
    async fn refusals_by_size_or_state_come_before_any_credit() {
        let ws = offline(2).max_outbound_message_size(3).build().unwrap();
        assert!(matches!(
            ws.send("abcd").await,
            Err(Error::MessageTooLarge { size: 4, max: 3 })
        ));
        ws.shared.set_state(ConnectionState::Disconnecting);
        assert!(matches!(ws.send("a").await, Err(Error::NotConnected)));
        assert!(matches!(ws.try_send("a"), Err(Error::NotConnected)));
        assert_eq!(credits(&ws), 2);
        let ws = offline(2).buffering(false, 2).build().unwrap();
        assert!(matches!(ws.send("a").await, Err(Error::NotConnected)));
        assert_eq!(credits(&ws), 2);
    }
}
