//! [`ResilientWebSocket::events`](crate::ResilientWebSocket::events): every
//! client event as one [`futures_util::Stream`], for code that does not
//! want to write an actor.
//!
//! Behind the stream is a small actor ([`EventFeed`]) subscribed like any
//! other, so the stream gets what an actor subscriber gets and obeys the
//! same inbound backpressure: the feed answers the fan-out's markers (see
//! [`super::inbound`]) only once the message is in the stream's one-event
//! buffer, so a consumer that stops polling stops the socket being read
//! after `max_inbound_backlog` messages, instead of piling them up.

use std::{
    pin::Pin,
    task::{Context as TaskContext, Poll},
};

use actix::{dev::MessageResponse, fut::ActorFutureExt, prelude::*};
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::{
    events::{
        Closed, ErrorEvent, IncomingMessage, MessageDropped, Reconnected, Reconnecting,
        SessionLost, StateChanged,
    },
    Error,
};

/// How many events the stream holds beyond the feed's mailbox. One: a
/// bigger buffer would only add to what a slow consumer makes the client
/// hold, and the mailbox already absorbs bursts.
const STREAM_BUFFER: usize = 1;

/// One event of a client, as [`ResilientWebSocket::events`] yields it: the
/// same event types an actor subscribes to one by one.
///
/// [`ResilientWebSocket::events`]: crate::ResilientWebSocket::events
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection state changed.
    State(StateChanged),
    /// A message arrived from the peer.
    Message(IncomingMessage),
    /// Something went wrong (the state events say what the client does
    /// about it).
    Error(ErrorEvent),
    /// A socket ended.
    Closed(Closed),
    /// The connection was lost; the client tries again after a delay.
    Reconnecting(Reconnecting),
    /// The connection is back after a loss.
    Reconnected(Reconnected),
    /// A message the client had accepted was dropped (overflow policy,
    /// time to live, retries exhausted).
    Dropped(MessageDropped),
    /// Reliable mode: the server no longer had the session; a fresh one
    /// starts.
    SessionLost(SessionLost),
}

/// The [`Stream`] of a client's events: see
/// [`ResilientWebSocket::events`](crate::ResilientWebSocket::events).
///
/// It ends (yields `None`) once the client is gone: every handle dropped
/// and the client closed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<ClientEvent>,
}

impl EventStream {
    /// Starts the feed on the current arbiter; the caller subscribes the
    /// recipients it returns. Off the actix System's threads there is no
    /// arbiter to run it on: the stream then says so in an error event and
    /// ends, rather than panic.
    pub(super) fn start() -> (EventStream, Option<Addr<EventFeed>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        if actix_rt::Arbiter::try_current().is_none() {
            let error = Error::InvalidConfig(
                "ws.events() must be called inside the actix System the client runs in".into(),
            );
            // The buffer is empty: this fits.
            let _ = tx.try_send(ClientEvent::Error(ErrorEvent { error }));
            return (EventStream { rx }, None);
        }
        (EventStream { rx }, Some(EventFeed { tx }.start()))
    }
}

impl Stream for EventStream {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<ClientEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// The actor behind an [`EventStream`]: it puts each event it is sent into
/// the stream, one at a time and in the order its mailbox got them.
///
/// While the stream's buffer is full it handles nothing more (the wait is
/// `ctx.wait`), so events keep their order and wait in its mailbox, where
/// the inbound fan-out counts the messages against its bound. It holds no
/// handle of the client, and the stream holds none of it: when the client
/// drops its subscriber lists the feed stops and the stream ends; when the
/// stream is dropped the feed stops and the client's fan-out removes it.
pub(crate) struct EventFeed {
    tx: mpsc::Sender<ClientEvent>,
}

impl Actor for EventFeed {
    type Context = Context<Self>;
}

impl EventFeed {
    fn feed(&mut self, event: ClientEvent, ctx: &mut Context<Self>) -> Fed {
        match self.tx.try_send(event) {
            Ok(()) => Fed::Now,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The stream was dropped: nobody listens any more.
                ctx.stop();
                Fed::Now
            }
            Err(mpsc::error::TrySendError::Full(event)) => {
                let tx = self.tx.clone();
                let send = async move { tx.send(event).await.is_ok() };
                Fed::Later(Box::pin(actix::fut::wrap_future(send).map(
                    |sent, _: &mut Self, ctx: &mut Context<Self>| {
                        if !sent {
                            ctx.stop();
                        }
                    },
                )))
            }
        }
    }
}

/// The answer to one event: at once when the stream had room, else once
/// it has (the reply to a fan-out marker means "taken").
pub(crate) enum Fed {
    Now,
    Later(ResponseActFuture<EventFeed, ()>),
}

impl<M> MessageResponse<EventFeed, M> for Fed
where
    M: Message<Result = ()>,
{
    fn handle(self, ctx: &mut Context<EventFeed>, tx: Option<actix::dev::OneshotSender<()>>) {
        let reply = move || {
            if let Some(tx) = tx {
                // The sender of a marker may have gone; nothing to tell it.
                let _ = tx.send(());
            }
        };
        match self {
            Fed::Now => reply(),
            // `wait`, not `spawn`: nothing else is handled meanwhile, so
            // the order holds and the mailbox is what grows (bounded by
            // the fan-out for messages).
            Fed::Later(fut) => {
                ctx.wait(fut.map(move |(), _, _| reply()));
            }
        }
    }
}

macro_rules! feed_handler {
    ($event:ty, $variant:ident) => {
        impl Handler<$event> for EventFeed {
            type Result = Fed;

            fn handle(&mut self, msg: $event, ctx: &mut Context<Self>) -> Fed {
                self.feed(ClientEvent::$variant(msg), ctx)
            }
        }
    };
}
feed_handler!(StateChanged, State);
feed_handler!(IncomingMessage, Message);
feed_handler!(ErrorEvent, Error);
feed_handler!(Closed, Closed);
feed_handler!(Reconnecting, Reconnecting);
feed_handler!(Reconnected, Reconnected);
feed_handler!(MessageDropped, Dropped);
feed_handler!(SessionLost, SessionLost);
