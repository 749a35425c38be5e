//! Secrets stay out of logs, error messages and URLs: the auth token
//! reaches the server in the `Authorization` header (or, when the user opts
//! in, in a query parameter that the logs redact), and neither it nor the
//! reconnect token appears in any log line (client and server, at trace
//! level), an error's `Display` or `Debug`, or the options' `Debug`.
//!
//! This binary owns the global logger (a capture of every record), so it
//! is its own test file. Its tests run in parallel and share the capture:
//! each checks that its own secrets appear in no line at all.

mod common;

use std::{
    sync::{Arc, Mutex, Once},
    time::Duration,
};

use actix_web::{
    body::{self, MessageBody},
    dev::{Service, ServiceResponse},
    App,
};
use common::wait_until;
use resilient_ws::{
    protocol::NegotiateResponse,
    server::{reliable_route, request_token, AuthRefusal, ReliableServer, ServerOptions},
    testing::{EventRecorder, FaultProxy, RawServer, RecordedEvent, TestServer},
    ClientOptions, ConnectionState, Error, ReconnectMode, ResilientWebSocket,
};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// Installs the capture once for the whole binary, at trace level.
fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn lines() -> Vec<String> {
    LINES.lock().unwrap().clone()
}

/// Fails if any captured line (or any of `texts`) contains `secret`.
fn assert_nowhere(secret: &str, texts: &[String]) {
    assert!(secret.len() >= 8, "a searchable secret");
    for line in lines() {
        assert!(
            !line.contains(secret),
            "secret leaked into a log line: {line}"
        );
    }
    for t in texts {
        assert!(!t.contains(secret), "secret leaked into: {t}");
    }
}

/// `Display` and `Debug` of every error the recorder saw (error events and
/// reconnect reasons).
fn error_texts(rec: &EventRecorder) -> Vec<String> {
    let mut out = Vec::new();
    for e in rec.events() {
        let err = match e {
            RecordedEvent::Error(ev) => ev.error,
            RecordedEvent::Reconnecting(r) => r.reason,
            _ => continue,
        };
        out.push(format!("{err}"));
        out.push(format!("{err:?}"));
    }
    out
}

async fn wait_state(ws: &ResilientWebSocket, state: ConnectionState) {
    assert!(
        wait_until(|| ws.state() == state, Duration::from_secs(5)).await,
        "never reached {state:?}"
    );
}

const TOKEN: &str = "s3cr3t-T0KEN-value";

#[actix_rt::test]
async fn the_token_is_sent_in_the_header_and_never_logged() {
    capture_logs();
    let server = RawServer::bind().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .auth_token(|| async { Ok(TOKEN.to_string()) })
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let expected = format!("Bearer {TOKEN}");
    assert_eq!(
        conn.request.header("authorization"),
        Some(expected.as_str())
    );
    assert!(!conn.request.path.contains(TOKEN));

    // Exercise the paths that log: a message, an error, a close.
    ws.send("x").await.unwrap();
    conn.read_data_frame().await.unwrap();
    conn.send_close(4000, "custom").await.unwrap();
    drop(conn);
    wait_state(&ws, ConnectionState::Disconnected).await;
    // A refused attempt logs its error too.
    let (_, res) = tokio::join!(server.refuse(401), ws.connect());
    let err = res.unwrap_err();
    assert_eq!(err.http_status(), Some(401));

    assert!(lines().len() > 3, "the capture saw the client's logs");
    assert_nowhere(
        TOKEN,
        &[
            format!("{:?}", ws.options()),
            format!("{err}"),
            format!("{err:?}"),
        ],
    );
}

const QUERY_TOKEN: &str = "qu3ry-T0KEN/with+odd=chars";

/// The opt-in: the token goes in `?access_token=` (percent-encoded) and
/// not in a header; log lines and errors show no query, so not the token.
#[actix_rt::test]
async fn an_opted_in_query_token_reaches_the_server_but_no_log_or_error() {
    capture_logs();
    let encoded = "qu3ry-T0KEN%2Fwith%2Bodd%3Dchars";
    let server = RawServer::bind().await.unwrap();
    let mut opts = ClientOptions::default();
    opts.reconnect_mode = ReconnectMode::None;
    opts.auth_token_query_param = Some("access_token".into());
    let ws = ResilientWebSocket::builder(format!("{}?room=1", server.ws_url()))
        .options(opts.clone())
        .auth_token(|| async { Ok(QUERY_TOKEN.to_string()) })
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let conn = conn.unwrap();
    assert_eq!(
        conn.request.path,
        format!("/ws?room=1&access_token={encoded}")
    );
    assert_eq!(conn.request.header("authorization"), None);
    drop(conn);
    wait_state(&ws, ConnectionState::Disconnected).await;
    let (_, res) = tokio::join!(server.refuse(403), ws.connect());
    let refused = res.unwrap_err();

    // A URL the client cannot use: the error shows it without its query.
    let bad = ResilientWebSocket::builder("ws://bad host/ws")
        .options(opts)
        .auth_token(|| async { Ok(QUERY_TOKEN.to_string()) })
        .build()
        .unwrap();
    let invalid = bad.connect().await.unwrap_err();
    assert!(matches!(invalid, Error::InvalidUrl(_)), "{invalid:?}");

    let lines = lines();
    assert!(
        lines.iter().any(|l| l.contains("?<redacted>")),
        "the socket URL is logged with its query redacted: {lines:?}"
    );
    for secret in [QUERY_TOKEN, encoded] {
        assert_nowhere(
            secret,
            &[
                format!("{refused}"),
                format!("{refused:?}"),
                format!("{invalid}"),
                format!("{invalid:?}"),
                format!("{:?}", ws.options()),
            ],
        );
    }
    // A bad parameter name is refused up front.
    let mut bad_name = ClientOptions::default();
    bad_name.auth_token_query_param = Some("a b".into());
    assert!(matches!(bad_name.validate(), Err(Error::InvalidConfig(_))));
}

