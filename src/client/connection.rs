//! The `ConnectionActor`: owns one socket at a time, under `actix::Supervisor`.
//!
//! Every socket-bound thing (the awc stream, the `SinkWrite`, the close
//! timer) lives in the actor's context, and a socket that ends always ends in
//! `ctx.stop()`. The Supervisor then restarts the actor, which drops every
//! context item of the old socket, and `started()` builds a new one. So a
//! restart *is* the stateless reconnect, and nothing of an old socket can
//! outlive it. What must survive (options, subscribers, waiters, buffered
//! messages) lives in the actor's fields.

use std::{
    collections::VecDeque,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
};

use actix::{io::SinkWrite, prelude::*};
use actix_http::ws::{CloseReason, Frame, Message as WsMessage, ProtocolError};
use futures_util::stream::{SplitSink, StreamExt};
use tokio::sync::oneshot;

use actix_rt::time::Instant;

use super::{
    heartbeat::{Unwatch, Watch},
    inbound::Gated,
    queue_actor::messages::{Acked, FirstSeq, LinkState, Shutdown},
    reconnect::{AskRetry, ConnectionUp, NextAttempt, TakeRecovery},
    reliable::{ReliableState, Verdict},
    shared::{LiveGuard, Shared},
    stats::Counters,
    store_writer::StoreHandle,
    subscribers::EventBus,
    transport::{self, WsFramed},
    write_load::{Counted, WriteLoad},
};
use crate::{
    close_code,
    events::{
        Closed, ConnectionState, ErrorEvent, IncomingMessage, Payload, Reconnected, Reconnecting,
        SessionLost, StateChanged,
    },
    options::{ClientOptions, ReconnectMode, UrlProvider},
    protocol::{encode_data, Frame as ProtoFrame, ShutdownAdvice, MAX_DATA_HEADER_LEN},
    queue::{StoreOp, StoredState},
    ws::{close_reason, codec_violation, Assembler, Inbound, PongAction, PongLimiter},
    Error, Result,
};

/// Mailbox size: `send()` uses `try_send` and only waits when this is full,
/// so it bounds how far a fast producer can run ahead of the socket.
const MAILBOX_CAPACITY: usize = 4096;

/// How many sockets in a row the peer may close with the same 1009/1002,
/// with nothing newly acknowledged, before the client stops: the replay it
/// refuses would be refused forever (a message over its limit).
const MAX_REFUSED_REPLAYS: u32 = 3;

/// Consecutive sockets the peer closed with the same refusal code.
#[derive(Debug, Clone, Copy)]
struct Refusals {
    code: u16,
    count: u32,
    /// `ConnectionActor::acked` when the run began: progress resets it.
    acked: u64,
}

pub(crate) mod messages;

use messages::{Connect, Disconnect, HeartbeatTimeout, SendPing, Subscribe, WriteBatch};

/// How far the close handshake of the current socket has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
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

type Sink = SinkWrite<WsMessage, Counted<SplitSink<WsFramed, WsMessage>>>;

/// One open socket. Dropped (and so closed) whenever the actor stops.
struct Socket {
    /// Which socket this is; messages from helpers about an older one are
    /// ignored.
    gen: u64,
    sink: Sink,
    assembler: Assembler,
    closing: Closing,
    /// Data may flow: at once in raw mode, after WELCOME in reliable mode.
    ready: bool,
    /// Reliable mode: the pending ack timer.
    ack_timer: Option<SpawnHandle>,
    /// Bytes written and not yet taken by the socket (backpressure).
    load: Rc<WriteLoad>,
    /// Coalesces pongs under a ping flood.
    pongs: PongLimiter,
}

impl Socket {
    /// Queues a frame for the socket, counting it for backpressure.
    fn write(&mut self, msg: WsMessage) -> Result<(), WsMessage> {
        self.load.add(&msg);
        self.sink.write(msg)
    }
}

/// Why the current socket (or attempt) ended. The first reason recorded
/// wins: later ones are consequences.
struct End {
    code: Option<u16>,
    reason: String,
    by_us: bool,
    error: Option<Error>,
}

/// Where the actor is in its life, across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected and not trying to.
    Idle,
    /// The first connection after `connect()` is being made.
    Initial,
    /// A socket is open.
    Up,
    /// The connection was lost; attempts follow the retry policy.
    Reconnecting,
}

/// What the connection holds of the other actors: a `Recipient` per message
/// it sends them, never their concrete addresses, so a test can stand any
/// of them in with a recorder. Strong, like the facade's handles: the
/// connection outlives its restarts, and when it goes for good (the last
/// handle dropped) these go with it, and so do the actors behind them.
pub(crate) struct Links {
    /// The heartbeat: watch a new socket.
    pub(crate) watch: Recipient<Watch>,
    /// The heartbeat: a socket is gone.
    pub(crate) unwatch: Recipient<Unwatch>,
    /// The reconnect supervisor: a socket is up (for `min_uptime`).
    pub(crate) connection_up: Recipient<ConnectionUp>,
    /// The reconnect supervisor: how long the outage took.
    pub(crate) take_recovery: Recipient<TakeRecovery>,
    /// The reconnect supervisor: when to try again.
    pub(crate) ask_retry: Recipient<AskRetry>,
    /// The outbox: the socket is ready, gone, backed up or caught up.
    pub(crate) link_state: Recipient<LinkState>,
    /// The outbox: the peer acknowledged up to a seq.
    pub(crate) acked: Recipient<Acked>,
    /// The outbox: the seq a HELLO claims to send first.
    pub(crate) first_seq: Recipient<FirstSeq>,
    /// The outbox: the client is gone.
    pub(crate) shutdown: Recipient<Shutdown>,
}

