//! A session in Redis mode (docs/SCALING.md): the actor holds the state
//! only while a socket of this node is attached; Redis holds it always.
//!
//! Group commit: at most one `commit` script is in flight per session;
//! what arrives meanwhile (the server's messages, the client's deliveries
//! and acks) waits for the next one, so steady state costs one round trip
//! per batch. Nothing is acked to the client before its delivery is
//! recorded, and nothing is written to the socket before Redis assigned
//! its seq. A refused commit ("stale": another node took the session)
//! stops the actor without writing anything more.

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use actix::prelude::*;

use super::{
    super::{
        events::{ExpireReason, SessionExpired, SessionOpened, SessionResumed},
        send_window::SendWindow,
        socket_tx::Outgoing,
        store::{key_ttl, lease, CommitArgs, CommitOutcome, RedisSessionStore, Taken},
    },
    messages::{Attach, AttachError, StoreNotice},
    Attached, SessionActor, Shared,
};
use crate::{
    close_code,
    protocol::{
        sequence::{Receiver, Sender},
        Frame,
    },
    ws, Payload,
};

/// A session's Redis side.
pub(crate) struct Durable {
    store: RedisSessionStore,
    epoch: u64,
    /// Outbound payloads not yet given a seq by Redis (`true`: an echo,
    /// which a new owner regenerates, so it is never re-appended).
    unrecorded: Vec<(Payload, bool)>,
    /// Recorded (seq assigned), not yet written: waiting for window room.
    ready: VecDeque<(u64, Payload)>,
    /// Every stream entry below this is in `sender` or `ready`.
    known_next: u64,
    /// Commits sent at this `known_next` so far (each batch's entry ID
    /// sorts above the ones before it: store/scripts.rs, `commit`).
    tries: u32,
    /// The first seq of each stream entry not yet trimmed, ascending (a
    /// commit tells Redis where to cut, so the trim never reads a batch).
    starts: VecDeque<u64>,
    /// The client's seq Redis has as delivered.
    pub(super) recorded_in: u64,
    /// The last ACK written to the socket.
    pub(super) ack_written: u64,
    in_flight: bool,
    kick_queued: bool,
    /// Read the stream even with nothing to write (another node appended).
    want_read: bool,
    /// The lease is due: push the deadline on.
    want_refresh: bool,
    /// Payload bytes the client acked, not yet told to Redis.
    pub(super) freed: u64,
    failing_since: Option<Instant>,
    backoff: Duration,
    /// A retry is scheduled: new work waits for it (no retry per message
    /// while Redis is down).
    backing_off: bool,
    /// The socket is gone: the next commits detach; then the actor stops.
    detaching: bool,
    /// Another node owns the session: write nothing more.
    stale: bool,
}

impl Durable {
    /// Where a trim up to `acked` may cut: the start of the entry holding
    /// `acked + 1` (entries this node has not seen start at `known_next`
    /// or later, so they are never cut into), or 0 when none is known.
    fn cut(&mut self, acked: u64) -> u64 {
        while self.starts.get(1).is_some_and(|&s| s <= acked + 1) {
            self.starts.pop_front();
        }
        self.starts
            .front()
            .copied()
            .filter(|&s| s <= acked + 1)
            .unwrap_or(0)
    }

    /// Nothing waits to be recorded (for a drain).
    pub(super) fn is_idle(&self, delivered: u64) -> bool {
        self.unrecorded.is_empty() && !self.in_flight && self.recorded_in >= delivered
    }
}

impl SessionActor {
    /// The actor of a session this node just took (`take`), before its
    /// socket attaches.
    pub(crate) fn adopted(
        shared: Arc<Shared>,
        store: RedisSessionStore,
        connection_id: String,
        identity: String,
        taken: Taken,
        window: Arc<SendWindow>,
    ) -> Self {
        let mut actor = SessionActor::new(
            shared,
            connection_id,
            String::new(),
            identity,
            taken.client_id,
            taken.client_max,
            window,
        );
        actor.had_socket = taken.had_socket;
        actor.receiver = Receiver::new(taken.in_delivered);
        actor.intake.taken = taken.in_delivered;
        actor.sender = Sender::new(taken.acked + 1, actor.shared.options.max_unacked_bytes);
        // The HELLO's implicit ack, applied by `take` in Redis.
        actor.shared.messages_acked.fetch_add(
            taken.acked.saturating_sub(taken.acked_before),
            Ordering::Relaxed,
        );
        for (_, p) in &taken.entries {
            actor.window.add(p.len());
        }
        actor.durable = Some(Box::new(Durable {
            store,
            epoch: taken.epoch,
            unrecorded: Vec::new(),
            ready: taken.entries.into(),
            known_next: taken.next_seq,
            tries: 0,
            starts: taken.starts.into(),
            recorded_in: taken.in_delivered,
            ack_written: taken.in_delivered,
            in_flight: false,
            kick_queued: false,
            want_read: false,
            want_refresh: false,
            freed: 0,
            failing_since: None,
            backoff: Duration::from_millis(50),
            backing_off: false,
            detaching: false,
            stale: false,
        }));
        actor
    }

