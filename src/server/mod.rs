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
//! actix-web runs the app factory on every worker thread, and an actor
//! lives on the thread that started it. So:
//! - the hub actor and every session actor live on the arbiter that called
//!   [`ReliableServer::start`]; handlers on any worker reach them through
//!   `Send` addresses (negotiate asks the hub to create a session);
//! - a socket's I/O (the actix-ws `Session` and `MessageStream`) stays on the
//!   worker that accepted it, in two tasks: a reader that decodes frames,
//!   does the per-socket checks and hands the session actor *batches* of
//!   frames with `do_send` (no round trip per message), and a writer that
//!   drains an unbounded channel the session actor pushes frames into
//!   (bounded in practice by `max_unacked_bytes`);
//! - events go straight from the session actor to the subscribed
//!   `Recipient`s.
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