/// The supervised actor that owns the socket. Created by
/// [`ResilientWebSocket`](crate::ResilientWebSocket); users talk to it
/// through that facade.
pub struct ConnectionActor {
    opts: Arc<ClientOptions>,
    url: UrlProvider,
    bus: EventBus,
    shared: Arc<Shared>,
    links: Links,
    state: ConnectionState,
    /// Whether the user wants a connection: set by `connect()`, cleared by
    /// `disconnect()` and by a failure the client gives up on.
    wanted: bool,
    phase: Phase,
    /// Failed attempts and lost connections so far; picks the endpoint of a
    /// failover list.
    failures: usize,
    /// How many more endpoints the first `connect()` may try.
    initial_tries_left: usize,
    /// The first connect already went on after a `SessionGone`.
    retried_gone: bool,
    /// Why the last socket or attempt ended; what the retry policy is told.
    last_error: Option<Error>,
    /// The generation of the newest socket.
    gen: u64,
    connect_waiters: Vec<oneshot::Sender<Result<()>>>,
    disconnect_waiters: Vec<oneshot::Sender<()>>,
    /// Batches that reached this actor after their socket was gone; written
    /// first on the next socket, before the outbox's backlog.
    pending: VecDeque<Payload>,
    /// The current socket; `None` while connecting or disconnected.
    sock: Option<Socket>,
    /// The in-flight connection attempt, so `disconnect()` can cancel it.
    attempt: Option<SpawnHandle>,
    end: Option<End>,
    /// Reliable mode: session and receive-side sequence state.
    reliable: ReliableState,
    /// With a durable store: where session changes are recorded.
    store: Option<StoreHandle>,
    /// With a durable store: the `delivered` the store holds. Only this much
    /// is acknowledged or claimed in a HELLO, so a new process never resumes
    /// from a point the server has already discarded.
    durable_delivered: u64,
    /// Reliable mode: the highest of our seqs the peer acknowledged (ACK or
    /// WELCOME); the progress `refusals` looks for.
    acked: u64,
    /// The peer's current run of refusals (see `MAX_REFUSED_REPLAYS`).
    refusals: Option<Refusals>,
    /// The run reached the bound: stop instead of reconnecting.
    refused_for_good: bool,
    /// Reliable mode: since when the session has had no socket. Past its
    /// resume window the server has dropped it, so an attempt that would
    /// start later negotiates a fresh session instead (PROTOCOL.md §7).
    session_lost_at: Option<Instant>,
    /// Reliable mode: the client's stable id, told to the server at every
    /// negotiate (docs/PROTOCOL.md §1): random per client, or the one a
    /// durable store kept.
    client_id: String,
}

impl ConnectionActor {
    pub(crate) fn new(
        opts: Arc<ClientOptions>,
        url: UrlProvider,
        bus: EventBus,
        shared: Arc<Shared>,
        links: Links,
    ) -> Self {
        ConnectionActor {
            opts,
            url,
            bus,
            shared,
            links,
            state: ConnectionState::Disconnected,
            wanted: false,
            phase: Phase::Idle,
            failures: 0,
            initial_tries_left: 0,
            retried_gone: false,
            last_error: None,
            gen: 0,
            connect_waiters: Vec::new(),
            disconnect_waiters: Vec::new(),
            pending: VecDeque::new(),
            sock: None,
            attempt: None,
            end: None,
            reliable: ReliableState::default(),
            store: None,
            durable_delivered: 0,
            acked: 0,
            refusals: None,
            refused_for_good: false,
            session_lost_at: None,
            client_id: crate::protocol::new_client_id(),
        }
    }

    /// Resumes from what a durable store held, and records into it.
    pub(crate) fn attach_store(&mut self, store: StoreHandle, state: &StoredState) {
        self.reliable.session = state.session.as_ref().map(Into::into);
        if let Some(max) = state.session.as_ref().and_then(|s| s.max_message_size) {
            // The server's limit is known before the first socket.
            self.shared.set_peer_max_message_size(Some(max));
        }
        if let Some(s) = state.session.as_ref().filter(|s| !s.client_id.is_empty()) {
            self.client_id = s.client_id.clone();
        }
        self.reliable.delivered = state.delivered;
        self.reliable.highest_written = state.next_seq.saturating_sub(1);
        self.durable_delivered = state.delivered;
        self.store = Some(store);
    }

    /// With a durable store: records the session now in use (or none).
    fn store_session(&mut self) {
        if let Some(store) = &self.store {
            let session = self.reliable.session.as_ref().map(Into::into);
            let delivered = self.reliable.delivered;
            store.submit(
                vec![StoreOp::Session(session), StoreOp::Delivered(delivered)],
                Vec::new(),
                None,
            );
            self.durable_delivered = self.durable_delivered.min(delivered);
        }
    }

    /// Has the heartbeat watch socket `gen`, talking back to this actor
    /// through weak recipients (it must not keep the connection alive).
    fn watch(&self, gen: u64, ctx: &mut Context<Self>) {
        let me = ctx.address().downgrade();
        self.links.watch.do_send(Watch {
            gen,
            ping: me.clone().recipient(),
            timeout: me.recipient(),
        });
    }

    fn stateful(&self) -> bool {
        self.opts.reconnect_mode == ReconnectMode::Stateful
    }

    fn set_state(&mut self, current: ConnectionState) {
        let previous = self.state;
        if previous == current {
            return;
        }
        self.state = current;
        self.shared.set_state(current);
        log::debug!("state {previous:?} -> {current:?}");
        self.bus.state.publish(StateChanged { previous, current });
    }

