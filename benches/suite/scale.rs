//! Server scale: many stateful clients streaming at once against a server
//! child process with 1 worker, then with 2 workers (same run); the key
//! `server_scale_2w_ratio` is the second's echoed messages per second over
//! the first's.
//!
//! The load comes from two client child processes (role `scale`), so the
//! clients' own work is spread over two processes and neither the bench
//! process nor one client thread caps what the server is asked to do. On a
//! 2-core machine the clients and the server still share the same cores:
//! the figure is what the server gains from its second worker under that
//! contention, not its ceiling on a machine with spare cores.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use bytestring::ByteString;
use resilient_ws::{IncomingMessage, ReconnectMode};
use tokio::sync::Semaphore;

use super::{
    child::ChildProc,
    clients::ours,
    plan::{Plan, Report},
};

/// Messages each client keeps in flight (sent, echo not yet received):
/// enough to keep every session busy, few enough that 1 000 clients do not
/// fill the server's send windows.
const IN_FLIGHT: usize = 16;

/// Payload size of each message.
const SIZE: usize = 64;

/// Client processes that share the load.
const CLIENT_PROCS: usize = 2;

/// Counts one client's echoes and gives its sender a permit per echo.
struct Echoes {
    permits: Arc<Semaphore>,
    total: Arc<AtomicU64>,
}

