//! An actix-web app with its own actor that consumes a WebSocket feed.
//!
//! `FeedConsumer` holds a [`ResilientWebSocket`] to an upstream server,
//! receives its `IncomingMessage`s and keeps statistics. Two HTTP routes talk
//! to the actor through its `Addr`:
//!
//! - `GET /stats`: the connection state, how many messages went each way,
//!   and the last one received, as JSON;
//! - `POST /send`: sends the request body (UTF-8 text) upstream;
//! - `GET /metrics`: the client's metrics in Prometheus' text format
//!   (`rws_client_*`, label `client="upstream"`: the table is in
//!   `resilient_ws::metrics`), from a `MetricsReporter` and
//!   metrics-exporter-prometheus's recorder.
//!
//! Standalone (an in-process echo server is the upstream, so everything you
//! `POST /send` comes back and shows up in `/stats`):
//!
//! ```text
//! cargo run --example actix_web_app -F metrics
//! curl -d 'hello' http://127.0.0.1:8081/send
//! curl http://127.0.0.1:8081/stats
//! curl http://127.0.0.1:8081/metrics
//! ```
//!
//! Against another upstream, on another address:
//!
//! ```text
//! cargo run --example actix_web_app -F metrics -- --bind 127.0.0.1:9000 ws://127.0.0.1:8080/ws
//! ```
//!
//! It runs until Ctrl-C (or SIGTERM), then closes the upstream socket
//! gracefully. With `--smoke` (or `RWS_SMOKE=1`) it instead binds
//! 127.0.0.1:0, does one `POST /send` + `GET /stats` cycle against itself,
//! and exits 0 on success (1 on failure).
//!
//! It needs the `metrics` feature (`cargo run --example actix_web_app -F
//! metrics`; `-F cli` includes it).

use std::{
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use resilient_ws::{
    metrics::MetricsReporter, testing::TestServer, ConnectionState, ErrorEvent, IncomingMessage,
    Payload, ResilientWebSocket, StateChanged,
};

/// What `GET /stats` returns.
#[derive(Debug, Clone, serde::Serialize)]
struct Stats {
    state: ConnectionState,
    sent: u64,
    received: u64,
    last_message: Option<String>,
    errors: u64,
    last_error: Option<String>,
}

/// The app's own actor: consumes the upstream feed and counts what it sees.
struct FeedConsumer {
    ws: ResilientWebSocket,
    stats: Stats,
}

impl FeedConsumer {
    fn new(ws: ResilientWebSocket) -> Self {
        FeedConsumer {
            stats: Stats {
                state: ws.state(),
                sent: 0,
                received: 0,
                last_message: None,
                errors: 0,
                last_error: None,
            },
            ws,
        }
    }
}

impl Actor for FeedConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Subscribe first: these reach the client before the connect does.
        let me = ctx.address();
        self.ws.subscribe_messages(me.clone().recipient());
        self.ws.subscribe_state(me.clone().recipient());
        self.ws.subscribe_errors(me.recipient());

        let ws = self.ws.clone();
        ctx.spawn(async move { ws.connect().await }.into_actor(self).map(
            |res, _act, _ctx| match res {
                Ok(()) => log::info!("upstream connected"),
                // The error also arrives as an ErrorEvent and is counted there.
                Err(e) => log::warn!("upstream connect failed: {e}"),
            },
        ));
    }
}

impl Handler<IncomingMessage> for FeedConsumer {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        self.stats.received += 1;
        self.stats.last_message = Some(match msg.payload {
            Payload::Text(t) => t.to_string(),
            Payload::Binary(b) => format!("<{} bytes of binary>", b.len()),
        });
    }
}

impl Handler<StateChanged> for FeedConsumer {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        log::info!("upstream {:?} -> {:?}", msg.previous, msg.current);
        self.stats.state = msg.current;
    }
}

impl Handler<ErrorEvent> for FeedConsumer {
    type Result = ();

    fn handle(&mut self, msg: ErrorEvent, _: &mut Context<Self>) {
        self.stats.errors += 1;
        self.stats.last_error = Some(msg.error.to_string());
    }
}

/// Asks for the current statistics.
#[derive(Message)]
#[rtype(result = "Stats")]
struct GetStats;

impl Handler<GetStats> for FeedConsumer {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats.clone())
    }
}

/// Sends a text message upstream.
#[derive(Message)]
#[rtype(result = "Result<(), resilient_ws::Error>")]
struct Publish(String);

impl Handler<Publish> for FeedConsumer {
    type Result = ResponseActFuture<Self, Result<(), resilient_ws::Error>>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let ws = self.ws.clone();
        Box::pin(
            async move { ws.send(msg.0).await.map(drop) }
                .into_actor(self)
                .map(|res, act, _| {
                    if res.is_ok() {
                        act.stats.sent += 1;
                    }
                    res
                }),
        )
    }
}

/// Closes the upstream socket gracefully.
#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

impl Handler<Shutdown> for FeedConsumer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let ws = self.ws.clone();
        Box::pin(async move {
            if let Err(e) = ws.disconnect().await {
                log::warn!("upstream disconnect: {e}");
            }
        })
    }
}

async fn get_stats(consumer: web::Data<Addr<FeedConsumer>>) -> actix_web::Result<HttpResponse> {
    let stats = consumer
        .send(GetStats)
        .await
        .map_err(actix_web::error::ErrorInternalServerError)?;
    Ok(HttpResponse::Ok().json(stats))
}

