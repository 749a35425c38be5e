//! The client: the actors behind the handle
//! ([`ResilientWebSocket`](crate::ResilientWebSocket), at the crate root).

mod admission;
pub(crate) mod builder;
mod builder_options;
mod connection;
pub(crate) mod event_stream;
pub(crate) mod facade;
mod heartbeat;
pub(crate) mod inbound;
mod on_connect;
mod queue_actor;
pub(crate) mod receipt;
mod reconnect;
mod reliable;
mod shared;
pub(crate) mod stats;
mod store_writer;
mod subscribers;
mod transport;
mod write_load;

// The four actors, for tests of one actor alone. The handle, its builder
// and `Stats` have their one public path at the crate root.
pub use connection::ConnectionActor;
pub use heartbeat::HeartbeatActor;
pub use on_connect::OnConnect;
pub use queue_actor::{messages::OutgoingMessage, QueueActor};
pub use reconnect::ReconnectSupervisor;