impl Actor for Echoes {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Echoes {
    type Result = ();
    fn handle(&mut self, _: IncomingMessage, _: &mut Context<Self>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.permits.add_permits(1);
    }
}

/// Child role `scale N URL SECS`: opens N stateful clients, prints
/// `ready`, waits for `go`, streams from all of them at once (each with
/// [`IN_FLIGHT`] messages outstanding), lets one second pass for warm-up,
/// then prints `ECHOES SECONDS` counted over SECS seconds and keeps
/// streaming until stdin closes.
pub(super) fn role_scale(args: &str) {
    let mut it = args.split(' ');
    let n: usize = it.next().unwrap().parse().unwrap();
    let url = it.next().unwrap().to_string();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    actix_rt::System::new().block_on(async move {
        let total = Arc::new(AtomicU64::new(0));
        let mut clients = Vec::with_capacity(n);
        // Connect in groups: fast, without a thundering herd of handshakes.
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let opened = futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|_| ours(&url, ReconnectMode::Stateful, 4 * IN_FLIGHT)),
            )
            .await;
            clients.extend(opened);
        }
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        // Stdin on its own thread: this one runs the clients.
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
            let _ = go_tx.send(());
            l.clear();
            let _ = std::io::stdin().read_line(&mut l);
            std::process::exit(0);
        });
        println!("ready");
        let _ = go_rx.await;
        let text = ByteString::from("x".repeat(SIZE));
        for ws in clients {
            let permits = Arc::new(Semaphore::new(IN_FLIGHT));
            ws.subscribe_messages(
                Echoes {
                    permits: permits.clone(),
                    total: total.clone(),
                }
                .start()
                .recipient(),
            );
            let text = text.clone();
            actix_rt::spawn(async move {
                loop {
                    permits.acquire().await.unwrap().forget();
                    if ws.send(text.clone()).await.is_err() {
                        return;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c0, t0) = (total.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (c1, t1) = (total.load(Ordering::Relaxed), Instant::now());
        println!("{} {}", c1 - c0, (t1 - t0).as_secs_f64());
        futures_util::future::pending::<()>().await;
    });
}

/// CPU seconds (user + system, all threads) process `pid` used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may hold spaces: utime and
    // stime are the 14th and 15th fields, in clock ticks (100 per second).
    let after = stat.rsplit_once(") ").map_or("", |(_, a)| a);
    let ticks: f64 = after
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// What one run measured.
struct Run {
    /// Echoed messages per second, all clients.
    rate: f64,
    /// Share of sockets that attached on their session's worker.
    same_worker: f64,
    /// CPU cores the server and the clients used while streaming.
    server_cores: f64,
    client_cores: f64,
}

/// Echoed messages per second of `clients` streaming stateful clients
/// (split over [`CLIENT_PROCS`] processes) against a server child with
/// `workers` workers, and what limited it.
fn scale_run(clients: usize, workers: usize, secs: f64) -> Run {
    let mut server = ChildProc::spawn("server", &["0".into(), workers.to_string()]);
    let url = server.line();
    let per = clients / CLIENT_PROCS;
    let mut procs: Vec<ChildProc> = (0..CLIENT_PROCS)
        .map(|_| ChildProc::spawn("scale", &[per.to_string(), url.clone(), secs.to_string()]))
        .collect();
    for p in &mut procs {
        assert_eq!(p.line(), "ready");
    }
    for p in &mut procs {
        p.say("go");
    }
    // CPU over the whole streaming time (warm-up included): what each side
    // could get of the machine's cores.
    let cpu = |procs: &[ChildProc]| -> f64 { procs.iter().map(|p| cpu_secs(p.child.id())).sum() };
    let (s0, c0, t0) = (cpu_secs(server.child.id()), cpu(&procs), Instant::now());
    let mut rate = 0.0;
    for p in &mut procs {
        let line = p.line();
        let mut f = line.split(' ').map(|v| v.parse::<f64>().unwrap());
        let (count, took) = (f.next().unwrap(), f.next().unwrap());
        rate += count / took;
    }
    let wall = t0.elapsed().as_secs_f64();
    let server_cores = (cpu_secs(server.child.id()) - s0) / wall;
    let client_cores = (cpu(&procs) - c0) / wall;
    server.say("affinity");
    let line = server.line();
    let mut f = line.split(' ').map(|v| v.parse::<f64>().unwrap());
    let (here, elsewhere) = (f.next().unwrap(), f.next().unwrap());
    for p in procs {
        p.finish();
    }
    server.finish();
    Run {
        rate,
        same_worker: here / (here + elsewhere).max(1.0),
        server_cores,
        client_cores,
    }
}

pub(super) fn bench_scale(plan: &Plan, report: &mut Report) {
    let (clients, secs) = if plan.quick { (100, 2.0) } else { (1_000, 5.0) };
    let r1 = scale_run(clients, 1, secs);
    eprintln!("scale: 1 worker done");
    let r2 = scale_run(clients, 2, secs);
    let (one, two, same_worker) = (r1.rate, r2.rate, r2.same_worker);
    for (w, r) in [(1, &r1), (2, &r2)] {
        report.key(&format!("server_scale_{w}w_server_cores"), r.server_cores);
        report.key(&format!("server_scale_{w}w_client_cores"), r.client_cores);
        report.row(
            &format!("scale {w} worker(s): CPU cores server / clients"),
            format!("{:.2} / {:.2}", r.server_cores, r.client_cores),
            String::new(),
            String::new(),
        );
    }
    eprintln!("scale: 2 workers done");
    let ratio = two / one;
    report.key("server_scale_clients", clients as f64);
    report.key("server_scale_1w_msgs_per_s", one.round());
    report.key("server_scale_2w_msgs_per_s", two.round());
    report.key("server_scale_2w_ratio", ratio);
    // In memory mode a session runs on its negotiate's worker; this is how
    // often its socket landed there too (no hop between threads).
    report.key("server_scale_2w_same_worker_share", same_worker);
    report.row(
        &format!("scale {clients} stateful, 1 worker (msgs/s)"),
        format!("{one:.0}"),
        String::new(),
        String::new(),
    );
    report.row(
        &format!("scale {clients} stateful, 2 workers (msgs/s)"),
        format!("{two:.0}"),
        format!("{one:.0}"),
        format!("{ratio:.3}"),
    );
    report.row(
        "scale 2 workers: sockets on their session's worker",
        format!("{:.0} %", same_worker * 100.0),
        String::new(),
        String::new(),
    );
}