const AUTH: &str = "r3liable-AUTH-token";

/// A reliable echo server whose auth hook takes the token from the header
/// or `?access_token=`, and whose negotiate responses are copied into
/// `tokens` (so the test knows every reconnect token it handed out).
fn spy_server(
    options: ServerOptions,
    tokens: Arc<Mutex<Vec<String>>>,
) -> (TestServer, ReliableServer) {
    let options = options.with_auth(|req| match request_token(req, Some("access_token")) {
        Some(t) if t == AUTH => Ok("user".to_owned()),
        _ => Err(AuthRefusal::Unauthorized),
    });
    let reliable = ReliableServer::echo(options);
    let handle = reliable.clone();
    let server = TestServer::bind(move || {
        let (reliable, tokens) = (reliable.clone(), tokens.clone());
        App::new()
            .wrap_fn(move |req, srv| {
                let tokens = tokens.clone();
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    if !res.request().path().ends_with("/negotiate") {
                        return Ok(res);
                    }
                    let (req, res) = res.into_parts();
                    let (res, body) = res.into_parts();
                    let bytes = body::to_bytes(body).await.unwrap_or_default();
                    if let Ok(n) = NegotiateResponse::parse(&bytes) {
                        tokens.lock().unwrap().push(n.reconnect_token);
                    }
                    let res = res.set_body(bytes.boxed());
                    Ok(ServiceResponse::new(req, res))
                }
            })
            .configure(move |c| reliable_route(c, "/ws", reliable))
    })
    .unwrap();
    (server, handle)
}

/// Reliable mode: a session negotiated, resumed across cuts, and lost
/// (resume window passed) and negotiated again: no reconnect token and no
/// auth token in any client or server log line or error, with the token
/// in the header and with the query opt-in.
#[actix_rt::test]
async fn reconnect_tokens_never_reach_a_log_line_or_an_error() {
    capture_logs();
    for in_query in [false, true] {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let mut options = ServerOptions::default();
        options.resume_window = Duration::from_millis(300);
        let (server, reliable) = spy_server(options, tokens.clone());
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let rec = EventRecorder::start();
        let mut opts = ClientOptions::default();
        opts.reconnect_mode = ReconnectMode::Stateful;
        opts.reconnect_initial_delay = Duration::from_millis(20);
        opts.reconnect_max_delay = Duration::from_millis(50);
        opts.min_uptime = Duration::ZERO;
        opts.heartbeat_interval = Duration::ZERO;
        opts.auth_token_query_param = in_query.then(|| "access_token".to_owned());
        let ws = rec
            .attach(
                ResilientWebSocket::builder(proxy.ws_url())
                    .options(opts)
                    .auth_token(|| async { Ok(AUTH.to_string()) }),
            )
            .connect()
            .await
            .unwrap();
        ws.send("one").await.unwrap();
        assert_eq!(rec.wait_messages(1, Duration::from_secs(10)).await.len(), 1);
        // A cut: the client resumes the session.
        proxy.cut_all();
        ws.send("two").await.unwrap();
        assert_eq!(rec.wait_messages(2, Duration::from_secs(10)).await.len(), 2);
        // A long outage: the session is gone (4001), a new one starts.
        proxy.refuse(true);
        proxy.cut_all();
        assert!(wait_until(|| reliable.sessions() == 0, Duration::from_secs(10)).await);
        proxy.refuse(false);
        ws.send("three").await.unwrap();
        let lost = rec
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, RecordedEvent::SessionLost(_))
            })
            .await;
        assert!(lost.is_some(), "the session was lost and replaced");
        assert!(rec.wait_messages(3, Duration::from_secs(10)).await.len() >= 3);
        ws.disconnect().await.unwrap();
        server.stop().await;

        let tokens = tokens.lock().unwrap().clone();
        assert!(
            tokens.len() >= 2,
            "two sessions negotiated: {}",
            tokens.len()
        );
        let lines = lines();
        for side in ["resilient_ws::client", "resilient_ws::server"] {
            assert!(
                lines.iter().any(|l| l.contains(side)),
                "the capture saw {side}'s logs"
            );
        }
        let mut texts = error_texts(&rec);
        texts.push(format!("{:?}", rec.events()));
        texts.push(format!("{:?}", ws.options()));
        for t in tokens.iter().map(String::as_str).chain([AUTH]) {
            assert_nowhere(t, &texts);
        }
    }
}

/// A body that is not what it should be may quote input in its error;
/// never the reconnect token.
#[test]
fn negotiate_errors_do_not_quote_the_token() {
    let token = "T0ken-in-a-broken-negotiate-body-0000000000";
    for body in [
        format!(r#"{{"reconnect_token":"{token}","version":"{token}"}}"#),
        format!(r#"{{"reconnect_token":"{token}","connection_id":["{token}"]}}"#),
        format!(
            r#"{{"reconnect_token":"{token}","protocol":"rws.reliable.v1","version":1,"connection_id":"{token}"}}"#
        ),
    ] {
        let err = NegotiateResponse::parse(body.as_bytes()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(token), "{err}");
    }
}
