//! `rws demo`: a reliable echo server, a fault proxy in front of it that
//! keeps cutting every connection, and a stateful client through the proxy,
//! all in one process.
//!
//! The client sends numbered messages `msg 0`, `msg 1`, ...; the server
//! application counts them and echoes each one back; the server application
//! also sends its own numbered messages `srv 0`, `srv 1`, ... Meanwhile the
//! proxy drops every connection at seeded random 50–300 ms intervals. The
//! summary counts, for each of the three streams, what was sent, received,
//! lost, duplicated and reordered; the exit status is 0 only when nothing
//! was.
//!
//! With `--redis URL` the server side is a cluster instead ([`cluster`]).

mod cluster;

use std::{
    fmt,
    io::{self, Write as _},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use clap::Args;
use rand::{rngs::StdRng, Rng, SeedableRng};
use resilient_ws::{
    server::{MessageReceived, ReliableServer, ServerOptions, SessionOpened},
    testing::{FaultProxy, TestServer},
    IncomingMessage, ReconnectMode, ResilientWebSocket, SessionLost,
};

use crate::EXIT_FAILURE;

/// The seed used without `--seed`, so two plain runs cut at the same times.
const DEFAULT_SEED: u64 = 24_301;

/// The proxy cuts every connection after a random wait in this range (ms).
const CUT_EVERY_MS: std::ops::RangeInclusive<u64> = 50..=300;

/// Sending is paced in ticks of this length, so the stream spans many cuts.
const TICK: Duration = Duration::from_millis(10);
/// The most messages sent per tick (10 000 messages/s each way).
const MAX_PER_TICK: u64 = 100;
/// Smaller runs still send over about this many ticks (2 s), so even they
/// live through several cuts.
const MIN_TICKS: u64 = 200;

/// How long the demo waits for everything to arrive before it gives up and
/// reports what is missing as lost.
const DEADLINE: Duration = Duration::from_secs(45);

/// How often the main task checks whether everything arrived.
const POLL: Duration = Duration::from_millis(10);

/// Options of `rws demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many numbered messages the client sends (each is echoed back).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    messages: u64,

    /// How many numbered messages the server application sends to the
    /// client on its own. Default: as many as --messages; 0 turns them off.
    #[arg(long, value_name = "N")]
    server_messages: Option<u64>,

    /// The seed of the proxy's random cut times (printed with the summary).
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Serve from two `rws serve --redis URL` nodes behind a round-robin
    /// proxy (no affinity) instead, the session in the Redis at URL; the
    /// node holding the socket is killed (SIGKILL) mid-stream and restarted.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

/// Runs the demo; returns the process exit code: 0 only when nothing was
/// lost, duplicated or reordered in any direction.
pub fn run(args: DemoArgs) -> i32 {
    actix_rt::System::new().block_on(async move {
        match stream(&args).await {
            Ok(report) => {
                // Not `print!`: it panics when stdout fails (a full disk, a
                // closed pipe), and no panic may reach the user.
                let mut out = io::stdout().lock();
                if let Err(e) = write!(out, "{report}").and_then(|()| out.flush()) {
                    say!("rws: writing to stdout: {e}");
                    return EXIT_FAILURE;
                }
                if report.ok() {
                    0
                } else {
                    EXIT_FAILURE
                }
            }
            Err(e) => {
                say!("rws: demo failed: {e}");
                EXIT_FAILURE
            }
        }
    })
}

/// How many messages to send per tick for a stream of `n`.
fn per_tick(n: u64) -> u64 {
    n.div_ceil(MIN_TICKS).clamp(1, MAX_PER_TICK)
}

// ---------------------------------------------------------------------------
// counting

/// What arrived of one numbered stream.
#[derive(Debug)]
struct Tracker {
    /// Which numbers arrived (indexed by number).
    seen: Vec<bool>,
    /// Messages that arrived, duplicates included.
    received: u64,
    /// Different numbers that arrived.
    distinct: u64,
    /// Numbers that arrived again.
    duplicated: u64,
    /// Numbers that arrived after a higher one.
    out_of_order: u64,
    /// Messages that were not `PREFIX i` with `i` in range.
    unexpected: u64,
    highest: Option<u64>,
}

impl Tracker {
    fn new(n: u64) -> Self {
        Tracker {
            seen: vec![false; usize::try_from(n).unwrap_or(usize::MAX)],
            received: 0,
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            unexpected: 0,
            highest: None,
        }
    }

    /// Counts one arrival: `Some(number)`, or `None` for a malformed message.
    fn record(&mut self, number: Option<u64>) {
        self.received += 1;
        let Some((i, seen)) = number.and_then(|i| {
            let idx = usize::try_from(i).ok()?;
            self.seen.get_mut(idx).map(|seen| (i, seen))
        }) else {
            self.unexpected += 1;
            return;
        };
        if *seen {
            self.duplicated += 1;
            return;
        }
        *seen = true;
        self.distinct += 1;
        if self.highest.is_some_and(|h| i < h) {
            self.out_of_order += 1;
        }
        self.highest = Some(self.highest.map_or(i, |h| h.max(i)));
    }
}

/// The number in `PREFIX i`.
fn number(text: Option<&str>, prefix: &str) -> Option<u64> {
    text?.strip_prefix(prefix)?.parse().ok()
}

/// Everything the actors count, shared with the main task.
#[derive(Debug)]
struct Counts {
    /// `msg i` as the server application received them.
    at_server: Tracker,
    /// `msg i` echoed back, as the client received them.
    echoes: Tracker,
    /// `srv i` as the client received them.
    from_server: Tracker,
    /// Client messages that were neither `msg i` nor `srv i`.
    stray: u64,
    /// `srv i` the server application handed to its session.
    server_sent: u64,
    /// Whether the server application is done sending `srv i`.
    server_done: bool,
    sessions_lost: u64,
}

type Shared = Arc<Mutex<Counts>>;

/// Polls `counts` until `arrived` holds or [`DEADLINE`] (from `start`)
/// passes; answers whether it gave up (what did not arrive is then lost).
async fn wait_arrived(
    start: std::time::Instant,
    counts: &Shared,
    arrived: impl Fn(&Counts) -> bool,
) -> bool {
    while !arrived(&lock(counts)) {
        if start.elapsed() > DEADLINE {
            say!(
                "gave up waiting after {} s; what did not arrive counts as lost",
                DEADLINE.as_secs()
            );
            return true;
        }
        actix_rt::time::sleep(POLL).await;
    }
    false
}

fn lock(counts: &Shared) -> std::sync::MutexGuard<'_, Counts> {
    // A panicking actor cannot leave the counters half-updated in a way
    // that matters here: go on with what is there.
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server application: counts the client's messages (the echo itself
/// is done by [`ReliableServer::echo`]) and, once the session opens, sends
/// its own numbered messages.
struct ServerApp {
    server: ReliableServer,
    counts: Shared,
    to_send: u64,
    started: bool,
}

impl Actor for ServerApp {
    type Context = Context<Self>;
}

impl Handler<MessageReceived> for ServerApp {
    type Result = ();

    fn handle(&mut self, msg: MessageReceived, _: &mut Context<Self>) {
        lock(&self.counts)
            .at_server
            .record(number(msg.payload.as_text(), "msg "));
    }
}

impl Handler<SessionOpened> for ServerApp {
    type Result = ();

    fn handle(&mut self, msg: SessionOpened, _: &mut Context<Self>) {
        // One client, one session: a second one would mean the first was
        // lost, which the summary reports; do not start over.
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let (server, counts, n) = (self.server.clone(), self.counts.clone(), self.to_send);
        actix_rt::spawn(async move {
            let chunk = per_tick(n);
            for i in 0..n {
                if let Err(e) = server.send_to(&msg.connection_id, format!("srv {i}")).await {
                    say!("server: cannot send srv {i}: {e}");
                    break;
                }
                lock(&counts).server_sent += 1;
                if (i + 1) % chunk == 0 {
                    actix_rt::time::sleep(TICK).await;
                }
            }
            lock(&counts).server_done = true;
        });
    }
}

/// The client application: counts what the client receives.
struct ClientApp(Shared);

impl Actor for ClientApp {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for ClientApp {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        let text = msg.payload.as_text();
        let mut counts = lock(&self.0);
        match text {
            Some(t) if t.starts_with("msg ") => counts.echoes.record(number(text, "msg ")),
            Some(t) if t.starts_with("srv ") => counts.from_server.record(number(text, "srv ")),
            _ => counts.stray += 1,
        }
    }
}

impl Handler<SessionLost> for ClientApp {
    type Result = ();

    fn handle(&mut self, msg: SessionLost, _: &mut Context<Self>) {
        lock(&self.0).sessions_lost += 1;
        say!(
            "session lost: {}, re-sending {}",
            msg.connection_id,
            msg.resending
        );
    }
}

// ---------------------------------------------------------------------------
// the run

async fn stream(args: &DemoArgs) -> Result<Report, Box<dyn std::error::Error>> {
    if let Some(url) = &args.redis {
        return cluster::stream(args, url).await;
    }
    let n = args.messages;
    let srv_n = args.server_messages.unwrap_or(n);
    let counts: Shared = Arc::new(Mutex::new(Counts {
        at_server: Tracker::new(n),
        echoes: Tracker::new(n),
        from_server: Tracker::new(srv_n),
        stray: 0,
        server_sent: 0,
        server_done: srv_n == 0,
        sessions_lost: 0,
    }));

    let (server, reliable) = TestServer::reliable_echo(ServerOptions::default())?;
    let app = ServerApp {
        server: reliable.clone(),
        counts: counts.clone(),
        to_send: srv_n,
        started: false,
    }
    .start();
    reliable.on_message(app.clone().recipient());
    reliable.on_session_opened(app.recipient());
    let proxy = FaultProxy::start(server.addr()).await?;
    say!(
        "reliable echo server on {}; fault proxy on {}, cutting every connection every {}-{} ms (seed {})",
        server.ws_url(),
        proxy.ws_url(),
        CUT_EVERY_MS.start(),
        CUT_EVERY_MS.end(),
        args.seed
    );

    let client = ClientApp(counts.clone()).start();
    let ws = ResilientWebSocket::builder(proxy.ws_url())
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(10), Duration::from_millis(100), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
        .buffering(true, 10_000)
        .on_message(client.clone().recipient())
        .on_session_lost(client.recipient())
        .connect()
        .await?;
    say!("client connected through the proxy; streaming {n} messages each way");

    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let cuts = Arc::new(AtomicU64::new(0));
    let cutter = actix_rt::spawn(cut_at_random(
        proxy.clone(),
        args.seed,
        start,
        cuts.clone(),
        sent.clone(),
        counts.clone(),
    ));

    let chunk = per_tick(n);
    for i in 0..n {
        // Reliable mode never drops: a full window makes this wait.
        ws.send(format!("msg {i}")).await?;
        sent.fetch_add(1, Ordering::Relaxed);
        if (i + 1) % chunk == 0 {
            actix_rt::time::sleep(TICK).await;
        }
    }

    let arrived = |c: &Counts| {
        c.at_server.distinct >= n
            && c.echoes.distinct >= n
            && c.server_done
            && c.from_server.distinct >= c.server_sent
    };
    let timed_out = wait_arrived(start, &counts, arrived).await;
    let elapsed = start.elapsed();
    cutter.abort();
    let reconnects = ws.stats().reconnects;

    if actix_rt::time::timeout(Duration::from_secs(5), ws.disconnect())
        .await
        .is_err()
    {
        say!("the client did not close within 5 s");
    }
    proxy.stop();
    server.stop().await;

    let c = lock(&counts);
    Ok(Report {
        setup: Setup::Embedded {
            seed: args.seed,
            cuts: cuts.load(Ordering::Relaxed),
        },
        to_server: Some(Row::of(n, &c.at_server)),
        // The server echoes each message it received, duplicates included.
        echoes: Row::of(c.at_server.received, &c.echoes),
        from_server: (srv_n > 0).then(|| Row::of(c.server_sent, &c.from_server)),
        stray: c.stray,
        reconnects,
        sessions_lost: c.sessions_lost,
        elapsed,
        timed_out,
    })
}

/// Cuts every connection of the proxy at seeded random intervals until
/// aborted, with one progress line on stderr per cut.
async fn cut_at_random(
    proxy: FaultProxy,
    seed: u64,
    start: Instant,
    cuts: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    counts: Shared,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let wait = rng.random_range(CUT_EVERY_MS);
        actix_rt::time::sleep(Duration::from_millis(wait)).await;
        proxy.cut_all();
        let cut = cuts.fetch_add(1, Ordering::Relaxed) + 1;
        let (at_server, echoes, srv) = {
            let c = lock(&counts);
            (
                c.at_server.received,
                c.echoes.received,
                c.from_server.received,
            )
        };
        say!(
            "cut #{cut} at {:.2}s (client sent {}, server got {at_server}; client got {echoes} echoes, {srv} srv)",
            start.elapsed().as_secs_f64(),
            sent.load(Ordering::Relaxed),
        );
    }
}