    /// The socket of the `take` attaches: WELCOME, the replay, the lease.
    /// (The token and identity were checked by `take`.)
    pub(super) fn attach_durable(
        &mut self,
        msg: Attach,
        ctx: &mut Context<Self>,
    ) -> Result<(), AttachError> {
        if self.socket.is_some()
            || self
                .durable
                .as_ref()
                .is_some_and(|d| d.detaching || d.stale)
        {
            return Err(AttachError::Gone);
        }
        self.shared.socket_attached();
        self.receiver.new_socket();
        msg.gate.set_paused(self.intake.paused);
        self.socket = Some(Attached {
            id: msg.socket_id,
            tx: msg.tx,
            meter: msg.meter,
            gate: msg.gate,
        });
        self.window.set_attached(true);
        let resumed = self.had_socket;
        self.had_socket = true;
        self.write(
            Frame::Welcome {
                resumed,
                last_received: self.receiver.delivered,
            }
            .to_bytes(),
            0,
        );
        self.promote_durable();
        let lease = lease(self.shared.options.resume_window);
        ctx.run_interval(lease, |act, ctx| {
            if let Some(d) = &mut act.durable {
                d.want_refresh = true;
            }
            act.kick(ctx);
        });
        if resumed {
            self.shared.events.resumed.publish(SessionResumed {
                connection_id: self.connection_id.clone(),
            });
        } else {
            self.shared.events.opened.publish(SessionOpened {
                connection_id: self.connection_id.clone(),
                identity: self.identity.clone(),
            });
        }
        Ok(())
    }

