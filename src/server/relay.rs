//! How the application's payloads reach sessions from outside them:
//! [`send_when_room`] (one session, paced by its
//! [`SendWindow`](super::send_window::SendWindow)),
//! [`broadcast`] (every session, unpaced), [`broadcast_paced`] (every
//! session, paced) and the [`Relay`] actor of
//! [`ReliableServer::broadcast_mode`](super::ReliableServer::broadcast_mode).

use std::sync::{Arc, Weak};

use actix::prelude::*;

use super::{
    error::ServerError,
    events::MessageReceived,
    hub::ServerShared,
    registry::SessionEntry,
    send_window::Admitted,
    session::{Outbound, SessionActor},
};
use crate::Payload;

/// Hands `payload` to the session once its send window has room, waiting
/// until `deadline` (`None`: not at all); see
/// [`SendWindow::acquire`](super::send_window::SendWindow::acquire) for
/// `detached_ok` and the errors.
pub(crate) async fn send_when_room(
    entry: &SessionEntry<Addr<SessionActor>>,
    payload: Payload,
    deadline: Option<tokio::time::Instant>,
    detached_ok: bool,
) -> Result<(), ServerError> {
    let admitted = entry
        .window
        .acquire(payload.len(), deadline, detached_ok)
        .await?;
    entry.addr.do_send(Outbound {
        payload,
        reserved: admitted == Admitted::Reserved,
    });
    Ok(())
}

/// Sends `payload` to every session and every broadcasting plain client
/// without waiting; returns how many it was handed to.
pub(crate) fn broadcast(shared: &ServerShared, payload: Payload) -> usize {
    let targets = shared.sessions.broadcast_targets(payload.len());
    for e in &targets {
        e.addr.do_send(Outbound {
            payload: payload.clone(),
            reserved: false,
        });
    }
    targets.len() + shared.plain.broadcast(&payload)
}

/// Broadcasts `payload` to the plain clients and every session, waiting
/// (up to `send_timeout`) for room in each attached session's send buffer:
/// what [`ReliableServer::broadcast_mode`](super::ReliableServer::broadcast_mode)
/// and broadcasting plain clients use, so that one client's burst paces
/// itself to the readers instead of overflowing every session. A detached
/// session is not waited for (its buffer drains only after a resume), and
/// an attached one that made no room in time gets the message anyway under
/// the pending bound, which ends only that session.
pub(crate) async fn broadcast_paced(shared: Arc<ServerShared>, payload: Payload) {
    shared.plain.broadcast(&payload);
    let entries = shared.sessions.broadcast_targets(payload.len());
    let deadline = tokio::time::Instant::now() + shared.options.send_timeout;
    let sends = entries.into_iter().map(|e| {
        let payload = payload.clone();
        async move {
            if send_when_room(&e, payload.clone(), Some(deadline), true).await
                == Err(ServerError::Timeout)
            {
                e.addr.do_send(Outbound {
                    payload,
                    reserved: false,
                });
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

/// The internal subscriber of
/// [`ReliableServer::broadcast_mode`](super::ReliableServer::broadcast_mode).
/// Holds the server weakly so that the server's subscriber list does not
/// keep itself alive.
pub(crate) struct Relay {
    shared: Weak<ServerShared>,
}

impl Relay {
    pub(crate) fn new(shared: &Arc<ServerShared>) -> Self {
        Relay {
            shared: Arc::downgrade(shared),
        }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<MessageReceived> for Relay {
    // Atomic: the next message waits until this one was handed to every
    // session (order), and the reply (which the receiving session's
    // inbound backpressure waits for) comes only then, so a burst from one
    // client is paced by the sessions' acks instead of overflowing them.
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: MessageReceived, ctx: &mut Context<Self>) -> Self::Result {
        let Some(shared) = self.shared.upgrade() else {
            ctx.stop();
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let all = broadcast_paced(shared, msg.payload);
        AtomicResponse::new(Box::pin(all.into_actor(self).map(|_, _, _| ())))
    }
}
