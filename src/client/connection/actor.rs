//! The `ConnectionActor`'s state, its links to the other actors, and the
//! few things every part of it uses (publishing the state, the durable
//! session record, subscribers).

use std::sync::Arc;

use actix::prelude::*;
use actix_rt::time::Instant;
use tokio::sync::oneshot;

use super::{
    messages::Subscribe,
    socket::{End, Socket},
};
use crate::client::{
    heartbeat::{Unwatch, Watch},
    on_connect::Hook,
    queue_actor::messages::{Acked, FirstSeq, LinkState, Returned, Shutdown},
    reconnect::{AskRetry, ConnectionUp, TakeRecovery},
    reliable::ReliableState,
    shared::Shared,
    store_writer::StoreHandle,
    subscribers::EventBus,
};
use crate::{
    events::{
        Closed, ConnectionState, ErrorEvent, IncomingMessage, Reconnected, Reconnecting,
        SessionLost, StateChanged,
    },
    options::{ClientOptions, ReconnectMode, UrlProvider},
    queue::{StoreOp, StoredState},
    Error, Result,
};

/// Consecutive sockets the peer closed with the same refusal code.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refusals {
    pub(super) code: u16,
    pub(super) count: u32,
    /// `ConnectionActor::acked` when the run began: progress resets it.
    pub(super) acked: u64,
}

/// Where the actor is in its life, across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not connected and not trying to.
    Idle,
    /// The first connection after `connect()` is being made.
    Initial,
    /// A socket is open.
    Up,
    /// The connection was lost; attempts follow the retry policy.
    Reconnecting,
}

/// What the connection holds of the other actors: a `Recipient` per message
/// it sends them, never their concrete addresses, so a test can stand any
/// of them in with a recorder. Strong, like the facade's handles: the
/// connection outlives its restarts, and when it goes for good (the last
/// handle dropped) these go with it, and so do the actors behind them.
pub(crate) struct Links {
    /// The heartbeat: watch a new socket.
    pub(crate) watch: Recipient<Watch>,
    /// The heartbeat: a socket is gone.
    pub(crate) unwatch: Recipient<Unwatch>,
    /// The reconnect supervisor: a socket is up (for `min_uptime`).
    pub(crate) connection_up: Recipient<ConnectionUp>,
    /// The reconnect supervisor: how long the outage took.
    pub(crate) take_recovery: Recipient<TakeRecovery>,
    /// The reconnect supervisor: when to try again.
    pub(crate) ask_retry: Recipient<AskRetry>,
    /// The outbox: the socket is ready, gone, backed up or caught up.
    pub(crate) link_state: Recipient<LinkState>,
    /// The outbox (raw mode): a batch that found no open socket, handed
    /// back.
    pub(crate) returned: Recipient<Returned>,
    /// The outbox: the peer acknowledged up to a seq.
    pub(crate) acked: Recipient<Acked>,
    /// The outbox: the seq a HELLO claims to send first.
    pub(crate) first_seq: Recipient<FirstSeq>,
    /// The outbox: the client is gone.
    pub(crate) shutdown: Recipient<Shutdown>,
}

/// The supervised actor that owns the socket. Created by
/// [`ResilientWebSocket`](crate::ResilientWebSocket); users talk to it
/// through that facade.
pub struct ConnectionActor {
    pub(super) opts: Arc<ClientOptions>,
    pub(super) url: UrlProvider,
    pub(super) bus: EventBus,
    pub(super) shared: Arc<Shared>,
    pub(super) links: Links,
    pub(super) state: ConnectionState,
    /// Whether the user wants a connection: set by `connect()`, cleared by
    /// `disconnect()` and by a failure the client gives up on.
    pub(super) wanted: bool,
    pub(super) phase: Phase,
    /// Failed attempts and lost connections so far; picks the endpoint of a
    /// failover list.
    pub(super) failures: usize,
    /// How many more endpoints the first `connect()` may try.
    pub(super) initial_tries_left: usize,
    /// The first connect already went on after a `SessionGone`.
    pub(super) retried_gone: bool,
    /// Why the last socket or attempt ended; what the retry policy is told.
    pub(super) last_error: Option<Error>,
    /// The generation of the newest socket.
    pub(super) gen: u64,
    pub(super) connect_waiters: Vec<oneshot::Sender<Result<()>>>,
    pub(super) disconnect_waiters: Vec<oneshot::Sender<()>>,
    /// The current socket; `None` while connecting or disconnected.
    pub(super) sock: Option<Socket>,
    /// The in-flight connection attempt, so `disconnect()` can cancel it.
    pub(super) attempt: Option<SpawnHandle>,
    pub(super) end: Option<End>,
    /// Reliable mode: session and receive-side sequence state.
    pub(super) reliable: ReliableState,
    /// With a durable store: where session changes are recorded.
    pub(super) store: Option<StoreHandle>,
    /// With a durable store: the `delivered` the store holds. Only this much
    /// is acknowledged or claimed in a HELLO, so a new process never resumes
    /// from a point the server has already discarded.
    pub(super) durable_delivered: u64,
    /// Reliable mode: the highest of our seqs the peer acknowledged (ACK or
    /// WELCOME); the progress `refusals` looks for.
    pub(super) acked: u64,
    /// The peer's current run of refusals (see `MAX_REFUSED_REPLAYS`).
    pub(super) refusals: Option<Refusals>,
    /// The run reached the bound: stop instead of reconnecting.
    pub(super) refused_for_good: bool,
    /// Reliable mode: since when the session has had no socket. Past its
    /// resume window the server has dropped it, so an attempt that would
    /// start later negotiates a fresh session instead (PROTOCOL.md §7).
    pub(super) session_lost_at: Option<Instant>,
    /// Reliable mode: the client's stable id, told to the server at every
    /// negotiate (docs/PROTOCOL.md §1): random per client, or the one a
    /// durable store kept.
    pub(super) client_id: String,
    /// What goes first on every socket (`client/on_connect.rs`).
    pub(super) on_connect: Hook,
}

