//! Opening one socket: URL, token and negotiate hook, then the awc upgrade
//! under `connection_timeout`, with awc's errors mapped to [`Error`].

use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{ready, Context as TaskContext, Poll},
    time::Duration,
};

use actix_codec::Framed;
use actix_http::ws::ProtocolError;
use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
};
use awc::{
    error::{ConnectError, SendRequestError, WsClientError},
    http::Uri,
    ws::{Codec, Frame as WsFrame, Message as WsMessage},
    BoxedSocket,
};
use futures_util::{future::LocalBoxFuture, Sink, Stream};

use crate::{
    options::{ClientOptions, NegotiateRequest, UrlProvider},
    protocol::{
        negotiate_url, NegotiateParams, NegotiateResponse, MAX_DATA_HEADER_LEN, SUBPROTOCOL,
    },
    Error, Result,
};

/// The socket as awc hands it over (frames in, messages out), except that
/// closing it as a sink first writes what is still buffered.
///
/// awc's `Framed::close` flushes only the I/O object and shuts it down,
/// not the codec's write buffer, so a Close frame written just before
/// `close()` is lost. With this wrapper, `SinkWrite::close()` right after
/// writing the echo of a peer's Close sends that frame and then ends our
/// half of the TCP connection, which is what actix-web waits for: after a
/// WebSocket response it lingers, reading, until the client closes or
/// `client_disconnect_timeout` (1 s) passes, while the client waits for
/// the server to close first. That cost every server-initiated close
/// (4001 session gone, 1012 restart, 4002 replaced) a second before the
/// client could reconnect.
pub(crate) struct WsFramed(Framed<BoxedSocket, Codec>);

