//! Client options from issue 15: retrying the first connect, honouring a
//! server's `Retry-After`, typed (JSON) messages, and one named builder
//! setter per option. Real peers on 127.0.0.1; timers are short configured
//! durations, and `Retry-After` values are the shortest a header can say.

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use resilient_ws::{
    testing::{EventRecorder, RawServer, RecordedEvent, TestServer},
    ClientOptions, ConnectionState, Error, IncomingMessage, NegotiateHook, NegotiateRequest,
    Negotiated, OverflowPolicy, Payload, ReconnectMode, ResilientWebSocket,
    ResilientWebSocketBuilder, RetryContext, RetryPolicy, SharedRetryPolicy, TokenProvider,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(20);
const MS: Duration = Duration::from_millis(1);

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A stateless client with short backoff and no heartbeat.
fn client(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateless)
        .heartbeat_interval(Duration::ZERO)
        .reconnect_initial_delay(20 * MS)
        .reconnect_max_delay(100 * MS)
}

fn is_refused(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

// ---- item 3: retry the first connect ----

#[actix_rt::test]
async fn with_retry_first_connect_a_client_started_before_its_server_connects_and_delivers() {
    let addr = free_port();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(client(format!("ws://{addr}/ws")).retry_first_connect(true))
        .build()
        .unwrap();
    let connecting = actix_rt::spawn({
        let ws = ws.clone();
        async move { ws.connect().await }
    });
    // The first attempt failed (nothing listens yet) and is being retried.
    let first = rec
        .wait_until(WAIT, |events| {
            events.iter().find_map(|e| match e {
                RecordedEvent::Reconnecting(r) => Some(r.clone()),
                _ => None,
            })
        })
        .await
        .expect("the failed first connect is retried");
    assert_eq!(first.attempt, 1);
    assert!(is_refused(&first.reason), "{:?}", first.reason);
    assert!(!connecting.is_finished(), "connect() waits for the retries");

    let _server = TestServer::echo_at(addr, Default::default()).unwrap();
    tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect() resolves once the server is up")
        .unwrap()
        .expect("connected");
    assert_eq!(ws.state(), ConnectionState::Connected);
    ws.send("hello").await.unwrap();
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got, vec![Payload::from("hello")]);
    let states = rec.states();
    assert_eq!(
        states.first(),
        Some(&ConnectionState::Connecting),
        "{states:?}"
    );
    assert!(
        states.contains(&ConnectionState::Reconnecting),
        "{states:?}"
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn without_retry_first_connect_a_failed_first_connect_returns_its_error_at_once() {
    let addr = free_port();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(client(format!("ws://{addr}/ws")))
        .build()
        .unwrap();
    assert!(!ws.options().retry_first_connect, "off by default");
    let err = ws.connect().await.unwrap_err();
    assert!(is_refused(&err), "{err:?}");
    assert_eq!(ws.state(), ConnectionState::Disconnected);
    assert!(rec.reconnecting().is_empty(), "{:?}", rec.reconnecting());
    // The server coming up later changes nothing by itself.
    let _server = TestServer::echo_at(addr, Default::default()).unwrap();
    assert_eq!(ws.state(), ConnectionState::Disconnected);
}

#[actix_rt::test]
async fn retry_first_connect_gives_up_when_the_policy_does() {
    let addr = free_port();
    let ws = client(format!("ws://{addr}/ws"))
        .retry_first_connect(true)
        .max_reconnect_attempts(2)
        .build()
        .unwrap();
    let err = tokio::time::timeout(WAIT, ws.connect())
        .await
        .expect("gives up in time")
        .unwrap_err();
    match &err {
        Error::GaveUp { attempts: 2, last } => assert!(is_refused(last), "{last:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws.state(), ConnectionState::Disconnected);
}

#[actix_rt::test]
async fn retry_first_connect_stops_at_once_on_a_terminal_refusal() {
    let server = RawServer::bind().await.unwrap();
    let ws = client(server.ws_url())
        .retry_first_connect(true)
        .build()
        .unwrap();
    let (refused, res) = tokio::join!(server.refuse(401), ws.connect());
    refused.unwrap();
    let err = res.unwrap_err();
    assert!(
        matches!(&err, Error::GaveUp { attempts: 0, .. }),
        "a 401 is not retried: {err:?}"
    );
    assert_eq!(err.http_status(), Some(401));
}

// ---- item 4: Retry-After ----

fn busy(status: u16, retry_after: &str) -> String {
    format!(
        "HTTP/1.1 {status} Busy\r\nretry-after: {retry_after}\r\ncontent-length: 0\r\n\
         connection: close\r\n\r\n"
    )
}

/// A policy that always says 10 ms: any longer wait is the server's.
struct Quick;

impl RetryPolicy for Quick {
    fn next_delay(&self, _: &RetryContext) -> Option<Duration> {
        Some(10 * MS)
    }
}

#[actix_rt::test]
async fn an_upgrade_refused_with_503_and_retry_after_seconds_delays_the_next_attempt() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            client(server.ws_url())
                .retry_first_connect(true)
                .retry_policy(Quick),
        )
        .build()
        .unwrap();
    let connecting = actix_rt::spawn({
        let ws = ws.clone();
        async move { ws.connect().await }
    });
    server.respond_raw(busy(503, "1").as_bytes()).await.unwrap();
    let refused_at = Instant::now();
    let conn = tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("a second attempt")
        .unwrap();
    let gap = refused_at.elapsed();
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    tokio::time::timeout(WAIT, connecting)
        .await
        .unwrap()
        .unwrap()
        .expect("connected on the second attempt");
    let r = &rec.reconnecting()[0];
    assert_eq!(r.delay, Duration::from_secs(1), "{r:?}");
    assert!(
        matches!(
            r.reason,
            Error::UpgradeRejected {
                status: 503,
                retry_after: Some(d)
            } if d == Duration::from_secs(1)
        ),
        "{:?}",
        r.reason
    );
    assert_eq!(r.reason.retry_after(), Some(Duration::from_secs(1)));
    drop(conn);
}

#[actix_rt::test]
async fn retry_after_is_capped_by_max_retry_after() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            client(server.ws_url())
                .retry_first_connect(true)
                .retry_policy(Quick)
                .max_retry_after(300 * MS),
        )
        .build()
        .unwrap();
    let connecting = actix_rt::spawn({
        let ws = ws.clone();
        async move { ws.connect().await }
    });
    // An hour, as a server in maintenance might say.
    server
        .respond_raw(busy(429, "3600").as_bytes())
        .await
        .unwrap();
    let refused_at = Instant::now();
    let conn = tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("a second attempt well within the hour")
        .unwrap();
    let gap = refused_at.elapsed();
    assert!(gap >= 300 * MS, "retried after {gap:?}");
    tokio::time::timeout(WAIT, connecting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r = &rec.reconnecting()[0];
    assert_eq!(r.delay, 300 * MS, "{r:?}");
    // The error still says what the server asked for.
    assert_eq!(r.reason.retry_after(), Some(Duration::from_secs(3600)));
    drop(conn);
}

/// An HTTP date `secs` from now (RFC 9110 IMF-fixdate).
fn http_date_in(secs: u64) -> String {
    httpdate(SystemTime::now() + Duration::from_secs(secs))
}

fn httpdate(t: SystemTime) -> String {
    // actix-http's formatter, through awc's re-export.
    awc::http::header::HttpDate::from(t).to_string()
}

#[actix_rt::test]
async fn negotiate_refused_with_429_and_an_http_date_delays_the_next_attempt() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            client(server.ws_url())
                .reconnect_mode(ReconnectMode::Stateful)
                .retry_first_connect(true)
                .retry_policy(Quick),
        )
        .build()
        .unwrap();
    let connecting = actix_rt::spawn({
        let ws = ws.clone();
        async move { ws.connect().await }
    });
    // The date has whole seconds: 3 s ahead is more than 1 s away.
    let first = server
        .respond_raw(busy(429, &http_date_in(3)).as_bytes())
        .await
        .unwrap();
    assert!(first.path.ends_with("/negotiate"), "{}", first.path);
    let refused_at = Instant::now();
    let second = tokio::time::timeout(WAIT, server.refuse(503))
        .await
        .expect("a second negotiate")
        .unwrap();
    let gap = refused_at.elapsed();
    assert!(second.path.ends_with("/negotiate"), "{}", second.path);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    let r = &rec.reconnecting()[0];
    assert!(
        matches!(r.reason, Error::NegotiateRejected { status: 429, retry_after: Some(d) } if d >= Duration::from_secs(1)),
        "{:?}",
        r.reason
    );
    assert!(r.delay >= Duration::from_secs(1), "{r:?}");
    ws.disconnect().await.unwrap();
    let _ = tokio::time::timeout(WAIT, connecting).await;
}

