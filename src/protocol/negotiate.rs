//! Negotiate (docs/PROTOCOL.md §1), session secrets, and the shutdown advice
//! a server sends in its 1012 close reason (§6).

use std::fmt;

use base64::Engine as _;
use rand::{rngs::OsRng, TryRngCore};
use subtle::ConstantTimeEq;

use super::{SUBPROTOCOL, VERSION};
use crate::Error;

/// The longest reconnect token a HELLO can carry, in bytes.
const MAX_TOKEN_LEN: usize = super::frame::MAX_HELLO_FIELD_LEN;

/// The JSON body of a successful negotiate (`200`).
///
/// `Debug` never shows the reconnect token (it prints `<redacted>`).
/// Unknown fields are ignored when parsing; a missing `url` is `None`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NegotiateResponse {
    /// Always [`SUBPROTOCOL`] (`"rws.reliable.v1"`).
    pub protocol: String,
    /// Always [`VERSION`] (`1`).
    pub version: u32,
    /// 32 lowercase hex digits; names the session.
    pub connection_id: String,
    /// The secret that proves the right to resume the session. Never log it
    /// or put it in a URL.
    pub reconnect_token: String,
    /// The socket URL, or `None` for the URL negotiate was derived from.
    pub url: Option<String>,
    /// How long the session outlives a socket, in milliseconds.
    pub resume_window_ms: u64,
    /// The largest data payload the server accepts, in bytes.
    pub max_message_size: usize,
    /// Each side's bound on sent-but-unacknowledged payload bytes.
    pub max_unacked_bytes: usize,
    /// The longest a receiver may hold an ack, in milliseconds.
    pub ack_interval_ms: u64,
    /// After this many unacknowledged deliveries a receiver acks at once.
    pub ack_threshold: u32,
    /// Whether the server answers PING frames with PONG (docs/PROTOCOL.md
    /// §5a). Absent (a server that predates them) is `false`: a client then
    /// must not send PING.
    #[serde(default)]
    pub ping_frames: bool,
}

impl fmt::Debug for NegotiateResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateResponse")
            .field("protocol", &self.protocol)
            .field("version", &self.version)
            .field("connection_id", &self.connection_id)
            .field("reconnect_token", &format_args!("<redacted>"))
            .field("url", &self.url)
            .field("resume_window_ms", &self.resume_window_ms)
            .field("max_message_size", &self.max_message_size)
            .field("max_unacked_bytes", &self.max_unacked_bytes)
            .field("ack_interval_ms", &self.ack_interval_ms)
            .field("ack_threshold", &self.ack_threshold)
            .field("ping_frames", &self.ping_frames)
            .finish()
    }
}

impl NegotiateResponse {
    /// Parses and checks a negotiate response body.
    ///
    /// Fails with [`Error::Negotiate`] on a body that is not the expected
    /// JSON, a `protocol` other than [`SUBPROTOCOL`], a `version` other than
    /// [`VERSION`], a `connection_id` that is not 32 lowercase hex digits, a
    /// `reconnect_token` that is empty or over 255 bytes, or a zero
    /// `resume_window_ms`, `max_message_size`, `max_unacked_bytes`,
    /// `ack_interval_ms` or `ack_threshold`. The error text never contains
    /// the reconnect token.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let neg = |msg: String| Error::Negotiate(msg);
        // Syntax errors carry only a position, never input text.
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| neg(format!("response is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(neg("response is not a JSON object".to_owned()));
        }
        // Type errors may quote input strings: scrub the token from them.
        let token = value
            .get("reconnect_token")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_owned();
        let resp: NegotiateResponse = serde_json::from_value(value).map_err(|e| {
            let mut msg = e.to_string();
            if !token.is_empty() {
                msg = msg.replace(&token, "<redacted>");
            }
            neg(format!("unexpected response body: {msg}"))
        })?;
        resp.validate()?;
        Ok(resp)
    }