    fn begin_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Reconnecting {
            self.set_state(ConnectionState::Connecting);
        }
        if let (Some(s), Some(lost)) = (&self.reliable.session, self.session_lost_at) {
            if lost.elapsed() > s.resume_window {
                // Resuming cannot work any more, and would keep the client
                // on the old server's socket URL: negotiate afresh through
                // the URL provider (which rotates failover endpoints).
                log::debug!(
                    "session {}: no socket for longer than its resume window ({:?})",
                    s.connection_id,
                    s.resume_window
                );
                self.give_up_session();
            }
        }
        let opts = self.opts.clone();
        let url = self.url.clone();
        let failures = self.failures;
        let stateful = self.stateful();
        let session = self.reliable.session.clone();
        let client_id = self.client_id.clone();
        let attempt = async move {
            transport::open(&opts, &url, failures, stateful, session, client_id).await
        }
        .into_actor(self)
        .map(|res, act, ctx| {
            act.attempt = None;
            match res {
                Ok(opened) => act.opened(opened, ctx),
                Err(e) => act.fail(ctx, e),
            }
        });
        self.attempt = Some(ctx.spawn(attempt));
    }

    fn opened(&mut self, opened: transport::Opened, ctx: &mut Context<Self>) {
        let (sink, stream) = opened.framed.split();
        // The guard lives inside the stream item, so it counts the stream for
        // exactly as long as the context holds it.
        let guard = LiveGuard::new(self.shared.clone());
        // The gate stops reading while a subscriber is too far behind.
        let stream = Gated::new(stream, self.bus.messages.gate());
        ctx.add_stream(stream.map(move |frame| {
            let _ = &guard;
            frame
        }));
        self.gen += 1;
        self.shared.touch();
        self.watch(self.gen, ctx);
        self.links.connection_up.do_send(ConnectionUp);
        let load = WriteLoad::new(self.gen, self.links.link_state.clone());
        let sock = Socket {
            gen: self.gen,
            sink: SinkWrite::new(Counted::new(sink, load.clone()), ctx),
            load,
            // Reliable mode: the limit is on the DATA payload, checked on
            // decoding; the message also holds the frame header.
            assembler: Assembler::with_limits(
                if opened.session.is_some() {
                    (self.opts.max_message_size).saturating_add(MAX_DATA_HEADER_LEN)
                } else {
                    self.opts.max_message_size
                },
                self.opts.max_fragments,
            ),
            closing: Closing::Open,
            ready: false,
            ack_timer: None,
            pongs: PongLimiter::default(),
        };
        *self.shared.protocol.lock().expect("protocol lock") = opened.protocol;
        match opened.session {
            Some(session) => {
                // Reliable mode: the socket is ready only after WELCOME.
                self.reliable.new_socket();
                let fresh = self
                    .reliable
                    .session
                    .as_ref()
                    .is_none_or(|old| old.connection_id != session.connection_id);
                self.shared.set_peer_max_message_size(
                    session
                        .max_message_size
                        .or(self.opts.max_outbound_message_size),
                );
                let (connection_id, reconnect_token) = (
                    session.connection_id.clone(),
                    session.reconnect_token.clone(),
                );
                self.reliable.session = Some(session);
                if fresh {
                    self.store_session();
                }
                self.sock = Some(sock);
                let gen = self.gen;
                // HELLO's `first_seq` is what the outbox's window will send
                // first, asked of the window itself: the answer comes after
                // every `Acked` this actor sent before (one mailbox, in
                // order), so an ack still on its way cannot make the HELLO
                // claim too little (the server would see a gap, on every
                // resume). `last_received` is ours, read at the same moment.
                let hello = self.links.first_seq.send(FirstSeq).into_actor(self).map(
                    move |first_seq, act, ctx| {
                        let Ok(first_seq) = first_seq else {
                            return act.fail(ctx, Error::Shutdown);
                        };
                        let last_received = if act.store.is_some() {
                            act.durable_delivered
                        } else {
                            act.reliable.delivered
                        };
                        let hello = ProtoFrame::Hello {
                            connection_id,
                            reconnect_token,
                            last_received,
                            first_seq,
                        };
                        if let Some(sock) = act.sock.as_mut().filter(|s| s.gen == gen) {
                            let _ = sock.write(WsMessage::Binary(hello.to_bytes()));
                        }
                    },
                );
                ctx.spawn(hello);
                ctx.run_later(self.opts.connection_timeout, move |act, ctx| {
                    if act.sock.as_ref().is_some_and(|s| s.gen == gen && !s.ready) {
                        act.fail(ctx, Error::ConnectTimeout(act.opts.connection_timeout));
                    }
                });
            }
            None => {
                self.sock = Some(sock);
                self.link_up(ctx, None);
            }
        }
    }

    /// The socket is ready for data: tell the outbox, and everyone waiting.
    fn link_up(&mut self, ctx: &mut Context<Self>, peer_last_received: Option<u64>) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        sock.ready = true;
        self.session_lost_at = None;
        // Raw mode: batches that missed the last socket go out first.
        let backlog = self.pending.len() as u64;
        for p in self.pending.drain(..) {
            let _ = sock.write(to_ws(p));
        }
        Counters::add(&self.shared.counters.sent, backlog);
        let max_unacked_bytes = self
            .reliable
            .session
            .as_ref()
            .map_or(usize::MAX, |s| s.max_unacked_bytes);
        self.links.link_state.do_send(LinkState::Up {
            gen: self.gen,
            peer_last_received,
            max_unacked_bytes,
        });
        let was_reconnecting = self.phase == Phase::Reconnecting;
        self.phase = Phase::Up;
        self.last_error = None;
        self.set_state(ConnectionState::Connected);
        if was_reconnecting {
            Counters::add(&self.shared.counters.reconnects, 1);
            let ask = self
                .links
                .take_recovery
                .send(TakeRecovery)
                .into_actor(self)
                .map(|r, act, _| {
                    if let Ok(Some(r)) = r {
                        act.bus.reconnected.publish(Reconnected {
                            attempts: r.attempts,
                            downtime: r.downtime,
                        });
                    }
                });
            ctx.spawn(ask);
        }
        for w in self.connect_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
    }

    /// Reliable mode: one decoded protocol frame from the server.
    fn on_protocol_frame(&mut self, frame: ProtoFrame, ctx: &mut Context<Self>) {
        let ready = self.sock.as_ref().is_some_and(|s| s.ready);
        let result = match frame {
            ProtoFrame::Welcome { last_received, .. } if !ready => {
                if let Err(e) = self.reliable.on_ack(last_received) {
                    Err(e)
                } else {
                    self.acked = self.acked.max(last_received);
                    self.link_up(ctx, Some(last_received));
                    Ok(())
                }
            }
            ProtoFrame::Data { seq, payload } if ready => match self.reliable.on_data(seq) {
                Ok(verdict) => {
                    if verdict == Verdict::Deliver {
                        Counters::add(&self.shared.counters.received, 1);
                        self.bus.messages.publish(IncomingMessage {
                            payload,
                            seq: Some(seq),
                        });
                    }
                    self.schedule_ack(ctx);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            ProtoFrame::Ack { seq } if ready => self.reliable.on_ack(seq).map(|()| {
                self.acked = self.acked.max(seq);
                self.links.acked.do_send(Acked(seq));
            }),
            other => Err(Error::Protocol {
                close_code: close_code::PROTOCOL_ERROR,
                message: format!("unexpected frame {}", frame_name(&other)),
            }),
        };
        if let Err(e) = result {
            self.fail_with_close(ctx, e);
        }
    }

    /// Acks at once after the threshold, else within the ack interval.
    fn schedule_ack(&mut self, ctx: &mut Context<Self>) {
        let Some(session) = self.reliable.session.as_ref() else {
            return;
        };
        if self.reliable.ack_now(session.ack_threshold) {
            self.send_ack(ctx);
            return;
        }
        let interval = session.ack_interval;
        if let Some(sock) = self.sock.as_mut() {
            if sock.ack_timer.is_none() {
                sock.ack_timer = Some(ctx.run_later(interval, |act, ctx| {
                    if let Some(sock) = act.sock.as_mut() {
                        sock.ack_timer = None;
                    }
                    act.send_ack(ctx);
                }));
            }
        }
    }

    fn send_ack(&mut self, ctx: &mut Context<Self>) {
        if !self.reliable.ack_pending() {
            return;
        }
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        if let Some(h) = sock.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if sock.closing != Closing::Open {
            return;
        }
        let seq = self.reliable.take_ack();
        let Some(store) = &self.store else {
            let _ = sock.write(WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes()));
            return;
        };
        // Acknowledge only what the store holds as delivered: after a crash
        // the server must still have everything past it.
        let gen = sock.gen;
        let durable = store.submit_wait(vec![StoreOp::Delivered(seq)]);
        let write = durable.into_actor(self).map(move |res, act, _| {
            if !matches!(res, Ok(Ok(()))) {
                return;
            }
            // Only for the socket (so the session) it was meant for: after a
            // lost session an old seq must not become the new one's claim.
            // A later socket just claims less and drops the replayed copies.
            if let Some(sock) = act.sock.as_mut().filter(|s| s.gen == gen) {
                act.durable_delivered = act.durable_delivered.max(seq);
                if sock.closing == Closing::Open {
                    let _ = sock.write(WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes()));
                }
            }
        });
        ctx.spawn(write);
    }

    fn record_end(&mut self, end: End) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// The socket or attempt failed: report it and stop (the restart tears
    /// everything down).
    fn fail(&mut self, ctx: &mut Context<Self>, error: Error) {
        if self.end.is_none() {
            log::debug!("connection failed: {error}");
            self.bus.errors.publish(ErrorEvent {
                error: error.clone(),
            });
        }
        self.record_end(End {
            code: None,
            reason: String::new(),
            by_us: false,
            error: Some(error),
        });
        ctx.stop();
    }

    /// We must fail the connection (protocol violation, oversize message):
    /// send a Close with the matching code, then stop once the peer is done.
    fn fail_with_close(&mut self, ctx: &mut Context<Self>, error: Error) {
        self.fail_closing(ctx, error, false);
    }

    /// Like [`fail_with_close`](Self::fail_with_close) when the codec failed:
    /// the socket cannot be read any more, so no Close of the peer's will
    /// be seen. Instead of waiting out `close_timeout` for it, the TCP
    /// connection ends once our Close is written (RFC 6455 §7.1.7), and a
    /// reconnect starts at once.
    fn fail_unreadable(&mut self, ctx: &mut Context<Self>, error: Error) {
        self.fail_closing(ctx, error, true);
    }

    fn fail_closing(&mut self, ctx: &mut Context<Self>, error: Error, end_tcp: bool) {
        let code = error.close_code().unwrap_or(close_code::PROTOCOL_ERROR);
        log::warn!("closing with {code}: {error}");
        self.bus.errors.publish(ErrorEvent {
            error: error.clone(),
        });
        self.record_end(End {
            code: None,
            reason: String::new(),
            by_us: true,
            error: Some(error),
        });
        self.ack_before_close(ctx, move |act, ctx| {
            act.close_write_side(ctx, close_reason(code, ""));
            if end_tcp {
                // The sink writes the Close first (transport::WsFramed);
                // its end stops the actor (WriteHandler::finished).
                if let Some(sock) = act.sock.as_mut() {
                    sock.sink.close();
                }
            }
        });
    }

    /// Reliable mode: writes the pending ACK ahead of a Close we initiate,
    /// then runs `close`. Without it the peer keeps, and replays to a later
    /// session, what we had already delivered. With a durable store the ACK
    /// claims only what the store holds (see `send_ack`): the Close waits
    /// for that commit up to `close_timeout`, and goes without the ACK if
    /// the commit fails or is late.
    fn ack_before_close(
        &mut self,
        ctx: &mut Context<Self>,
        close: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let pending = self.reliable.session.is_some() && self.reliable.ack_pending();
        let Some(sock) = self.sock.as_mut() else {
            return close(self, ctx);
        };
        if let Some(h) = sock.ack_timer.take() {
            ctx.cancel_future(h);
        }
        if !pending || sock.closing != Closing::Open {
            return close(self, ctx);
        }
        let seq = self.reliable.take_ack();
        let ack = WsMessage::Binary(ProtoFrame::Ack { seq }.to_bytes());
        let Some(store) = &self.store else {
            let _ = sock.write(ack);
            return close(self, ctx);
        };
        sock.closing = Closing::Acking;
        let gen = sock.gen;
        let durable = actix_rt::time::timeout(
            self.opts.close_timeout,
            store.submit_wait(vec![StoreOp::Delivered(seq)]),
        );
        let then = durable.into_actor(self).map(move |res, act, ctx| {
            let Some(sock) = act
                .sock
                .as_mut()
                .filter(|s| s.gen == gen && s.closing == Closing::Acking)
            else {
                return;
            };
            if matches!(res, Ok(Ok(Ok(())))) {
                act.durable_delivered = act.durable_delivered.max(seq);
                let _ = sock.write(ack);
            } else {
                log::debug!("closing without the last ack: its delivery is not durable");
            }
            sock.closing = Closing::Open;
            close(act, ctx);
        });
        ctx.spawn(then);
    }

    /// Writes a Close frame behind everything already queued and waits (up to
    /// `close_timeout`) for the peer to end the TCP connection or answer.
    ///
    /// The sink is never `close()`d: awc's `Framed::close` shuts the socket
    /// down without writing what is still in its write buffer, which loses
    /// exactly this last Close frame. Dropping the socket after the peer is
    /// done (or the timer fired) is what ends it.
    fn close_write_side(&mut self, ctx: &mut Context<Self>, frame: CloseReason) {
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        if sock.closing == Closing::Done {
            return;
        }
        let _ = sock.write(WsMessage::Close(Some(frame)));
        sock.closing = Closing::Done;
        ctx.run_later(self.opts.close_timeout, |_, ctx| ctx.stop());
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        self.shared.touch();
        if matches!(sock.closing, Closing::Done | Closing::Acking) {
            // Once the socket is failed or closed by the peer, nothing more is
            // delivered; the peer's Close (or the TCP end) finishes it. Not
            // by stopping at once: our own Close may still be unwritten (a
            // peer that sends two Closes in a row), and dropping the sink
            // would lose it. Closing the sink writes it first; its end
            // stops the actor.
            if matches!(frame, Frame::Close(_)) {
                sock.sink.close();
            }
            return;
        }
        match sock.assembler.push(frame) {
            Ok(Inbound::Message(payload)) if self.reliable.session.is_some() => match payload {
                Payload::Binary(b) => match ProtoFrame::decode(b) {
                    Ok(ProtoFrame::Data { payload, .. })
                        if payload.len() > self.opts.max_message_size =>
                    {
                        let max = self.opts.max_message_size;
                        let size = payload.len();
                        self.fail_with_close(ctx, Error::MessageTooLarge { size, max });
                    }
                    Ok(frame) => self.on_protocol_frame(frame, ctx),
                    Err(e) => self.fail_with_close(
                        ctx,
                        Error::Protocol {
                            close_code: e.close_code(),
                            message: format!("malformed frame: {e}"),
                        },
                    ),
                },
                Payload::Text(_) => self.fail_with_close(
                    ctx,
                    Error::Protocol {
                        close_code: close_code::PROTOCOL_ERROR,
                        message: "text message in reliable mode".into(),
                    },
                ),
            },
            Ok(Inbound::Message(payload)) => {
                Counters::add(&self.shared.counters.received, 1);
                self.bus
                    .messages
                    .publish(IncomingMessage { payload, seq: None });
            }
            Ok(Inbound::Partial) => {}
            Ok(Inbound::Pong(b)) => {
                // Our pings carry the send time; anything else is unsolicited.
                if let Ok(sent) = <[u8; 8]>::try_from(&b[..]) {
                    let rtt = self
                        .shared
                        .nanos_now()
                        .saturating_sub(u64::from_be_bytes(sent));
                    self.shared
                        .counters
                        .last_rtt_nanos
                        .store(rtt.max(1), Ordering::Relaxed);
                }
            }
            Ok(Inbound::Ping(b)) => match sock.pongs.on_ping(b, Instant::now()) {
                PongAction::Send(b) => {
                    let _ = sock.write(WsMessage::Pong(b));
                }
                PongAction::Later(after) => {
                    let gen = sock.gen;
                    ctx.run_later(after, move |act, _| {
                        if let Some(sock) = act.sock.as_mut().filter(|s| s.gen == gen) {
                            if let Some(b) = sock.pongs.flush(Instant::now()) {
                                if sock.closing == Closing::Open {
                                    let _ = sock.write(WsMessage::Pong(b));
                                }
                            }
                        }
                    });
                }
                PongAction::Coalesced => {}
            },
            Ok(Inbound::Close(reason)) => self.on_peer_close(reason, ctx),
            Err(e) => self.fail_with_close(ctx, e),
        }
    }

    fn on_peer_close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        let code = reason.as_ref().map(|r| u16::from(r.code));
        let text = reason
            .as_ref()
            .and_then(|r| r.description.clone())
            .unwrap_or_default();
        let by_us = self.sock.as_ref().map(|s| s.closing) == Some(Closing::Sent);
        if by_us {
            // The peer answered our Close: the handshake is complete.
            self.record_end(End {
                code,
                reason: text,
                by_us: true,
                error: None,
            });
            ctx.stop();
            return;
        }
        // 1000, or a Close without a code (1005), is a normal end.
        let error = match code {
            None | Some(close_code::NORMAL) => None,
            Some(close_code::SESSION_GONE) if self.reliable.session.is_some() => {
                Some(Error::SessionGone)
            }
            Some(c) => Some(Error::Closed {
                code: c,
                reason: text.clone(),
            }),
        };
        log::debug!("peer closed with {code:?}");
        self.record_end(End {
            code,
            reason: text,
            by_us: false,
            error,
        });
        // Echo the peer's code, as RFC 6455 §5.5.1 asks.
        let echo = close_reason(code.unwrap_or(close_code::NORMAL), "");
        self.close_write_side(ctx, echo);
        // Both Close frames are exchanged, so we may end the TCP connection
        // (§7.1.1); actix-web would otherwise wait a second for it. The sink
        // writes the echo first (transport::WsFramed), then the actor stops.
        if let Some(sock) = self.sock.as_mut() {
            sock.sink.close();
        }
    }

    fn start_graceful_close(&mut self, ctx: &mut Context<Self>) {
        self.wanted = false;
        if self.phase == Phase::Reconnecting && self.sock.is_none() {
            // Waiting for a retry (or mid-attempt): just stop trying.
            self.phase = Phase::Idle;
        }
        if let Some(h) = self.attempt.take() {
            // Still connecting: abandon the attempt.
            ctx.cancel_future(h);
            self.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
            return;
        }
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        if sock.closing != Closing::Open {
            return;
        }
        self.set_state(ConnectionState::Disconnecting);
        self.ack_before_close(ctx, |act, ctx| act.write_normal_close(ctx));
    }

    /// The Close of a graceful close; the peer's answer is awaited for up to
    /// `close_timeout`.
    fn write_normal_close(&mut self, ctx: &mut Context<Self>) {
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        // The Close frame queues behind every message already written, so
        // the sink flushes them first; we never call `close()` on the sink
        // before the peer answered, which is how awc loses a last frame.
        let _ = sock.write(WsMessage::Close(Some(close_reason(close_code::NORMAL, ""))));
        sock.closing = Closing::Sent;
        ctx.run_later(self.opts.close_timeout, |act, ctx| {
            log::debug!("peer did not answer our Close in time");
            act.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
        });
    }
}

