//! The negotiate response parser (docs/PROTOCOL.md §1) on arbitrary bytes:
//! it never panics, its errors never quote the reconnect token, and
//! whatever parses serializes and parses back to the same value. The same
//! input also goes to the negotiate URL builder and the 1012 advice parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilient_ws::protocol::{negotiate_url, NegotiateResponse, ShutdownAdvice};

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
            let msg = e.to_string();
            // The token of a body that has one must not be quoted back.
            let token = serde_json::from_slice::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v.get("reconnect_token")?.as_str().map(str::to_owned));
            if let Some(t) = token.filter(|t| t.len() >= 8) {
                assert!(!msg.contains(&t), "token quoted in {msg}");
            }
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
