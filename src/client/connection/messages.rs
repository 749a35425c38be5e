//! The messages the `ConnectionActor` handles.
//!
//! They live in their own file, below the actor, so the actors that send
//! them (the heartbeat, the outbox, the facade) name these types and never
//! the `ConnectionActor` itself: they hold a `Recipient` of each.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::{client::queue_actor::messages::Outbound, Result};

/// The heartbeat asks for a ping on the socket of generation `gen`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SendPing {
    pub(crate) gen: u64,
}

/// The heartbeat saw nothing from the peer of socket `gen` for `timeout`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct HeartbeatTimeout {
    pub(crate) gen: u64,
    pub(crate) timeout: Duration,
}

/// Ask for a connection; the reply comes on the channel once connected or
/// failed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Connect(pub(crate) oneshot::Sender<Result<()>>);

/// Ask for a graceful close; the channel is told when the socket is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect(pub(crate) oneshot::Sender<()>);

/// Messages from the outbox to write, in order. `gen` is the socket the
/// outbox meant them for: in reliable mode a batch for an older socket is
/// dropped (the outbox replays it); in raw mode it is written on the next
/// socket.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WriteBatch {
    pub(crate) gen: u64,
    pub(crate) items: Vec<Outbound>,
}

/// Add a subscriber for one event type.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Subscribe<E: actix::Message<Result = ()> + Send + Clone + 'static>(
    pub(crate) Recipient<E>,
);