    fn validate(&self) -> Result<(), Error> {
        let neg = |msg: &str| Err(Error::Negotiate(msg.to_owned()));
        if self.protocol != SUBPROTOCOL {
            return neg("the server does not speak rws.reliable.v1 (wrong `protocol`)");
        }
        if self.version != VERSION {
            return Err(Error::Negotiate(format!(
                "unsupported protocol version {} (expected {VERSION})",
                self.version
            )));
        }
        if !is_connection_id(&self.connection_id) {
            return neg("`connection_id` is not 32 lowercase hex digits");
        }
        if self.reconnect_token.is_empty() {
            return neg("`reconnect_token` is empty");
        }
        if self.reconnect_token.len() > MAX_TOKEN_LEN {
            return neg("`reconnect_token` is longer than 255 bytes");
        }
        let zero = [
            ("resume_window_ms", self.resume_window_ms == 0),
            ("max_message_size", self.max_message_size == 0),
            ("max_unacked_bytes", self.max_unacked_bytes == 0),
            ("ack_interval_ms", self.ack_interval_ms == 0),
            ("ack_threshold", self.ack_threshold == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, z)| *z) {
            return Err(Error::Negotiate(format!("`{name}` must not be 0")));
        }
        Ok(())
    }
}

/// The largest negotiate request body a server reads, in bytes.
pub const MAX_NEGOTIATE_REQUEST_BODY: usize = 4096;

/// The longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// The optional JSON body of a negotiate request (docs/PROTOCOL.md §1):
/// what the client tells the server about itself.
///
/// Both fields are optional and unknown fields are ignored, so the body is
/// compatible both ways within version 1: a server that predates it ignores
/// the body (the client still closes an oversize message with 1009, a
/// clear error), and a server that gets no body assumes no client limit
/// and uses the connection id as the client id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NegotiateParams {
    /// The client's stable id: the same for every session the client
    /// opens (also after a lost session), so that with the client's
    /// message seqs it names each message uniquely. 1 to 64 bytes of
    /// ASCII letters, digits, `-` and `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The largest data payload the client accepts, in bytes (at least 1).
    /// The server refuses to send it anything larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<usize>,
}

impl NegotiateParams {
    /// Parses and checks a negotiate request body. An empty body (or only
    /// whitespace) is the default: no client id, no limit.
    ///
    /// Fails with [`Error::Negotiate`] on a body over
    /// [`MAX_NEGOTIATE_REQUEST_BODY`] bytes, one that is not a JSON object of
    /// the expected field types, a `client_id` that is not 1 to 64 bytes of
    /// `[A-Za-z0-9_-]`, or a zero `max_message_size`. The error text does
    /// not repeat the body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let neg = |msg: &str| Err(Error::Negotiate(msg.to_owned()));
        if body.len() > MAX_NEGOTIATE_REQUEST_BODY {
            return neg("request body too large");
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(NegotiateParams::default());
        }
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return neg("request body is not valid JSON"),
        };
        if !value.is_object() {
            return neg("request body is not a JSON object");
        }
        let params: NegotiateParams = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(_) => {
                return neg("request body: `client_id` must be a string and `max_message_size` a positive integer")
            }
        };
        if let Some(id) = &params.client_id {
            if !is_client_id(id) {
                return neg("`client_id` must be 1 to 64 characters of A-Z, a-z, 0-9, - and _");
            }
        }
        if params.max_message_size == Some(0) {
            return neg("`max_message_size` must not be 0");
        }
        Ok(params)
    }

    /// The body to send (`{}` when both fields are `None`).
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Whether `s` is a valid client id (see [`NegotiateParams::client_id`]).
pub fn is_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new client id: 16 random bytes from the OS RNG as 32 lowercase hex
/// digits.
///
/// # Panics
/// If the operating system's RNG fails (no unique id can be made then).
pub fn new_client_id() -> String {
    new_connection_id()
}

fn is_connection_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The advice a server gives in the reason of its 1012 close: reconnect
/// after `reconnect_after_ms + random(0..spread_ms)` milliseconds.
///
/// Each value is capped at [`MAX_MS`](Self::MAX_MS) (10 minutes) when read
/// from a close reason, so a peer cannot park a client for ages (or make
/// the sum overflow): the longest wait it can ask for is 20 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShutdownAdvice {
    /// The least time to wait before reconnecting, in milliseconds.
    pub reconnect_after_ms: u64,
    /// The width of the random spread added to the wait, in milliseconds.
    pub spread_ms: u64,
}

