//! The WebSocket layer both ends share (DESIGN.md's `ws`): the client and
//! the server meet here and in `protocol`, never in each other's modules.

mod assembler;
mod close;
mod pong;

pub(crate) use assembler::{codec_violation, Assembler, Inbound};
pub(crate) use close::close_reason;
pub(crate) use pong::{PongAction, PongBucket, PongLimiter, PONG_BURST};
