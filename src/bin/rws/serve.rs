//! `rws serve`: the reliable server at `/ws`, echoing or broadcasting, that
//! tells its clients when to come back before it stops on a signal.

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use resilient_ws::{
    protocol::ShutdownAdvice,
    server::{
        reliable_route, request_token, AuthRefusal, PlainMode, RedisSessionStore, ReliableServer,
        ServerOptions, SessionStore,
    },
};
use tokio::sync::mpsc;

use crate::{
    args::ServeArgs, millis, signals::watch_signals, static_files, tls, EXIT_FAILURE, EXIT_SETUP,
};

/// How long `rws serve` waits for open connections on shutdown. actix-web's
/// default of 30 s would keep a Ctrl-C'd server alive as long as any
/// WebSocket stays open.
const SERVE_SHUTDOWN_SECS: u64 = 3;

/// Runs `rws serve` until it is stopped; returns the process exit code.
pub(crate) fn run(args: ServeArgs) -> i32 {
    let mut options = ServerOptions::default();
    options.resume_window = args.resume_window;
    options.shutdown_drain_timeout = args.shutdown_drain;
    options.store_unavailable_timeout = args.store_unavailable_timeout;
    options.keep_alive_interval = args.keep_alive;
    options.client_timeout = args.client_timeout;
    options.plain = if args.broadcast {
        PlainMode::Broadcast
    } else {
        PlainMode::Echo
    };
    if let Some(n) = args.max_message_size {
        options.max_message_size = n;
    }
    if let Some(n) = args.max_unacked_bytes {
        options.max_unacked_bytes = n;
    }
    apply_limits(&mut options, &args);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(msg) => {
                say!("rws: {msg}");
                return EXIT_SETUP;
            }
        },
        _ => None,
    };
    let route = args.path.clone();
    let token_param = args.token_query_param.clone();
    if let Some(token) = args.auth_token.clone() {
        let forbidden = args.forbidden_token.clone();
        // The query parameter is read because browsers cannot send the
        // header on a WebSocket (docs/PROTOCOL.md §2).
        options.auth = Some(Arc::new(move |req| {
            match request_token(req, Some(token_param.as_str())) {
                Some(t) if resilient_ws::protocol::tokens_equal(&t, &token) => {
                    Ok("user".to_owned())
                }
                Some(t)
                    if forbidden
                        .as_deref()
                        .is_some_and(|f| resilient_ws::protocol::tokens_equal(&t, f)) =>
                {
                    Err(AuthRefusal::Forbidden)
                }
                _ => Err(AuthRefusal::Unauthorized),
            }
        }));
    }
    let static_dir = args.static_dir.clone();
    let advice = ShutdownAdvice {
        reconnect_after_ms: millis(args.shutdown_reconnect_after),
        spread_ms: millis(args.shutdown_spread),
    };
    actix_rt::System::new().block_on(async move {
        let mut options = options;
        match &args.redis {
            None => {}
            Some(url) => {
                let node_id = args.node_id.clone().unwrap_or_else(default_node_id);
                match RedisSessionStore::connect(url, node_id).await {
                    Ok(store) => {
                        let store = store.with_prefix(args.redis_prefix.clone());
                        say!(
                            "session store: redis {} (prefix {}), node id {}",
                            redact(url),
                            store.prefix(),
                            store.node_id()
                        );
                        options.store = SessionStore::Redis(store);
                    }
                    Err(e) => {
                        say!("rws: cannot use Redis at {}: {e}", redact(url));
                        return EXIT_SETUP;
                    }
                }
            }
        }
        // Session actors live on the workers (see the Threading section of
        // `resilient_ws::server`); only the hub is on
        // this (the main) arbiter.
        let reliable = if args.broadcast {
            ReliableServer::broadcast_mode(options)
        } else {
            ReliableServer::echo(options)
        };
        let for_workers = reliable.clone();
        let server = HttpServer::new(move || {
            let reliable = for_workers.clone();
            let route = route.clone();
            let app = App::new().configure(move |c| reliable_route(c, &route, reliable));
            match static_dir.clone() {
                Some(dir) => app
                    .app_data(web::Data::new(static_files::Root(dir)))
                    .default_service(web::get().to(static_files::serve)),
                None => app,
            }
        })
        // Signals are ours: clients must be told to come back (1012) before
        // the HTTP server stops.
        .disable_signals()
        // Small frames (acks, short messages) must not wait out Nagle's
        // algorithm against the client's delayed ACK (a ~40 ms stall).
        .tcp_nodelay(true)
        .shutdown_timeout(SERVE_SHUTDOWN_SECS);
        // Unset: actix-web's default, one worker per physical core.
        let server = match args.workers {
            Some(n) => server.workers(n),
            None => server,
        };
        // `bind` already listens, so clients may connect as soon as the line
        // below is printed (tests wait for it).
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let bound = match tls {
            Some(config) => server.bind_rustls_0_23(args.bind.as_str(), config),
            None => server.bind(args.bind.as_str()),
        };
        let server = match bound {
            Ok(s) => s,
            Err(e) => {
                say!("rws: cannot listen on {}: {e}", args.bind);
                return EXIT_SETUP;
            }
        };
        for addr in server.addrs() {
            say!("listening on {scheme}://{addr}{}", args.path);
        }
        let server = server.run();
        actix_rt::spawn(stop_on_signal(reliable, server.handle(), advice));
        match server.await {
            Ok(()) => 0,
            Err(e) => {
                say!("rws: server failed: {e}");
                EXIT_FAILURE
            }
        }
    })
}

