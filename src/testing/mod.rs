//! A test kit for code that talks over WebSockets: real servers on
//! 127.0.0.1 port 0, started inside the test's actix `System`.
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

mod raw;
mod recorder;
mod server;

pub use raw::{opcode, RawConn, RawFrame, RawServer, UpgradeRequest};
pub use recorder::{EventRecorder, RecordedEvent};
pub use server::TestServer;
