//! `rws connect`: builds the client from the flags, starts the printer, the
//! stdin forwarder, the echo task and the signal watcher, and turns how the
//! connection ended into the exit status.

use actix::prelude::*;
use resilient_ws::{Error, Payload, ResilientWebSocket, ResilientWebSocketBuilder};
use tokio::sync::mpsc;

use crate::{
    args::{check_connect_args, ConnectArgs},
    control::Control,
    printer::{Barrier, Printer},
    signals::watch_signals,
    stdin, tls, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_SETUP,
};

/// Runs `rws connect` until the client is disconnected for good; returns
/// the process exit code.
pub(crate) fn run(args: ConnectArgs) -> i32 {
    if let Err(msg) = check_connect_args(&args) {
        say!("rws: {msg}");
        return EXIT_SETUP;
    }
    let tls = match tls::client_config(&tls::ClientTls {
        ca: args.ca.as_deref(),
        identity: args.cert.as_deref().zip(args.key.as_deref()),
        insecure: args.insecure,
    }) {
        Ok(tls) => tls,
        Err(msg) => {
            say!("rws: {msg}");
            return EXIT_SETUP;
        }
    };
    if args.insecure {
        say!("{}", tls::INSECURE_WARNING);
    }
    actix_rt::System::new().block_on(run_client(args, tls))
}

/// `url` with its path replaced by `path` (`--path`); the query stays.
fn with_path(url: &str, path: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority..];
    let path_at = rest
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority + i);
    let tail = &url[path_at..];
    let query = tail.find(['?', '#']).map_or("", |i| &tail[i..]);
    format!("{}{path}{query}", &url[..path_at])
}

