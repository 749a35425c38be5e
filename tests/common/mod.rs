//! Helpers shared by the integration tests (each test file that needs them
//! says `mod common;`). They exist so that the scaffolding every test file
//! used to write for itself (a client built for quick reconnects, a bounded
//! poll, what the server application received, a scripted protocol peer, a
//! child process that must not outlive its test) is written once and means
//! the same thing everywhere.
//!
//! By theme, all re-exported here so a test says `use common::{..}`:
//! - `client`: clients built for tests, bounded waits;
//! - `delivery`: exactly-once-in-order assertions;
//! - `server_app`: what a `ReliableServer`'s application saw (`Inbox`,
//!   `ServerEvents`), a held subscriber (`Slow`);
//! - `raw_client`: a scripted client of the reliable protocol over a
//!   `RawConn` (negotiate, HELLO, frames, reading up to a Close);
//! - `test_peer`: a scripted protocol client over awc (`TestPeer`);
//! - `raw_server`: a scripted server (negotiate answers, WELCOME, a
//!   hand-answered upgrade on a std `TcpStream`);
//! - `process`: `ChildGuard`, the `rws` binary, `rws serve` as a child
//!   (`RwsServe`);
//! - `cli` (not re-exported: `use common::cli::*`): running `rws` with a
//!   deadline and talking to it line by line, for `tests/cli_*.rs`;
//! - `tls`: self-signed certificates and the configs that trust them;
//! - `redis` (with the `redis` feature): a real `redis-server` per test
//!   (`TestRedis`), or the one `.ci/run` started.
//!
//! Every wait here is bounded, so a broken test fails instead of hanging.

// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub mod cli;
mod client;
mod delivery;
mod process;
mod raw_client;
mod raw_server;
#[cfg(feature = "redis")]
mod redis;
mod server_app;
mod test_peer;
mod tls;

pub use client::*;
pub use delivery::*;
pub use process::*;
pub use raw_client::*;
pub use raw_server::*;
#[cfg(feature = "redis")]
pub use redis::*;
pub use server_app::*;
pub use test_peer::*;
pub use tls::*;

/// How long one step of a scripted peer may take (a negotiate, a handshake,
/// reading up to a Close) before the test fails. Generous: the suite runs
/// on a loaded machine, and it only matters when something is broken.
const STEP: Duration = Duration::from_secs(20);