impl ShutdownAdvice {
    /// The most either value may be, in milliseconds (10 minutes).
    pub const MAX_MS: u64 = 10 * 60 * 1000;

    /// The advice with each value capped at [`MAX_MS`](Self::MAX_MS).
    pub fn capped(self) -> Self {
        ShutdownAdvice {
            reconnect_after_ms: self.reconnect_after_ms.min(Self::MAX_MS),
            spread_ms: self.spread_ms.min(Self::MAX_MS),
        }
    }

    /// The wait for one client: `reconnect_after_ms` plus `spread` (the
    /// client's random pick in `0..=spread_ms`), both capped, added without
    /// overflow.
    pub fn delay(&self, spread: u64) -> std::time::Duration {
        let a = self.capped();
        std::time::Duration::from_millis(
            a.reconnect_after_ms.saturating_add(spread.min(a.spread_ms)),
        )
    }

    /// The close reason: `{"reconnect_after_ms":N,"spread_ms":M}` (at most
    /// 57 bytes, within the 123 a close reason may have).
    pub fn to_reason(&self) -> String {
        format!(
            "{{\"reconnect_after_ms\":{},\"spread_ms\":{}}}",
            self.reconnect_after_ms, self.spread_ms
        )
    }

    /// Reads the advice from a close reason, capped (see
    /// [`MAX_MS`](Self::MAX_MS)); `None` if it is not that JSON. Unknown
    /// fields are ignored.
    pub fn from_reason(s: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(s).ok()?;
        if !value.is_object() {
            return None;
        }
        serde_json::from_value::<Self>(value).ok().map(Self::capped)
    }
}

/// The negotiate URL for a socket URL: the scheme becomes `http`/`https`
/// and `/negotiate` is appended to the path (after removing trailing
/// slashes); the query is kept and a fragment dropped.
/// `ws://h:8080/ws?x=1` → `http://h:8080/ws/negotiate?x=1`.
///
/// Fails with [`Error::InvalidUrl`] when the scheme is not `ws` or `wss`,
/// the host is missing, or the URL has whitespace or control characters.
/// The error text does not repeat the URL (its query may be sensitive).
pub fn negotiate_url(socket_url: &str) -> Result<String, Error> {
    let bad = |msg: &str| Err(Error::InvalidUrl(msg.to_owned()));
    if socket_url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("URL contains whitespace or control characters");
    }
    let Some((scheme, rest)) = socket_url.split_once("://") else {
        return bad("URL has no scheme (expected ws:// or wss://)");
    };
    let http_scheme = if scheme.eq_ignore_ascii_case("ws") {
        "http"
    } else if scheme.eq_ignore_ascii_case("wss") {
        "https"
    } else {
        return bad("URL scheme must be ws or wss");
    };
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        // An IPv6 literal: `[addr]` or `[addr]:port`.
        match bracketed.split_once(']') {
            Some((addr, _)) => addr,
            None => return bad("URL has an unclosed IPv6 literal"),
        }
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return bad("URL has no host");
    }
    let mut url = format!(
        "{http_scheme}://{authority}{}/negotiate",
        path.trim_end_matches('/')
    );
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    OsRng
        .try_fill_bytes(&mut buf)
        .expect("the OS random number generator failed");
    buf
}

/// A new connection id: 16 random bytes from the OS RNG as 32 lowercase hex
/// digits.
///
/// # Panics
/// If the operating system's RNG fails (no secure id can be made then).
pub fn new_connection_id() -> String {
    use fmt::Write as _;
    let bytes = random_bytes::<16>();
    let mut s = String::with_capacity(32);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A new reconnect token: 32 random bytes from the OS RNG as unpadded
/// base64url (43 characters).
///
/// # Panics
/// If the operating system's RNG fails (no secure token can be made then).
pub fn new_reconnect_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Compares two tokens in constant time (for equal lengths; the lengths
/// themselves are not secret).
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests;