#[actix_rt::test]
async fn a_refusal_without_retry_after_or_with_another_status_keeps_the_policy_delay() {
    let server = RawServer::bind().await.unwrap();
    let ws = client(server.ws_url()).build().unwrap();
    let answer = busy(500, "30");
    let (sent, res) = tokio::join!(server.respond_raw(answer.as_bytes()), ws.connect());
    sent.unwrap();
    let err = res.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UpgradeRejected {
                status: 500,
                retry_after: None
            }
        ),
        "a Retry-After on a 500 is not honoured: {err:?}"
    );
    // Without the option, the first connect's error carries the wait.
    let answer = busy(503, "30");
    let (sent, res) = tokio::join!(server.respond_raw(answer.as_bytes()), ws.connect());
    sent.unwrap();
    let err = res.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{err:?}");
    assert!(err.to_string().contains("retry after 30s"), "{err}");
}

// ---- item 6: typed messages ----

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    symbol: String,
    qty: i32,
}

#[actix_rt::test]
async fn json_reads_back_what_send_json_sent_as_text_and_from_binary() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(client(server.ws_url())).connect().await.unwrap();
    let order = Order {
        id: 7,
        symbol: "ABC".into(),
        qty: -3,
    };
    ws.send_json(&order).await.unwrap();
    ws.send(serde_json::to_vec(&order).unwrap()).await.unwrap();
    rec.wait_messages(2, WAIT).await;
    let received: Vec<IncomingMessage> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RecordedEvent::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(matches!(received[0].payload, Payload::Text(_)));
    assert!(matches!(received[1].payload, Payload::Binary(_)));
    for m in &received {
        assert_eq!(m.json::<Order>().unwrap(), order);
        assert_eq!(m.payload.json::<Order>().unwrap(), order);
    }
    // Borrowing from the message works too.
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        symbol: &'a str,
    }
    assert_eq!(received[0].json::<Borrowed>().unwrap().symbol, "ABC");
    ws.disconnect().await.unwrap();
}

