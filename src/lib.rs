//! A resilient WebSocket framework for [actix](https://docs.rs/actix): a
//! client that survives network faults without losing messages, and a server
//! (actix-web + actix-ws) that lets it resume.
//!
//! ```no_run
//! use actix::prelude::*;
//! use resilient_ws::{IncomingMessage, ResilientWebSocket};
//!
//! struct Printer;
//! impl Actor for Printer {
//!     type Context = Context<Self>;
//! }
//! impl Handler<IncomingMessage> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
//!         println!("got {:?}", msg.payload);
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), resilient_ws::Error> {
//!     let printer = Printer.start();
//!     let ws = ResilientWebSocket::builder("ws://127.0.0.1:8080/ws")
//!         .on_message(printer.recipient())
//!         .connect()
//!         .await?;
//!     ws.send("hello").await?;
//!     ws.send_json(&serde_json::json!({"n": 1})).await?;
//!     ws.disconnect().await // writes what was sent, then closes with 1000
//! }
//! ```
//!
//! # The client: four actors behind one handle
//!
//! [`ResilientWebSocket`] is a cheap, cloneable handle to four actors that
//! talk only through typed messages:
//! - the **`ConnectionActor`** owns the awc socket and its codec. It runs
//!   under `actix::Supervisor`, and every socket end is a stop: its restart
//!   *is* the reconnect, rebuilding every socket-bound thing from scratch.
//! - the **`QueueActor`** holds the outbox, the unacknowledged messages and
//!   the session's sequence state. It outlives every restart of the
//!   connection, which is what lets a session resume.
//! - the **`HeartbeatActor`** pings every `heartbeat_interval` and reports a
//!   link on which nothing arrived in time (a half-open connection).
//! - the **`ReconnectSupervisor`** counts attempts and asks the
//!   [`RetryPolicy`] (by default [`ExponentialBackoff`], full jitter) how
//!   long to wait, or whether to give up.
//!
//! Events ([`StateChanged`], [`IncomingMessage`], [`ErrorEvent`],
//! [`Closed`], [`Reconnecting`], [`Reconnected`], [`SessionLost`],
//! [`MessageDropped`]) fan out to the `Recipient`s you subscribe. Dropping
//! the last handle closes the client like `disconnect()` and stops its
//! actors.
//!
//! # Modes
//!
//! [`ReconnectMode`] says what a lost connection costs:
//! - `None`: the client ends in `Disconnected` with the error.
//! - `Stateless` (the default): it reconnects to a fresh session against any
//!   RFC 6455 server; the outbox survives, a message written to a socket
//!   that died may be lost (at most once).
//! - `Stateful`: the reliable protocol (`docs/PROTOCOL.md` in the
//!   repository) with a server from this crate ([`server::ReliableServer`]):
//!   every message is delivered exactly once and in order, both directions,
//!   across any number of drops while the server keeps the session; after a
//!   lost session, at least once, each message with its id.
//!
//! # Durability
//!
//! With a store (`ResilientWebSocketBuilder::durable_store`, a redb file, or
//! your own [`queue::QueueStore`]) `send()` returns once its message is on
//! disk, and a client started again on the same store resumes its session:
//! what `send()` accepted survives a crash of the process.
//!
//! # The test kit
//!
//! [`testing`] has what this crate's own tests use, for tests of your
//! actors against real sockets on 127.0.0.1: `TestServer` (echo and
//! reliable servers on port 0), `RawServer` (a scripted, misbehaving peer),
//! `FaultProxy` (cuts, half-open links, latency, refusals) and
//! `EventRecorder` (waits for a client's events with a timeout).
//!
//! # Features
//!
//! `client`, `server` (actix-web), `durable` (redb) and `testing` are on by
//! default; `cli` builds the `rws` command; `metrics` reports counters,
//! gauges and histograms through the `metrics` facade ([`metrics`]). A
//! client-only build (`default-features = false, features = ["client"]`)
//! compiles no web server, database or argument parser.
//!
//! # Layout
//!
//! Each layer uses only the layers below it; client and server meet only in
//! `protocol` and `ws`.
//! - `src/bin/rws/`: the `rws` command (`serve`, `connect`, `demo`):
//!   `args.rs`, `serve.rs`, `connect.rs`, `stdin.rs`, `printer.rs`,
//!   `signals.rs`, `parse.rs`, `static_files.rs`, `demo.rs` (needs the `cli`
//!   feature).
//! - [`testing`] (`src/testing/`): the test kit (`server.rs`, `raw.rs`,
//!   `proxy.rs`, `recorder.rs`).
//! - [`client`] (`src/client/`): `facade.rs` ([`ResilientWebSocket`]),
//!   `builder.rs` (its builder, which starts the actors), `admission.rs`
//!   (the checks before a message is handed over, and the outbox's
//!   credits) and one folder or file per actor:
//!   `connection/` (the socket and close handshake, lifecycle, reliable
//!   receive, acks, pings, its messages), `queue_actor.rs` (+
//!   `queue_actor/`: `messages.rs`, `admit.rs` taking messages in,
//!   `flow.rs` batches, window and close, `durable.rs` the store's side),
//!   `heartbeat.rs`,
//!   `reconnect.rs`; below them `shared.rs` (state the actors publish),
//!   `transport.rs` (negotiate, the awc upgrade; `transport/`: the awc
//!   client and TLS, URLs and the token), `inbound.rs`
//!   (backpressure to slow subscribers), `store_writer.rs` (the durable
//!   store's group commit), `stats.rs`.
//! - [`server`] (`src/server/`): `routes.rs` and `handle.rs`
//!   ([`server::ReliableServer`]); the session actor in `session/`; the
//!   sockets (`socket.rs`, `plain_socket.rs`, `hello.rs`, `keep_alive.rs`,
//!   `writer.rs`, `socket_tx.rs`); the registry and the state below them
//!   (`hub.rs`, `registry.rs`, `shared.rs`, `send_window.rs`,
//!   `resume_limiter.rs`, `admission.rs`, `relay.rs`, `plain_clients.rs`);
//!   its options, events, errors and stats.
//! - [`protocol`] (`src/protocol/`): the reliable protocol's frames,
//!   negotiate, and its sequence rules ([`protocol::sequence`]: one
//!   `Sender` and one `Receiver`, plain types used by both ends).
//! - `ws` (`src/ws/`, internal): what both ends do alike with WebSocket
//!   frames: fragment assembly and limits, codec errors to close codes, the
//!   pong throttle, close reasons.
//! - The vocabulary, depending on nothing above it (its types are at the
//!   crate root): `events.rs`, `options.rs`, `error.rs`, `retry.rs`,
//!   [`close_code`]; below it the shared nouns `payload.rs`, `message.rs`,
//!   `overflow.rs`, `store_error.rs`; and [`queue`] (`src/queue/`):
//!   [`queue::MessageQueue`] (`message_queue.rs`, its `options.rs` and
//!   `outcome.rs`) and the stores (`store.rs`: `QueueStore`,
//!   `MemoryStore`; `redb_store.rs`: `RedbStore`).
//! - [`metrics`] (`src/metrics/`, the `metrics` feature): a reporter per
//!   client (`client.rs`) or server (`server.rs`) that observes their
//!   events and stats from above and reports them through the `metrics`
//!   facade.
//! - `fanout.rs`: one subscriber list with the fan-out rule, for both ends.
//!
//! Beside `src/`: `tests/` (integration tests against real peers on
//! 127.0.0.1, helpers in `tests/common/`), `examples/` (`echo_client`, and
//! `actix_web_app`: the client inside an actix-web app's own actor),
//! `benches/` (docs/PERFORMANCE.md), `fuzz/` (the parsers' fuzz targets).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The bottom: nouns every layer shares, depending on nothing in the crate
// but each other (DESIGN.md's layers). The vocabulary and the queue both
// build on them, so neither needs the other.
pub mod close_code;
mod error;
mod message;
mod overflow;
mod payload;
mod store_error;

// The client's vocabulary: its options, events and retry policies.
#[cfg(feature = "client")]
mod events;
#[cfg(feature = "client")]
mod options;
#[cfg(feature = "client")]
mod retry;

// What both ends share, then the two ends and the test kit.
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(any(feature = "client", feature = "server"))]
mod fanout;
pub mod protocol;
pub mod queue;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
// Reports through the `metrics` facade; it observes the ends from above
// (their events and stats), so it sits beside the test kit.
#[cfg(all(feature = "metrics", any(feature = "client", feature = "server")))]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
// The shared layer: a one-ended build (client or server only) leaves the
// other end's part of it unused, which is expected, not dead code.
#[cfg_attr(
    not(all(feature = "client", feature = "server")),
    allow(dead_code, unused_imports)
)]
mod ws;

