//! The `ConnectionActor`: owns one socket at a time, under `actix::Supervisor`.
//!
//! Every socket-bound thing (the awc stream, the `SinkWrite`, the close
//! timer) lives in the actor's context, and a socket that ends always ends in
//! `ctx.stop()`. The Supervisor then restarts the actor, which drops every
//! context item of the old socket, and `started()` builds a new one. So a
//! restart *is* the stateless reconnect, and nothing of an old socket can
//! outlive it. What must survive (options, subscribers, waiters, buffered
//! messages) lives in the actor's fields.
//!
//! One concern per file: `actor` holds the actor's state and its links to
//! the other actors, `messages` what it handles, `socket` one open
//! socket; the behaviour is split into `lifecycle` (connect, restart,
//! failover, retry), `close` (the close handshake and failing a socket),
//! `receive` (inbound frames and the reliable receive side), `acks`
//! (the ack timer), `write` (batches from the outbox) and `ping`
//! (heartbeat pings, pong RTT, answering the peer's pings). Each impl file
//! imports the actor and the socket types; none imports another impl file.

mod acks;
mod actor;
mod close;
mod lifecycle;
pub(crate) mod messages;
mod ping;
mod receive;
mod socket;
#[cfg(all(test, feature = "testing"))]
mod tests;
mod write;

pub use actor::ConnectionActor;
pub(crate) use actor::Links;
