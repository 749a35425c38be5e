//! The actix-web routes of a [`ReliableServer`]: `POST {path}/negotiate` and
//! `GET {path}` (the socket, protocol or plain).

use std::time::{Duration, Instant};

use actix_web::{
    http::{
        header::{self, HeaderValue},
        StatusCode,
    },
    web, HttpRequest, HttpResponse,
};

use futures_util::StreamExt;

use super::{
    error::ServerError,
    handle::ReliableServer,
    options::{PlainMode, ServerOptions},
    plain_socket::spawn_plain,
    socket::spawn_reliable,
};
use crate::protocol::{
    NegotiateParams, NegotiateResponse, MAX_NEGOTIATE_REQUEST_BODY, SUBPROTOCOL, VERSION,
};

/// `Retry-After` in whole seconds, rounded up: never tell a client to come
/// back early.
fn retry_after(left: Duration) -> String {
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).to_string()
}

/// Registers a [`ReliableServer`]'s routes on an actix-web app:
/// `POST {path}/negotiate` and `GET {path}` (the socket).
///
/// A socket request that asks for the `rws.reliable.v1` subprotocol speaks
/// the reliable protocol (docs/PROTOCOL.md); one that does not is a plain
/// WebSocket handled per [`ServerOptions::plain`]. Both routes check the
/// origin allow-list (`403`) and run the auth hook (`401`/`403`) first.
/// A protocol socket from an address with too many failed resumes gets
/// `429` (see [`FailedResumeLimit`](super::FailedResumeLimit)); one more
/// than [`ServerOptions::max_awaiting_hello`] sockets waiting for their
/// HELLO gets `503`. Negotiate reads the optional client body
/// ([`NegotiateParams`](crate::protocol::NegotiateParams): `413` over 4 KiB,
/// `400` when invalid) and limits anonymous callers per address
/// ([`ServerOptions::anonymous_negotiate_limit`], `429`).
///
/// Call it in the app factory of every worker with clones of one server:
/// the sessions are shared by all workers.
///
/// # Examples
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use resilient_ws::server::{reliable_route, ReliableServer, ServerOptions};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let server = ReliableServer::start(ServerOptions::default());
///     // server.on_message(my_actor.recipient()); ...
///     HttpServer::new(move || {
///         let server = server.clone();
///         App::new().configure(move |c| reliable_route(c, "/ws", server))
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// }
/// ```
pub fn reliable_route(cfg: &mut web::ServiceConfig, path: &str, server: ReliableServer) {
    let negotiate_path = format!("{}/negotiate", path.trim_end_matches('/'));
    let for_negotiate = server.clone();
    cfg.route(
        &negotiate_path,
        web::post().to(move |req: HttpRequest, body: web::Payload| {
            negotiate(req, body, for_negotiate.clone())
        }),
    )
    .route(
        path,
        web::get()
            .to(move |req: HttpRequest, body: web::Payload| socket(req, body, server.clone())),
    );
}

/// Whether the request's `Origin` (if any) is allowed.
fn origin_allowed(req: &HttpRequest, options: &ServerOptions) -> bool {
    let Some(allowed) = &options.allowed_origins else {
        return true;
    };
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    origin
        .to_str()
        .map(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)))
        .unwrap_or(false)
}

/// Origin check and auth: the identity, or the status refusing the
/// request.
fn admit(req: &HttpRequest, options: &ServerOptions) -> Result<String, StatusCode> {
    if !origin_allowed(req, options) {
        return Err(StatusCode::FORBIDDEN);
    }
    match &options.auth {
        None => Ok(String::new()),
        Some(hook) => hook(req).map_err(|refusal| {
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED)
        }),
    }
}

fn wants_subprotocol(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Reads a negotiate body of at most [`MAX_NEGOTIATE_REQUEST_BODY`] bytes;
/// `None` if it is larger (or the connection failed).
async fn read_body(mut body: web::Payload) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.ok()?;
        if buf.len() + chunk.len() > MAX_NEGOTIATE_REQUEST_BODY {
            return None;
        }
        buf.extend_from_slice(&chunk);
    }
    Some(buf)
}

