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

pub mod client;
pub mod close_code;
pub mod error;
pub mod events;
mod fanout;
pub mod options;
pub mod protocol;
pub mod queue;
pub mod retry;
pub mod server;
pub mod testing;
mod ws;

pub use client::Stats;
pub use client::{ResilientWebSocket, ResilientWebSocketBuilder};
pub use error::{Error, Result};
pub use events::{
    Closed, ConnectionState, ErrorEvent, IncomingMessage, MessageDropped, Payload, Reconnected,
    Reconnecting, SessionLost, StateChanged,
};
pub use options::{
    ClientOptions, NegotiateHook, NegotiateRequest, Negotiated, OverflowPolicy, ReconnectMode,
    TokenProvider, UrlProvider,
};
pub use retry::{ExponentialBackoff, RetryContext, RetryPolicy};

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