impl Stream for WsFramed {
    type Item = std::result::Result<WsFrame, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl Sink<WsMessage> for WsFramed {
    type Error = ProtocolError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::result::Result<(), ProtocolError>> {
        Pin::new(&mut self.0).poll_ready(cx)
    }

    fn start_send(
        mut self: Pin<&mut Self>,
        item: WsMessage,
    ) -> std::result::Result<(), ProtocolError> {
        Pin::new(&mut self.0).start_send(item)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::result::Result<(), ProtocolError>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::result::Result<(), ProtocolError>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// An open socket and what the server agreed to.
pub(crate) struct Opened {
    pub(crate) framed: WsFramed,
    /// The subprotocol the server selected, if any.
    pub(crate) protocol: Option<String>,
    /// Reliable mode: the session this socket belongs to (negotiated now,
    /// or the one being resumed).
    pub(crate) session: Option<SessionInfo>,
}

/// Reliable mode: what negotiate gave, kept across sockets for resuming.
#[derive(Clone)]
pub(crate) struct SessionInfo {
    pub(crate) connection_id: String,
    pub(crate) reconnect_token: String,
    /// Where the socket of this session is opened.
    pub(crate) socket_url: String,
    pub(crate) max_unacked_bytes: usize,
    pub(crate) ack_interval: Duration,
    pub(crate) ack_threshold: u32,
    /// The largest DATA payload the server accepts, from negotiate (`None`
    /// for a session loaded from a durable store, which does not keep it).
    pub(crate) max_message_size: Option<usize>,
    /// How long the server keeps the session without a socket; past it,
    /// the client stops trying to resume and negotiates afresh.
    pub(crate) resume_window: Duration,
    /// The client id negotiate was told (kept with the session so a
    /// durable store keeps it too).
    pub(crate) client_id: String,
    /// Whether the server answers PING frames (negotiate's `ping_frames`,
    /// PROTOCOL.md §5a); `false` for a session loaded from a durable
    /// store, which then pings with WebSocket pings.
    pub(crate) ping_frames: bool,
}

/// The resume window of a session stored by a version that did not record
/// it: the protocol's default (PROTOCOL.md §8).
pub(crate) const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(30);

impl std::fmt::Debug for SessionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInfo")
            .field("connection_id", &self.connection_id)
            .field("reconnect_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Resolves the URL and token, runs the negotiate hook, and opens the socket.
///
/// In reliable mode (`session` is `Some` to resume, or `stateful` without a
/// session to negotiate a fresh one) the socket must select the protocol's
/// subprotocol.
pub(crate) async fn open(
    opts: &ClientOptions,
    url: &UrlProvider,
    failures: usize,
    stateful: bool,
    session: Option<SessionInfo>,
    client_id: String,
) -> Result<Opened> {
    let timeout = opts.connection_timeout;
    let attempt = async {
        let mut url = url.url(failures).await?;
        let mut token = match &opts.auth_token {
            Some(p) => Some(p.token().await.map_err(|e| match e {
                Error::Auth(_) => e,
                other => Error::Auth(other.to_string()),
            })?),
            None => None,
        };
        if let Some(hook) = &opts.negotiate {
            let n = (hook.0)(NegotiateRequest {
                url: url.clone(),
                auth_token: token.clone(),
            })
            .await
            .map_err(|e| match e {
                Error::Negotiate(_) => e,
                other => Error::Negotiate(other.to_string()),
            })?;
            url = n.url;
            token = n.auth_token;
        }
        if !stateful {
            return upgrade(opts, &url, token.as_deref(), &opts.protocols, None).await;
        }
        let session = match session {
            Some(s) => s,
            None => negotiate(opts, &url, token.as_deref(), client_id).await?,
        };
        let protocols = [SUBPROTOCOL.to_string()];
        let mut opened = upgrade(
            opts,
            &session.socket_url,
            token.as_deref(),
            &protocols,
            Some(SUBPROTOCOL),
        )
        .await?;
        opened.session = Some(session);
        Ok(opened)
    };
    match actix_rt::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::ConnectTimeout(timeout)),
    }
}

/// `POST {base}/negotiate`: a fresh session. The body tells the server
/// the client's id and message size limit (docs/PROTOCOL.md §1).
async fn negotiate(
    opts: &ClientOptions,
    url: &str,
    token: Option<&str>,
    client_id: String,
) -> Result<SessionInfo> {
    let endpoint = negotiate_url(url)?;
    let (endpoint, token) = place_token(opts, &endpoint, token);
    let secure = endpoint.starts_with("https:");
    let client = http_client(opts, secure);
    let mut req = client.post(endpoint.as_str());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    log::debug!("negotiating at {}", redact_query(&endpoint));
    let params = NegotiateParams {
        client_id: Some(client_id.clone()),
        max_message_size: Some(opts.max_message_size),
    };
    let mut resp = req
        .content_type("application/json")
        .send_body(params.to_body())
        .await
        .map_err(|e| map_send_error(e, secure, opts.connection_timeout))?;
    let status = resp.status().as_u16();
    match status {
        200 => {}
        404 | 405 => {
            return Err(Error::ProtocolNotSupported(format!(
                "negotiate answered HTTP {status}"
            )))
        }
        _ => return Err(Error::NegotiateRejected { status }),
    }
    let body = resp
        .body()
        .limit(opts.max_negotiate_body_size)
        .await
        .map_err(|e| Error::Negotiate(format!("reading the response: {e}")))?;
    let n = NegotiateResponse::parse(&body)?;
    if let Some(moved) = &n.url {
        if !opts.allow_negotiate_redirect {
            check_same_origin(url, moved)?;
        }
    }
    Ok(SessionInfo {
        client_id,
        socket_url: n.url.clone().unwrap_or_else(|| url.to_string()),
        connection_id: n.connection_id,
        reconnect_token: n.reconnect_token,
        max_unacked_bytes: n.max_unacked_bytes,
        ack_interval: Duration::from_millis(n.ack_interval_ms),
        ack_threshold: n.ack_threshold,
        max_message_size: Some(n.max_message_size),
        resume_window: Duration::from_millis(n.resume_window_ms),
        ping_frames: n.ping_frames,
    })
}

/// Whether negotiate's `url` stays where the application sent the client:
/// the same host and port, and no downgrade from `wss` to `ws` (an upgrade
/// from `ws` to `wss` may go from port 80 to 443). Otherwise the auth token
/// would go to a host the application never named, or in clear text
/// (docs/PROTOCOL.md §1); [`ClientOptions::allow_negotiate_redirect`]
/// lifts the check. The error names neither URL (a query may hold a
/// secret).
fn check_same_origin(from: &str, to: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Negotiate(format!(
            "the negotiate response moves the socket {why}; not followed (set allow_negotiate_redirect to allow it)"
        )))
    };
    let parse = |u: &str| -> Option<(bool, String, u16)> {
        let uri: Uri = u.parse().ok()?;
        let secure = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return None,
        };
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        Some((secure, host, port))
    };
    let (Some(a), Some(b)) = (parse(from), parse(to)) else {
        return refuse("to a URL that is not ws:// or wss://");
    };
    if a.0 && !b.0 {
        return refuse("from wss to ws");
    }
    if a.1 != b.1 {
        return refuse("to another host");
    }
    let upgrade_default_ports = !a.0 && b.0 && a.2 == 80 && b.2 == 443;
    if a.2 != b.2 && !upgrade_default_ports {
        return refuse("to another port");
    }
    Ok(())
}

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
fn http_client(opts: &ClientOptions, secure: bool) -> awc::Client {
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

async fn upgrade(
    opts: &ClientOptions,
    url: &str,
    token: Option<&str>,
    protocols: &[String],
    required: Option<&str>,
) -> Result<Opened> {
    let (url, token) = place_token(opts, url, token);
    let url = url.as_str();
    // Errors show the URL without its query (it may hold a secret).
    let shown = redact_query(url);
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::InvalidUrl(format!("{shown:?}: {e}")))?;
    let secure = match uri.scheme_str() {
        Some("ws") | Some("http") => false,
        Some("wss") | Some("https") => true,
        _ => {
            return Err(Error::InvalidUrl(format!(
                "{shown:?}: the scheme must be ws or wss"
            )))
        }
    };
    if uri.host().is_none() {
        return Err(Error::InvalidUrl(format!("{shown:?}: no host")));
    }

    let client = http_client(opts, secure);
    // In reliable mode the limit is on DATA payloads: the frame may be
    // that plus its header (the connection checks the payload).
    let frame_limit = if required.is_some() {
        opts.max_message_size.saturating_add(MAX_DATA_HEADER_LEN)
    } else {
        opts.max_message_size
    };
    let mut req = client.ws(uri).max_frame_size(frame_limit);
    for (k, v) in &opts.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if !protocols.is_empty() {
        req = req.protocols(protocols.iter().map(String::as_str));
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    log::debug!("opening WebSocket to {}", redact_query(url));
    let (resp, framed) = req
        .connect()
        .await
        .map_err(|e| map_ws_error(e, secure, opts.connection_timeout))?;

    let protocol = resp
        .headers()
        .get(awc::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(p) = &protocol {
        if !protocols.iter().any(|o| o == p) {
            return Err(Error::Handshake(format!(
                "server selected subprotocol {p:?} that was not offered"
            )));
        }
    }
    if let Some(required) = required {
        if protocol.as_deref() != Some(required) {
            return Err(Error::ProtocolNotSupported(format!(
                "the upgrade response did not select {required}"
            )));
        }
    }
    Ok(Opened {
        framed: WsFramed(framed),
        protocol,
        session: None,
    })
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

/// Where the auth token goes: in the `Authorization` header (the token is
/// returned for it), or, when `auth_token_query_param` opts in, in that
/// query parameter of the returned URL (and no header).
fn place_token<'t>(
    opts: &ClientOptions,
    url: &str,
    token: Option<&'t str>,
) -> (String, Option<&'t str>) {
    match (&opts.auth_token_query_param, token) {
        (Some(name), Some(t)) => (with_query_param(url, name, t), None),
        _ => (url.to_owned(), token),
    }
}

/// `url` with `name=value` (the value percent-encoded) added to its query,
/// before any fragment.
pub(crate) fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + name.len() + value.len() * 3 + 2);
    out.push_str(base);
    if !base.contains('?') {
        out.push('?');
    } else if !base.ends_with(['?', '&']) {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    // RFC 3986: everything but the unreserved characters is escaped.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    out.extend(percent_encoding::utf8_percent_encode(value, ESCAPED));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A URL for logs and errors: the query string may carry a token and the
/// user info a password, so both are cut (and a fragment dropped).
pub(crate) fn redact_query(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let (base, query) = match url.split_once('?') {
        Some((b, _)) => (b, "?<redacted>"),
        None => (url, ""),
    };
    let (scheme, rest) = match base.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, base),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{path}{query}"),
        None => format!("{authority}{path}{query}"),
    }
}