// ---------------------------------------------------------------------------
// the summary

/// One stream's line of the summary.
#[derive(Debug, Clone, Copy)]
struct Row {
    sent: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
}

impl Row {
    /// What arrived of `sent` messages, as `t` tracked them.
    fn of(sent: u64, t: &Tracker) -> Row {
        Row {
            sent,
            received: t.received,
            lost: sent.saturating_sub(t.distinct),
            duplicated: t.duplicated,
            out_of_order: t.out_of_order,
            unexpected: t.unexpected,
        }
    }

    fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.unexpected == 0
    }
}

/// What served the stream: one process behind the cutting proxy, or two
/// `rws serve --redis` nodes (the names of those killed).
enum Setup {
    Embedded { seed: u64, cuts: u64 },
    Cluster { killed: Vec<String> },
}

struct Report {
    setup: Setup,
    /// `msg i`, client → server (`None` when the server is another
    /// process: the echoes show it).
    to_server: Option<Row>,
    /// `msg i` echoed back, server → client.
    echoes: Row,
    /// `srv i`, server → client (`None` with `--server-messages 0`).
    from_server: Option<Row>,
    /// Messages the client got that belong to no stream.
    stray: u64,
    reconnects: u64,
    sessions_lost: u64,
    elapsed: Duration,
    timed_out: bool,
}

