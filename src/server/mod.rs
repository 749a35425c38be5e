//! The server side: actix-web routes backed by actix-ws.
//!
//! Today: a plain echo endpoint (any RFC 6455 client can talk to it). The
//! reliable-protocol server (sessions that outlive sockets) builds on this.

mod echo;

pub use echo::{echo_route, EchoConfig};