fn to_ws(p: Payload) -> WsMessage {
    match p {
        Payload::Text(t) => WsMessage::Text(t),
        Payload::Binary(b) => WsMessage::Binary(b),
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Balanced by `stopped()` on every restart too.
        self.shared.counters.actor_started();
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        match self.phase {
            Phase::Idle | Phase::Up => {}
            Phase::Initial => self.begin_attempt(ctx),
            Phase::Reconnecting => self.schedule_retry(ctx),
        }
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        let end = self.end.take();
        let sock = self.sock.take();
        self.attempt = None;
        *self.shared.protocol.lock().expect("protocol lock") = None;
        let error = if let Some(sock) = sock {
            self.links.unwatch.do_send(Unwatch { gen: sock.gen });
            self.links.link_state.do_send(LinkState::Down);
            let end = end.unwrap_or(End {
                code: None,
                reason: String::new(),
                by_us: false,
                error: Some(Error::ConnectionLost),
            });
            let refused = self.count_refusal(&end);
            self.bus.closed.publish(Closed {
                code: end.code,
                reason: end.reason,
                by_us: end.by_us,
                error: end.error.clone(),
            });
            refused.or(end.error)
        } else {
            end.and_then(|e| e.error)
        };
        if let Some(e) = &error {
            self.failures += 1;
            self.last_error = Some(e.clone());
        }
        if !self.wanted && self.reliable.session.is_some() {
            // disconnect() closed with 1000, which ends the session on the
            // server (PROTOCOL.md §6): a later connect() starts a fresh one.
            self.reliable.session_gone();
            self.store_session();
        }
        if matches!(error, Some(Error::SessionGone)) {
            self.give_up_session();
        }
        if self.reliable.session.is_some() && self.session_lost_at.is_none() {
            // The resume window starts now (see `begin_attempt`).
            self.session_lost_at = Some(Instant::now());
        }
        self.phase = if matches!(error, Some(Error::SessionGone))
            && self.phase == Phase::Initial
            && !self.retried_gone
        {
            // A session from an earlier run (a durable store's) is gone: the
            // first connect goes on with a fresh one, as a reconnect would
            // (once: a server that refuses fresh sessions too is an error).
            self.retried_gone = true;
            Phase::Initial
        } else {
            self.next_phase(error.is_some())
        };
        match self.phase {
            // `Reconnecting` is announced once the retry policy said it will
            // retry (`schedule_retry`): an error it treats as terminal goes
            // straight to `Disconnected`, never through `Reconnecting`.
            Phase::Reconnecting | Phase::Initial => {}
            Phase::Idle | Phase::Up => {
                self.phase = Phase::Idle;
                self.go_idle(error);
            }
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.counters.actor_stopped();
    }
}

impl ConnectionActor {
    /// Reliable mode: the session cannot be resumed (the server said it is
    /// gone, or its resume window passed): forget it, tell the application
    /// how many unacknowledged messages the next session gets again, and
    /// leave the next attempt to negotiate a fresh one (PROTOCOL.md §7).
    fn give_up_session(&mut self) {
        self.session_lost_at = None;
        if let Some(old) = self.reliable.session_gone() {
            self.store_session();
            let resending = self.shared.window_len();
            log::debug!("session {} is gone; starting fresh", old.connection_id);
            self.bus.session_lost.publish(SessionLost {
                connection_id: old.connection_id,
                resending,
            });
        }
    }

    /// What comes after a socket or attempt ended (`failed`: with an error).
    fn next_phase(&mut self, failed: bool) -> Phase {
        if !self.wanted || !failed || self.refused_for_good {
            // The user closed, or the peer closed normally: that is the end.
            return Phase::Idle;
        }
        match self.phase {
            Phase::Initial if self.initial_tries_left > 0 => {
                // The first connect tries each failover endpoint once.
                self.initial_tries_left -= 1;
                Phase::Initial
            }
            Phase::Up | Phase::Reconnecting if self.opts.reconnect_mode != ReconnectMode::None => {
                Phase::Reconnecting
            }
            _ => Phase::Idle,
        }
    }

    /// Counts a socket the peer closed with 1009 or 1002 (reliable mode: it
    /// refused what we sent or replayed). The same code on
    /// `MAX_REFUSED_REPLAYS` sockets in a row, with no ack advancing, is
    /// a replay it will refuse forever: returns the terminal error.
    fn count_refusal(&mut self, end: &End) -> Option<Error> {
        let code = match end.code {
            Some(c @ (close_code::MESSAGE_TOO_BIG | close_code::PROTOCOL_ERROR))
                if !end.by_us && self.stateful() =>
            {
                c
            }
            _ => {
                self.refusals = None;
                return None;
            }
        };
        let count = match self.refusals {
            Some(r) if r.code == code && r.acked == self.acked => r.count + 1,
            _ => 1,
        };
        self.refusals = Some(Refusals {
            code,
            count,
            acked: self.acked,
        });
        if count < MAX_REFUSED_REPLAYS {
            return None;
        }
        self.refusals = None;
        self.refused_for_good = true;
        let error = Error::PeerRefusesReplay {
            close_code: code,
            refusals: count,
        };
        log::warn!("{error}");
        self.bus.errors.publish(ErrorEvent {
            error: error.clone(),
        });
        Some(error)
    }

    /// Settles in `Disconnected`, answering everyone who waits.
    fn go_idle(&mut self, error: Option<Error>) {
        self.wanted = false;
        for w in self.connect_waiters.drain(..) {
            let _ = w.send(Err(error.clone().unwrap_or(Error::NotConnected)));
        }
        self.set_state(ConnectionState::Disconnected);
        for w in self.disconnect_waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// Asks the `ReconnectSupervisor` when to try again, announces it, and
    /// arms the timer. All of it lives in this (fresh) context, so a
    /// `disconnect()` meanwhile cancels it by stopping the actor.
    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        let error = self.last_error.clone().unwrap_or(Error::ConnectionLost);
        let ask = self
            .links
            .ask_retry
            .send(AskRetry {
                error: error.clone(),
            })
            .into_actor(self)
            .map(move |answer, act, ctx| match answer {
                Ok(NextAttempt::After { attempt, delay }) => {
                    // A server shutting down says when to come back, spread
                    // so its clients do not return as a herd.
                    let delay = match &error {
                        Error::Closed { code, reason } if *code == close_code::SERVICE_RESTART => {
                            // Capped when read, and added without overflow:
                            // a peer cannot park the client for ages.
                            ShutdownAdvice::from_reason(reason)
                                .map_or(delay, |a| a.delay(rand::random_range(0..=a.spread_ms)))
                        }
                        _ => delay,
                    };
                    log::debug!("reconnect attempt {attempt} in {delay:?} after: {error}");
                    act.set_state(ConnectionState::Reconnecting);
                    act.bus.reconnecting.publish(Reconnecting {
                        attempt,
                        delay,
                        reason: error,
                    });
                    ctx.run_later(delay, |act, ctx| act.begin_attempt(ctx));
                }
                Ok(NextAttempt::GiveUp { attempts }) => {
                    let gave_up = Error::GaveUp {
                        attempts,
                        last: Box::new(error),
                    };
                    log::debug!("{gave_up}");
                    act.bus.errors.publish(ErrorEvent {
                        error: gave_up.clone(),
                    });
                    act.phase = Phase::Idle;
                    act.go_idle(Some(gave_up));
                }
                Err(_) => {
                    // The supervisor is gone only when the client is being
                    // torn down.
                    act.phase = Phase::Idle;
                    act.go_idle(Some(Error::Shutdown));
                }
            });
        ctx.spawn(ask);
    }
}

impl Drop for ConnectionActor {
    /// The actor itself goes only after its last stop (a restart keeps it),
    /// which happens once no handle is left: the outbox goes with it.
    fn drop(&mut self) {
        self.links.shutdown.do_send(Shutdown);
    }
}

impl Supervised for ConnectionActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Context items are already gone; make sure no field points at them.
        self.sock = None;
        self.attempt = None;
        self.end = None;
    }
}

