//! `wss://` end to end: an actix-web server on 127.0.0.1:0 with a self-signed
//! certificate (rcgen), serving the echo route over rustls 0.23, and the
//! client trusting (or not trusting) that certificate.
//!
//! Every crypto provider is passed explicitly (`ring`); nothing relies on a
//! process-default provider.

mod common;

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use actix_web::{dev::ServerHandle, App, HttpServer};
use common::{certificate, server_config, trusting};
use resilient_ws::{
    server::{echo_route, EchoConfig},
    testing::TestServer,
    ConnectionState, Error, IncomingMessage, Payload, ReconnectMode, ResilientWebSocket,
};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;

/// How long any single wait in these tests may take before it counts as a hang.
const WAIT: Duration = Duration::from_secs(5);

/// A running `wss://` echo server.
struct TlsEchoServer {
    port: u16,
    handle: ServerHandle,
    cert: CertificateDer<'static>,
}

impl TlsEchoServer {
    /// Starts an echo server on 127.0.0.1:0 with a fresh self-signed
    /// certificate for `names`. The server offers ALPN `h2` and `http/1.1`,
    /// like a typical production server, so the client must pin HTTP/1.1.
    fn start(names: &[&str]) -> TlsEchoServer {
        let (cert, key) = certificate(names, false);
        let mut config = server_config(cert.clone(), key);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let server = HttpServer::new(|| {
            App::new().configure(|c| echo_route(c, "/ws", EchoConfig::default()))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind_rustls_0_23(("127.0.0.1", 0), config)
        .expect("bind 127.0.0.1:0 with rustls");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        TlsEchoServer { port, handle, cert }
    }

    fn url(&self, host: &str) -> String {
        format!("wss://{host}:{}/ws", self.port)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Forwards every `IncomingMessage` into a channel the test awaits.
struct Forward(mpsc::UnboundedSender<Payload>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Forward {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        let _ = self.0.send(msg.payload);
    }
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Payload>) -> Payload {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an echo within the timeout")
        .expect("the forwarder is alive")
}

/// Connects to `url` with `tls`, sends a text and a binary message, checks
/// both come back unchanged, and disconnects.
async fn echo_round_trip(url: String, tls: Arc<rustls::ClientConfig>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fwd = Forward(tx).start();
    let ws = ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::None)
        .connection_timeout(WAIT)
        .tls(tls)
        .on_message(fwd.recipient())
        .build()
        .expect("valid options");
    tokio::time::timeout(WAIT, ws.connect())
        .await
        .expect("connect() must not hang")
        .expect("wss connect succeeds with the self-signed root trusted");
    assert_eq!(ws.state(), ConnectionState::Connected);

    ws.send("hello over tls").await.expect("send text");
    ws.send(vec![0u8, 1, 2, 254, 255])
        .await
        .expect("send binary");

    assert_eq!(recv(&mut rx).await, Payload::Text("hello over tls".into()));
    assert_eq!(
        recv(&mut rx).await,
        Payload::Binary(vec![0u8, 1, 2, 254, 255].into())
    );

    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect() must not hang")
        .expect("disconnect succeeds");
    assert_eq!(ws.state(), ConnectionState::Disconnected);
}

/// Connects a client that must fail, and returns its error (bounded in time,
/// so a hang fails the test instead of blocking it).
async fn connect_err(url: String, tls: Option<Arc<rustls::ClientConfig>>) -> Error {
    let mut builder = ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::None)
        .connection_timeout(WAIT);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let ws = builder.build().expect("valid options");
    let err = tokio::time::timeout(WAIT * 2, ws.connect())
        .await
        .expect("connect() must fail, not hang")
        .expect_err("connect() must fail");
    assert_eq!(ws.state(), ConnectionState::Disconnected);
    err
}

#[actix_rt::test]
async fn wss_echo_by_hostname_with_custom_root() {
    let server = TlsEchoServer::start(&["localhost", "127.0.0.1"]);
    echo_round_trip(server.url("localhost"), trusting(&server.cert)).await;
    server.stop().await;
}

#[actix_rt::test]
async fn wss_echo_by_ip_address_san() {
    let server = TlsEchoServer::start(&["localhost", "127.0.0.1"]);
    echo_round_trip(server.url("127.0.0.1"), trusting(&server.cert)).await;
    server.stop().await;
}

/// A user config that offers `h2` first (as a config shared with an HTTP
/// client might) still gets an HTTP/1.1 upgrade: the client pins ALPN.
#[actix_rt::test]
async fn wss_user_config_offering_h2_still_upgrades_over_http11() {
    let server = TlsEchoServer::start(&["localhost", "127.0.0.1"]);
    let mut config = (*trusting(&server.cert)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    echo_round_trip(server.url("localhost"), Arc::new(config)).await;
    server.stop().await;
}

/// The default config trusts only the webpki (Mozilla) roots, so a
/// self-signed server is refused with a TLS error, quickly.
#[actix_rt::test]
async fn wss_default_roots_reject_self_signed_server() {
    let server = TlsEchoServer::start(&["localhost", "127.0.0.1"]);
    let started = std::time::Instant::now();
    let err = connect_err(server.url("localhost"), None).await;
    eprintln!("default roots vs self-signed: {err:?} / {err}");
    match &err {
        Error::Tls(msg) => assert!(
            msg.to_lowercase().contains("certificate"),
            "the TLS error should say what is wrong with the certificate: {msg}"
        ),
        other => panic!("expected Error::Tls, got {other:?}"),
    }
    assert!(
        started.elapsed() < WAIT,
        "a rejected certificate must fail fast, not wait for the timeout"
    );
    server.stop().await;
}

/// The certificate is trusted but not valid for the name dialled.
#[actix_rt::test]
async fn wss_name_mismatch_is_tls_error() {
    let server = TlsEchoServer::start(&["localhost"]);
    let err = connect_err(server.url("127.0.0.1"), Some(trusting(&server.cert))).await;
    eprintln!("name mismatch: {err:?} / {err}");
    assert!(
        matches!(err, Error::Tls(_)),
        "expected Error::Tls, got {err:?}"
    );
    server.stop().await;
}

/// `wss://` against a plain-HTTP server: the TLS handshake reads HTTP bytes.
/// It must be a clear error, not a hang.
#[actix_rt::test]
async fn wss_against_plain_server_fails_cleanly() {
    let server = TestServer::echo().await.expect("plain echo server");
    let url = format!("wss://{}/ws", server.addr());
    let (cert, _) = certificate(&["127.0.0.1"], false);
    let err = connect_err(url, Some(trusting(&cert))).await;
    eprintln!("wss against plain server: {err:?} / {err}");
    assert!(
        matches!(err, Error::Tls(_)),
        "expected Error::Tls, got {err:?}"
    );
    server.stop().await;
}

/// A client that trusts the self-signed root can connect again after a
/// rejected attempt by another client: the server is unaffected.
#[actix_rt::test]
async fn wss_server_survives_rejected_handshake() {
    let server = TlsEchoServer::start(&["localhost", "127.0.0.1"]);
    let err = connect_err(server.url("127.0.0.1"), None).await;
    assert!(
        matches!(err, Error::Tls(_)),
        "expected Error::Tls, got {err:?}"
    );
    echo_round_trip(server.url("127.0.0.1"), trusting(&server.cert)).await;
    server.stop().await;
}
