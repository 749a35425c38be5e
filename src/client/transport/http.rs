//! The awc client for one attempt: TCP_NODELAY on every socket, the TLS
//! config, and awc's errors mapped to [`Error`].

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
};
use awc::{
    error::{ConnectError, SendRequestError, WsClientError},
    http::Uri,
};
use futures_util::future::LocalBoxFuture;

use crate::{options::ClientOptions, Error};

/// awc's TCP connector (DNS, then connect) plus `TCP_NODELAY` on every
/// socket it opens. Without it, Nagle's algorithm holds back a small frame
/// while an earlier one is unacknowledged, and the peer's delayed ACK turns
/// that into a ~40 ms stall (seen as a 40 ms tail in the round-trip bench:
/// a reliable-mode ACK frame followed by a DATA frame is exactly that
/// pattern). A WebSocket writes whole messages, so coalescing buys nothing.
#[derive(Clone, Default)]
struct NoDelayConnector(actix_tls::connect::ConnectorService);

impl Service<ConnectInfo<Uri>> for NoDelayConnector {
    type Response = TcpConnection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, std::result::Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let connecting = self.0.call(req);
        Box::pin(async move {
            let conn = connecting.await?;
            // Best effort: a socket that refuses the option still works.
            if let Err(e) = conn.io_ref().set_nodelay(true) {
                log::debug!("could not set TCP_NODELAY: {e}");
            }
            Ok(conn)
        })
    }
}

/// An awc client for one attempt.
pub(super) fn http_client(opts: &ClientOptions, secure: bool) -> awc::Client {
    let mut connector = awc::Connector::new()
        .connector(NoDelayConnector::default())
        // One slot per socket is held for the socket's life; the default of
        // 100 makes the 101st connect hang.
        .limit(0)
        .timeout(opts.connection_timeout)
        .handshake_timeout(opts.connection_timeout);
    if secure {
        connector = connector.rustls_0_23(tls_config(opts));
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(opts.connection_timeout)
        // A redirect is answered as the refusal it is: the protocol moves
        // clients with negotiate's `url`, and a redirect loop must not cost
        // ten requests per attempt.
        .disable_redirects()
        .finish()
}

/// The TLS config: the user's, or webpki roots with rustls' safe defaults.
/// ALPN is pinned to HTTP/1.1 because WebSocket upgrades need it.
fn tls_config(opts: &ClientOptions) -> Arc<rustls::ClientConfig> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let with_alpn = |mut c: rustls::ClientConfig| {
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    };
    match &opts.tls {
        Some(c) if c.alpn_protocols == [b"http/1.1".to_vec()] => c.clone(),
        Some(c) => with_alpn((**c).clone()),
        None => DEFAULT
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                with_alpn(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
                )
            })
            .clone(),
    }
}

pub(super) fn map_ws_error(e: WsClientError, secure: bool, timeout: Duration) -> Error {
    match e {
        WsClientError::InvalidResponseStatus(s) => Error::UpgradeRejected { status: s.as_u16() },
        WsClientError::Protocol(p) => Error::Handshake(p.to_string()),
        WsClientError::SendRequest(s) => map_send_error(s, secure, timeout),
        other => Error::Handshake(other.to_string()),
    }
}

pub(super) fn map_send_error(e: SendRequestError, secure: bool, timeout: Duration) -> Error {
    match e {
        SendRequestError::Url(u) => Error::InvalidUrl(u.to_string()),
        SendRequestError::Connect(ConnectError::Io(io)) => {
            // rustls failures surface as I/O errors of kind InvalidData.
            if secure && io.kind() == std::io::ErrorKind::InvalidData {
                Error::Tls(io.to_string())
            } else {
                Error::io(io)
            }
        }
        SendRequestError::Connect(ConnectError::Timeout) | SendRequestError::Timeout => {
            Error::ConnectTimeout(timeout)
        }
        SendRequestError::Connect(ConnectError::SslIsNotSupported) => {
            Error::Tls("TLS is not available in this client's connector".into())
        }
        SendRequestError::Connect(other) => Error::io(std::io::Error::other(other.to_string())),
        SendRequestError::Send(io) => Error::io(io),
        other => Error::Handshake(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn the_tcp_connector_sets_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let conn = NoDelayConnector::default()
            .call(ConnectInfo::new(uri))
            .await
            .expect("connect");
        assert!(conn.io_ref().nodelay().unwrap());
    }
}
