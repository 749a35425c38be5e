//! Unit tests of `negotiate.rs`.
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
    assert!(
        !r.ping_frames,
        "a server that predates PING frames does not offer them"
    );
    let mut v = valid();
    v["ping_frames"] = json!(true);
    assert!(parse(&v).unwrap().ping_frames);

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
            any::<bool>(),
        )
            .prop_map(|(id, token, url, rw, mms, mub, ack_ms, ack_n, pings)| {
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
                    ping_frames: pings,
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
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
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