impl Report {
    fn rows(&self) -> impl Iterator<Item = (&'static str, &Row)> {
        [
            self.to_server.as_ref().map(|r| ("client -> server", r)),
            Some(("echoed back", &self.echoes)),
            self.from_server.as_ref().map(|r| ("server -> client", r)),
        ]
        .into_iter()
        .flatten()
    }

    fn ok(&self) -> bool {
        !self.timed_out && self.stray == 0 && self.rows().all(|(_, r)| r.ok())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.setup {
            Setup::Embedded { seed, .. } => writeln!(
                f,
                "rws demo: stateful client -> fault proxy (cuts every {}-{} ms, seed {seed}) -> reliable echo server",
                CUT_EVERY_MS.start(),
                CUT_EVERY_MS.end(),
            )?,
            Setup::Cluster { .. } => writeln!(
                f,
                "rws demo: stateful client -> round-robin proxy (no affinity) -> 2 rws serve --redis nodes (one killed with SIGKILL mid-stream)"
            )?,
        }
        writeln!(
            f,
            "  {:<16} {:>8} {:>9} {:>6} {:>11} {:>13}",
            "", "sent", "received", "lost", "duplicated", "out of order"
        )?;
        for (name, r) in self.rows() {
            writeln!(
                f,
                "  {name:<16} {:>8} {:>9} {:>6} {:>11} {:>13}",
                r.sent, r.received, r.lost, r.duplicated, r.out_of_order
            )?;
        }
        let delivered: u64 = self.rows().map(|(_, r)| r.received).sum();
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "  reconnects       {}", self.reconnects)?;
        writeln!(f, "  sessions lost    {}", self.sessions_lost)?;
        match &self.setup {
            Setup::Embedded { cuts, .. } => writeln!(f, "  proxy cuts       {cuts}")?,
            Setup::Cluster { killed } => writeln!(
                f,
                "  node kills       {} ({})",
                killed.len(),
                killed.join(", ")
            )?,
        }
        writeln!(
            f,
            "  elapsed          {secs:.2} s ({:.0} messages delivered/s)",
            delivered as f64 / secs.max(1e-9)
        )?;
        if self.ok() {
            return writeln!(f, "nothing lost, nothing duplicated");
        }
        let sum = |g: fn(&Row) -> u64| self.rows().map(|(_, r)| g(r)).sum::<u64>();
        let unexpected = sum(|r| r.unexpected) + self.stray;
        write!(
            f,
            "FAILED: {} lost, {} duplicated, {} out of order",
            sum(|r| r.lost),
            sum(|r| r.duplicated),
            sum(|r| r.out_of_order)
        )?;
        if unexpected > 0 {
            write!(f, ", {unexpected} unexpected")?;
        }
        if self.timed_out {
            write!(f, " (gave up waiting after {} s)", DEADLINE.as_secs())?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_tells_loss_duplicates_and_reordering_apart() {
        let mut t = Tracker::new(5);
        for i in [0, 1, 3, 2, 3] {
            t.record(Some(i));
        }
        t.record(Some(9));
        t.record(None);
        assert_eq!(t.received, 7);
        assert_eq!(t.distinct, 4); // 4 is lost
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.out_of_order, 1); // 2 after 3; the gap at 4 is a loss
        assert_eq!(t.unexpected, 2);
    }

    #[test]
    fn pacing_spans_about_two_seconds() {
        assert_eq!(per_tick(0), 1);
        assert_eq!(per_tick(3000), 15);
        assert_eq!(per_tick(20_000), 100);
        assert_eq!(per_tick(1_000_000), MAX_PER_TICK);
    }
}
