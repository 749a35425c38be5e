//! The client: the facade and the actors behind it.

mod admission;
mod connection;
mod facade;
mod heartbeat;
pub(crate) mod inbound;
mod queue_actor;
mod reconnect;
mod reliable;
mod shared;
mod stats;
mod store_writer;
mod subscribers;
mod transport;
mod write_load;

pub use connection::ConnectionActor;
pub use facade::{ResilientWebSocket, ResilientWebSocketBuilder};
pub use heartbeat::HeartbeatActor;
pub use queue_actor::{messages::OutgoingMessage, QueueActor};
pub use reconnect::ReconnectSupervisor;
pub use stats::Stats;
