//! Whether one more message may be accepted now: the one check behind
//! `send()`, `try_send()` and an [`OutgoingMessage`](super::OutgoingMessage)
//! sent to [`ResilientWebSocket::sender`](crate::ResilientWebSocket::sender).
//!
//! It reads only what the actors publish in [`Shared`], so the facade and
//! the outbox ask the same question and get the same answer.

use std::sync::{atomic::Ordering, Arc};

use super::{shared::Shared, store_writer::writer_stopped};
use crate::{
    events::{ConnectionState, Payload},
    options::{ClientOptions, OverflowPolicy, ReconnectMode},
    Error, Result,
};

/// The admission check of one client (cheap to clone).
#[derive(Clone)]
pub(crate) struct Admission {
    opts: Arc<ClientOptions>,
    shared: Arc<Shared>,
    /// With a durable store, a dead writer refuses everything.
    durable: bool,
}

impl Admission {
    pub(crate) fn new(opts: Arc<ClientOptions>, shared: Arc<Shared>, durable: bool) -> Self {
        Admission {
            opts,
            shared,
            durable,
        }
    }

    /// The size check, then [`admit`](Self::admit).
    pub(crate) fn check(&self, payload: &Payload) -> Result<()> {
        self.check_size(payload)?;
        self.admit()
    }

    /// Refuses at once a message the peer is known not to accept: sent, it
    /// would only make the peer close the socket (1009), and in reliable
    /// mode be replayed into the same refusal on every resume.
    pub(crate) fn check_size(&self, payload: &Payload) -> Result<()> {
        match self.shared.peer_max_message_size() {
            Some(max) if payload.len() > max => Err(Error::MessageTooLarge {
                size: payload.len(),
                max,
            }),
            _ => Ok(()),
        }
    }

    fn buffered(&self) -> u64 {
        self.shared.counters.buffered.load(Ordering::Acquire)
    }

    fn stateful(&self) -> bool {
        self.opts.reconnect_mode == ReconnectMode::Stateful
    }

    /// Whether one more message may be accepted now.
    pub(crate) fn admit(&self) -> Result<()> {
        if self.durable && self.shared.store_dead.load(Ordering::Acquire) {
            // Nothing can be made durable any more: refuse rather than
            // accept what would never be sent.
            return Err(Error::Store(writer_stopped()));
        }
        if self.stateful() {
            // Reliable mode: the outbox also holds what the unacked window
            // cannot take yet, so it bounds the sender even while connected.
            return match self.shared.state() {
                ConnectionState::Disconnecting => Err(Error::NotConnected),
                _ if self.buffered() < self.opts.max_buffered_messages as u64 => Ok(()),
                _ => Err(Error::BufferFull(self.opts.max_buffered_messages)),
            };
        }
        let max = self.opts.max_buffered_messages.max(1) as u64;
        match self.shared.state() {
            // Connected, the outbox is empty unless the socket is backed up
            // (a peer that does not read): then the outbox's bound applies.
            ConnectionState::Connected if self.buffered() < max => Ok(()),
            ConnectionState::Disconnecting => Err(Error::NotConnected),
            ConnectionState::Connected => self.admit_overflow(),
            _ if !self.opts.enable_message_buffering => Err(Error::NotConnected),
            _ if self.buffered() < max => Ok(()),
            _ => self.admit_overflow(),
        }
    }

    /// Whether one more message may be accepted into a full outbox.
    fn admit_overflow(&self) -> Result<()> {
        match self.opts.overflow_policy {
            // The outbox makes room itself and reports what it drops.
            OverflowPolicy::DropOldest | OverflowPolicy::DropNewest => Ok(()),
            OverflowPolicy::Reject | OverflowPolicy::Wait(_) => {
                Err(Error::BufferFull(self.opts.max_buffered_messages.max(1)))
            }
        }
    }
}
