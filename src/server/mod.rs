//! The server side: actix-web routes backed by actix-ws.
//!
//! - [`echo_route`]: a plain echo endpoint (any RFC 6455 client can talk
//!   to it).
//! - [`ReliableServer`] and [`reliable_route`]: the reliable protocol
//!   (docs/PROTOCOL.md): negotiate, sessions that outlive sockets for a
//!   resume window, exactly-once in-order delivery both ways, `send_to` and
//!   `broadcast`, and events for the application's actors.
//!
//! # Threading
//! actix-web runs the app factory on every worker thread (each worker is an
//! actix arbiter), and an actor lives on the thread that started it.
//! A session actor runs on the worker of its socket, so the sessions of a
//! server spread over its workers as their sockets do, and a message costs
//! no hop between threads on its way through the server:
//! - with one worker, every session runs on it: one worker is one thread
//!   (its sockets' I/O and its sessions' work take turns). Serve with two
//!   or more workers to use more cores;
//! - in memory mode, negotiate creates the session, but its actor starts
//!   on the worker of its first socket (the client opens a new connection
//!   for the upgrade, which actix-web deals to any worker); meanwhile its
//!   address takes messages (`send_to`, `broadcast`), which wait for it.
//!   If no socket comes within two seconds (or the resume window, if
//!   shorter), the actor starts on the negotiating worker. An actor cannot
//!   move between threads: a resume that lands on another worker reaches
//!   the session where it is (one hop each way per batch);
//! - in Redis mode, each socket's HELLO takes the session and starts its
//!   actor on the socket's worker; a later resume on another worker (or
//!   node) starts a new actor there and retires the old one;
//! - the limits (`max_sessions`, `max_sessions_per_identity`) are checked
//!   and the session inserted under one lock of the registry, so workers
//!   that negotiate at once cannot both take the last place;
//! - the hub actor lives on the arbiter that called
//!   [`ReliableServer::start`]; it only fans out the shutdown (the drain
//!   is sent to each session on its own worker);
//! - a socket's I/O (the actix-ws `Session` and `MessageStream`) stays on the
//!   worker that accepted it, in two tasks: a reader that decodes frames,
//!   does the per-socket checks and hands the session actor *batches* of
//!   frames with `do_send` (no round trip per message), and a writer that
//!   drains an unbounded channel the session actor pushes frames into
//!   (bounded in practice by `max_unacked_bytes`);
//! - `send_to`, `broadcast` and `close_session` reach a session on any
//!   worker from any thread through its `Send` address; events go straight
//!   from the session actor to the subscribed `Recipient`s;
//! - a session actor lives as long as its worker: stopping the actix-web
//!   server stops its workers and ends their in-memory sessions (without
//!   [`SessionExpired`]; a Redis session stays in Redis for any node to
//!   resume). Serve a [`ReliableServer`] from one `HttpServer` for its
//!   life, and call [`ReliableServer::shutdown`] first to drain.
//!
//! # Sessions in Redis (a cluster of nodes)
//! With the `redis` feature, [`ServerOptions::store`] may be
//! `SessionStore::Redis`: every node started with a
//! `RedisSessionStore` on the same Redis (each with its own node id)
//! shares the sessions, so negotiate and the socket may land on different
//! nodes, and a client whose node died or was redeployed resumes on
//! another one, exactly once both ways (docs/SCALING.md).
//! - Redis holds each session (the reconnect token's hash, never the
//!   token; the unacknowledged server messages as a stream; the delivered
//!   and acked counts); a node holds an actor only while it holds the
//!   session's socket. A HELLO *takes* the session (an atomic epoch bump),
//!   and every later write of the old owner is refused.
//! - A session's actor records its work in one script per batch (group
//!   commit): nothing is acknowledged to the client, and nothing written to
//!   its socket, before Redis has it.
//! - [`ReliableServer::send_to`], `try_send_to`, `broadcast` and
//!   `close_session` work from every node; a message for a session attached
//!   elsewhere (or detached) is appended in Redis and sent by whichever node
//!   holds the socket now or next. `broadcast` returns the count of the
//!   sessions attached on this node (the others are reached through Redis).
//! - While Redis does not answer, negotiate answers `503` with
//!   `Retry-After`, a HELLO is closed with 1013, and an attached session
//!   stops reading its client until Redis answers again, or closes with
//!   1013 after [`ServerOptions::store_unavailable_timeout`].
//! - `max_sessions` counts the sessions attached on this node;
//!   `max_sessions_per_identity` is not enforced across the cluster.
//! - A client's message handed to the [`MessageReceived`] subscribers is
//!   recorded with the next commit: a node that crashes (or a resume that
//!   overtakes that commit) in between makes it arrive again, with the same
//!   `client_id` and `seq` (key side effects by them). The echo mode records
//!   a delivery and its echo in one commit: exactly once even then.
//!
//! # Examples
//! ```no_run
//! use actix::prelude::*;
//! use actix_web::{App, HttpServer};
//! use resilient_ws::server::{reliable_route, MessageReceived, ReliableServer, ServerOptions};
//!
//! /// Answers every message with its length.
//! struct Counter(ReliableServer);
//! impl Actor for Counter {
//!     type Context = Context<Self>;
//! }
//! impl Handler<MessageReceived> for Counter {
//!     type Result = ();
//!     fn handle(&mut self, msg: MessageReceived, _: &mut Context<Self>) {
//!         // `try_send_to` does not wait; `send_to(..).await` waits for room.
//!         let _ = self.0.try_send_to(&msg.connection_id, msg.payload.len().to_string());
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let server = ReliableServer::start(ServerOptions::default());
//!     let counter = Counter(server.clone()).start();
//!     server.on_message(counter.recipient());
//!     HttpServer::new(move || {
//!         let server = server.clone();
//!         App::new().configure(move |c| reliable_route(c, "/ws", server))
//!     })
//!     // Small frames (acks, short messages) go out at once instead of
//!     // waiting out Nagle's algorithm against the client's delayed ACK.
//!     .tcp_nodelay(true)
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! }
//! ```

// Layered bottom-up: a file imports only from its own or a lower group
// (the `pub(crate) use` compatibility re-exports in handle.rs and socket.rs
// aside; see there). No file below `session` names the session actor.
//
// Nouns and limits.
mod error;
mod events;
mod options;
mod stats;
mod store;

// Plain state with no actor: per-address limits, send windows, the session
// registry, the socket's channel and liveness, the plain clients, and the
// state they make up together.
mod admission;
mod keep_alive;
mod plain_clients;
mod registry;
mod resume_limiter;
mod send_window;
mod shared;
mod socket_tx;
mod workers;
mod writer;

// The actors and what drives them.
#[cfg(feature = "redis")]
mod cluster;
mod hub;
mod relay;
mod session;

// Sockets: incoming messages, the pre-HELLO phase, the two kinds of socket.
mod hello;
mod joined;
mod plain_socket;
mod socket;

// The application's entry points.
mod echo;
mod handle;
mod routes;

pub use echo::{echo_route, EchoConfig};
pub use events::{ExpireReason, MessageReceived, SessionExpired, SessionOpened, SessionResumed};
pub use handle::{ReliableServer, ServerError, ServerStats};
pub use options::{
    AuthHook, AuthRefusal, FailedResumeLimit, NegotiateRateLimit, PlainMode, ServerOptions,
};
pub use routes::{reliable_route, request_token};
pub use socket::{ECHO_BUFFER_BYTES, PLAIN_CLIENT_BUFFER};
pub use store::SessionStore;
#[cfg(feature = "redis")]
pub use store::{RedisSessionStore, SessionStoreError};
