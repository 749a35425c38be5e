//! The binary frames of the reliable protocol (docs/PROTOCOL.md §3).
//!
//! Every protocol frame is one binary WebSocket message whose first byte is
//! the frame type:
//!
//! | type | frame | body after the type byte |
//! | --- | --- | --- |
//! | `0x01` | HELLO | `id_len: u8`, id, `tok_len: u8`, token, `last_received: varint`, `first_seq: varint` |
//! | `0x02` | WELCOME | `flags: u8` (bit 0: resumed), `last_received: varint` |
//! | `0x03` | DATA (text) | `seq: varint`, UTF-8 payload to the end |
//! | `0x04` | DATA (binary) | `seq: varint`, payload to the end |
//! | `0x05` | ACK | `seq: varint` |
//! | `0x06` | PING | `nonce: varint` (client → server, §5a) |
//! | `0x07` | PONG | `nonce: varint` (the PING's) |
//!
//! `varint` is unsigned LEB128, at most 10 bytes.
//!
//! Decoding is strict where the spec says a frame is malformed (unknown
//! type, a frame shorter than its fields, a varint over 10 bytes or over
//! `u64::MAX`, invalid UTF-8) and lenient elsewhere, for forward
//! compatibility: bytes after the last field of a HELLO, WELCOME, ACK, PING
//! or PONG are
//! ignored, WELCOME flag bits other than bit 0 are ignored, and a varint
//! padded with redundant zero groups (still within 10 bytes) is accepted.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::Payload;

const TYPE_HELLO: u8 = 0x01;
const TYPE_WELCOME: u8 = 0x02;
const TYPE_DATA_TEXT: u8 = 0x03;
const TYPE_DATA_BINARY: u8 = 0x04;
const TYPE_ACK: u8 = 0x05;
const TYPE_PING: u8 = 0x06;
const TYPE_PONG: u8 = 0x07;

/// WELCOME flag bit 0: the session was resumed.
const FLAG_RESUMED: u8 = 0x01;

/// The longest varint on the wire.
const MAX_VARINT_LEN: usize = 10;

/// The longest connection id or reconnect token a HELLO can carry (their
/// lengths are one byte on the wire).
pub const MAX_HELLO_FIELD_LEN: usize = u8::MAX as usize;

/// The most bytes a DATA frame adds to its payload: the type byte and a
/// 10-byte varint. A receiver whose payload limit is `max` accepts
/// WebSocket messages of `max + MAX_DATA_HEADER_LEN` bytes and checks the
/// payload itself.
pub const MAX_DATA_HEADER_LEN: usize = 1 + MAX_VARINT_LEN;

/// The largest HELLO message, in bytes: the type byte, two length-prefixed
/// fields of at most [`MAX_HELLO_FIELD_LEN`] bytes and two 10-byte varints
/// (533). A server reads no more than this from a socket before its HELLO
/// (docs/PROTOCOL.md §4).
pub const MAX_HELLO_LEN: usize = 1 + 2 * (1 + MAX_HELLO_FIELD_LEN) + 2 * MAX_VARINT_LEN;

