//! The client's event bus: one subscriber list per event type, with the
//! fan-out rule of [`crate::fanout`] (the server's event hub uses the same
//! [`Subscribers`]).

use super::inbound::InboundFanout;
pub(crate) use crate::fanout::Subscribers;

use crate::events::{
    Closed, ErrorEvent, MessageDropped, Reconnected, Reconnecting, SessionLost, StateChanged,
};

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
