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
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const TOKEN: &str = "Qm9vZ2llV29vZ2llQm9vZ2llV29vZ2llQm9vZ2llV29";

    fn valid() -> Value {
        json!({
            "protocol": "rws.reliable.v1",
            "version": 1,
            "connection_id": "0123456789abcdef0123456789abcdef",
            "reconnect_token": TOKEN,
            "url": null,
            "resume_window_ms": 30000,
            "max_message_size": 1048576,
            "max_unacked_bytes": 1048576,
            "ack_interval_ms": 100,
            "ack_threshold": 64,
        })
    }

    fn parse(v: &Value) -> Result<NegotiateResponse, Error> {
        NegotiateResponse::parse(v.to_string().as_bytes())
    }

    fn negotiate_err(v: &Value) -> String {
        match parse(v) {
            Err(Error::Negotiate(msg)) => {
                assert!(!msg.contains(TOKEN), "token leaked: {msg}");
                assert!(!msg.contains("secret"), "token leaked: {msg}");
                msg
            }
            other => panic!("expected Error::Negotiate, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_valid_body() {
        let r = parse(&valid()).unwrap();
        assert_eq!(r.protocol, SUBPROTOCOL);
        assert_eq!(r.version, 1);
        assert_eq!(r.connection_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(r.reconnect_token, TOKEN);
        assert_eq!(r.url, None);
        assert_eq!(r.resume_window_ms, 30000);
        assert_eq!(r.max_message_size, 1 << 20);
        assert_eq!(r.max_unacked_bytes, 1 << 20);
        assert_eq!(r.ack_interval_ms, 100);
        assert_eq!(r.ack_threshold, 64);

        // Unknown fields ignored, url absent = None, url present kept.
        let mut v = valid();
        v["future_field"] = json!({"x": [1, 2]});
        v.as_object_mut().unwrap().remove("url");
        assert_eq!(parse(&v).unwrap().url, None);
        v["url"] = json!("wss://h/ws");
        assert_eq!(parse(&v).unwrap().url.as_deref(), Some("wss://h/ws"));

        // Serialize and parse again.
        let r = parse(&valid()).unwrap();
        let back = NegotiateResponse::parse(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn debug_redacts_the_token() {
        let r = parse(&valid()).unwrap();
        let s = format!("{r:?}");
        assert!(!s.contains(TOKEN), "{s}");
        assert!(s.contains("<redacted>"), "{s}");
        assert!(s.contains("0123456789abcdef0123456789abcdef"), "{s}");
    }

    #[test]
    fn rejects_each_invalid_field() {
        let cases: Vec<(&str, Value)> = vec![
            ("protocol", json!("rws.reliable.v2")),
            ("protocol", json!(TOKEN)),
            ("version", json!(2)),
            ("version", json!(0)),
            ("version", json!("1")),
            ("connection_id", json!("0123456789ABCDEF0123456789ABCDEF")),
            ("connection_id", json!("0123456789abcdef0123456789abcde")),
            ("connection_id", json!("0123456789abcdef0123456789abcdef0")),
            ("connection_id", json!("0123456789abcdef0123456789abcdeg")),
            ("connection_id", json!("")),
            ("connection_id", json!(TOKEN)),
            ("connection_id", json!(5)),
            ("reconnect_token", json!("")),
            ("reconnect_token", json!("secret".repeat(43))),
            ("reconnect_token", json!(["secret"])),
            ("reconnect_token", json!(null)),
            ("url", json!(5)),
            ("resume_window_ms", json!(0)),
            ("max_message_size", json!(0)),
            ("max_unacked_bytes", json!(0)),
            ("ack_interval_ms", json!(0)),
            ("ack_threshold", json!(0)),
            ("ack_threshold", json!(-1)),
            ("resume_window_ms", json!(TOKEN)),
            ("max_message_size", json!("lots")),
        ];
        for (field, value) in cases {
            let mut v = valid();
            v[field] = value.clone();
            let msg = negotiate_err(&v);
            assert!(!msg.is_empty(), "{field}={value}");
        }
        // Missing fields.
        for field in ["protocol", "version", "connection_id", "reconnect_token"] {
            let mut v = valid();
            v.as_object_mut().unwrap().remove(field);
            let msg = negotiate_err(&v);
            assert!(msg.contains(field), "{msg}");
        }
        // Not JSON / not an object.
        let array =
            serde_json::to_vec(&valid().as_object().unwrap().values().collect::<Vec<_>>()).unwrap();
        for body in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"\"secret\"",
            b"<html>",
            &array,
        ] {
            match NegotiateResponse::parse(body) {
                Err(Error::Negotiate(msg)) => assert!(!msg.contains("secret"), "{msg}"),
                other => panic!("{other:?}"),
            }
        }
        // The token quoted by a type error elsewhere is scrubbed.
        let mut v = valid();
        v["version"] = json!(TOKEN);
        let msg = negotiate_err(&v);
        assert!(msg.contains("<redacted>"), "{msg}");
        // Messages name the problem.
        let mut v = valid();
        v["version"] = json!(2);
        assert!(negotiate_err(&v).contains("version 2"));
        let mut v = valid();
        v["ack_threshold"] = json!(0);
        assert!(negotiate_err(&v).contains("ack_threshold"));
    }

    #[test]
    fn token_of_255_bytes_is_accepted() {
        let mut v = valid();
        v["reconnect_token"] = json!("a".repeat(255));
        assert!(parse(&v).is_ok());
        v["reconnect_token"] = json!("a".repeat(256));
        negotiate_err(&v);
    }

    fn url_err(u: &str) {
        match negotiate_url(u) {
            Err(Error::InvalidUrl(_)) => {}
            other => panic!("{u}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn negotiate_url_cases() {
        let ok = |a: &str, b: &str| assert_eq!(negotiate_url(a).unwrap(), b, "{a}");
        ok("ws://h:8080/ws", "http://h:8080/ws/negotiate");
        ok("wss://h/ws", "https://h/ws/negotiate");
        ok("WSS://h/ws", "https://h/ws/negotiate");
        ok("ws://h:8080/ws?x=1&y", "http://h:8080/ws/negotiate?x=1&y");
        ok("ws://h/ws/", "http://h/ws/negotiate");
        ok("ws://h/ws/?x", "http://h/ws/negotiate?x");
        ok("ws://h", "http://h/negotiate");
        ok("ws://h/", "http://h/negotiate");
        ok("ws://h?q=1", "http://h/negotiate?q=1");
        ok("ws://h/a/b/ws#frag", "http://h/a/b/ws/negotiate");
        ok("ws://[::1]:9000/ws", "http://[::1]:9000/ws/negotiate");
        ok("ws://127.0.0.1:1/x", "http://127.0.0.1:1/x/negotiate");
        ok("ws://u:p@h/ws", "http://u:p@h/ws/negotiate");
        url_err("http://h/ws");
        url_err("https://h/ws");
        url_err("ftp://h/ws");
        url_err("h/ws");
        url_err("");
        url_err("ws://");
        url_err("ws:///ws");
        url_err("ws://:80/ws");
        url_err("ws://u@/ws");
        url_err("ws://h /ws");
        url_err("ws://h/ws\n");
        url_err("ws://[::1/ws");
        url_err("ws://[]:80/ws");
    }

    #[test]
    fn negotiate_params_cases() {
        let p = |b: &str| NegotiateParams::parse(b.as_bytes());
        assert_eq!(p("").unwrap(), NegotiateParams::default());
        assert_eq!(p(" \r\n").unwrap(), NegotiateParams::default());
        assert_eq!(p("{}").unwrap(), NegotiateParams::default());
        let full = p(r#"{"client_id":"ab-C_9","max_message_size":1000,"x":[1]}"#).unwrap();
        assert_eq!(full.client_id.as_deref(), Some("ab-C_9"));
        assert_eq!(full.max_message_size, Some(1000));
        assert_eq!(NegotiateParams::parse(&full.to_body()).unwrap(), full);
        assert_eq!(NegotiateParams::default().to_body(), b"{}");
        let id = new_client_id();
        assert!(is_client_id(&id) && id.len() == 32, "{id}");
        assert!(is_client_id(&"a".repeat(64)));
        for bad in [
            "{",
            "null",
            "[]",
            r#"{"client_id":""}"#,
            r#"{"client_id":"has space"}"#,
            r#"{"client_id":"caf\u00e9"}"#,
            r#"{"client_id":5}"#,
            r#"{"max_message_size":0}"#,
            r#"{"max_message_size":-1}"#,
            r#"{"max_message_size":"big"}"#,
        ] {
            match p(bad) {
                Err(Error::Negotiate(_)) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        let long = format!(r#"{{"client_id":"{}"}}"#, "a".repeat(65));
        assert!(p(&long).is_err());
        let huge = format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_NEGOTIATE_REQUEST_BODY));
        assert!(p(&huge).is_err());
    }

    #[test]
    fn ids_and_tokens() {
        let ids: Vec<String> = (0..32).map(|_| new_connection_id()).collect();
        for id in &ids {
            assert!(is_connection_id(id), "{id}");
        }
        let tokens: Vec<String> = (0..32).map(|_| new_reconnect_token()).collect();
        for t in &tokens {
            assert_eq!(t.len(), 43, "{t}");
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let mut dedup = tokens.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), tokens.len());
        let mut dedup = ids.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), ids.len());
        // A fresh pair passes negotiate validation.
        let mut v = valid();
        v["connection_id"] = json!(ids[0]);
        v["reconnect_token"] = json!(tokens[0]);
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn tokens_equal_cases() {
        let t = new_reconnect_token();
        assert!(tokens_equal(&t, &t.clone()));
        assert!(tokens_equal("", ""));
        assert!(!tokens_equal(&t, &new_reconnect_token()));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("abc", ""));
    }

    #[test]
    fn shutdown_advice() {
        let a = ShutdownAdvice {
            reconnect_after_ms: 1500,
            spread_ms: 250,
        };
        let reason = a.to_reason();
        assert_eq!(reason, r#"{"reconnect_after_ms":1500,"spread_ms":250}"#);
        assert_eq!(ShutdownAdvice::from_reason(&reason), Some(a));
        let max = ShutdownAdvice {
            reconnect_after_ms: u64::MAX,
            spread_ms: u64::MAX,
        };
        assert!(max.to_reason().len() <= 123);
        let capped = ShutdownAdvice {
            reconnect_after_ms: ShutdownAdvice::MAX_MS,
            spread_ms: ShutdownAdvice::MAX_MS,
        };
        assert_eq!(ShutdownAdvice::from_reason(&max.to_reason()), Some(capped));
        // Even built by hand, the wait is capped and never overflows.
        let cap = std::time::Duration::from_millis(ShutdownAdvice::MAX_MS);
        assert_eq!(max.delay(u64::MAX), cap * 2);
        assert_eq!(max.delay(0), cap);
        assert_eq!(a.delay(u64::MAX), std::time::Duration::from_millis(1750));
        assert_eq!(a.delay(100), std::time::Duration::from_millis(1600));
        assert_eq!(
            ShutdownAdvice::from_reason(r#"{"spread_ms":1,"reconnect_after_ms":2,"x":3}"#),
            Some(ShutdownAdvice {
                reconnect_after_ms: 2,
                spread_ms: 1
            })
        );
        for garbage in [
            "",
            "going away",
            "{",
            "{}",
            r#"{"reconnect_after_ms":1}"#,
            r#"{"reconnect_after_ms":-1,"spread_ms":1}"#,
            r#"{"reconnect_after_ms":"1","spread_ms":1}"#,
            "[1,2]",
            "null",
        ] {
            assert_eq!(ShutdownAdvice::from_reason(garbage), None, "{garbage}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn parse_str(body: &[u8]) -> Result<NegotiateResponse, String> {
            NegotiateResponse::parse(body).map_err(|e| e.to_string())
        }

        fn arb_response() -> impl Strategy<Value = NegotiateResponse> {
            (
                "[0-9a-f]{32}",
                // Any non-empty token of at most 255 bytes.
                "\\PC{1,60}".prop_filter("at most 255 bytes", |t: &String| t.len() <= 255),
                proptest::option::of("\\PC{0,40}"),
                1u64..,
                1usize..,
                1usize..,
                1u64..,
                1u32..,
            )
                .prop_map(|(id, token, url, rw, mms, mub, ack_ms, ack_n)| {
                    NegotiateResponse {
                        protocol: SUBPROTOCOL.to_owned(),
                        version: VERSION,
                        connection_id: id,
                        reconnect_token: token,
                        url,
                        resume_window_ms: rw,
                        max_message_size: mms,
                        max_unacked_bytes: mub,
                        ack_interval_ms: ack_ms,
                        ack_threshold: ack_n,
                    }
                })
        }

        /// JSON values shaped like a negotiate body, with fields of any type.
        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                "\\PC{0,20}".prop_map(Value::from),
                Just(Value::from(TOKEN)),
                "\\PC{0,4}".prop_map(|s| Value::from(format!("{s}{TOKEN}{s}"))),
            ];
            let value = leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            });
            let fields = [
                "protocol",
                "version",
                "connection_id",
                "reconnect_token",
                "url",
                "resume_window_ms",
                "max_message_size",
                "max_unacked_bytes",
                "ack_interval_ms",
                "ack_threshold",
            ];
            (
                proptest::collection::vec(proptest::option::of(value), fields.len()),
                any::<bool>(),
            )
                .prop_map(move |(values, token_valid)| {
                    let mut v = valid();
                    for (field, value) in fields.iter().zip(values) {
                        match value {
                            Some(value) => v[*field] = value,
                            None => {
                                v.as_object_mut().unwrap().remove(*field);
                            }
                        }
                    }
                    if token_valid {
                        v["reconnect_token"] = json!(TOKEN);
                    }
                    v
                })
        }

        proptest! {
            #[test]
            fn prop_negotiate_response_round_trips(r in arb_response()) {
                let body = serde_json::to_vec(&r).unwrap();
                prop_assert_eq!(parse_str(&body), Ok(r.clone()));
                // Debug does not depend on the token at all.
                let mut other = r.clone();
                other.reconnect_token = new_reconnect_token();
                prop_assert_eq!(format!("{r:?}"), format!("{other:?}"));
            }

            #[test]
            fn prop_parse_arbitrary_bytes_never_panics(
                raw in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                let _ = NegotiateResponse::parse(&raw);
            }

            #[test]
            fn prop_parse_arbitrary_text_never_panics(raw in "\\PC{0,200}") {
                let _ = NegotiateResponse::parse(raw.as_bytes());
            }

            #[test]
            fn prop_parse_mangled_bodies_never_leak_the_token(v in arb_json()) {
                let body = v.to_string();
                // The body's token, when it has one long enough to search for.
                let token = v["reconnect_token"].as_str().filter(|t| t.len() >= 8);
                match NegotiateResponse::parse(body.as_bytes()) {
                    Ok(r) => {
                        // Whatever parses passed validation and round-trips.
                        prop_assert_eq!(&r.protocol, SUBPROTOCOL);
                        prop_assert!(is_connection_id(&r.connection_id));
                        let again = serde_json::to_vec(&r).unwrap();
                        prop_assert_eq!(parse_str(&again), Ok(r));
                    }
                    Err(Error::Negotiate(msg)) => {
                        if let Some(t) = token {
                            prop_assert!(!msg.contains(t), "token leaked: {}", msg);
                        }
                    }
                    Err(other) => prop_assert!(false, "unexpected error {:?}", other),
                }
            }

            #[test]
            fn prop_negotiate_url_never_panics(url in "\\PC{0,80}") {
                if let Ok(n) = negotiate_url(&url) {
                    prop_assert!(n.starts_with("http://") || n.starts_with("https://"));
                    prop_assert!(n.contains("/negotiate"));
                }
            }

            #[test]
            fn prop_negotiate_url_of_ws_urls(
                secure in any::<bool>(),
                host in "[a-z0-9.-]{1,20}",
                port in proptest::option::of(any::<u16>()),
                path in "(/[a-zA-Z0-9._~-]{0,8}){0,4}",
                query in proptest::option::of("[a-zA-Z0-9=&%._~-]{0,16}"),
            ) {
                let scheme = if secure { "wss" } else { "ws" };
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
                let url = format!("{scheme}://{host}{port}{path}{q}");
                let http = if secure { "https" } else { "http" };
                let expected = format!(
                    "{http}://{host}{port}{}/negotiate{q}",
                    path.trim_end_matches('/')
                );
                prop_assert_eq!(negotiate_url(&url).map_err(|e| e.to_string()), Ok(expected));
            }

            #[test]
            fn prop_shutdown_advice_round_trips(a in any::<u64>(), b in any::<u64>()) {
                let advice = ShutdownAdvice { reconnect_after_ms: a, spread_ms: b };
                let reason = advice.to_reason();
                prop_assert!(reason.len() <= 123);
                prop_assert_eq!(ShutdownAdvice::from_reason(&reason), Some(advice.capped()));
                let d = advice.delay(a ^ b);
                prop_assert!(d <= std::time::Duration::from_millis(2 * ShutdownAdvice::MAX_MS));
            }

            #[test]
            fn prop_shutdown_advice_from_any_reason_never_panics(s in "\\PC{0,123}") {
                let _ = ShutdownAdvice::from_reason(&s);
            }
        }
    }
}
