//! A test kit for code that talks over WebSockets: real servers on
//! 127.0.0.1 port 0, started inside the test's actix `System`.
//! [`FaultProxy`] sits between a client and a server to inject network
//! faults (cuts, a silently dead link, latency, refused connections).
//!
//! # Examples
//! ```
//! use resilient_ws::{testing::TestServer, ResilientWebSocket};
//!
//! #[actix::main]
//! async fn main() {
//!     let server = TestServer::echo().await.unwrap();
//!     let ws = ResilientWebSocket::builder(server.ws_url()).connect().await.unwrap();
//!     ws.send("ping me").await.unwrap();
//!     ws.disconnect().await.unwrap();
//!     server.stop().await;
//! }
//! ```

mod proxy;
mod raw;
mod recorder;
mod server;

pub use proxy::{FaultProxy, ProxiedConnection};
pub use raw::{opcode, RawConn, RawFrame, RawServer, UpgradeRequest};
pub use recorder::{EventRecorder, RecordedEvent};
pub use server::TestServer;