/// The client as the flags describe it, every event going to `printer`.
fn builder(
    args: &ConnectArgs,
    printer: &Addr<Printer>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> ResilientWebSocketBuilder {
    let url = |u: &String| match &args.path {
        Some(path) => with_path(u, path),
        None => u.clone(),
    };
    let builder = if args.endpoints.is_empty() {
        ResilientWebSocket::builder(url(&args.url))
    } else {
        let mut urls = vec![url(&args.url)];
        urls.extend(args.endpoints.iter().map(url));
        ResilientWebSocket::builder_with_endpoints(urls)
    };
    let mut builder = builder
        .reconnect_mode(args.mode.into())
        .reconnect_delays(args.initial_delay, args.max_delay, args.max_attempts)
        .min_uptime(args.min_uptime)
        .heartbeat(args.heartbeat_interval, args.heartbeat_timeout)
        .buffering(!args.no_buffer, args.buffer)
        .overflow_policy(args.overflow)
        .on_message(printer.clone().recipient())
        .on_state(printer.clone().recipient())
        .on_error(printer.clone().recipient())
        .on_closed(printer.clone().recipient())
        .on_reconnecting(printer.clone().recipient())
        .on_reconnected(printer.clone().recipient())
        .on_dropped(printer.clone().recipient())
        .on_session_lost(printer.clone().recipient());
    if let Some(name) = &args.token_query_param {
        builder = builder.auth_token_query_param(name.clone());
    }
    if let Some(ttl) = args.message_ttl {
        builder = builder.message_ttl(ttl);
    }
    if let Some(d) = args.connect_timeout {
        builder = builder.connection_timeout(d);
    }
    if let Some(d) = args.close_timeout {
        builder = builder.close_timeout(d);
    }
    if let Some(n) = args.max_message_size {
        builder = builder.max_message_size(n);
    }
    if let Some(n) = args.max_outbound_message_size {
        builder = builder.max_outbound_message_size(n);
    }
    if let Some(n) = args.max_fragments {
        builder = builder.max_fragments(n);
    }
    if let Some(config) = tls {
        builder = builder.tls(config);
    }
    if let Some(path) = &args.store {
        builder = builder.durable_store(path.clone());
    }
    for (name, value) in &args.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    for p in &args.protocols {
        builder = builder.protocol(p.clone());
    }
    if !args.preamble.is_empty() {
        builder = builder.preamble(args.preamble.iter().cloned());
    }
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("RWS_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if let Some(token) = token {
        builder = builder.auth_token(move || {
            let t = token.clone();
            async move { Ok(t) }
        });
    }
    builder
}

async fn run_client(args: ConnectArgs, tls: Option<std::sync::Arc<rustls::ClientConfig>>) -> i32 {
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    // Echoes go through a task (not `try_send` in the printer) so they are
    // sent in order and wait for the client's mailbox when it is full.
    let (echo_tx, echo_rx) = if args.echo {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let printer = Printer::new(args.json, args.jsonl, echo_tx, control_tx.clone()).start();

    let ws = match builder(&args, &printer, tls).connect().await {
        Ok(ws) => ws,
        Err(e) => {
            // Let the printer show the events of the failed attempt first:
            // they are already in its mailbox, ahead of this message.
            let _ = printer.send(Barrier).await;
            say!("rws: {e}");
            return EXIT_SETUP;
        }
    };

    if let Some(rx) = echo_rx {
        actix_rt::spawn(forward_echoes(ws.clone(), rx));
    }
    stdin::spawn(&ws, &args, printer.clone(), control_tx.clone());
    actix_rt::spawn(watch_signals(move || {
        control_tx.send(Control::Interrupted).is_ok()
    }));

    // The loop ends only on `Ended`, which the printer sends when the client
    // is `Disconnected` for good: a lost connection that is being retried is
    // `Reconnecting`, never `Disconnected`, so it keeps the process alive.
    let mut failure = None;
    let mut interrupted = false;
    let ended = loop {
        match control_rx.recv().await {
            Some(Control::Ended(error)) => break error,
            Some(Control::Failed(msg)) => {
                if failure.is_none() {
                    failure = Some(msg);
                    spawn_disconnect(&ws);
                }
            }
            Some(Control::Interrupted) => {
                if interrupted {
                    // A second signal: the user does not want to wait for
                    // the close handshake.
                    return EXIT_INTERRUPTED;
                }
                interrupted = true;
                spawn_disconnect(&ws);
            }
            // Cannot happen while `watch_signals` holds a sender; treat it as
            // the end anyway rather than hang.
            None => break None,
        }
    };

    // Let the printer finish the events already in its mailbox, so the last
    // line on stderr is the verdict below.
    let _ = printer.send(Barrier).await;
    // Lines still in the outbox were accepted but never written: the client
    // gave up, or was closed while reconnecting.
    let unsent = ws.stats().messages_buffered;
    if unsent > 0 {
        say!("rws: {unsent} buffered line(s) were not sent");
    }

    if let Some(msg) = failure {
        say!("rws: {msg}");
        EXIT_FAILURE
    } else if interrupted {
        EXIT_INTERRUPTED
    } else if let Some(e) = ended {
        match e {
            // Already says what happened: "gave up reconnecting after ...".
            Error::GaveUp { .. } => say!("rws: {e}"),
            e => say!("rws: connection closed: {e}"),
        }
        EXIT_FAILURE
    } else if unsent > 0 {
        EXIT_FAILURE
    } else {
        0
    }
}

/// Starts a graceful close without blocking the caller; its end arrives as
/// [`Control::Ended`] from the printer.
fn spawn_disconnect(ws: &ResilientWebSocket) {
    let ws = ws.clone();
    actix_rt::spawn(async move {
        let _ = ws.disconnect().await;
    });
}

/// Sends received messages back, in the order they arrived.
async fn forward_echoes(ws: ResilientWebSocket, mut rx: mpsc::UnboundedReceiver<Payload>) {
    while let Some(payload) = rx.recv().await {
        if let Err(e) = ws.send(payload).await {
            // The connection is going away; its end is reported elsewhere.
            log::warn!("echo not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_path;

    #[test]
    fn path_replaces_the_urls_path_and_keeps_its_query() {
        assert_eq!(with_path("ws://h:1", "/a"), "ws://h:1/a");
        assert_eq!(with_path("ws://h:1/ws", "/a/b"), "ws://h:1/a/b");
        assert_eq!(with_path("wss://h/ws?x=1", "/a"), "wss://h/a?x=1");
        assert_eq!(with_path("ws://h?x=1", "/a"), "ws://h/a?x=1");
    }
}