#[test]
fn json_errors_say_text_or_binary_the_type_and_where_parsing_stopped() {
    let text = Payload::from("{\"id\": 7,\n \"symbol\": 5}");
    let err = text.json::<Order>().unwrap_err();
    match &err {
        Error::Deserialize {
            binary: false,
            len,
            target,
            line: 2,
            column,
            message,
        } => {
            assert_eq!(*len, text.len());
            assert!(target.ends_with("Order"), "{target}");
            assert!(*column > 0);
            assert!(message.contains("invalid type"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("text message"), "{shown}");
    assert!(shown.contains("Order"), "{shown}");
    assert!(shown.contains("line 2 column"), "{shown}");

    let binary = Payload::from(vec![0xff, 0x00, 0x01]);
    let err = IncomingMessage::new(binary).json::<Order>().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Deserialize {
                binary: true,
                len: 3,
                line: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("binary message (3 bytes)"),
        "{err}"
    );

    // Cut short: the end of the input, still with a position.
    let cut = Payload::from(r#"{"id": 7, "sym"#);
    assert!(matches!(
        cut.json::<Order>(),
        Err(Error::Deserialize {
            line: 1,
            column: 14,
            ..
        })
    ));
}

// ---- item 7: named setters ----

/// One row: the option's field name, the builder call that should set it,
/// and the same change made directly on `ClientOptions`.
type Row = (
    &'static str,
    fn(ResilientWebSocketBuilder) -> ResilientWebSocketBuilder,
    fn(&mut ClientOptions),
);

struct Never;

impl RetryPolicy for Never {
    fn next_delay(&self, _: &RetryContext) -> Option<Duration> {
        None
    }
}

/// Shorthand for the table.
const fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    vec![
        ("max_reconnect_attempts", |b| b.max_reconnect_attempts(7), |o| o.max_reconnect_attempts = 7),
        ("reconnect_initial_delay", |b| b.reconnect_initial_delay(s(2)), |o| o.reconnect_initial_delay = s(2)),
        ("reconnect_max_delay", |b| b.reconnect_max_delay(s(60)), |o| o.reconnect_max_delay = s(60)),
        ("reconnect_mode", |b| b.reconnect_mode(ReconnectMode::Stateful), |o| o.reconnect_mode = ReconnectMode::Stateful),
        ("retry_policy", |b| b.retry_policy(Never), |o| o.retry_policy = Some(SharedRetryPolicy::new(Never))),
        ("retry_first_connect", |b| b.retry_first_connect(true), |o| o.retry_first_connect = true),
        ("max_retry_after", |b| b.max_retry_after(s(9)), |o| o.max_retry_after = s(9)),
        ("min_uptime", |b| b.min_uptime(s(11)), |o| o.min_uptime = s(11)),
        ("heartbeat_interval", |b| b.heartbeat_interval(s(12)), |o| o.heartbeat_interval = s(12)),
        ("heartbeat_timeout", |b| b.heartbeat_timeout(s(13)), |o| o.heartbeat_timeout = Some(s(13))),
        ("connection_timeout", |b| b.connection_timeout(s(14)), |o| o.connection_timeout = s(14)),
        ("close_timeout", |b| b.close_timeout(s(15)), |o| o.close_timeout = s(15)),
        ("max_buffered_messages", |b| b.max_buffered_messages(16), |o| o.max_buffered_messages = 16),
        ("overflow_policy", |b| b.overflow_policy(OverflowPolicy::DropOldest), |o| o.overflow_policy = OverflowPolicy::DropOldest),
        ("message_ttl", |b| b.message_ttl(s(17)), |o| o.message_ttl = Some(s(17))),
        ("enable_message_buffering", |b| b.enable_message_buffering(false), |o| o.enable_message_buffering = false),
        ("persistent", |b| b.persistent(true), |o| o.persistent = true),
        ("store_path", |b| b.store_path("out.redb"), |o| o.store_path = Some("out.redb".into())),
        ("max_message_size", |b| b.max_message_size(18), |o| o.max_message_size = 18),
        ("max_outbound_message_size", |b| b.max_outbound_message_size(19), |o| o.max_outbound_message_size = Some(19)),
        ("max_fragments", |b| b.max_fragments(20), |o| o.max_fragments = 20),
        ("max_inbound_backlog", |b| b.max_inbound_backlog(21), |o| o.max_inbound_backlog = 21),
        ("max_inbound_backlog_bytes", |b| b.max_inbound_backlog_bytes(22), |o| o.max_inbound_backlog_bytes = 22),
        ("max_negotiate_body_size", |b| b.max_negotiate_body_size(23), |o| o.max_negotiate_body_size = 23),
        ("headers", |b| b.headers([("x-a", "1")]), |o| o.headers = vec![("x-a".into(), "1".into())]),
        ("protocols", |b| b.protocols(["p1", "p2"]), |o| o.protocols = vec!["p1".into(), "p2".into()]),
        ("auth_token", |b| b.auth_token(|| async { Ok("t".to_string()) }), |o| o.auth_token = Some(TokenProvider::fixed("t"))),
        ("negotiate", |b| b.negotiate(|r| async move { Ok(Negotiated::new(r.url, None)) }), |o| o.negotiate = Some(NegotiateHook::new(|r: NegotiateRequest| async move { Ok(Negotiated::new(r.url, None)) }))),
        ("tls", |b| b.tls(tls_config()), |o| o.tls = Some(tls_config())),
        ("auth_token_query_param", |b| b.auth_token_query_param("access_token"), |o| o.auth_token_query_param = Some("access_token".into())),
        ("allow_negotiate_redirect", |b| b.allow_negotiate_redirect(true), |o| o.allow_negotiate_redirect = true),
    ]
}

/// One config for both sides of the row, so they show the same.
fn tls_config() -> std::sync::Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            std::sync::Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// The top-level field names of `ClientOptions`, read from its pretty
/// `Debug` (four spaces in, then `name:`).
fn field_names(opts: &ClientOptions) -> Vec<String> {
    format!("{opts:#?}")
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("    ")?;
            if rest.starts_with(' ') {
                return None;
            }
            Some(rest.split_once(':')?.0.to_string())
        })
        .collect()
}

/// What one field shows in the pretty `Debug` (its lines).
fn field_debug(opts: &ClientOptions, name: &str) -> String {
    let all = format!("{opts:#?}");
    let mut out = String::new();
    let mut inside = false;
    for l in all.lines() {
        let top = l.strip_prefix("    ").filter(|r| !r.starts_with(' '));
        if let Some(rest) = top {
            inside = rest.split_once(':').is_some_and(|(n, _)| n == name);
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_option_has_a_setter_named_after_it_that_sets_that_field_and_no_other() {
    let defaults = ClientOptions::default();
    let rows = rows();
    let named: Vec<&str> = rows.iter().map(|r| r.0).collect();
    for field in field_names(&defaults) {
        assert!(
            named.contains(&field.as_str()),
            "ClientOptions::{field} has no row (and maybe no setter)"
        );
    }
    for (name, set, expect) in rows {
        let got = set(ResilientWebSocket::builder("ws://127.0.0.1:1/ws"))
            .current_options()
            .clone();
        let mut want = ClientOptions::default();
        expect(&mut want);
        assert_ne!(
            field_debug(&want, name),
            field_debug(&defaults, name),
            "{name}: the table must set a value other than the default"
        );
        // Every field as the direct assignment left it: this one changed,
        // none other did (hooks compare by their presence).
        for field in field_names(&defaults) {
            assert_eq!(
                field_debug(&got, &field),
                field_debug(&want, &field),
                "the {name} setter: field {field}"
            );
        }
    }
}

#[test]
fn the_shorthands_set_the_same_fields_as_their_named_setters() {
    let base = || ResilientWebSocket::builder("ws://127.0.0.1:1/ws");
    let pairs: Vec<(ResilientWebSocketBuilder, ResilientWebSocketBuilder)> = vec![
        (
            base().reconnect_delays(s(2), s(9), 4),
            base()
                .reconnect_initial_delay(s(2))
                .reconnect_max_delay(s(9))
                .max_reconnect_attempts(4),
        ),
        (
            base().heartbeat(s(3), Some(s(7))),
            base().heartbeat_interval(s(3)).heartbeat_timeout(s(7)),
        ),
        (
            base().buffering(false, 5),
            base()
                .enable_message_buffering(false)
                .max_buffered_messages(5),
        ),
        (
            base().inbound_backlog(8, 4096),
            base()
                .max_inbound_backlog(8)
                .max_inbound_backlog_bytes(4096),
        ),
        (
            base().durable_store("x.redb"),
            base().persistent(true).store_path("x.redb"),
        ),
    ];
    for (short, named) in pairs {
        assert_eq!(
            format!("{:?}", short.current_options()),
            format!("{:?}", named.current_options())
        );
    }
    // `heartbeat(x, None)` goes back to the derived timeout.
    let o = base()
        .heartbeat_timeout(s(7))
        .heartbeat(s(3), None)
        .current_options()
        .clone();
    assert_eq!(o.heartbeat_timeout, None);
    assert_eq!(o.effective_heartbeat_timeout(), s(6));
}

#[actix_rt::test]
async fn the_named_setters_reach_the_running_client() {
    let ws = ResilientWebSocket::builder("ws://127.0.0.1:1/ws")
        .max_reconnect_attempts(3)
        .reconnect_initial_delay(Duration::from_millis(250))
        .reconnect_max_delay(Duration::from_secs(4))
        .heartbeat_interval(Duration::from_secs(2))
        .heartbeat_timeout(Duration::from_secs(5))
        .max_buffered_messages(10)
        .enable_message_buffering(true)
        .build()
        .unwrap();
    let o = ws.options();
    assert_eq!(o.max_reconnect_attempts, 3);
    assert_eq!(o.reconnect_initial_delay, Duration::from_millis(250));
    assert_eq!(o.reconnect_max_delay, Duration::from_secs(4));
    assert_eq!(o.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(o.effective_heartbeat_timeout(), Duration::from_secs(5));
    assert_eq!(o.max_buffered_messages, 10);
    // The outbox takes the bound: the 11th message waits for no place.
    for i in 0..10 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    assert!(matches!(ws.send("m10").await, Err(Error::BufferFull(10))));
}