/// One frame of the reliable protocol.
///
/// `Debug` never shows the reconnect token of a HELLO (it prints
/// `<redacted>`), so a frame can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → server, the first frame on every socket.
    ///
    /// `connection_id` and `reconnect_token` must each be at most 255 bytes
    /// ([`MAX_HELLO_FIELD_LEN`]); build one with [`Frame::hello`] to have
    /// that checked.
    Hello {
        /// The session's id from negotiate.
        connection_id: String,
        /// The session's secret from negotiate.
        reconnect_token: String,
        /// The highest server seq the client has delivered (0 if none).
        last_received: u64,
        /// The seq the client's first data message of this session carries.
        first_seq: u64,
    },
    /// Server → client, the answer to a HELLO.
    Welcome {
        /// Whether this is not the session's first socket.
        resumed: bool,
        /// The highest client seq the server has delivered.
        last_received: u64,
    },
    /// A numbered data message, either direction.
    Data {
        /// The message's sequence number.
        seq: u64,
        /// The message body (type `0x03` for text, `0x04` for binary).
        payload: Payload,
    },
    /// A cumulative acknowledgement: everything up to `seq` was delivered.
    Ack {
        /// The highest seq delivered.
        seq: u64,
    },
    /// Client → server keep-alive (docs/PROTOCOL.md §5a), sent only to a
    /// server whose negotiate answered `ping_frames: true`: for clients that
    /// cannot send WebSocket pings (a browser page).
    Ping {
        /// The client's value, echoed in the PONG (its clock, for the
        /// round-trip time).
        nonce: u64,
    },
    /// Server → client, the answer to a [`Frame::Ping`].
    Pong {
        /// The PING's nonce.
        nonce: u64,
    },
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Hello {
                connection_id,
                reconnect_token: _,
                last_received,
                first_seq,
            } => f
                .debug_struct("Hello")
                .field("connection_id", connection_id)
                .field("reconnect_token", &format_args!("<redacted>"))
                .field("last_received", last_received)
                .field("first_seq", first_seq)
                .finish(),
            Frame::Welcome {
                resumed,
                last_received,
            } => f
                .debug_struct("Welcome")
                .field("resumed", resumed)
                .field("last_received", last_received)
                .finish(),
            Frame::Data { seq, payload } => f
                .debug_struct("Data")
                .field("seq", seq)
                .field("payload", payload)
                .finish(),
            Frame::Ack { seq } => f.debug_struct("Ack").field("seq", seq).finish(),
            Frame::Ping { nonce } => f.debug_struct("Ping").field("nonce", nonce).finish(),
            Frame::Pong { nonce } => f.debug_struct("Pong").field("nonce", nonce).finish(),
        }
    }
}