// One public path per type: the everyday types here at the root (their
// files are private modules); the rest in `client` (the actors), `server`,
// `queue`, `protocol`, `testing` and `close_code`.
pub use error::{Error, Result};
pub use overflow::OverflowPolicy;
pub use payload::Payload;

#[cfg(feature = "client")]
pub use client::event_stream::{ClientEvent, EventStream};
#[cfg(feature = "client")]
pub use client::stats::Stats;
#[cfg(feature = "client")]
pub use client::{builder::ResilientWebSocketBuilder, facade::ResilientWebSocket};
#[cfg(feature = "client")]
pub use client::{receipt::Receipt, OnConnect};
#[cfg(feature = "client")]
pub use events::{
    Closed, ConnectionState, ErrorEvent, IncomingMessage, MessageDropped, Reconnected,
    Reconnecting, SessionLost, StateChanged,
};
#[cfg(feature = "client")]
pub use options::{
    ClientOptions, NegotiateHook, NegotiateRequest, Negotiated, ReconnectMode, TokenProvider,
    UrlProvider,
};
#[cfg(feature = "client")]
pub use retry::{ExponentialBackoff, RetryContext, RetryPolicy, SharedRetryPolicy};

/// The README's Rust examples, compiled as doctests so they cannot rot
/// (with the README's test command, `cargo test -F cli`: the tour uses the
/// Redis store too).
#[cfg(all(doctest, feature = "testing", feature = "redis"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
