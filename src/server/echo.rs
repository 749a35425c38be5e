//! An echo endpoint: every text or binary message comes back unchanged.
//!
//! One of three echo paths, kept apart on purpose because each answers to
//! a different contract:
//! - this one is stateless and server-less: no [`ReliableServer`](super::ReliableServer),
//!   no keep-alive, no shutdown, actix-ws's own fragment aggregation, and
//!   the client's close answered with its code and reason. It is the peer
//!   of the test kit's `TestServer::echo` (nearly every client test) and
//!   of conformance runs, so its wire behaviour stays fixed;
//! - the plain echo of a `ReliableServer` (`plain_socket.rs`,
//!   [`PlainMode::Echo`](super::PlainMode::Echo)) is one of that server's
//!   clients: counted, kept alive, closed by its shutdown, limited by its
//!   options and paced by an echo byte budget;
//! - the reliable echo mode ([`ReliableServer::echo`](super::ReliableServer::echo))
//!   is done by the session actor: numbered, acknowledged, replayed across
//!   resumes (exactly once).

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};

/// Limits for the echo endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EchoConfig {
    /// The largest message accepted (after joining fragments); larger ones
    /// close the socket with 1009.
    pub max_message_size: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            max_message_size: 16 * 1024 * 1024,
        }
    }
}

/// Registers the echo WebSocket endpoint at `path` on an actix-web app.
///
/// # Examples
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use resilient_ws::server::{echo_route, EchoConfig};
///
/// # async fn f() -> std::io::Result<()> {
/// HttpServer::new(|| App::new().configure(|c| echo_route(c, "/ws", EchoConfig::default())))
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await
/// # }
/// ```
pub fn echo_route(cfg: &mut web::ServiceConfig, path: &str, config: EchoConfig) {
    cfg.app_data(web::Data::new(config))
        .route(path, web::get().to(echo));
}

async fn echo(
    req: HttpRequest,
    body: web::Payload,
    config: web::Data<EchoConfig>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let max = config.max_message_size;
    let mut stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    actix_rt::spawn(async move {
        while let Some(msg) = stream.recv().await {
            let sent = match msg {
                Ok(AggregatedMessage::Text(t)) => session.text(t).await,
                Ok(AggregatedMessage::Binary(b)) => session.binary(b).await,
                Ok(AggregatedMessage::Ping(p)) => session.pong(&p).await,
                Ok(AggregatedMessage::Pong(_)) => Ok(()),
                Ok(AggregatedMessage::Close(reason)) => {
                    // Answer the client's Close with its own code.
                    let _ = session.close(reason).await;
                    return;
                }
                Err(e) => {
                    let code = match e {
                        actix_ws::ProtocolError::Overflow => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    };
                    log::debug!("echo: closing with {code:?}: {e}");
                    let reason = CloseReason {
                        code,
                        description: None,
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(response)
}
