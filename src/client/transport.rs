//! Opening one socket: URL, token and negotiate hook, then the awc upgrade
//! under `connection_timeout`, with awc's errors mapped to [`Error`].
//!
//! Beside it: `http.rs` (the awc client: TCP_NODELAY, TLS, its errors),
//! `url.rs` (where the token goes, the same-origin rule, redaction) and
//! `framed.rs` (the open socket as a sink and stream of frames).

mod framed;
mod http;
mod url;

pub(crate) use framed::WsFramed;

use std::time::Duration;

use awc::http::Uri;

use self::{
    http::{http_client, http_client_with, map_send_error, map_ws_error, RetryAfterSlot},
    url::{check_same_origin, place_token, redact_query},
};

use crate::{
    options::{ClientOptions, NegotiateRequest, UrlProvider},
    protocol::{
        negotiate_url, NegotiateParams, NegotiateResponse, MAX_DATA_HEADER_LEN, SUBPROTOCOL,
    },
    Error, Result,
};

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
        _ => {
            return Err(Error::NegotiateRejected {
                status,
                retry_after: http::retry_after(
                    status,
                    resp.headers(),
                    std::time::SystemTime::now(),
                ),
            })
        }
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

    let slot = RetryAfterSlot::default();
    let client = http_client_with(opts, secure, slot.clone());
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
    let (resp, framed) = req.connect().await.map_err(|e| {
        match map_ws_error(e, secure, opts.connection_timeout) {
            Error::UpgradeRejected { status, .. } => Error::UpgradeRejected {
                status,
                retry_after: slot.take(),
            },
            other => other,
        }
    })?;

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
        framed: WsFramed::new(framed),
        protocol,
        session: None,
    })
}
