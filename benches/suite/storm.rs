//! Reconnect storm: many stateful clients, one server that restarts.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::stream::StreamExt;
use resilient_ws::{ConnectionState, ReconnectMode, ResilientWebSocket, StateChanged};
use tokio::sync::mpsc;

use super::{
    child::ChildProc,
    memory::fd_limit,
    plan::{Plan, Report},
};

/// What each storm client sends while the server is down.
pub(super) const STORM_PREFIX: &str = "storm ";

/// The storm clients' retry policy: exponential backoff with full jitter
/// from 100 ms up to 1 s, short enough that the run stays brief and long
/// enough that the jitter has room to spread the herd.
pub(super) const STORM_DELAYS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(1));

/// How long the server stays down: long enough for every client to notice
/// and fail a few attempts.
pub(super) const STORM_DOWNTIME: Duration = Duration::from_millis(500);

/// Buckets of the reconnect-time histogram.
pub(super) const STORM_BUCKETS: usize = 10;

/// Forwards one client's state changes, tagged with its index.
pub(super) struct Tagged {
    index: usize,
    tx: mpsc::UnboundedSender<(usize, Instant, StateChanged)>,
}

impl Tagged {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn new(
        index: usize,
        tx: mpsc::UnboundedSender<(usize, Instant, StateChanged)>,
    ) -> Self {
        Tagged { index, tx }
    }
}

impl Actor for Tagged {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Tagged {
    type Result = ();
    fn handle(&mut self, m: StateChanged, _: &mut Context<Self>) {
        let _ = self.tx.send((self.index, Instant::now(), m));
    }
}

/// Waits until every client in `pending` reports a state change that
/// `done` accepts; returns when each did (or `None` for the ones that had
/// not when `limit` ran out).
pub(super) async fn await_states(
    rx: &mut mpsc::UnboundedReceiver<(usize, Instant, StateChanged)>,
    n: usize,
    limit: Duration,
    done: impl Fn(&StateChanged) -> bool,
) -> Vec<Option<Instant>> {
    let mut at = vec![None; n];
    let mut left = n;
    let deadline = tokio::time::Instant::now() + limit;
    while left > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((i, t, s))) if done(&s) && at[i].is_none() => {
                at[i] = Some(t);
                left -= 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    at
}

/// N stateful clients on a server child process; the server is killed and,
/// after [`STORM_DOWNTIME`], started again on the same port (a restart:
/// every session is gone, so each client resumes into "session gone" and
/// opens a fresh one). Each client sends one message while the server is
/// down; the restarted server must receive all of them.
pub(super) async fn bench_storm(plan: &Plan, report: &mut Report) {
    let n = plan.storm_clients;
    // The server is another process, so this one needs a descriptor per
    // client plus a few.
    if fd_limit().is_some_and(|l| n + 64 > l) {
        eprintln!(
            "storm: skipping {n} clients: `ulimit -n` is {:?}",
            fd_limit()
        );
        report.row(
            "storm (skipped: ulimit -n)",
            String::new(),
            String::new(),
            String::new(),
        );
        return;
    }
    let mut server = ChildProc::spawn("server", &[]);
    let url = server.line();
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .expect("port in the URL")
        .to_string();
    let (tx, mut states) = mpsc::unbounded_channel();
    let connect = |index: usize| {
        let rec = Tagged {
            index,
            tx: tx.clone(),
        }
        .start()
        .recipient();
        ResilientWebSocket::builder(url.as_str())
            .reconnect_mode(ReconnectMode::Stateful)
            .heartbeat(Duration::ZERO, None)
            .reconnect_delays(STORM_DELAYS.0, STORM_DELAYS.1, 0)
            .min_uptime(Duration::ZERO)
            .buffering(true, 16)
            .on_state(rec)
            .connect()
    };
    let started = Instant::now();
    // A few connects at a time: the point is the storm, not the first
    // connect, and the server's accept queue is finite.
    let clients: Vec<ResilientWebSocket> = futures_util::stream::iter(0..n)
        .map(connect)
        .buffered(32)
        .map(|r| r.expect("storm client connects"))
        .collect()
        .await;
    // How long the same clients took to connect in the first place, 32 at
    // a time: the machine's rate of session set-ups, against which the
    // storm's return (every client at once, each needing a resume attempt
    // and then a fresh session) can be judged.
    let first_connect = started.elapsed().as_secs_f64() * 1e3;
    eprintln!("storm: {n} clients connected in {first_connect:.0} ms");
    while states.try_recv().is_ok() {}

    // Crash the server: its process exits, the kernel closes every socket.
    server.finish();
    let down = await_states(&mut states, n, Duration::from_secs(30), |s| {
        s.previous == ConnectionState::Connected
    })
    .await;
    let noticed = down.iter().filter(|d| d.is_some()).count();
    assert_eq!(noticed, n, "every storm client noticed the server go away");
    for (i, ws) in clients.iter().enumerate() {
        ws.send(format!("{STORM_PREFIX}{i}"))
            .await
            .expect("buffered send");
    }
    tokio::time::sleep(STORM_DOWNTIME).await;
    let mut server = ChildProc::spawn("server", &[port]);
    let _ = server.line();
    let up = Instant::now();
    let back = await_states(&mut states, n, Duration::from_secs(60), |s| {
        s.current == ConnectionState::Connected
    })
    .await;
    let mut times: Vec<f64> = back
        .iter()
        .flatten()
        .map(|t| t.saturating_duration_since(up).as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let returned = times.len();

    // Every message the clients sent while the server was down must reach
    // the new server (in new sessions, so it counts each distinct one).
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        server.say("count");
        received = server.line().parse::<usize>().expect("count");
        if received >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    futures_util::stream::iter(clients)
        .for_each_concurrent(64, |ws| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.disconnect()).await;
        })
        .await;
    server.finish();