/// The limits of issue 15's flags (`--max-fragments`, `--failed-resume-limit`,
/// `--max-sessions`, ...): each one left out keeps the library's default.
fn apply_limits(options: &mut ServerOptions, args: &ServeArgs) {
    options.failed_resume_limit = args.failed_resume_limit.0;
    if let Some(n) = args.max_fragments {
        options.max_fragments = n;
    }
    if let Some(n) = args.max_sessions {
        options.max_sessions = n;
    }
    if let Some(n) = args.max_sessions_per_identity {
        options.max_sessions_per_identity = n;
    }
    if let Some(d) = args.hello_timeout {
        options.hello_timeout = d;
    }
}

/// This node's default id: HOSTNAME-PID (unique per process on a host).
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rws".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The URL without a password (`redis://:secret@host` → `redis://:***@host`).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// On the first SIGINT/SIGTERM: drains every reliable session (see
/// `--shutdown-drain`) and tells every client when to come back (close
/// 1012 with `advice`), then stops the HTTP server gracefully (it waits up
/// to [`SERVE_SHUTDOWN_SECS`] for the closing sockets). A second signal
/// stops it at once.
async fn stop_on_signal(
    reliable: ReliableServer,
    handle: actix_web::dev::ServerHandle,
    advice: ShutdownAdvice,
) {
    let (tx, mut signals) = mpsc::unbounded_channel();
    actix_rt::spawn(watch_signals(move || tx.send(()).is_ok()));
    if signals.recv().await.is_none() {
        return;
    }
    say!(
        "rws: shutting down; clients are told to reconnect in {} ms (+ up to {} ms)",
        advice.reconnect_after_ms,
        advice.spread_ms
    );
    let graceful = {
        let handle = handle.clone();
        async move {
            if let Err(e) = reliable.shutdown(advice).await {
                log::warn!("shutdown advice not sent: {e}");
            }
            handle.stop(true).await;
        }
    };
    tokio::select! {
        () = graceful => {}
        _ = signals.recv() => handle.stop(false).await,
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redis_urls_are_printed_without_their_password() {
        assert_eq!(
            redact("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(
            redact("redis://user:p@ss@host/"),
            "redis://user:***@host/",
            "an @ in the password"
        );
        assert_eq!(redact("redis://user@host/"), "redis://user@host/");
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
