//! The hub actor, and where session actors are created.
//!
//! Session actors run on the actix-web worker of their socket (see
//! `workers` and the Threading section of the module docs), so the
//! sessions of a server spread over its workers as their sockets do. The
//! hub actor only fans out the shutdown.
//!
//! The registry holds the sessions' strong addresses on purpose: a session
//! must live for its resume window while no socket and no application code
//! refers to it, so the registry is its owner.

use std::sync::Arc;

use actix::prelude::*;

use super::{
    error::ServerError,
    registry::SessionEntry,
    send_window::SendWindow,
    session::{Drain, SessionActor},
    shared::Shared,
    workers::{start_deferred, FIRST_SOCKET_GRACE},
};

/// A server's shared state with this crate's session actor as the
/// registry's address type: the one the handle, the hub and the sockets
/// use (tests of the lower files use plain values instead).
pub(crate) type ServerShared = Shared<Addr<SessionActor>>;
use crate::protocol::{new_connection_id, new_reconnect_token, NegotiateParams};

/// Creates a session pending its first socket, its actor deferred: it
/// starts on the worker of that socket (or on this, the negotiating,
/// worker if none comes within `FIRST_SOCKET_GRACE`); answers its
/// connection id and reconnect token.
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
        // The resume window of a session that never gets a socket counts
        // from now, not from its (deferred) start.
        let unattached_until = actix_rt::time::Instant::now() + shared.options.resume_window;
        // Never later than the window: a session without a socket then
        // starts when it is due to expire, and expires at once.
        let grace = FIRST_SOCKET_GRACE.min(shared.options.resume_window);
        let (addr, deferred) = start_deferred(grace, move || {
            SessionActor::new(for_actor, id, tok, ident, client_id, client_max, w)
                .unattached_until(unattached_until)
        });
        if let Some(max) = params.max_message_size {
            shared.sessions.set_client_limit(&connection_id, max);
        }
        let here = std::thread::current().id();
        let entry = SessionEntry::new(addr, window, here).deferred(deferred);
        (connection_id.clone(), entry)
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
/// starts its actor here, on the socket's worker, in place of an older one
/// of this node, which is told it was taken. Answers the new actor.
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
    let addr = SessionActor::adopted(
        shared.clone(),
        store,
        connection_id.clone(),
        identity.to_owned(),
        taken,
        window.clone(),
    )
    .start();
    if client_max < usize::MAX {
        shared.sessions.set_client_limit(&connection_id, client_max);
    }
    let entry = SessionEntry::new(addr.clone(), window, std::thread::current().id());
    if let Some(old) = shared.sessions.replace(connection_id, identity, entry) {
        old.addr.do_send(super::session::StoreNotice::Taken);
    }
    Some(addr)
}

impl Handler<Shutdown> for Hub {
    type Result = MessageResult<Shutdown>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shared.begin_shutdown(msg.reason.clone());
        // A session still waiting for its first socket starts here to be
        // drained now, not after its grace period.
        for id in self.shared.sessions.ids() {
            self.shared.sessions.start_here(&id);
        }
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