    /// A server→client message (bytes already in the window) waits for
    /// the next commit.
    pub(super) fn queue_durable(&mut self, payload: Payload, echo: bool, ctx: &mut Context<Self>) {
        let Some(d) = &mut self.durable else { return };
        if d.stale {
            if !echo {
                reappend(&self.shared, d, &self.connection_id, vec![(payload, false)]);
            }
            return;
        }
        d.unrecorded.push((payload, echo));
        if !d.kick_queued {
            // Not at once: whatever else is in the mailbox joins this
            // commit.
            d.kick_queued = true;
            ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
                if let Some(d) = &mut act.durable {
                    d.kick_queued = false;
                }
                act.kick(ctx);
            }));
        }
    }

    /// Starts a commit if there is work and none is in flight.
    pub(super) fn kick(&mut self, ctx: &mut Context<Self>) {
        let delivered = self.receiver.delivered;
        let acked = self.sender.acked();
        let window = self.shared.options.resume_window;
        let Some(d) = &mut self.durable else { return };
        if d.in_flight || d.stale || d.backing_off {
            return;
        }
        let work =
            !d.unrecorded.is_empty() || delivered > d.recorded_in || d.want_read || d.want_refresh;
        if !work && !d.detaching {
            return;
        }
        d.in_flight = true;
        d.want_read = false;
        let refresh = std::mem::take(&mut d.want_refresh);
        let batch = std::mem::take(&mut d.unrecorded);
        let cut = d.cut(acked);
        let args = CommitArgs {
            epoch: d.epoch,
            known_next: d.known_next,
            in_delivered: delivered,
            acked,
            freed: d.freed,
            refresh,
            hold: window + lease(window),
            ttl: key_ttl(window),
            detach: d.detaching,
            window,
            cut,
            tries: d.tries,
        };
        d.tries = d.tries.saturating_add(1);
        let store = d.store.clone();
        let sid = self.connection_id.clone();
        ctx.spawn(
            async move {
                let r = store
                    .commit(&sid, &args, batch.iter().map(|(p, _)| p))
                    .await;
                (batch, args, r)
            }
            .into_actor(self)
            .map(|(batch, args, r), act, ctx| act.on_committed(batch, args, r, ctx)),
        );
    }

    fn on_committed(
        &mut self,
        batch: Vec<(Payload, bool)>,
        args: CommitArgs,
        r: Result<CommitOutcome, super::super::store::SessionStoreError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(d) = &mut self.durable else { return };
        d.in_flight = false;
        match r {
            Ok(CommitOutcome::Ok {
                first,
                recorded,
                next,
                deadline,
                others,
                starts,
            }) => {
                let mut batch = batch;
                // Not recorded (other nodes appended first, or a retry of
                // a batch recorded in part): sent again with the next
                // commit, in order.
                let rest = batch.split_off(recorded.min(batch.len()));
                if d.stale {
                    // Recorded before the take: the new owner has it.
                    return self.finish_stale(rest, ctx);
                }
                d.freed -= args.freed;
                d.backoff = Duration::from_millis(50);
                let recovered = d.failing_since.take().is_some();
                d.recorded_in = d.recorded_in.max(args.in_delivered);
                let mut added = 0;
                let mut fresh: Vec<(u64, Payload)> = Vec::with_capacity(others.len() + batch.len());
                for (seq, p) in others {
                    if seq >= d.known_next {
                        added += p.len();
                        fresh.push((seq, p));
                    }
                }
                let mut new_starts: Vec<u64> =
                    starts.into_iter().filter(|&s| s >= d.known_next).collect();
                if !batch.is_empty() {
                    new_starts.push(first);
                }
                new_starts.sort_unstable();
                d.starts.extend(new_starts);
                fresh.extend((first..).zip(batch.into_iter().map(|(p, _)| p)));
                fresh.sort_by_key(|(seq, _)| *seq);
                d.ready.extend(fresh);
                if next > d.known_next {
                    d.known_next = next;
                    d.tries = 0;
                }
                if !rest.is_empty() {
                    let mut rest = rest;
                    rest.append(&mut d.unrecorded);
                    d.unrecorded = rest;
                }
                self.window.add(added);
                if recovered {
                    log::info!(
                        "session {}: the session store answers again",
                        self.connection_id
                    );
                    if let Some(s) = &self.socket {
                        s.gate.set_paused(self.intake.paused);
                    }
                }
                if args.detach {
                    if self
                        .durable
                        .as_ref()
                        .is_some_and(|d| d.unrecorded.is_empty())
                    {
                        self.detached_in_store(deadline, ctx);
                    } else {
                        self.kick(ctx);
                    }
                    return;
                }
                self.promote_durable();
                self.send_ack(ctx);
                self.check_drained(ctx, false);
                self.kick(ctx);
            }
            Ok(CommitOutcome::Stale) => {
                self.shared.store_stale.fetch_add(1, Ordering::Relaxed);
                log::debug!("session {}: taken by another node", self.connection_id);
                self.finish_stale(batch, ctx);
            }
            Ok(CommitOutcome::Gone) => {
                // Ended or expired elsewhere: nothing left to record to.
                self.close_now(close_code::SESSION_GONE, "session gone");
                self.ended = true;
                ctx.stop();
            }
            Err(e) => {
                self.shared.store_failed("commit", &e);
                let mut batch = batch;
                batch.append(&mut d.unrecorded);
                d.unrecorded = batch;
                d.want_refresh |= args.refresh;
                let since = *d.failing_since.get_or_insert_with(Instant::now);
                let delay = d.backoff;
                d.backoff = (d.backoff * 2).min(Duration::from_secs(1));
                d.want_read = true;
                d.backing_off = true;
                if let Some(s) = &self.socket {
                    // Take nothing more from the client until it can be
                    // recorded.
                    s.gate.set_paused(true);
                }
                if since.elapsed() >= self.shared.options.store_unavailable_timeout
                    && self.socket.is_some()
                {
                    self.close_socket(
                        ctx,
                        close_code::TRY_AGAIN_LATER,
                        "session store unavailable",
                    );
                }
                ctx.run_later(delay, |act, ctx| {
                    if let Some(d) = &mut act.durable {
                        d.backing_off = false;
                    }
                    act.kick(ctx);
                });
            }
        }
    }

    /// Moves recorded messages into the unacked window and the socket.
    pub(super) fn promote_durable(&mut self) {
        let Some(d) = &mut self.durable else { return };
        if d.stale || self.socket.is_none() {
            return;
        }
        while let Some((seq, p)) = d.ready.front() {
            let len = p.len();
            if !self.sender.has_room(len) {
                break;
            }
            if *seq != self.sender.next_seq() {
                log::error!(
                    "session {}: stream seq {seq}, expected {}",
                    self.connection_id,
                    self.sender.next_seq()
                );
            }
            let (seq, payload) = d.ready.pop_front().expect("front exists");
            if let Some(s) = &self.socket {
                let data = payload.len();
                s.meter.add(data);
                if s.tx.send(Outgoing::Data(seq, payload.clone())).is_err() {
                    s.meter.sub(data);
                }
            }
            self.sender.mark_sent(seq);
            self.sender.push(payload, len);
        }
    }

    /// The socket went (detach() did the socket's bookkeeping): record
    /// the detach, then stop; the session lives on in Redis only.
    pub(super) fn detach_durable(&mut self, ctx: &mut Context<Self>) {
        let Some(d) = &mut self.durable else { return };
        if d.detaching || d.stale || self.ended {
            return;
        }
        d.detaching = true;
        // From now on this node sends to it through Redis like any other.
        let me = ctx.address();
        self.shared
            .sessions
            .remove_if(&self.connection_id, &self.identity, |a| *a == me);
        self.kick(ctx);
    }

    /// The detach is recorded: index the new deadline (Redis's clock),
    /// stop.
    fn detached_in_store(&mut self, deadline: u64, ctx: &mut Context<Self>) {
        if let Some(d) = &self.durable {
            let store = d.store.clone();
            let sid = self.connection_id.clone();
            actix_rt::spawn(async move {
                let _ = store.index(&sid, deadline).await;
            });
        }
        if let Some(done) = self.draining.as_mut().and_then(|d| d.done.take()) {
            let _ = done.send(());
        }
        ctx.stop();
    }

    /// Closes the socket without another frame (no ACK: a stale node
    /// writes nothing more).
    fn close_now(&mut self, code: u16, reason: &str) {
        if let Some(s) = self.socket.take() {
            let _ =
                s.tx.send(Outgoing::Close(Some(ws::close_reason(code, reason))));
            self.shared.socket_detached();
            self.window.set_attached(false);
        }
    }

    /// Another node took the session: close, re-append what the
    /// application sent here that was not recorded (echoes are not: the
    /// client re-sends what they answer), stop. No SessionExpired.
    fn finish_stale(&mut self, batch: Vec<(Payload, bool)>, ctx: &mut Context<Self>) {
        self.close_now(close_code::REPLACED, "replaced");
        if let Some(d) = &mut self.durable {
            d.stale = true;
            let mut all = batch;
            all.append(&mut d.unrecorded);
            all.retain(|(_, echo)| !echo);
            reappend(&self.shared, d, &self.connection_id, all);
        }
        self.ended = true;
        if let Some(done) = self.draining.as_mut().and_then(|d| d.done.take()) {
            let _ = done.send(());
        }
        ctx.stop();
    }

    /// close_session here (or the client's close 1000): the keys go, and
    /// this node reports the session's end once.
    pub(super) fn end_durable(&mut self, ctx: &mut Context<Self>, reason: ExpireReason) {
        match reason {
            ExpireReason::Closed => self.close_socket(ctx, close_code::NORMAL, "session closed"),
            _ => self.close_socket(ctx, close_code::SESSION_GONE, "session overflow"),
        }
        if let Some(d) = &self.durable {
            let store = d.store.clone();
            let sid = self.connection_id.clone();
            let shared = self.shared.clone();
            actix_rt::spawn(async move {
                match store.end(&sid).await {
                    Ok(Some((undelivered, _, _))) => {
                        shared.events.expired.publish(SessionExpired {
                            connection_id: sid,
                            undelivered,
                            reason,
                        });
                    }
                    Ok(None) => {}
                    Err(e) => shared.store_failed("end", &e),
                }
            });
        }
        self.window.close();
        self.forget_backlog();
        ctx.stop();
    }
}

