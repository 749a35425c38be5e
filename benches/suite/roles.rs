//! The child processes (this same binary, re-run with `RWS_BENCH_ROLE`):
//! role `server` and role `client` (the handle is in `child.rs`).

use std::{
    collections::HashSet,
    io::BufRead,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use resilient_ws::{
    server::{MessageReceived, ServerOptions},
    testing::TestServer,
    Payload, ReconnectMode, ResilientWebSocket,
};

use super::{
    clients::{awc_client, awc_connect, ours, vm_rss_kib, Framed},
    storm::STORM_PREFIX,
};

/// Child role "server [PORT [WORKERS]]": a reliable echo server (it echoes
/// plain clients too) on 127.0.0.1:PORT (default: any port) with WORKERS
/// actix-web workers (default: one, as `TestServer` runs); prints its URL,
/// answers each `rss` line with its VmRSS in KiB, each `count` line
/// with the number of distinct [`STORM_PREFIX`] messages its sessions
/// received, each `stats` line with `SESSIONS ATTACHED RECEIVED` (see
/// `ServerStats`) and each `affinity` line with the sockets that attached
/// on their session's worker and on another (`HERE ELSEWHERE`), and exits
/// when stdin closes.
///
/// `server PORT WORKERS uncounted`: without the storm counter.
///
/// `server PORT [WORKERS] redis URL PREFIX NODE` (with `-F redis`): the
/// same server with its sessions in Redis at URL under PREFIX, as node NODE.
pub(super) fn role_server(args: &str) {
    let mut it = args.split_whitespace().peekable();
    let port: u16 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let workers: Option<usize> = it
        .next_if(|v| v.parse::<usize>().is_ok())
        .and_then(|v| v.parse().ok());
    // `uncounted`: no storm counter (a `MessageReceived` subscriber on the
    // main thread, which costs each message a hop to that thread).
    let counted = it.next_if(|v| *v == "uncounted").is_none();
    let store: Vec<String> = it.map(str::to_owned).collect();
    actix_rt::System::new().block_on(async move {
        // The defaults, failed-resume limit included: every bench client
        // comes from 127.0.0.1, like clients behind one NAT, and a restart
        // must not lock them out (resumes of sessions the new server never
        // had do not count toward the limit). Only the anonymous negotiate
        // limit is off: the memory section opens 10 000 idle sessions from
        // this one address, more than that limit lets one address open.
        let mut options = ServerOptions::default();
        options.anonymous_negotiate_limit = None;
        #[cfg(feature = "redis")]
        if let [kind, url, prefix, node] = store.as_slice() {
            assert_eq!(kind, "redis", "server role: unknown store {kind}");
            let redis = resilient_ws::server::RedisSessionStore::connect(url, node.as_str())
                .await
                .expect("redis store")
                .with_prefix(prefix.as_str());
            options.store = resilient_ws::server::SessionStore::Redis(redis);
        }
        #[cfg(not(feature = "redis"))]
        assert!(store.is_empty(), "server role: stores need -F redis");
        let reliable = resilient_ws::server::ReliableServer::echo(options);
        let seen = Arc::new(Mutex::new(HashSet::new()));
        if counted {
            reliable.on_message(StormCounter(seen.clone()).start().recipient());
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // Held until the process exits.
        let mut _server = None;
        let url = match workers {
            None => {
                let server = TestServer::serve_reliable(addr, &reliable).expect("server binds");
                let url = server.ws_url();
                _server = Some(server);
                url
            }
            Some(n) => serve_workers(addr, &reliable, n),
        };
        println!("{url}");
        // Stdin is read on its own thread so the server's thread never blocks.
        let handle = reliable.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref() {
                    Ok("rss") => println!("{}", vm_rss_kib()),
                    Ok("count") => println!("{}", seen.lock().unwrap().len()),
                    Ok("stats") => {
                        let s = handle.stats();
                        println!("{} {} {}", s.sessions, s.attached, s.messages_received);
                    }
                    Ok("affinity") => {
                        let (here, elsewhere) = handle.attach_affinity();
                        println!("{here} {elsewhere}");
                    }
                    _ => break,
                }
            }
            std::process::exit(0);
        });
        futures_util::future::pending::<()>().await;
    });
}

/// Serves `reliable` at `/ws` on `addr` with `workers` actix-web workers
/// (what `rws serve --workers` does); answers the URL.
fn serve_workers(
    addr: std::net::SocketAddr,
    reliable: &resilient_ws::server::ReliableServer,
    workers: usize,
) -> String {
    let reliable = reliable.clone();
    let server = actix_web::HttpServer::new(move || {
        let reliable = reliable.clone();
        actix_web::App::new()
            .configure(move |c| resilient_ws::server::reliable_route(c, "/ws", reliable))
    })
    .tcp_nodelay(true)
    .workers(workers)
    .disable_signals()
    .bind(addr)
    .expect("server binds");
    let url = format!("ws://{}/ws", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

/// Collects the distinct storm messages a server received (a message that
/// arrives twice, for instance re-sent after a lost session, counts once).
pub(super) struct StormCounter(Arc<Mutex<HashSet<String>>>);

impl Actor for StormCounter {
    type Context = Context<Self>;
}

impl Handler<MessageReceived> for StormCounter {
    type Result = ();
    fn handle(&mut self, m: MessageReceived, _: &mut Context<Self>) {
        if let Payload::Text(t) = m.payload {
            if t.starts_with(STORM_PREFIX) {
                self.0.lock().unwrap().insert(t.to_string());
            }
        }
    }
}

/// Child role "client KIND N URL": opens one warm-up connection, prints
/// `ready`, waits for `go`, opens N idle connections, prints `BEFORE AFTER`
/// (VmRSS KiB) and holds them until stdin closes.
pub(super) fn role_client(args: &str) {
    let mut it = args.split(' ');
    let kind = it.next().unwrap().to_string();
    let n: usize = it.next().unwrap().parse().unwrap();
    let url = it.next().unwrap().to_string();
    actix_rt::System::new().block_on(async move {
        let client = awc_client();
        let mode = if kind == "stateful" {
            ReconnectMode::Stateful
        } else {
            ReconnectMode::None
        };
        // Both kinds go in one Vec; the enum adds the same few bytes to each.
        let open = || async {
            if kind == "baseline" {
                Held::Awc(awc_connect(&client, &url).await)
            } else {
                // A small outbox: idle clients need none, and its size is
                // what an application would pick for such clients.
                Held::Ours(ours(&url, mode, 16).await)
            }
        };
        let mut held = Vec::with_capacity(n + 1);
        // Warm up: the first connection pays for one-time setup (connector,
        // runtime buffers) that is not per connection.
        held.push(open().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stdin = std::io::stdin().lock();
        println!("ready");
        let mut l = String::new();
        // Blocking here is fine: nothing in this process needs to run.
        stdin.read_line(&mut l).unwrap();
        let before = vm_rss_kib();
        for _ in 0..n {
            held.push(open().await);
        }
        // Let the handshakes' transient buffers be freed and everything settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("{before} {}", vm_rss_kib());
        l.clear();
        let _ = stdin.read_line(&mut l);
        std::process::exit(0);
    });
}

/// What the client role holds open.
#[allow(dead_code)] // Held only for their memory.
pub(super) enum Held {
    Awc(Framed),
    Ours(ResilientWebSocket),
}
