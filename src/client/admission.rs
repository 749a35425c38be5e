//! Whether one more message may be taken: the outbox's credits, and the
//! checks of the connection's state that come before them.
//!
//! The `QueueActor` alone decides how many messages the outbox takes. It
//! does not publish a count for `send()` to compare (a count it updates
//! later, so two sends could both see room for one); it issues credits
//! instead, one per free place in the outbox, and grows them itself as it
//! frees places. `send()` takes one synchronously when one is there: its
//! message is then certainly taken, without waiting for a reply (the hot
//! path: no actor round trip per message, DESIGN.md "Budgets"). When none
//! is there, `send()` asks the actor (the message and a oneshot), which
//! decides by the overflow policy (refuse, or wait for a place) and
//! answers. Policies that never refuse (drop-oldest, drop-newest) need no
//! credits: the outbox makes room itself and reports what it drops.

use std::sync::{
    atomic::{AtomicIsize, Ordering},
    Arc,
};

use super::{shared::Shared, store_writer::writer_stopped};
use crate::{
    events::{ConnectionState, Payload},
    options::{ClientOptions, OverflowPolicy, ReconnectMode},
    Error, Result,
};

/// Places in the outbox a sender may take without asking. Only the
/// `QueueActor` adds to them (it frees places); senders take. Below zero
/// while the outbox holds more than its bound (a durable store brought
/// back more, or a failed commit put messages back): nobody takes then.
#[derive(Debug)]
pub(crate) struct Credits(AtomicIsize);

impl Credits {
    pub(crate) fn new(n: usize) -> Self {
        Credits(AtomicIsize::new(isize::try_from(n).unwrap_or(isize::MAX)))
    }

    /// Takes one credit if there is one.
    pub(crate) fn try_take(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then_some(n - 1)
            })
            .is_ok()
    }

    /// Gives back a credit a sender took and could not use (the actor's
    /// inbox was full for `try_send`): it was never the outbox's.
    pub(crate) fn untake(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// The outbox freed (`n > 0`) or filled beyond its credits (`n < 0`)
    /// this many places: the `QueueActor` only.
    pub(crate) fn adjust(&self, n: isize) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }

    /// How many are there now (tests).
    #[cfg(test)]
    pub(crate) fn available(&self) -> isize {
        self.0.load(Ordering::Acquire)
    }
}

/// How a message that passed the checks goes to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// It holds a credit: certainly taken.
    Credit,
    /// No credit needed: the overflow policy never refuses.
    Free,
    /// No credit was there: ask the outbox, which decides and answers.
    Ask,
}

/// The admission check of one client (cheap to clone), shared by the
/// facade and the `QueueActor` (for an `OutgoingMessage`).
#[derive(Clone)]
pub(crate) struct Admission {
    opts: Arc<ClientOptions>,
    shared: Arc<Shared>,
    /// With a durable store, a dead writer refuses everything.
    durable: bool,
    /// `None` when the overflow policy never refuses.
    credits: Option<Arc<Credits>>,
}

impl Admission {
    pub(crate) fn new(opts: Arc<ClientOptions>, shared: Arc<Shared>, durable: bool) -> Self {
        let credits = Self::bounded(&opts).then(|| Arc::new(Credits::new(Self::bound(&opts))));
        Admission {
            opts,
            shared,
            durable,
            credits,
        }
    }

    /// Whether the outbox's bound is kept by credits: reliable mode (it
    /// never drops, the sender waits), and the policies that refuse or
    /// wait. Drop-oldest and drop-newest always take the message.
    pub(crate) fn bounded(opts: &ClientOptions) -> bool {
        opts.reconnect_mode == ReconnectMode::Stateful
            || matches!(
                opts.overflow_policy,
                OverflowPolicy::Reject | OverflowPolicy::Wait(_)
            )
    }

    /// The outbox's bound.
    pub(crate) fn bound(opts: &ClientOptions) -> usize {
        opts.max_buffered_messages.max(1)
    }

    /// The options of the outbox's `MessageQueue`. With credits the
    /// outbox's bound is theirs; the queue bounds itself only under the
    /// policies that drop (they make room instead of refusing).
    pub(crate) fn outbox_options(opts: &ClientOptions) -> crate::queue::QueueOptions {
        crate::queue::QueueOptions {
            max_size: if Self::bounded(opts) {
                usize::MAX
            } else {
                Self::bound(opts)
            },
            overflow: opts.overflow_policy,
            ttl: opts.message_ttl,
            ..Default::default()
        }
    }

    /// The credits, for the `QueueActor` that issues them.
    pub(crate) fn credits(&self) -> Option<Arc<Credits>> {
        self.credits.clone()
    }

    /// The options this client runs with.
    pub(crate) fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The size and state checks, then a credit if one is needed.
    pub(crate) fn admit(&self, payload: &Payload) -> Result<Ticket> {
        self.check_size(payload)?;
        self.check_state()?;
        Ok(match &self.credits {
            None => Ticket::Free,
            Some(c) if c.try_take() => Ticket::Credit,
            Some(_) => Ticket::Ask,
        })
    }

    /// A credit taken by [`admit`](Self::admit) that was not used.
    pub(crate) fn untake(&self, ticket: Ticket) {
        if let (Ticket::Credit, Some(c)) = (ticket, &self.credits) {
            c.untake();
        }
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

    /// What the connection's state says, before any question of room: the
    /// state is the connection actor's, published as it changes.
    pub(crate) fn check_state(&self) -> Result<()> {
        if self.durable && self.shared.store_dead.load(Ordering::Acquire) {
            // Nothing can be made durable any more: refuse rather than
            // accept what would never be sent.
            return Err(Error::Store(writer_stopped()));
        }
        match self.shared.state() {
            ConnectionState::Disconnecting => Err(Error::NotConnected),
            // Reliable mode: the outbox holds what waits for the window,
            // connected or not.
            _ if self.opts.reconnect_mode == ReconnectMode::Stateful => Ok(()),
            ConnectionState::Connected => Ok(()),
            _ if !self.opts.enable_message_buffering => Err(Error::NotConnected),
            _ => Ok(()),
        }
    }

    /// The refusal of a full outbox.
    pub(crate) fn full(&self) -> Error {
        Error::BufferFull(self.opts.max_buffered_messages.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_taken_one_at_a_time_and_never_below_zero() {
        let c = Credits::new(2);
        assert!(c.try_take());
        assert!(c.try_take());
        assert!(!c.try_take());
        assert_eq!(c.available(), 0);
        c.adjust(-3);
        assert!(!c.try_take(), "an outbox over its bound issues none");
        c.adjust(4);
        assert!(c.try_take());
        assert_eq!(c.available(), 0);
    }

    #[test]
    fn only_policies_that_refuse_or_wait_need_credits() {
        let with = |mode, policy| ClientOptions {
            reconnect_mode: mode,
            overflow_policy: policy,
            ..ClientOptions::default()
        };
        use OverflowPolicy::*;
        use ReconnectMode::*;
        assert!(Admission::bounded(&with(Stateless, Reject)));
        assert!(Admission::bounded(&with(
            Stateless,
            Wait(std::time::Duration::from_secs(1))
        )));
        assert!(!Admission::bounded(&with(Stateless, DropOldest)));
        assert!(!Admission::bounded(&with(None, DropNewest)));
        assert!(Admission::bounded(&with(Stateful, DropOldest)));
    }
}