/// Why a binary message is not a valid frame. Every case is a protocol
/// violation: the receiver closes the socket with [`FrameError::close_code`].
///
/// The `Display` text never contains frame contents (no token, no payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The message has no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The first byte is not a known frame type.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The message ended before the named field was complete.
    #[error("frame truncated in field `{0}`")]
    Truncated(&'static str),
    /// A varint had more than 10 bytes or a value over `u64::MAX`.
    #[error("varint longer than 10 bytes or larger than u64")]
    VarintTooLong,
    /// A text payload, connection id or reconnect token is not valid UTF-8.
    #[error("invalid UTF-8 in frame")]
    InvalidUtf8,
    /// The named field is longer than the 255 bytes the wire format allows
    /// (only [`Frame::hello`] reports this; decoding cannot produce it).
    #[error("field `{0}` is longer than 255 bytes")]
    FieldTooLong(&'static str),
}

impl FrameError {
    /// The WebSocket close code a receiver of a malformed frame closes with:
    /// always 1002 ([`PROTOCOL_ERROR`](crate::close_code::PROTOCOL_ERROR)),
    /// as the protocol lists every malformed frame as a protocol violation.
    pub fn close_code(&self) -> u16 {
        crate::close_code::PROTOCOL_ERROR
    }
}

impl Frame {
    /// Builds a HELLO, checking that the id and the token fit the wire
    /// format (at most 255 bytes each).
    pub fn hello(
        connection_id: impl Into<String>,
        reconnect_token: impl Into<String>,
        last_received: u64,
        first_seq: u64,
    ) -> Result<Frame, FrameError> {
        let connection_id = connection_id.into();
        let reconnect_token = reconnect_token.into();
        if connection_id.len() > MAX_HELLO_FIELD_LEN {
            return Err(FrameError::FieldTooLong("connection_id"));
        }
        if reconnect_token.len() > MAX_HELLO_FIELD_LEN {
            return Err(FrameError::FieldTooLong("reconnect_token"));
        }
        Ok(Frame::Hello {
            connection_id,
            reconnect_token,
            last_received,
            first_seq,
        })
    }

    /// Appends this frame's wire bytes to `out`.
    ///
    /// Encoding cannot fail. A HELLO built by hand (not through
    /// [`Frame::hello`]) whose id or token is over 255 bytes is a bug: debug
    /// builds panic on it, release builds cut the field to its longest
    /// prefix of at most 255 bytes that ends on a character boundary (such a
    /// HELLO can never match a session, so the server answers 4001).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello {
                connection_id,
                reconnect_token,
                last_received,
                first_seq,
            } => {
                debug_assert!(
                    connection_id.len() <= MAX_HELLO_FIELD_LEN,
                    "HELLO connection_id over 255 bytes"
                );
                debug_assert!(
                    reconnect_token.len() <= MAX_HELLO_FIELD_LEN,
                    "HELLO reconnect_token over 255 bytes"
                );
                let id = clamp_field(connection_id);
                let tok = clamp_field(reconnect_token);
                out.reserve(1 + 1 + id.len() + 1 + tok.len() + 2 * MAX_VARINT_LEN);
                out.put_u8(TYPE_HELLO);
                out.put_u8(id.len() as u8);
                out.put_slice(id.as_bytes());
                out.put_u8(tok.len() as u8);
                out.put_slice(tok.as_bytes());
                put_varint(out, *last_received);
                put_varint(out, *first_seq);
            }
            Frame::Welcome {
                resumed,
                last_received,
            } => {
                out.reserve(2 + MAX_VARINT_LEN);
                out.put_u8(TYPE_WELCOME);
                out.put_u8(if *resumed { FLAG_RESUMED } else { 0 });
                put_varint(out, *last_received);
            }
            Frame::Data { seq, payload } => put_data(out, *seq, payload),
            Frame::Ack { seq } => put_typed_varint(out, TYPE_ACK, *seq),
            Frame::Ping { nonce } => put_typed_varint(out, TYPE_PING, *nonce),
            Frame::Pong { nonce } => put_typed_varint(out, TYPE_PONG, *nonce),
        }
    }

    /// This frame's wire bytes, ready to send as one binary WebSocket
    /// message.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Parses one binary WebSocket message.
    ///
    /// DATA payloads are not copied: a binary payload is a slice of `buf`,
    /// and a text payload is that slice checked for UTF-8.
    pub fn decode(buf: Bytes) -> Result<Frame, FrameError> {
        let (&ty, _) = buf.split_first().ok_or(FrameError::Empty)?;
        let mut pos = 1;
        match ty {
            TYPE_HELLO => {
                let connection_id = read_short_str(&buf, &mut pos, "id_len", "connection_id")?;
                let reconnect_token = read_short_str(&buf, &mut pos, "tok_len", "reconnect_token")?;
                let last_received = read_varint(&buf, &mut pos, "last_received")?;
                let first_seq = read_varint(&buf, &mut pos, "first_seq")?;
                Ok(Frame::Hello {
                    connection_id,
                    reconnect_token,
                    last_received,
                    first_seq,
                })
            }
            TYPE_WELCOME => {
                let flags = *buf.get(pos).ok_or(FrameError::Truncated("flags"))?;
                pos += 1;
                let last_received = read_varint(&buf, &mut pos, "last_received")?;
                Ok(Frame::Welcome {
                    resumed: flags & FLAG_RESUMED != 0,
                    last_received,
                })
            }
            TYPE_DATA_TEXT | TYPE_DATA_BINARY => {
                let seq = read_varint(&buf, &mut pos, "seq")?;
                // `buf` itself becomes the body: `slice` would clone it, and
                // cloning a `Bytes` that came from a `Vec` allocates.
                let mut body = buf;
                body.advance(pos);
                let payload = if ty == TYPE_DATA_TEXT {
                    Payload::Text(ByteString::try_from(body).map_err(|_| FrameError::InvalidUtf8)?)
                } else {
                    Payload::Binary(body)
                };
                Ok(Frame::Data { seq, payload })
            }
            TYPE_ACK => {
                let seq = read_varint(&buf, &mut pos, "seq")?;
                Ok(Frame::Ack { seq })
            }
            TYPE_PING => {
                let nonce = read_varint(&buf, &mut pos, "nonce")?;
                Ok(Frame::Ping { nonce })
            }
            TYPE_PONG => {
                let nonce = read_varint(&buf, &mut pos, "nonce")?;
                Ok(Frame::Pong { nonce })
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// Encodes a DATA frame without building a [`Frame`] (the hot path): the
/// wire bytes of `Frame::Data { seq, payload }`. The payload is copied once,
/// behind a header of 2 to 11 bytes.
///
/// Meant for frames that are written and dropped: a small frame (up to
/// 4 KiB) is cut from a per-thread buffer rather than allocated on its
/// own, so it keeps that buffer's chunk (8 KiB) alive while it lives. To
/// keep frames for long, use [`Frame::to_bytes`], which allocates exactly.
pub fn encode_data(seq: u64, payload: &Payload) -> Bytes {
    let len = data_len(seq, payload);
    if len > SCRATCH_MAX_FRAME {
        let mut out = BytesMut::with_capacity(len);
        put_data(&mut out, seq, payload);
        return out.freeze();
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.capacity() < len {
            // Reuses the chunk when every frame cut from it was dropped
            // (the usual case: written and gone), else takes a new one.
            scratch.reserve(SCRATCH_CHUNK);
        }
        put_data(&mut scratch, seq, payload);
        scratch.split().freeze()
    })
}

/// The largest frame [`encode_data`] cuts from the per-thread buffer.
const SCRATCH_MAX_FRAME: usize = 4096;

/// The per-thread buffer's chunk size. Every DATA frame cost a `malloc`
/// and a `free` before (a visible share of the stateful throughput
/// profile); now about one per hundred small frames does.
const SCRATCH_CHUNK: usize = 8192;

thread_local! {
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

fn data_len(seq: u64, payload: &Payload) -> usize {
    1 + varint_len(seq) + payload.len()
}

fn put_data(out: &mut BytesMut, seq: u64, payload: &Payload) {
    let ty = match payload {
        Payload::Text(_) => TYPE_DATA_TEXT,
        Payload::Binary(_) => TYPE_DATA_BINARY,
    };
    let body = payload.as_bytes();
    out.reserve(data_len(seq, payload));
    out.put_u8(ty);
    put_varint(out, seq);
    out.put_slice(body);
}

/// The longest prefix of `s` of at most 255 bytes ending on a character
/// boundary.
fn clamp_field(s: &str) -> &str {
    if s.len() <= MAX_HELLO_FIELD_LEN {
        return s;
    }
    let mut end = MAX_HELLO_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The number of bytes `v` takes as a varint (1 to 10).
fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as unsigned LEB128.
/// A frame that is its type byte and one varint (ACK, PING, PONG).
fn put_typed_varint(out: &mut BytesMut, ty: u8, v: u64) {
    out.reserve(1 + MAX_VARINT_LEN);
    out.put_u8(ty);
    put_varint(out, v);
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Reads an unsigned LEB128 varint at `*pos`, advancing `*pos` past it.
fn read_varint(buf: &[u8], pos: &mut usize, field: &'static str) -> Result<u64, FrameError> {
    let mut value: u64 = 0;
    for i in 0..MAX_VARINT_LEN {
        let byte = *buf.get(*pos + i).ok_or(FrameError::Truncated(field))?;
        let group = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && group > 1 {
            // The 10th group holds only bit 63.
            return Err(FrameError::VarintTooLong);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(FrameError::VarintTooLong)
}

/// Reads a `len: u8` followed by `len` bytes of UTF-8.
fn read_short_str(
    buf: &[u8],
    pos: &mut usize,
    len_field: &'static str,
    field: &'static str,
) -> Result<String, FrameError> {
    let len = usize::from(*buf.get(*pos).ok_or(FrameError::Truncated(len_field))?);
    *pos += 1;
    let bytes = buf
        .get(*pos..*pos + len)
        .ok_or(FrameError::Truncated(field))?;
    *pos += len;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| FrameError::InvalidUtf8)
}

#[cfg(test)]
mod tests;