async fn post_send(consumer: web::Data<Addr<FeedConsumer>>, body: String) -> HttpResponse {
    match consumer.send(Publish(body)).await {
        Ok(Ok(())) => HttpResponse::Accepted().json(serde_json::json!({ "queued": true })),
        Ok(Err(e)) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": e.to_string() }))
        }
        Err(e) => {
            HttpResponse::InternalServerError().json(serde_json::json!({ "error": e.to_string() }))
        }
    }
}

/// Every metric recorded in this process, in Prometheus' text format.
async fn get_metrics(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render())
}

struct Args {
    smoke: bool,
    bind: String,
    upstream: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        smoke: std::env::var("RWS_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0"),
        bind: "127.0.0.1:8081".to_string(),
        upstream: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => args.smoke = true,
            "--bind" => args.bind = it.next().ok_or("--bind needs an address")?,
            "-h" | "--help" => {
                return Err("usage: actix_web_app [--smoke] [--bind ADDR] [UPSTREAM_WS_URL]".into())
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => args.upstream = Some(a),
        }
    }
    Ok(args)
}

/// One request cycle against the running app: send a message, then poll
/// `/stats` until the echo has been counted.
async fn smoke_test(addr: SocketAddr) -> Result<serde_json::Value, String> {
    let client = awc::Client::default();
    let base = format!("http://{addr}");
    let text = "hello from the smoke test";

    let resp = client
        .post(format!("{base}/send"))
        .send_body(text)
        .await
        .map_err(|e| format!("POST /send: {e}"))?;
    if resp.status() != awc::http::StatusCode::ACCEPTED {
        return Err(format!("POST /send answered {}", resp.status()));
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let stats: serde_json::Value = client
            .get(format!("{base}/stats"))
            .send()
            .await
            .map_err(|e| format!("GET /stats: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET /stats body: {e}"))?;
        if stats["received"].as_u64() >= Some(1) && stats["last_message"] == text {
            break stats;
        }
        if Instant::now() > deadline {
            return Err(format!("the echo was not counted within 5 s: {stats}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The reporter reads the client's stats every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = r#"rws_client_messages_received_total{client="upstream"} 1"#;
    loop {
        let body = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?
            .body()
            .await
            .map_err(|e| format!("GET /metrics body: {e}"))?;
        let body = String::from_utf8_lossy(&body);
        if body.lines().any(|l| l == wanted) {
            return Ok(serde_json::json!({ "stats": stats, "metrics": wanted }));
        }
        if Instant::now() > deadline {
            return Err(format!("/metrics lacked `{wanted}` after 5 s:\n{body}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves on Ctrl-C (or SIGTERM on Unix).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => log::warn!("cannot listen for SIGTERM: {e}"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        log::warn!("cannot listen for Ctrl-C: {e}; running until killed");
        std::future::pending::<()>().await;
    }
}

#[actix_web::main]
async fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };

    // The upstream feed: the given URL, or an in-process echo server.
    let (upstream_url, upstream) = match args.upstream {
        Some(url) => (url, None),
        None => {
            let server = TestServer::echo().await?;
            log::info!(
                "no upstream given; started an echo server at {}",
                server.ws_url()
            );
            (server.ws_url(), Some(server))
        }
    };

    // The recorder first: metrics reported before it exists are lost.
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(io::Error::other)?;
    // Histograms (the heartbeat RTT, downtime) are summaries that need
    // their upkeep now and then when no HTTP listener of the exporter runs.
    let upkeep = prometheus.clone();
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });

    let ws = ResilientWebSocket::builder(upstream_url.as_str())
        .build()
        .map_err(io::Error::other)?;
    MetricsReporter::new("upstream").client(&ws);
    let consumer = FeedConsumer::new(ws).start();

    let data = web::Data::new(consumer.clone());
    let prometheus = web::Data::new(prometheus);
    let bind = if args.smoke {
        "127.0.0.1:0"
    } else {
        args.bind.as_str()
    };
    // actix-server's own signal handling stops the whole actix System 300 ms
    // after the HTTP server is down, which would cut the upstream socket
    // before our graceful close completes. So we handle the signals here and
    // shut down in order: HTTP server, then the upstream socket.
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(prometheus.clone())
            .route("/stats", web::get().to(get_stats))
            .route("/metrics", web::get().to(get_metrics))
            .route("/send", web::post().to(post_send))
    })
    .disable_signals()
    .bind(bind)?;
    if args.smoke {
        server = server.workers(1).shutdown_timeout(1);
    }
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let running = actix_rt::spawn(server);

    let outcome = if args.smoke {
        smoke_test(addr)
            .await
            .map(|stats| println!("smoke test passed: {stats}"))
    } else {
        log::info!(
            "listening on http://{addr} (GET /stats, POST /send, GET /metrics); upstream {upstream_url}"
        );
        shutdown_signal().await;
        log::info!("shutting down");
        Ok(())
    };
    handle.stop(true).await;
    let _ = running.await;

    let _ = consumer.send(Shutdown).await;
    if let Some(upstream) = upstream {
        upstream.stop().await;
    }
    if let Err(msg) = outcome {
        eprintln!("smoke test failed: {msg}");
        std::process::exit(1);
    }
    Ok(())
}