async fn negotiate(req: HttpRequest, body: web::Payload, server: ReliableServer) -> HttpResponse {
    let options = server.options();
    let identity = match admit(&req, options) {
        Ok(id) => id,
        Err(status) => return HttpResponse::build(status).finish(),
    };
    if server.is_shutting_down() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")))
            .finish();
    }
    if identity.is_empty() {
        // Anonymous sessions are bounded per address (authenticated ones
        // per identity): one address must not fill max_sessions.
        let peer = req.peer_addr().map(|a| a.ip());
        let limiter = &server.shared.admission.negotiates;
        let now = Instant::now();
        if let Some(left) = limiter.blocked_for(peer, now) {
            return HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after(left)))
                .body("too many negotiates from this address");
        }
        limiter.record_failure(peer, now);
    }
    let Some(body) = read_body(body).await else {
        return HttpResponse::PayloadTooLarge().body("negotiate body too large");
    };
    let params = match NegotiateParams::parse(&body) {
        Ok(p) => p,
        Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
    };
    let (connection_id, reconnect_token) = match server.create_session(identity, params).await {
        Ok(ids) => ids,
        Err(ServerError::TooManySessionsForIdentity) => {
            log::warn!("negotiate refused: too many sessions for one identity");
            return HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")))
                .body("too many sessions for this identity");
        }
        Err(ServerError::TooManySessions) => {
            log::warn!("negotiate refused: the server holds max_sessions sessions");
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")))
                .body("too many sessions");
        }
        Err(ServerError::StoreUnavailable) => {
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")))
                .body("session store unavailable");
        }
        Err(e) => {
            log::error!("negotiate: {e}");
            return HttpResponse::ServiceUnavailable().finish();
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(NegotiateResponse {
            protocol: SUBPROTOCOL.to_owned(),
            version: VERSION,
            connection_id,
            reconnect_token,
            url: None,
            resume_window_ms: duration_ms(options.resume_window),
            max_message_size: options.max_message_size,
            max_unacked_bytes: options.max_unacked_bytes,
            ack_interval_ms: duration_ms(options.ack_interval),
            ack_threshold: options.ack_threshold,
            ping_frames: true,
        })
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn socket(
    req: HttpRequest,
    body: web::Payload,
    server: ReliableServer,
) -> actix_web::Result<HttpResponse> {
    let identity = match admit(&req, server.options()) {
        Ok(id) => id,
        Err(status) => return Ok(HttpResponse::build(status).finish()),
    };
    if wants_subprotocol(&req) {
        let peer = req.peer_addr().map(|a| a.ip());
        let limiter = &server.shared.resume_limiter;
        if let Some(left) = limiter.blocked_for(peer, Instant::now()) {
            return Ok(HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, retry_after(left)))
                .body("too many failed resumes from this address"));
        }
        let Some(permit) = server.shared.admission.await_hello() else {
            log::warn!("protocol socket refused: too many sockets waiting for their HELLO");
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")))
                .body("too many sockets waiting for HELLO"));
        };
        let (response, ws, stream) = actix_ws::handle_with_protocols(&req, body, &[SUBPROTOCOL])?;
        spawn_reliable(
            server.shared,
            server.hub,
            identity,
            peer,
            permit,
            ws,
            stream,
        );
        return Ok(response);
    }
    match server.options().plain {
        PlainMode::Reject => Ok(HttpResponse::build(StatusCode::UPGRADE_REQUIRED)
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL))
            .body("this endpoint requires the rws.reliable.v1 subprotocol")),
        mode => {
            let (response, ws, stream) = actix_ws::handle(&req, body)?;
            spawn_plain(server.shared, mode, ws, stream);
            Ok(response)
        }
    }
}

/// The auth token a request carries, for an [`AuthHook`](super::AuthHook):
/// the `Authorization: Bearer <token>` header, or else, when `query_param`
/// is given, that query parameter (percent-decoded): for clients that
/// cannot set headers (browsers, or a client with
/// [`ClientOptions::auth_token_query_param`](crate::ClientOptions::auth_token_query_param)).
///
/// A token in a URL shows up wherever the request line is logged: with
/// actix-web's `Logger`, log the path without the query (`%U`) rather
/// than the request line (`%r`, which the default format uses).
///
/// # Examples
/// ```
/// use resilient_ws::server::{request_token, AuthRefusal, ServerOptions};
///
/// let options = ServerOptions::default().with_auth(|req| {
///     match request_token(req, Some("access_token")) {
///         Some(t) if t == "let-me-in" => Ok("user-1".to_owned()),
///         _ => Err(AuthRefusal::Unauthorized),
///     }
/// });
/// # let _ = options;
/// ```
pub fn request_token(req: &HttpRequest, query_param: Option<&str>) -> Option<String> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    if from_header.is_some() {
        return from_header;
    }
    let name = query_param?;
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok()?;
    query
        .0
        .into_iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::request_token;

    #[test]
    fn request_token_from_header_or_opted_in_query() {
        let req = TestRequest::default()
            .insert_header(("authorization", "Bearer abc"))
            .to_http_request();
        assert_eq!(request_token(&req, None).as_deref(), Some("abc"));
        let req = TestRequest::default()
            .insert_header(("authorization", "bearer  abc "))
            .uri("/ws?access_token=other")
            .to_http_request();
        assert_eq!(
            request_token(&req, Some("access_token")).as_deref(),
            Some("abc"),
            "the header wins"
        );
        let req = TestRequest::default()
            .uri("/ws?x=1&access_token=a%20b%2Bc")
            .to_http_request();
        assert_eq!(request_token(&req, None), None, "the query only when asked");
        assert_eq!(
            request_token(&req, Some("access_token")).as_deref(),
            Some("a b+c")
        );
        for (auth, uri) in [
            (Some("Basic abc"), "/ws"),
            (Some("Bearer "), "/ws?access_token="),
            (None, "/ws?token=abc"),
            (None, "/ws"),
        ] {
            let mut r = TestRequest::default().uri(uri);
            if let Some(a) = auth {
                r = r.insert_header(("authorization", a));
            }
            let req = r.to_http_request();
            assert_eq!(
                request_token(&req, Some("access_token")),
                None,
                "{auth:?} {uri}"
            );
        }
    }
}