impl Handler<Connect> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        match self.state {
            ConnectionState::Connected if self.phase == Phase::Up => {
                let _ = msg.0.send(Ok(()));
            }
            ConnectionState::Disconnecting => {
                let _ = msg.0.send(Err(Error::NotConnected));
            }
            // `Connected` but not `Up`: the socket just ended and the retry
            // policy is being asked; the answer settles it.
            ConnectionState::Connecting
            | ConnectionState::Reconnecting
            | ConnectionState::Connected => {
                self.connect_waiters.push(msg.0);
            }
            ConnectionState::Disconnected => {
                self.connect_waiters.push(msg.0);
                self.wanted = true;
                self.phase = Phase::Initial;
                self.initial_tries_left = self.url.endpoint_count().saturating_sub(1);
                self.retried_gone = false;
                self.refusals = None;
                self.refused_for_good = false;
                self.begin_attempt(ctx);
            }
        }
    }
}

impl Handler<Disconnect> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        if self.state == ConnectionState::Disconnected {
            let _ = msg.0.send(());
            return;
        }
        self.disconnect_waiters.push(msg.0);
        self.start_graceful_close(ctx);
    }
}

impl Handler<WriteBatch> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: WriteBatch, _ctx: &mut Context<Self>) {
        let reliable = self.reliable.session.is_some();
        if let Some(sock) = self.sock.as_mut() {
            if sock.closing == Closing::Open && sock.ready && (!reliable || msg.gen == sock.gen) {
                let n = msg.items.len() as u64;
                for out in msg.items {
                    if reliable {
                        self.reliable.note_written(out.seq);
                        let _ = sock.write(WsMessage::Binary(encode_data(out.seq, &out.payload)));
                    } else {
                        let _ = sock.write(to_ws(out.payload));
                    }
                }
                Counters::add(&self.shared.counters.sent, n);
                Counters::add(&self.shared.counters.batches, 1);
                return;
            }
        }
        if !self.stateful() {
            self.pending
                .extend(msg.items.into_iter().map(|o| o.payload));
        }
        // Reliable mode: the outbox still holds these and replays them.
    }
}

