//! The connection's life across restarts: connecting (negotiate, HELLO),
//! the socket becoming ready, the restart after a socket ends, failover
//! between endpoints, asking the retry policy, and settling idle.

use actix::{io::SinkWrite, prelude::*};
use actix_http::ws::Message as WsMessage;
use actix_rt::time::Instant;
use futures_util::stream::StreamExt;

use super::{
    actor::{ConnectionActor, Phase, Refusals},
    messages::{Connect, Disconnect},
    socket::{Closing, End, Socket},
};
use crate::client::{
    heartbeat::Unwatch,
    inbound::Gated,
    on_connect::OnConnect,
    queue_actor::messages::{FirstSeq, LinkState, Shutdown},
    reconnect::{AskRetry, ConnectionUp, NextAttempt, TakeRecovery},
    shared::LiveGuard,
    stats::Counters,
    transport,
    write_load::{Counted, WriteLoad},
};
use crate::{
    close_code,
    events::{
        Closed, ConnectionState, ErrorEvent, Payload, Reconnected, Reconnecting, SessionLost,
    },
    options::ReconnectMode,
    protocol::{Frame as ProtoFrame, ShutdownAdvice, MAX_DATA_HEADER_LEN},
    ws::{Assembler, PongLimiter},
    Error,
};

/// Mailbox size: `send()` uses `try_send` and only waits when this is full,
/// so it bounds how far a fast producer can run ahead of the socket.
pub(super) const MAILBOX_CAPACITY: usize = 4096;

/// How many sockets in a row the peer may close with the same 1009/1002,
/// with nothing newly acknowledged, before the client stops: the replay it
/// refuses would be refused forever (a message over its limit).
pub(super) const MAX_REFUSED_REPLAYS: u32 = 3;

impl ConnectionActor {
    pub(super) fn begin_attempt(&mut self, ctx: &mut Context<Self>) {
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

    pub(super) fn opened(&mut self, opened: transport::Opened, ctx: &mut Context<Self>) {
        let (sink, stream) = opened.framed.split();
        // The guard lives inside the stream item, so it counts the stream for
        // exactly as long as the context holds it.
        let guard = LiveGuard::new(self.shared.clone());
        // The gate stops reading while a subscriber is too far behind; it
        // also records the peer's signs of life.
        let stream = Gated::new(stream, self.bus.messages.gate(), self.shared.clone());
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
            welcomed: false,
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
                self.link_up(ctx, None, false);
            }
        }
    }

    /// The socket is ready for data: first asks the `on_connect` hook
    /// what must go ahead of everything else on it (the socket stays not
    /// ready meanwhile, so nothing else is written), then `link_ready`.
    pub(super) fn link_up(
        &mut self,
        ctx: &mut Context<Self>,
        peer_last_received: Option<u64>,
        resumed: bool,
    ) {
        let mut preamble = self.on_connect.fixed.clone();
        let Some(recipient) = self.on_connect.recipient.clone() else {
            return self.link_ready(ctx, peer_last_received, preamble);
        };
        let Some(gen) = self.sock.as_ref().map(|s| s.gen) else {
            return;
        };
        let ask = OnConnect {
            reconnect: self.phase == Phase::Reconnecting,
            resumed,
        };
        let limit = self.opts.connection_timeout;
        let answer =
            recipient
                .send(ask)
                .timeout(limit)
                .into_actor(self)
                .map(move |answer, act, ctx| {
                    if act.sock.as_ref().is_none_or(|s| s.gen != gen) {
                        // That socket is gone; the next one asks again.
                        return;
                    }
                    match answer {
                        Ok(messages) => preamble.extend(messages),
                        Err(MailboxError::Timeout) => {
                            return act.fail(ctx, Error::ConnectTimeout(limit));
                        }
                        Err(MailboxError::Closed) => {
                            log::warn!("the on_connect hook's actor is gone: nothing sent first");
                        }
                    }
                    act.link_ready(ctx, peer_last_received, preamble);
                });
        ctx.spawn(answer);
    }

    /// The socket is ready for data: tell the outbox (with what goes first
    /// on it), and everyone waiting.
    fn link_ready(
        &mut self,
        ctx: &mut Context<Self>,
        peer_last_received: Option<u64>,
        preamble: Vec<Payload>,
    ) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        sock.ready = true;
        self.session_lost_at = None;
        // Raw mode: batches that missed the last socket went back to the
        // outbox; the `Up` below sends them first.
        let max_unacked_bytes = self
            .reliable
            .session
            .as_ref()
            .map_or(usize::MAX, |s| s.max_unacked_bytes);
        self.links.link_state.do_send(LinkState::Up {
            gen: self.gen,
            peer_last_received,
            max_unacked_bytes,
            preamble,
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
    pub(super) fn give_up_session(&mut self) {
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
    pub(super) fn next_phase(&mut self, failed: bool) -> Phase {
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
            // `retry_first_connect`: a first connect that failed on every
            // endpoint goes on as a reconnect would, under the retry policy.
            Phase::Initial if self.opts.retry_first_connect => Phase::Reconnecting,
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
    pub(super) fn count_refusal(&mut self, end: &End) -> Option<Error> {
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
    pub(super) fn go_idle(&mut self, error: Option<Error>) {
        self.wanted = false;
        // Receipts the outbox still owes cannot be kept any more.
        self.links.link_state.do_send(LinkState::Stopped(
            error.clone().unwrap_or(Error::NotConnected),
        ));
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
    pub(super) fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
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