fn map_ws_error(e: WsClientError, secure: bool, timeout: Duration) -> Error {
    match e {
        WsClientError::InvalidResponseStatus(s) => Error::UpgradeRejected { status: s.as_u16() },
        WsClientError::Protocol(p) => Error::Handshake(p.to_string()),
        WsClientError::SendRequest(s) => map_send_error(s, secure, timeout),
        other => Error::Handshake(other.to_string()),
    }
}

fn map_send_error(e: SendRequestError, secure: bool, timeout: Duration) -> Error {
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

    #[test]
    fn query_param_is_added_and_encoded() {
        let q = |u: &str, v: &str| with_query_param(u, "access_token", v);
        assert_eq!(q("ws://h/ws", "abc"), "ws://h/ws?access_token=abc");
        assert_eq!(q("ws://h/ws?x=1", "abc"), "ws://h/ws?x=1&access_token=abc");
        assert_eq!(q("ws://h/ws?", "abc"), "ws://h/ws?access_token=abc");
        assert_eq!(q("ws://h/ws?x&", "a"), "ws://h/ws?x&access_token=a");
        assert_eq!(q("ws://h/ws#f", "a"), "ws://h/ws?access_token=a#f");
        assert_eq!(
            q("ws://h/ws", "a b+c/=&é"),
            "ws://h/ws?access_token=a%20b%2Bc%2F%3D%26%C3%A9"
        );
        assert_eq!(
            q("ws://h/ws", "A-z_0.9~"),
            "ws://h/ws?access_token=A-z_0.9~"
        );
    }

    #[test]
    fn the_token_goes_in_the_header_unless_opted_in() {
        let mut opts = ClientOptions::default();
        assert_eq!(
            place_token(&opts, "ws://h/ws", Some("t")),
            ("ws://h/ws".to_owned(), Some("t"))
        );
        opts.auth_token_query_param = Some("access_token".into());
        assert_eq!(
            place_token(&opts, "ws://h/ws", Some("t")),
            ("ws://h/ws?access_token=t".to_owned(), None)
        );
        assert_eq!(
            place_token(&opts, "ws://h/ws", None),
            ("ws://h/ws".to_owned(), None)
        );
    }

    #[test]
    fn negotiate_url_must_stay_on_the_same_origin() {
        let ok = |a: &str, b: &str| assert!(check_same_origin(a, b).is_ok(), "{a} -> {b}");
        let no = |a: &str, b: &str| {
            let e = check_same_origin(a, b).unwrap_err().to_string();
            assert!(e.contains("allow_negotiate_redirect"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        };
        ok("ws://h:1/ws", "ws://h:1/other?x=1");
        ok("ws://H:1/ws", "ws://h:1/ws");
        ok("ws://h/ws", "wss://h/ws");
        ok("ws://h:80/ws", "wss://h/ws");
        ok("wss://h/ws", "wss://h:443/ws");
        ok("ws://h:1/ws", "wss://h:1/ws");
        no("wss://h/ws", "ws://h/ws");
        no("wss://h/ws", "ws://h:443/ws");
        no("ws://h:1/ws", "ws://other:1/ws?t=secret");
        no("ws://h:1/ws", "ws://h:2/ws");
        no("ws://h:1/ws", "wss://h/ws");
        no("ws://h/ws", "http//bad");
        no("ws://h/ws", "ftp://h/ws");
    }

    #[test]
    fn redacted_urls_show_no_query_or_user_info() {
        let r = redact_query;
        assert_eq!(r("ws://h/ws?access_token=t"), "ws://h/ws?<redacted>");
        assert_eq!(r("ws://h/ws?a=1#x"), "ws://h/ws?<redacted>");
        assert_eq!(r("ws://h:1/ws#x"), "ws://h:1/ws");
        assert_eq!(r("wss://u:pw@h/ws?t=1"), "wss://<redacted>@h/ws?<redacted>");
        assert_eq!(r("http://u@h"), "http://<redacted>@h");
        assert_eq!(r("ws://h/a@b"), "ws://h/a@b");
        assert_eq!(r("h/ws?x"), "h/ws?<redacted>");
        assert_eq!(r("ws://[::1]:80/ws"), "ws://[::1]:80/ws");
    }
}
