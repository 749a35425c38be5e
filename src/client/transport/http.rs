//! The awc client for one attempt: TCP_NODELAY on every socket, the TLS
//! config, the `Retry-After` of a refused upgrade, and awc's errors mapped
//! to [`Error`].

use std::{
    cell::Cell,
    rc::Rc,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
};
use awc::{
    error::{ConnectError, SendRequestError, WsClientError},
    http::{
        header::{HeaderMap, HttpDate, RETRY_AFTER},
        Uri,
    },
    middleware::Transform,
    ConnectRequest, ConnectResponse,
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

/// The `Retry-After` of a 429 or 503 answer, as a wait from `now`:
/// delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past
/// is no wait; a value that is neither is ignored (`None`), as is the
/// header on any other status. Not capped here: the reconnect supervisor
/// caps it with `max_retry_after`, and the error shows what was sent.
pub(crate) fn retry_after(status: u16, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "very long".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at: SystemTime = value.parse::<HttpDate>().ok()?.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Where the upgrade's `Retry-After` is kept for the attempt that made it:
/// awc's `connect()` reports a refused upgrade by its status alone and
/// drops the response head, so an awc middleware reads it on the way.
#[derive(Clone, Default)]
pub(super) struct RetryAfterSlot(Rc<Cell<Option<Duration>>>);

impl RetryAfterSlot {
    /// What the last refused upgrade asked for, if anything.
    pub(super) fn take(&self) -> Option<Duration> {
        self.0.take()
    }
}

impl<S> Transform<S, ConnectRequest> for RetryAfterSlot
where
    S: actix_service::Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError>
        + 'static,
{
    type Transform = ReadRetryAfter<S>;

    fn new_transform(self, service: S) -> Self::Transform {
        ReadRetryAfter {
            service: Rc::new(service),
            slot: self,
        }
    }
}

/// The middleware service of [`RetryAfterSlot`].
pub(super) struct ReadRetryAfter<S> {
    service: Rc<S>,
    slot: RetryAfterSlot,
}

impl<S> Service<ConnectRequest> for ReadRetryAfter<S>
where
    S: Service<ConnectRequest, Response = ConnectResponse, Error = SendRequestError> + 'static,
{
    type Response = ConnectResponse;
    type Error = SendRequestError;
    type Future = LocalBoxFuture<'static, std::result::Result<ConnectResponse, SendRequestError>>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ConnectRequest) -> Self::Future {
        let (service, slot) = (self.service.clone(), self.slot.clone());
        Box::pin(async move {
            let res = service.call(req).await?;
            if let ConnectResponse::Tunnel(head, _) = &res {
                let after = retry_after(head.status.as_u16(), &head.headers, SystemTime::now());
                slot.0.set(after);
            }
            Ok(res)
        })
    }
}

/// An awc client for one attempt.
pub(super) fn http_client(opts: &ClientOptions, secure: bool) -> awc::Client {
    http_client_with(opts, secure, RetryAfterSlot::default())
}

/// An awc client for one attempt that keeps a refused upgrade's
/// `Retry-After` in `slot`.
pub(super) fn http_client_with(
    opts: &ClientOptions,
    secure: bool,
    slot: RetryAfterSlot,
) -> awc::Client {
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
        .wrap(slot)
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
        WsClientError::InvalidResponseStatus(s) => Error::UpgradeRejected {
            status: s.as_u16(),
            retry_after: None,
        },
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

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_on_429_and_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = with_retry_after(" 7 ");
        assert_eq!(retry_after(503, &secs, now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(429, &secs, now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(500, &secs, now), None, "only 429 and 503");
        let later = HttpDate::from(now + Duration::from_secs(90)).to_string();
        assert_eq!(
            retry_after(503, &with_retry_after(&later), now),
            Some(Duration::from_secs(90))
        );
        let past = HttpDate::from(now - Duration::from_secs(90)).to_string();
        assert_eq!(
            retry_after(503, &with_retry_after(&past), now),
            Some(Duration::ZERO)
        );
        for junk in ["soon", "-5", "1.5", ""] {
            assert_eq!(
                retry_after(503, &with_retry_after(junk), now),
                None,
                "{junk:?}"
            );
        }
        assert_eq!(retry_after(503, &HeaderMap::new(), now), None);
        let huge = with_retry_after("99999999999999999999999");
        assert_eq!(
            retry_after(503, &huge, now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

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
