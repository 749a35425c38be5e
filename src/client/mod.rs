//! The client: the facade and the actors behind it.

mod connection;
mod facade;
mod inbound;
mod subscribers;
mod transport;

pub use connection::ConnectionActor;
pub use facade::{ResilientWebSocket, ResilientWebSocketBuilder};
