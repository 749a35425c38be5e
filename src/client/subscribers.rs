//! Event fan-out to subscribed `Recipient`s.
//!
//! The rule (from actix-broker): `try_send` first; if the subscriber's mailbox
//! is full, `do_send` anyway (an event is never dropped for a slow
//! subscriber); a subscriber is removed only when its actor is gone.

use actix::prelude::*;

use super::inbound::InboundFanout;
use crate::fanout::deliver;

use crate::events::{
    Closed, ErrorEvent, MessageDropped, Reconnected, Reconnecting, SessionLost, StateChanged,
};

/// The subscribers of one event type.
pub(crate) struct Subscribers<E>
where
    E: Message<Result = ()> + Send + Clone + 'static,
{
    list: Vec<Recipient<E>>,
}

impl<E> Default for Subscribers<E>
where
    E: Message<Result = ()> + Send + Clone + 'static,
{
    fn default() -> Self {
        Subscribers { list: Vec::new() }
    }
}

impl<E> Clone for Subscribers<E>
where
    E: Message<Result = ()> + Send + Clone + 'static,
{
    fn clone(&self) -> Self {
        Subscribers {
            list: self.list.clone(),
        }
    }
}

impl<E> Subscribers<E>
where
    E: Message<Result = ()> + Send + Clone + 'static,
{
    pub(crate) fn add(&mut self, r: Recipient<E>) {
        self.list.push(r);
    }

    pub(crate) fn publish(&mut self, event: E) {
        // Payloads are reference-counted, so a clone per subscriber is cheap.
        self.list.retain(|r| !deliver(r, event.clone()));
    }
}

/// All the subscriber lists of one client.
#[derive(Default)]
pub(crate) struct EventBus {
    pub(crate) state: Subscribers<StateChanged>,
    /// Inbound messages: bounded for slow subscribers (see
    /// [`InboundFanout`]).
    pub(crate) messages: InboundFanout,
    pub(crate) errors: Subscribers<ErrorEvent>,
    pub(crate) closed: Subscribers<Closed>,
    pub(crate) reconnecting: Subscribers<Reconnecting>,
    pub(crate) reconnected: Subscribers<Reconnected>,
    pub(crate) dropped: Subscribers<MessageDropped>,
    pub(crate) session_lost: Subscribers<SessionLost>,
}