macro_rules! subscribe_handler {
    ($event:ty, $field:ident) => {
        impl Handler<Subscribe<$event>> for ConnectionActor {
            type Result = ();

            fn handle(&mut self, msg: Subscribe<$event>, _ctx: &mut Context<Self>) {
                self.bus.$field.add(msg.0);
            }
        }
    };
}
subscribe_handler!(StateChanged, state);
subscribe_handler!(IncomingMessage, messages);
subscribe_handler!(ErrorEvent, errors);
subscribe_handler!(Closed, closed);
subscribe_handler!(Reconnecting, reconnecting);
subscribe_handler!(Reconnected, reconnected);
subscribe_handler!(SessionLost, session_lost);

impl StreamHandler<Result<Frame, ProtocolError>> for ConnectionActor {
    fn handle(&mut self, item: Result<Frame, ProtocolError>, ctx: &mut Context<Self>) {
        match item {
            Ok(frame) => self.on_frame(frame, ctx),
            Err(ProtocolError::Overflow) => {
                let max = self.opts.max_message_size;
                self.fail_with_close(ctx, Error::MessageTooLarge { size: max + 1, max });
            }
            // The codec stops after these (inbound::Gated): nothing more
            // can be read.
            Err(ProtocolError::Io(e)) => match codec_violation(&e) {
                Some((close_code, message)) => self.fail_unreadable(
                    ctx,
                    Error::Protocol {
                        close_code,
                        message: message.into(),
                    },
                ),
                None => self.fail(ctx, Error::io(e)),
            },
            Err(e) => self.fail_unreadable(
                ctx,
                Error::Protocol {
                    close_code: close_code::PROTOCOL_ERROR,
                    message: e.to_string(),
                },
            ),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The TCP stream ended. After a completed or failed close that is
        // expected; otherwise the network or the peer dropped us.
        let expected = self
            .sock
            .as_ref()
            .is_some_and(|s| s.closing != Closing::Open);
        if expected {
            self.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
        } else {
            self.fail(ctx, Error::ConnectionLost);
        }
    }
}

impl actix::io::WriteHandler<ProtocolError> for ConnectionActor {
    fn error(&mut self, err: ProtocolError, ctx: &mut Context<Self>) -> Running {
        let error = match err {
            ProtocolError::Io(e) => Error::io(e),
            other => Error::Protocol {
                close_code: close_code::PROTOCOL_ERROR,
                message: other.to_string(),
            },
        };
        self.fail(ctx, error);
        Running::Stop
    }
}

impl Handler<SendPing> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SendPing, _: &mut Context<Self>) {
        if let Some(sock) = self.sock.as_mut() {
            if sock.gen == msg.gen && sock.closing == Closing::Open {
                let sent = self.shared.nanos_now().to_be_bytes();
                let _ = sock.write(WsMessage::Ping(bytes::Bytes::copy_from_slice(&sent)));
            }
        }
    }
}

impl Handler<HeartbeatTimeout> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: HeartbeatTimeout, ctx: &mut Context<Self>) {
        if self.sock.as_ref().is_some_and(|s| s.gen == msg.gen) {
            if self.bus.messages.paused() {
                // We stopped reading for a slow subscriber: the silence is
                // ours, not the peer's. Watch again from now.
                self.shared.touch();
                self.watch(msg.gen, ctx);
                return;
            }
            self.fail(ctx, Error::HeartbeatTimeout(msg.timeout));
        }
    }
}

fn frame_name(f: &ProtoFrame) -> &'static str {
    match f {
        ProtoFrame::Hello { .. } => "HELLO",
        ProtoFrame::Welcome { .. } => "WELCOME",
        ProtoFrame::Data { .. } => "DATA before WELCOME",
        ProtoFrame::Ack { .. } => "ACK before WELCOME",
    }
}
