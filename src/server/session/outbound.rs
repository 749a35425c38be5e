//! The server's messages to the client in a session: numbered and kept
//! until acked by the protocol's [`Sender`](crate::protocol::sequence::Sender)
//! within `max_unacked_bytes`, queued behind it while it is full, and
//! written into the attached socket's channel.

use actix::prelude::*;
use bytes::Bytes;

use super::{
    super::{events::ExpireReason, socket_tx::Outgoing},
    messages::Outbound,
    SessionActor,
};
use crate::Payload;

impl Handler<Outbound> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        self.queue_outbound(msg, ctx);
    }
}

impl SessionActor {
    /// A server→client message: sent now if the unacked buffer has room,
    /// else queued behind the others; too much queued ends the session.
    pub(super) fn queue_outbound(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        let Outbound { payload, reserved } = msg;
        let len = payload.len();
        if !reserved {
            self.window.add(len);
        }
        #[cfg(feature = "redis")]
        if self.durable.is_some() {
            return self.queue_durable(payload, false, ctx);
        }
        if self.pending.is_empty() && self.sender.has_room(len) {
            self.assign(payload);
            return;
        }
        self.pending.push_back(payload);
        self.pending_bytes += len;
        if self.pending.len() > 1 && self.pending_bytes > self.shared.options.max_pending_bytes() {
            log::warn!(
                "session {}: {} bytes waiting for acks; ending the session",
                self.connection_id,
                self.pending_bytes
            );
            self.end(ctx, ExpireReason::Overflow);
        }
    }

    /// Writes a frame carrying `data` payload bytes (0 but for DATA).
    pub(super) fn write(&self, frame: Bytes, data: usize) {
        if let Some(s) = &self.socket {
            // Counted before it is queued: the writer (another thread) may
            // write it and count it off at once.
            s.meter.add(data);
            if s.tx.send(Outgoing::Metered(frame, data)).is_err() {
                s.meter.sub(data);
            }
        }
    }

    /// Writes a DATA frame (the writer encodes it), metered like `write`.
    pub(super) fn write_data(&self, seq: u64, payload: Payload) {
        if let Some(s) = &self.socket {
            let data = payload.len();
            s.meter.add(data);
            if s.tx.send(Outgoing::Data(seq, payload)).is_err() {
                s.meter.sub(data);
            }
        }
    }

    /// Numbers a message, keeps it until acked, and sends it if attached.
    /// The payload, not its encoded frame: the socket's writer encodes (on
    /// its worker thread, not this arbiter's, and into a buffer it reuses),
    /// and a replay encodes again.
    fn assign(&mut self, payload: Payload) {
        let len = payload.len();
        if self.socket.is_some() {
            let seq = self.sender.next_seq();
            self.write_data(seq, payload.clone());
            self.sender.mark_sent(seq);
        }
        self.sender.push(payload, len);
    }

    /// Moves queued messages into the unacked buffer while they fit.
    pub(super) fn promote(&mut self) {
        #[cfg(feature = "redis")]
        if self.durable.is_some() {
            return self.promote_durable();
        }
        while let Some(front) = self.pending.front() {
            let len = front.len();
            if !self.sender.has_room(len) {
                break;
            }
            let payload = self.pending.pop_front().expect("front exists");
            self.pending_bytes -= len;
            self.assign(payload);
        }
    }
}
