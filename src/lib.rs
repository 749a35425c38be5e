//! # resilient-ws
//!
//! A resilient WebSocket framework for [actix](https://docs.rs/actix): a
//! client that survives network faults without losing messages, and a server
//! that lets it resume.
//!
//! The client is a small set of actors behind one handle,
//! [`ResilientWebSocket`]: a supervised [`ConnectionActor`](client::ConnectionActor)
//! owns the awc socket; events ([`StateChanged`], [`IncomingMessage`],
//! [`ErrorEvent`], [`Closed`]) fan out to the `Recipient`s you subscribe.
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
//!     ws.disconnect().await
//! }
//! ```
//!
//! ## Layout
//! - `client/`: the facade ([`ResilientWebSocket`]), the `ConnectionActor`,
//!   the frame assembler (fragments, UTF-8, size limit), awc transport, and
//!   event fan-out.
//! - [`server`]: actix-web + actix-ws endpoints.
//! - `ws` (internal): what both ends do alike with WebSocket frames
//!   (fragment assembly and limits, codec errors to close codes, pongs).
//! - [`testing`]: test servers on port 0 for your own actor-level tests.
//! - [`events`], [`options`], [`error`], [`close_code`]: the public types.

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
pub use client::facade::{ResilientWebSocket, ResilientWebSocketBuilder};
#[cfg(feature = "client")]
pub use client::stats::Stats;
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

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