impl ConnectionActor {
    /// A connection to what `url` yields, publishing into `shared` and
    /// `bus`, and telling the other actors through `links`. Run it under
    /// `actix::Supervisor` (a restart is how it reconnects). Crate-internal:
    /// the facade builds it; `connection/tests.rs` shows it alone.
    pub(crate) fn new(
        opts: Arc<ClientOptions>,
        url: UrlProvider,
        bus: EventBus,
        shared: Arc<Shared>,
        links: Links,
    ) -> Self {
        ConnectionActor {
            opts,
            url,
            bus,
            shared,
            links,
            state: ConnectionState::Disconnected,
            wanted: false,
            phase: Phase::Idle,
            failures: 0,
            initial_tries_left: 0,
            retried_gone: false,
            last_error: None,
            gen: 0,
            connect_waiters: Vec::new(),
            disconnect_waiters: Vec::new(),
            sock: None,
            attempt: None,
            end: None,
            reliable: ReliableState::default(),
            store: None,
            durable_delivered: 0,
            acked: 0,
            refusals: None,
            refused_for_good: false,
            session_lost_at: None,
            client_id: crate::protocol::new_client_id(),
            on_connect: Hook::default(),
        }
    }

    /// Sets what goes first on every socket.
    pub(crate) fn set_on_connect(&mut self, hook: Hook) {
        self.on_connect = hook;
    }

    /// Resumes from what a durable store held, and records into it.
    pub(crate) fn attach_store(&mut self, store: StoreHandle, state: &StoredState) {
        self.reliable.session = state.session.as_ref().map(Into::into);
        if let Some(max) = state.session.as_ref().and_then(|s| s.max_message_size) {
            // The server's limit is known before the first socket.
            self.shared.set_peer_max_message_size(Some(max));
        }
        if let Some(s) = state.session.as_ref().filter(|s| !s.client_id.is_empty()) {
            self.client_id = s.client_id.clone();
        }
        self.reliable.delivered = state.delivered;
        self.reliable.highest_written = state.next_seq.saturating_sub(1);
        self.durable_delivered = state.delivered;
        self.store = Some(store);
    }

    /// With a durable store: records the session now in use (or none).
    pub(super) fn store_session(&mut self) {
        if let Some(store) = &self.store {
            let session = self.reliable.session.as_ref().map(Into::into);
            let delivered = self.reliable.delivered;
            store.submit(
                vec![StoreOp::Session(session), StoreOp::Delivered(delivered)],
                Vec::new(),
                None,
            );
            self.durable_delivered = self.durable_delivered.min(delivered);
        }
    }

    /// Has the heartbeat watch socket `gen`, talking back to this actor
    /// through weak recipients (it must not keep the connection alive).
    pub(super) fn watch(&self, gen: u64, ctx: &mut Context<Self>) {
        let me = ctx.address().downgrade();
        self.links.watch.do_send(Watch {
            gen,
            ping: me.clone().recipient(),
            timeout: me.recipient(),
        });
    }

    pub(super) fn stateful(&self) -> bool {
        self.opts.reconnect_mode == ReconnectMode::Stateful
    }

    pub(super) fn set_state(&mut self, current: ConnectionState) {
        let previous = self.state;
        if previous == current {
            return;
        }
        self.state = current;
        self.shared.set_state(current);
        log::debug!("state {previous:?} -> {current:?}");
        self.bus.state.publish(StateChanged { previous, current });
    }
}

macro_rules! subscribe_handler {
    ($event:ty, $field:ident) => {
        impl Handler<Subscribe<$event>> for ConnectionActor {
            type Result = ();

            fn handle(&mut self, msg: Subscribe<$event>, _ctx: &mut Context<Self>) {
                self.bus.$field.add(msg.0);
            }
        }
    };
}
subscribe_handler!(StateChanged, state);
subscribe_handler!(IncomingMessage, messages);
subscribe_handler!(ErrorEvent, errors);
subscribe_handler!(Closed, closed);
subscribe_handler!(Reconnecting, reconnecting);
subscribe_handler!(Reconnected, reconnected);
subscribe_handler!(SessionLost, session_lost);
