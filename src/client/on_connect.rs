//! The `on_connect` hook: messages that go first on every new socket,
//! ahead of the backlog (a feed's subscribe or auth message).
//!
//! Its shape is a [`Recipient`] of [`OnConnect`] that answers the messages
//! to send, because that is how an actix application already holds its
//! state: the actor that owns the subscriptions answers from its own
//! fields, in its own context, with no `Arc<Mutex<..>>` around them, and a
//! unit test of that actor needs no network. The client asks it on each
//! socket, before the socket takes anything else. A fixed list
//! ([`preamble`](crate::ResilientWebSocketBuilder::preamble), what
//! `rws connect --preamble` uses) needs no actor at all.

use actix::prelude::*;

use super::builder::ResilientWebSocketBuilder;
use crate::events::Payload;

/// Asked on every socket the client opens, before anything else is sent:
/// answer the messages that must go first (see
/// [`ResilientWebSocketBuilder::on_connect`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Payload>")]
#[non_exhaustive]
pub struct OnConnect {
    /// Not the first socket since `connect()`.
    pub reconnect: bool,
    /// Reliable mode: the server resumed the session, so it still has what
    /// it had (subscriptions made over the reliable stream, for instance);
    /// `false` on a fresh session and in the other modes.
    pub resumed: bool,
}

/// What the connection asks on each socket (built by the builder).
#[derive(Clone, Default)]
pub(crate) struct Hook {
    /// Sent first, as given.
    pub(crate) fixed: Vec<Payload>,
    /// Asked after `fixed`; its answer follows it.
    pub(crate) recipient: Option<Recipient<OnConnect>>,
}

impl ResilientWebSocketBuilder {
    /// Runs a hook on every (re)connect, before the backlog: on each new
    /// socket the client asks `hook` with an [`OnConnect`] and sends the
    /// messages it answers first, ahead of everything buffered while it
    /// was down and of every `send()` meanwhile. In every mode:
    ///
    /// - raw (`None`, `Stateless`): the answer is the first thing on the
    ///   socket, then the outbox in order;
    /// - reliable (`Stateful`): the replay of unacknowledged messages keeps
    ///   its place first (their seqs are older: the peer must get them in
    ///   order), then the answer, then the outbox. On a fresh session
    ///   (after the old one was lost, close 4001) that replay is the
    ///   re-sent window, so the answer still precedes every message that
    ///   waited in the outbox. The answer's messages are numbered like any
    ///   other (delivered exactly once; a replay after a later drop
    ///   includes them, and the next socket's answer follows).
    ///
    /// The socket is `Connected` (and `connect()` resolves) only after the
    /// answer. An answer that takes longer than `connection_timeout` fails
    /// the attempt ([`Error::ConnectTimeout`](crate::Error::ConnectTimeout), retried under the
    /// retry policy); a hook whose actor is gone sends nothing. Set it
    /// once: a second call replaces the first.
    ///
    /// # Examples
    /// ```no_run
    /// use actix::prelude::*;
    /// use resilient_ws::{client::OnConnect, Payload, ResilientWebSocket};
    ///
    /// /// Owns the feed's subscriptions; resubscribes on every socket.
    /// struct Feed {
    ///     topics: Vec<String>,
    /// }
    ///
    /// impl Actor for Feed {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// impl Handler<OnConnect> for Feed {
    ///     type Result = Vec<Payload>;
    ///     fn handle(&mut self, _: OnConnect, _: &mut Context<Self>) -> Vec<Payload> {
    ///         self.topics.iter().map(|t| format!("subscribe {t}").into()).collect()
    ///     }
    /// }
    ///
    /// # async fn f() -> Result<(), resilient_ws::Error> {
    /// let feed = Feed { topics: vec!["ticker".into()] }.start();
    /// let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws")
    ///     .on_connect(feed.recipient())
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_connect(mut self, hook: Recipient<OnConnect>) -> Self {
        self.on_connect.recipient = Some(hook);
        self
    }

    /// Messages sent first on every socket, as given: a fixed
    /// [`on_connect`](Self::on_connect) (it goes ahead of that hook's
    /// answer, if both are set). What `rws connect --preamble` uses.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> Result<(), resilient_ws::Error> {
    /// let ws = resilient_ws::ResilientWebSocket::builder("ws://127.0.0.1:8080/ws")
    ///     .preamble(["auth secret", "subscribe ticker"])
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn preamble<P: Into<Payload>>(mut self, messages: impl IntoIterator<Item = P>) -> Self {
        self.on_connect.fixed = messages.into_iter().map(Into::into).collect();
        self
    }
}