/// Appends, in order, what a stale or stopping actor could not record.
fn reappend(shared: &Arc<Shared>, d: &Durable, sid: &str, payloads: Vec<(Payload, bool)>) {
    if payloads.is_empty() {
        return;
    }
    let store = d.store.clone();
    let sid = sid.to_owned();
    let shared = shared.clone();
    actix_rt::spawn(async move {
        for (p, _) in payloads {
            let cap = shared.options.max_pending_bytes();
            if let Err(e) = store.append(&sid, &p, cap.saturating_mul(2)).await {
                shared.store_failed("append", &e);
            }
        }
    });
}

impl Handler<StoreNotice> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: StoreNotice, ctx: &mut Context<Self>) {
        let Some(d) = &mut self.durable else { return };
        match msg {
            StoreNotice::Grew | StoreNotice::Resync => {
                d.want_read = true;
                self.kick(ctx);
            }
            StoreNotice::Taken => {
                if d.in_flight {
                    // Its answer decides what was recorded; write nothing
                    // meanwhile.
                    d.stale = true;
                    self.close_now(close_code::REPLACED, "replaced");
                } else {
                    self.finish_stale(Vec::new(), ctx);
                }
            }
            StoreNotice::Ended => {
                self.ended = true;
                self.close_now(close_code::NORMAL, "session closed");
                self.window.close();
                ctx.stop();
            }
        }
    }
}