    let all_back = times.last().copied().unwrap_or(f64::NAN);
    let pick = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let lost = n.saturating_sub(received);
    report.key("storm_clients", n as f64);
    report.key("storm_returned", returned as f64);
    report.key("storm_all_back_ms", all_back);
    report.key("storm_p50_ms", pick(0.5));
    report.key("storm_p99_ms", pick(0.99));
    report.key("storm_lost", lost as f64);
    report.key("storm_downtime_ms", STORM_DOWNTIME.as_secs_f64() * 1e3);
    report.key("storm_first_connect_ms", first_connect);
    report.key(
        "storm_all_back_over_first_connect",
        all_back / first_connect,
    );
    report.row(
        &format!("storm {n} clients: all back (ms)"),
        format!("{all_back:.1}"),
        format!("connect {first_connect:.0}"),
        format!("{:.2}x", all_back / first_connect),
    );
    report.row(
        "storm reconnect p50 / p99 (ms)",
        format!("{:.1} / {:.1}", pick(0.5), pick(0.99)),
        String::new(),
        String::new(),
    );
    report.row(
        "storm clients back / messages lost",
        format!("{returned} / {lost}"),
        format!("{n} / 0"),
        String::new(),
    );
    // The spread: equal-width buckets from the restart to the last return.
    let width = (all_back / STORM_BUCKETS as f64).max(1.0);
    let mut hist = [0usize; STORM_BUCKETS];
    for t in &times {
        hist[((t / width) as usize).min(STORM_BUCKETS - 1)] += 1;
    }
    let peak = hist.iter().copied().max().unwrap_or(1).max(1);
    for (b, count) in hist.iter().enumerate() {
        let (lo, hi) = (b as f64 * width, (b + 1) as f64 * width);
        report.key(&format!("storm_hist_{b}"), *count as f64);
        report.row(
            &format!("storm hist {lo:>6.0}-{hi:<6.0} ms"),
            count.to_string(),
            "#".repeat((count * 16).div_ceil(peak)),
            String::new(),
        );
    }
    eprintln!("storm: done");
}
