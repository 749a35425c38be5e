//! The hub actor: creates session actors (on its own arbiter, so every
//! session of a server lives on one thread whatever worker negotiated it)
//! and fans out the shutdown.
//!
//! It holds the sessions' strong addresses (through the registry) on
//! purpose: a session must live for its resume window while no socket and
//! no application code refers to it, so the registry is its owner.

use std::sync::Arc;

use actix::prelude::*;

use super::{
    error::ServerError,
    send_window::SendWindow,
    session::{Drain, SessionActor},
    shared::Shared,
};

/// A server's shared state with this crate's session actor as the
/// registry's address type: the one the handle, the hub and the sockets
/// use (tests of the lower files use plain values instead).
pub(crate) type ServerShared = Shared<Addr<SessionActor>>;
use crate::protocol::{new_connection_id, new_reconnect_token, NegotiateParams};

/// Creates a session pending its first socket; answers its connection id
/// and reconnect token.
#[derive(Message)]
#[rtype(result = "Result<(String, String), ServerError>")]
pub(crate) struct CreateSession {
    pub(crate) identity: String,
    /// What the client said about itself in the negotiate body.
    pub(crate) params: NegotiateParams,
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

impl Handler<CreateSession> for Hub {
    type Result = MessageResult<CreateSession>;

    fn handle(&mut self, msg: CreateSession, _: &mut Context<Self>) -> Self::Result {
        // Sessions are created and counted only here (one actor), so the
        // check and the insert cannot race.
        if let Err(e) = self.shared.sessions.admit(&msg.identity) {
            return MessageResult(Err(e));
        }
        let connection_id = new_connection_id();
        let token = new_reconnect_token();
        let client_id = msg
            .params
            .client_id
            .unwrap_or_else(|| connection_id.clone());
        let window = Arc::new(SendWindow::new(self.shared.options.max_pending_bytes()));
        let addr = SessionActor::new(
            self.shared.clone(),
            connection_id.clone(),
            token.clone(),
            msg.identity.clone(),
            client_id,
            msg.params.max_message_size.unwrap_or(usize::MAX),
            window.clone(),
        )
        .start();
        if let Some(max) = msg.params.max_message_size {
            self.shared.sessions.set_client_limit(&connection_id, max);
        }
        self.shared
            .sessions
            .insert(connection_id.clone(), &msg.identity, addr, window);
        MessageResult(Ok((connection_id, token)))
    }
}

/// A socket's HELLO took a session from the Redis store for this node:
/// start its actor (in place of an older one of this node, which is
/// told it was taken). Answers the new actor.
#[cfg(feature = "redis")]
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub(crate) struct Adopt {
    pub(crate) connection_id: String,
    pub(crate) identity: String,
    pub(crate) taken: super::store::Taken,
}

#[cfg(feature = "redis")]
impl Handler<Adopt> for Hub {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) -> Self::Result {
        let store = self.shared.redis()?.clone();
        let window = Arc::new(SendWindow::new(self.shared.options.max_pending_bytes()));
        let client_max = msg.taken.client_max;
        let addr = SessionActor::adopted(
            self.shared.clone(),
            store,
            msg.connection_id.clone(),
            msg.identity.clone(),
            msg.taken,
            window.clone(),
        )
        .start();
        if client_max < usize::MAX {
            self.shared
                .sessions
                .set_client_limit(&msg.connection_id, client_max);
        }
        if let Some(old) =
            self.shared
                .sessions
                .replace(msg.connection_id, &msg.identity, addr.clone(), window)
        {
            old.addr.do_send(super::session::StoreNotice::Taken);
        }
        Some(addr)
    }
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
