//! Security (SECURITY.md): the limit on failed resumes, the origin
//! allow-list, forged reconnect tokens, and reliable mode over TLS with
//! certificate verification. Real sockets on the loopback range (a second
//! peer address is 127.0.0.2); every wait is bounded.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use actix_web::{App, HttpServer};
use common::{certificate, negotiate_at, server_config, server_options, trusting, In, TestPeer};
use resilient_ws::{
    close_code,
    protocol::{new_connection_id, new_reconnect_token, Frame, SUBPROTOCOL},
    server::{reliable_route, FailedResumeLimit, ReliableServer, ServerOptions},
    testing::{EventRecorder, FaultProxy, RecordedEvent, TestServer},
    ConnectionState, Error, ReconnectMode, ResilientWebSocket,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers: negotiate, a HELLO and its answer, a raw upgrade from an address.

/// How the server answered a HELLO.
#[derive(Debug, PartialEq)]
enum Answer {
    Welcome {
        resumed: bool,
    },
    Closed(u16, String),
    /// The upgrade was refused with this HTTP status.
    Refused(u16),
}

/// Opens a protocol socket, sends HELLO with `id` and `token`, and reads
/// the answer.
async fn hello(addr: SocketAddr, id: &str, token: &str, last_received: u64) -> Answer {
    let mut p = match TestPeer::open_at(addr, true, &[]).await {
        Ok(p) => p,
        Err(status) => return Answer::Refused(status),
    };
    p.send_frame(Frame::Hello {
        connection_id: id.to_owned(),
        reconnect_token: token.to_owned(),
        last_received,
        first_seq: 1,
    })
    .await;
    match p.recv(WAIT).await {
        In::Frame(Frame::Welcome { resumed, .. }) => Answer::Welcome { resumed },
        In::Close(code, reason) => Answer::Closed(code.unwrap_or(1005), reason),
        other => panic!("expected WELCOME or a close, got {other:?}"),
    }
}

fn gone() -> Answer {
    Answer::Closed(close_code::SESSION_GONE, "session gone".into())
}

/// A raw upgrade request from the local address `from` (for example
/// 127.0.0.2, another peer as far as the server can tell): the status and
/// the response head (lower-cased).
async fn raw_upgrade(from: IpAddr, to: SocketAddr, reliable: bool) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut stream = tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect");
    let protocol = if reliable {
        format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the server closed before answering");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head)
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn limited(max_failures: u32, window: Duration) -> ServerOptions {
    server_options(|o| {
        o.failed_resume_limit = Some(FailedResumeLimit {
            max_failures,
            window,
        });
    })
}

// ---------------------------------------------------------------------------
// The limit on failed resumes.

/// Up to the limit, forged HELLOs get 4001; past it, protocol sockets from
/// that address get 429 with Retry-After, until the window ends. Good
/// resumes do not count; another address, plain sockets and negotiate are
/// not affected; the real session survives and resumes after the window.
#[actix_rt::test]
async fn failed_resumes_past_the_limit_get_429_until_the_window_ends() {
    let window = Duration::from_secs(3);
    let (server, reliable) = TestServer::reliable_echo(limited(3, window)).unwrap();
    let addr = server.addr();
    let neg = negotiate_at(addr, &[]).await.unwrap();
    let (id, token) = (&neg.connection_id, &neg.reconnect_token);
    assert_eq!(
        hello(addr, id, token, 0).await,
        Answer::Welcome { resumed: false }
    );
    // Successful resumes never count.
    for _ in 0..5 {
        assert_eq!(
            hello(addr, id, token, 0).await,
            Answer::Welcome { resumed: true }
        );
    }
    // Just under and at the limit: each forged HELLO is answered 4001.
    for _ in 0..3 {
        assert_eq!(hello(addr, id, &new_reconnect_token(), 0).await, gone());
    }
    let blocked_at = std::time::Instant::now();
    // Past it: refused before the upgrade, even with the right token.
    assert_eq!(hello(addr, id, token, 0).await, Answer::Refused(429));
    let (status, head) = raw_upgrade(localhost(), addr, true).await;
    assert_eq!(status, 429, "{head}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");

    // Another address is not limited; nor are plain sockets or negotiate.
    let (status, head) = raw_upgrade(IpAddr::from([127, 0, 0, 2]), addr, true).await;
    assert_eq!(status, 101, "{head}");
    let (status, head) = raw_upgrade(localhost(), addr, false).await;
    assert_eq!(status, 101, "{head}");
    negotiate_at(addr, &[])
        .await
        .expect("negotiate is not limited");

    // After the window: the session is intact and resumes.
    tokio::time::sleep(window.saturating_sub(blocked_at.elapsed()) + Duration::from_millis(100))
        .await;
    assert_eq!(
        hello(addr, id, token, 0).await,
        Answer::Welcome { resumed: true }
    );
    assert!(reliable.sessions() >= 1);
    server.stop().await;
}

/// The default limit is on (20 failures a minute); `None` turns it off.
#[actix_rt::test]
async fn failed_resume_limit_default_is_on_and_none_turns_it_off() {
    assert_eq!(
        ServerOptions::default().failed_resume_limit,
        Some(FailedResumeLimit {
            max_failures: 20,
            window: Duration::from_secs(60)
        })
    );
    let (server, _) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let neg = negotiate_at(server.addr(), &[]).await.unwrap();
    for i in 0..20 {
        let a = hello(server.addr(), &neg.connection_id, &new_reconnect_token(), 0).await;
        assert_eq!(a, gone(), "attempt {i}");
    }
    assert_eq!(
        hello(server.addr(), &neg.connection_id, &neg.reconnect_token, 0).await,
        Answer::Refused(429)
    );
    server.stop().await;

    let mut off = ServerOptions::default();
    off.failed_resume_limit = None;
    let (server, _) = TestServer::reliable_echo(off).unwrap();
    let neg = negotiate_at(server.addr(), &[]).await.unwrap();
    for i in 0..40 {
        let a = hello(server.addr(), &neg.connection_id, &new_reconnect_token(), 0).await;
        assert_eq!(a, gone(), "attempt {i}");
    }
    assert_eq!(
        hello(server.addr(), &neg.connection_id, &neg.reconnect_token, 0).await,
        Answer::Welcome { resumed: false }
    );
    server.stop().await;
}

/// A stateful client on a blocked address sees 429, backs off, and resumes
/// its session once the window ends: nothing lost, no session lost.
#[actix_rt::test]
async fn a_blocked_client_backs_off_and_resumes_after_the_window() {
    let window = Duration::from_secs(3);
    let (server, _reliable) = TestServer::reliable_echo(limited(2, window)).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(proxy.ws_url())
                .reconnect_mode(ReconnectMode::Stateful)
                .reconnect_delays(Duration::from_millis(50), Duration::from_millis(200), 0)
                .min_uptime(Duration::ZERO)
                .heartbeat(Duration::ZERO, None),
        )
        .connect()
        .await
        .unwrap();
    ws.send("before").await.unwrap();
    assert_eq!(rec.wait_messages(1, WAIT).await.len(), 1);

    // Someone on the same address guesses tokens for an unknown session.
    let other = negotiate_at(server.addr(), &[]).await.unwrap();
    for _ in 0..2 {
        let a = hello(
            server.addr(),
            &other.connection_id,
            &new_reconnect_token(),
            0,
        )
        .await;
        assert_eq!(a, gone());
    }
    proxy.cut_all();
    ws.send("during").await.unwrap();
    let refused = rec
        .wait_for(
            WAIT,
            |e| matches!(e, RecordedEvent::Reconnecting(r) if r.reason.http_status() == Some(429)),
        )
        .await;
    assert!(refused.is_some(), "the client was refused with 429");
    let got = rec.wait_messages(2, WAIT).await;
    assert_eq!(
        got.iter().map(|p| p.as_text().unwrap()).collect::<Vec<_>>(),
        ["before", "during"]
    );
    assert!(rec
        .events()
        .iter()
        .all(|e| !matches!(e, RecordedEvent::SessionLost(_))));
    assert_eq!(ws.state(), ConnectionState::Connected);
    ws.disconnect().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Forged reconnect tokens.

/// Every wrong token (another session's, one character off, a prefix, one
/// longer, empty, 255 bytes) gets the same 4001; both real sessions stay
/// resumable.
#[actix_rt::test]
async fn forged_tokens_of_every_shape_get_the_same_4001() {
    let (server, _) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let addr = server.addr();
    let a = negotiate_at(addr, &[]).await.unwrap();
    let b = negotiate_at(addr, &[]).await.unwrap();
    let mut flipped = a.reconnect_token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forged = [
        b.reconnect_token.clone(),
        flipped,
        a.reconnect_token[..42].to_owned(),
        format!("{}A", a.reconnect_token),
        String::new(),
        "A".repeat(255),
    ];
    for t in &forged {
        assert_eq!(hello(addr, &a.connection_id, t, 0).await, gone(), "{t:?}");
    }
    for s in [&a, &b] {
        assert_eq!(
            hello(addr, &s.connection_id, &s.reconnect_token, 0).await,
            Answer::Welcome { resumed: false }
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The origin allow-list.

/// Origins are compared exactly (ignoring ASCII case): look-alikes, other
/// schemes or ports, `null` and non-UTF-8 values are refused with 403 on
/// negotiate and on both kinds of socket; no `Origin` (not a browser) is
/// allowed; without a list every origin is allowed.
#[actix_rt::test]
async fn origin_allow_list_allows_exact_matches_only() {
    let mut options = ServerOptions::default();
    options.allowed_origins = Some(vec!["https://app.example.com".into()]);
    let (server, _) = TestServer::reliable_echo(options).unwrap();
    let addr = server.addr();
    for good in ["https://app.example.com", "HTTPS://APP.Example.COM"] {
        negotiate_at(addr, &[("origin", good.as_bytes())])
            .await
            .unwrap_or_else(|s| panic!("{good}: {s}"));
        for reliable in [true, false] {
            assert!(TestPeer::open_at(addr, reliable, &[("origin", good)])
                .await
                .is_ok());
        }
    }
    negotiate_at(addr, &[]).await.expect("no Origin: allowed");
    let bad: [&[u8]; 8] = [
        b"https://app.example.com.evil.com",
        b"https://evil-app.example.com",
        b"http://app.example.com",
        b"https://app.example.com:8443",
        b"https://app.example.com/",
        b"null",
        b"",
        b"https://app.example.com\xff",
    ];
    for origin in bad {
        let shown = String::from_utf8_lossy(origin);
        assert_eq!(
            negotiate_at(addr, &[("origin", origin)]).await.err(),
            Some(403),
            "{shown}"
        );
        if let Ok(o) = std::str::from_utf8(origin) {
            for reliable in [true, false] {
                assert_eq!(
                    TestPeer::open_at(addr, reliable, &[("origin", o)])
                        .await
                        .err(),
                    Some(403)
                );
            }
        }
    }
    server.stop().await;

    let (server, _) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    negotiate_at(server.addr(), &[("origin", b"https://anyone.example")])
        .await
        .expect("no allow-list: any origin");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Reliable mode over TLS, certificate verification on.

/// A reliable echo server over rustls; its port.
fn tls_reliable_server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (u16, actix_web::dev::ServerHandle) {
    let config = server_config(cert, key);
    let reliable = ReliableServer::echo(ServerOptions::default());
    let server = HttpServer::new(move || {
        let reliable = reliable.clone();
        App::new().configure(move |c| reliable_route(c, "/ws", reliable))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind_rustls_0_23(("127.0.0.1", 0), config)
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (port, handle)
}

/// Connects a stateful client; its error, if it fails.
async fn stateful_connect(
    url: String,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    rec: &EventRecorder,
) -> Result<ResilientWebSocket, Error> {
    let mut b = ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .connection_timeout(WAIT);
    if let Some(tls) = tls {
        b = b.tls(tls);
    }
    let ws = rec.attach(b).build().unwrap();
    tokio::time::timeout(WAIT * 2, ws.connect())
        .await
        .expect("connect() ends in time")?;
    Ok(ws)
}

fn assert_tls_error(err: &Error, words: &[&str]) {
    match err {
        Error::Tls(msg) => {
            let lower = msg.to_lowercase();
            for w in words {
                assert!(lower.contains(w), "the TLS error should say {w:?}: {msg}");
            }
        }
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

/// Negotiate over https and the socket over wss, both verified: a client
/// trusting the certificate gets an echo; one with the default (webpki)
/// roots, or dialling a name the certificate does not cover, fails at
/// negotiate with a clear TLS error.
#[actix_rt::test]
async fn wss_reliable_mode_verifies_the_certificate_end_to_end() {
    let (cert, key) = certificate(&["localhost"], false);
    let (port, handle) = tls_reliable_server(cert.clone(), key);

    let rec = EventRecorder::start();
    let url = format!("wss://localhost:{port}/ws");
    let ws = stateful_connect(url.clone(), Some(trusting(&cert)), &rec)
        .await
        .expect("a trusted certificate connects");
    ws.send("over tls").await.unwrap();
    let got = rec.wait_messages(1, WAIT).await;
    assert_eq!(got[0].as_text(), Some("over tls"));
    ws.disconnect().await.unwrap();

    let rec = EventRecorder::start();
    let err = stateful_connect(url, None, &rec).await.err().unwrap();
    assert_tls_error(&err, &["certificate"]);
    let err = stateful_connect(
        format!("wss://127.0.0.1:{port}/ws"),
        Some(trusting(&cert)),
        &rec,
    )
    .await
    .err()
    .unwrap();
    assert_tls_error(&err, &["certificate"]);
    handle.stop(true).await;
}

/// An expired certificate is refused even when its root is trusted, and
/// the error says it expired.
#[actix_rt::test]
async fn wss_expired_certificate_is_a_clear_tls_error() {
    let (cert, key) = certificate(&["localhost"], true);
    let (port, handle) = tls_reliable_server(cert.clone(), key);
    let rec = EventRecorder::start();
    let err = stateful_connect(
        format!("wss://localhost:{port}/ws"),
        Some(trusting(&cert)),
        &rec,
    )
    .await
    .err()
    .unwrap();
    assert_tls_error(&err, &["certificate", "expired"]);
    handle.stop(true).await;
}

#[actix_rt::test]
async fn unknown_or_expired_sessions_do_not_count_toward_the_limit() {
    // After a server restart every client's resume names a session the new
    // server never had: many such clients behind one address must not lock
    // each other out.
    let (server, _reliable) =
        TestServer::reliable_echo(limited(3, Duration::from_secs(60))).unwrap();
    let addr = server.addr();
    for _ in 0..10 {
        assert_eq!(
            hello(addr, &new_connection_id(), &new_reconnect_token(), 0).await,
            gone()
        );
    }
    let neg = negotiate_at(addr, &[]).await.unwrap();
    assert_eq!(
        hello(addr, &neg.connection_id, &neg.reconnect_token, 0).await,
        Answer::Welcome { resumed: false },
        "ten unknown ids did not block the address"
    );
    // A wrong token for a session that exists does count.
    for _ in 0..3 {
        assert_eq!(
            hello(addr, &neg.connection_id, &new_reconnect_token(), 0).await,
            gone()
        );
    }
    assert_eq!(
        hello(addr, &neg.connection_id, &neg.reconnect_token, 0).await,
        Answer::Refused(429)
    );
}
