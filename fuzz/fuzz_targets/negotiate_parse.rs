//! The negotiate response parser (docs/PROTOCOL.md §1) on arbitrary bytes:
//! it never panics, its errors never quote the reconnect token, and
//! whatever parses serializes and parses back to the same value. The same
//! input also goes to the negotiate URL builder and the 1012 advice parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_ws::protocol::{negotiate_url, NegotiateResponse, ShutdownAdvice};
use serde_json::Value;

/// The error text for a body, or `None` if it parses.
fn error_text(body: &[u8]) -> Option<String> {
    NegotiateResponse::parse(body).err().map(|e| e.to_string())
}

/// Replaces `from` with `to` in every string of `v`, however deep.
fn replace_in_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) => *s = s.replace(from, to),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_in_strings(x, from, to)),
        Value::Object(m) => m.values_mut().for_each(|x| replace_in_strings(x, from, to)),
        _ => {}
    }
}

/// The error must not show the token. The token's text may be in the
/// message anyway (a field name that happens to be the token, say), so the
/// check is differential: with the token replaced everywhere in the body's
/// strings by another string of the same length, the message must contain
/// the token's text at least as often. A quoted token (from its own field,
/// or from another field that contains it) breaks that.
fn check_token_not_quoted(data: &[u8]) {
    let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(token) = v.get("reconnect_token").and_then(Value::as_str) else {
        return;
    };
    // Shorter texts occur in the messages too easily to say anything.
    let token = token.to_owned();
    if token.chars().count() < 8 {
        return;
    }
    let Some(other) = ['Z', 'Q', '#', '~']
        .into_iter()
        .find(|c| !token.contains(*c))
    else {
        return;
    };
    let replacement = other.to_string().repeat(token.len());
    let with_token = error_text(&serde_json::to_vec(&v).unwrap());
    replace_in_strings(&mut v, &token, &replacement);
    let without = error_text(&serde_json::to_vec(&v).unwrap());
    if let (Some(a), Some(b)) = (with_token, without) {
        assert!(
            a.matches(token.as_str()).count() <= b.matches(token.as_str()).count(),
            "token quoted in {a:?} (with the token replaced: {b:?})"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    match NegotiateResponse::parse(data) {
        Ok(r) => {
            let body = serde_json::to_vec(&r).expect("serializes");
            let again = NegotiateResponse::parse(&body).expect("parses back");
            assert_eq!(again, r, "round trip");
            // Debug does not depend on the token.
            let mut other = r.clone();
            other.reconnect_token = String::from("x");
            assert_eq!(format!("{r:?}"), format!("{other:?}"));
        }
        Err(e) => {
            let _ = e.to_string();
            check_token_not_quoted(data);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(url) = negotiate_url(s) {
            assert!(url.starts_with("http://") || url.starts_with("https://"));
        }
        if let Some(a) = ShutdownAdvice::from_reason(s) {
            assert_eq!(ShutdownAdvice::from_reason(&a.to_reason()), Some(a));
        }
    }
});
