//! The reliable protocol, version 1 (see `docs/PROTOCOL.md`): exactly-once,
//! in-order delivery across dropped connections.
//!
//! This module is the wire layer shared by the client and the server:
//! - `frame`: the binary frames (HELLO, WELCOME, DATA, ACK) and their
//!   encoding ([`Frame`], [`encode_data`], [`FrameError`]);
//! - `negotiate`: the negotiate request body ([`NegotiateParams`]) and
//!   response ([`NegotiateResponse`]), the
//!   negotiate URL ([`negotiate_url`]), session ids and reconnect tokens
//!   ([`new_connection_id`], [`new_reconnect_token`], [`tokens_equal`]) and
//!   the shutdown advice of a 1012 close ([`ShutdownAdvice`]);
//! - [`sequence`]: the sequence rules (§4–§5) both ends apply, a
//!   [`Sender`](sequence::Sender) and a [`Receiver`](sequence::Receiver).
//!
//! The close codes the protocol uses are in [`close_code`](crate::close_code)
//! ([`SERVICE_RESTART`](crate::close_code::SERVICE_RESTART),
//! [`SESSION_GONE`](crate::close_code::SESSION_GONE),
//! [`REPLACED`](crate::close_code::REPLACED)).

// Private files, public items: each item has one path, `protocol::X`; the
// sequence rules keep their own namespace (`Sender`, `Receiver`, `Verdict`
// name the protocol's two halves, not general-purpose types).
mod frame;
mod negotiate;
pub mod sequence;

pub use frame::{
    encode_data, Frame, FrameError, MAX_DATA_HEADER_LEN, MAX_HELLO_FIELD_LEN, MAX_HELLO_LEN,
};
pub use negotiate::{
    is_client_id, negotiate_url, new_client_id, new_connection_id, new_reconnect_token,
    tokens_equal, NegotiateParams, NegotiateResponse, ShutdownAdvice, MAX_CLIENT_ID_LEN,
    MAX_NEGOTIATE_REQUEST_BODY,
};

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) of the reliable
/// protocol, also the `protocol` field of the negotiate response.
pub const SUBPROTOCOL: &str = "rws.reliable.v1";

/// The protocol version, the `version` field of the negotiate response.
pub const VERSION: u32 = 1;
