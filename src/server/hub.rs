//! The hub actor, and where session actors are created.
//!
//! Session actors are started on the server's actix-web workers, chosen by
//! `Workers` (the negotiating worker in memory mode, another than the
//! socket's in Redis mode), so the sessions of a server are spread over
//! its workers (see the Threading section of the module docs). The hub
//! actor only fans out the shutdown.
//!
//! The registry holds the sessions' strong addresses on purpose: a session
//! must live for its resume window while no socket and no application code
//! refers to it, so the registry is its owner.

use std::sync::Arc;

use actix::prelude::*;

use super::{
    error::ServerError,
    send_window::SendWindow,
    session::{Drain, SessionActor},
    shared::Shared,
    workers::Placement,
};

/// A server's shared state with this crate's session actor as the
/// registry's address type: the one the handle, the hub and the sockets
/// use (tests of the lower files use plain values instead).
pub(crate) type ServerShared = Shared<Addr<SessionActor>>;
use crate::protocol::{new_connection_id, new_reconnect_token, NegotiateParams};

/// Creates a session pending its first socket, its actor on the calling
/// (negotiating) worker; answers its connection id and reconnect token.
///
/// # Errors
/// [`ServerError::TooManySessions`] or
/// [`ServerError::TooManySessionsForIdentity`] past the limits (checked
/// with the insert as one step, see `Registry::admit_and_insert`).
pub(crate) fn create_session(
    shared: &Arc<ServerShared>,
    identity: String,
    params: NegotiateParams,
) -> Result<(String, String), ServerError> {
    let connection_id = new_connection_id();
    let token = new_reconnect_token();
    shared.sessions.admit_and_insert(&identity, || {
        let client_id = params.client_id.unwrap_or_else(|| connection_id.clone());
        let window = Arc::new(SendWindow::new(shared.options.max_pending_bytes()));
        let (for_actor, id, tok, ident, w) = (
            shared.clone(),
            connection_id.clone(),
            token.clone(),
            identity.clone(),
            window.clone(),
        );
        let client_max = params.max_message_size.unwrap_or(usize::MAX);
        let (addr, thread) = shared.workers.start(Placement::Here, move || {
            SessionActor::new(for_actor, id, tok, ident, client_id, client_max, w)
        });
        if let Some(max) = params.max_message_size {
            shared.sessions.set_client_limit(&connection_id, max);
        }
        (connection_id.clone(), addr, window, thread)
    })?;
    Ok((connection_id, token))
}

/// Drains every attached socket and closes it with 1012 and `reason`;
/// refuses new ones. Answers one receiver per session that fires (or is
/// dropped) once its socket is closed.
#[derive(Message)]
#[rtype(result = "Vec<tokio::sync::oneshot::Receiver<()>>")]
pub(crate) struct Shutdown {
    pub(crate) reason: String,
}

pub(crate) struct Hub {
    shared: Arc<ServerShared>,
}

impl Hub {
    pub(crate) fn new(shared: Arc<ServerShared>) -> Self {
        Hub { shared }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// A socket's HELLO took a session from the Redis store for this node:
/// starts its actor on the worker `Workers` picks (not the socket's when
/// there are several), in place of an older one of this node, which is
/// told it was taken. Answers the new actor.
#[cfg(feature = "redis")]
pub(crate) fn adopt(
    shared: &Arc<ServerShared>,
    connection_id: String,
    identity: &str,
    taken: super::store::Taken,
) -> Option<Addr<SessionActor>> {
    let store = shared.redis()?.clone();
    let window = Arc::new(SendWindow::new(shared.options.max_pending_bytes()));
    let client_max = taken.client_max;
    let (for_actor, id, ident, w) = (
        shared.clone(),
        connection_id.clone(),
        identity.to_owned(),
        window.clone(),
    );
    let (addr, thread) = shared.workers.start(Placement::Elsewhere, move || {
        SessionActor::adopted(for_actor, store, id, ident, taken, w)
    });
    if client_max < usize::MAX {
        shared.sessions.set_client_limit(&connection_id, client_max);
    }
    if let Some(old) =
        shared
            .sessions
            .replace(connection_id, identity, addr.clone(), window, thread)
    {
        old.addr.do_send(super::session::StoreNotice::Taken);
    }
    Some(addr)
}

impl Handler<Shutdown> for Hub {
    type Result = MessageResult<Shutdown>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shared.begin_shutdown(msg.reason.clone());
        let sessions = self.shared.sessions.all();
        let mut drained = Vec::with_capacity(sessions.len());
        for addr in sessions {
            let (done, rx) = tokio::sync::oneshot::channel();
            addr.do_send(Drain {
                reason: msg.reason.clone(),
                done,
            });
            drained.push(rx);
        }
        MessageResult(drained)
    }
}
