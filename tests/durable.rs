//! The durable outbox across the death of the client's process: a real
//! `rws connect --mode stateful --store ...` child is killed (SIGKILL, or an
//! abort between two commits of its store) in the middle of a stream and
//! started again on the same store, against a reliable server in this
//! process that records what it receives.
//!
//! Every wait has a deadline and every child is killed on drop.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::Stdio,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_exactly_once_in_order, numbered, rws_command, server_options, wait_until, ChildGuard,
    Inbox, ServerEvent,
};
use resilient_ws::{
    server::{ReliableServer, ServerOptions},
    testing::TestServer,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// A reliable server in this process and what its application saw.
struct Server {
    tcp: Option<TestServer>,
    reliable: ReliableServer,
    inbox: Inbox,
}

impl Server {
    fn start(resume_window: Duration) -> Server {
        let (tcp, reliable) = TestServer::reliable(server_options(|o| {
            o.resume_window = resume_window;
        }))
        .unwrap();
        let inbox = Inbox::attach(&reliable);
        Server {
            tcp: Some(tcp),
            reliable,
            inbox,
        }
    }

    fn url(&self) -> String {
        self.tcp.as_ref().unwrap().ws_url()
    }

    fn texts(&self) -> Vec<String> {
        self.inbox.texts()
    }

    /// The sessions messages arrived on, in order.
    fn connection_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inbox.all().into_iter().map(|(c, _, _)| c).collect();
        ids.dedup();
        ids
    }

    /// The sessions resumed, in order.
    fn resumed(&self) -> Vec<String> {
        let events = self.inbox.events();
        events
            .into_iter()
            .filter_map(|e| match e {
                ServerEvent::Resumed(r) => Some(r.connection_id),
                _ => None,
            })
            .collect()
    }
}

/// A running `rws connect`: its stdout lines, and the highest stdin line it
/// reported as accepted.
struct Client {
    child: ChildGuard,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicU64>,
    /// The pipe readers; joined once the process is gone, so everything it
    /// printed has been read.
    readers: Vec<thread::JoinHandle<()>>,
}

fn rws_connect(url: &str, store: &Path, extra_env: &[(&str, &str)]) -> Client {
    let mut cmd = rws_command();
    cmd.args(["connect", url, "--mode", "stateful", "--print-accepted"])
        .arg("--store")
        .arg(store)
        .args(["--initial-delay", "50ms", "--max-delay", "200ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn rws connect");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let lines = stdout.clone();
    let out_reader = thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let accepted = Arc::new(AtomicU64::new(0));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (a, e) = (accepted.clone(), stderr.clone());
    let err_reader = thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("accepted ") {
                a.fetch_max(n.trim().parse().unwrap(), Ordering::SeqCst);
            }
            e.lock().unwrap().push(line);
        }
    });
    Client {
        child: ChildGuard(child),
        stdout,
        stderr,
        accepted,
        readers: vec![out_reader, err_reader],
    }
}

impl Client {
    /// Feeds m{from}..=m{to} to stdin, paced in small chunks so the stream
    /// is still going when the test kills the process; stops quietly when
    /// the process is gone.
    fn feed(&mut self, from: u64, to: u64) {
        let mut stdin = self.child.0.stdin.take().unwrap();
        thread::spawn(move || {
            let mut n = from;
            while n <= to {
                let mut chunk = String::new();
                for _ in 0..50 {
                    if n > to {
                        break;
                    }
                    chunk.push_str(&format!("m{n}\n"));
                    n += 1;
                }
                if stdin.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
    }

    fn close_stdin(&mut self) {
        drop(self.child.0.stdin.take());
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits (running the server's runtime) until `pred` holds.
    async fn wait_until(&self, what: &str, mut pred: impl FnMut(&Client) -> bool) {
        let start = Instant::now();
        while !pred(self) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn exit_code(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                for r in self.readers.drain(..) {
                    r.join().unwrap();
                }
                return status.code();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "rws did not exit; stderr:\n{}",
                self.stderr()
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

/// `texts` is m1..=mK, each once, in order, for a K of at least
/// `accepted`, followed by `then` (what the second run sent); returns K.
fn assert_once_in_order_then(texts: &[String], accepted: u64, then: &[String]) -> u64 {
    // Lines after `accepted` that were on disk but never confirmed are
    // delivered from the store, and again when the application re-sends
    // them: that is at-least-once by construction. Nothing else may repeat.
    assert!(
        texts.len() >= then.len() && texts.ends_with(then),
        "the server's last {} messages are not the second run's lines: {:?}",
        then.len(),
        &texts[texts.len().saturating_sub(then.len())..]
    );
    let k = texts.len() - then.len();
    assert_exactly_once_in_order(
        &texts[..k],
        &numbered("m", 1..=k as u64),
        "before the second run's lines",
    );
    assert!(
        k as u64 >= accepted,
        "the client had accepted m1..m{accepted}, the server has m1..m{k}"
    );
    k as u64
}

/// `seen` (both runs' stdout, in order) holds d1..=dM with nothing missing
/// or reordered; the only repeats are lines the first run printed and the
/// second printed again (delivered, not yet on disk as delivered).
fn assert_inbound_complete(first: &[String], second: &[String], m: u64) {
    let expect = numbered("d", 1..=m);
    assert_eq!(first, &expect[..first.len()], "first run in order");
    let resume_at = second
        .first()
        .map(|l| l[1..].parse::<usize>().unwrap() - 1)
        .unwrap_or(first.len());
    assert!(
        resume_at <= first.len(),
        "the second run starts at d{} but the first printed only {} lines: a gap",
        resume_at + 1,
        first.len()
    );
    assert_eq!(
        second,
        &expect[resume_at..],
        "second run in order, to the end"
    );
}

/// The body of the kill tests: first run killed mid-stream (by `kill` or
/// by itself) while lines flow both ways, messages for it while it is down,
/// second run on the store re-sending what was not confirmed.
async fn killed_and_restarted(crash_env: &[(&str, &str)], kill: bool) {
    let server = Server::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client.store");

    let mut first = rws_connect(&server.url(), &store, crash_env);
    first.feed(1, 1_000_000);
    first
        .wait_until("a session", |_| !server.connection_ids().is_empty())
        .await;
    let session = server.connection_ids()[0].clone();
    // The server streams to the client meanwhile.
    let sent_down = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let streamer = {
        let (reliable, sent, stop, session) = (
            server.reliable.clone(),
            sent_down.clone(),
            stop.clone(),
            session.clone(),
        );
        actix_rt::spawn(async move {
            while stop.load(Ordering::SeqCst) == 0 {
                let n = sent.load(Ordering::SeqCst) + 1;
                if reliable.send_to(&session, format!("d{n}")).await.is_err() {
                    break;
                }
                sent.store(n, Ordering::SeqCst);
                actix_rt::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };
    if kill {
        first
            .wait_until("3000 lines accepted", |c| {
                c.accepted.load(Ordering::SeqCst) >= 3000
            })
            .await;
        first.child.0.kill().unwrap();
    }
    let code = first.exit_code().await;
    assert_ne!(code, Some(0), "the first run must have died");
    let accepted = first.accepted.load(Ordering::SeqCst);
    assert!(
        accepted > 0,
        "nothing accepted before the crash:\n{}",
        first.stderr()
    );

    // The server notices the dead socket and keeps the session.
    let start = Instant::now();
    while server.reliable.stats().attached > 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "server never saw the socket end"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    // A few more while the client is down, then the stream stops.
    let down_from = sent_down.load(Ordering::SeqCst);
    assert!(
        wait_until(
            || sent_down.load(Ordering::SeqCst) >= down_from + 10,
            DEADLINE
        )
        .await
    );
    stop.store(1, Ordering::SeqCst);
    streamer.await.unwrap();
    let down_total = sent_down.load(Ordering::SeqCst);
    let first_out = first.stdout_lines();
    assert_eq!(server.connection_ids(), vec![session.clone()]);

    // Second run: same store; the application re-sends the lines that were
    // not confirmed, and some new ones.
    let mut second = rws_connect(&server.url(), &store, &[]);
    let resend: Vec<String> = (accepted + 1..=accepted + 300)
        .map(|n| format!("m{n}"))
        .collect();
    second.feed(accepted + 1, accepted + 300);
    second
        .wait_until("the re-sent lines accepted", |c| {
            c.accepted.load(Ordering::SeqCst) >= 300
        })
        .await;
    // Close only once the last server message arrived: the end of stdin
    // lingers for answers only briefly.
    let last = format!("d{down_total}");
    second
        .wait_until("the server's messages", |c| {
            down_total == 0 || c.stdout_lines().contains(&last)
        })
        .await;
    second.close_stdin();
    let code = second.exit_code().await;
    assert_eq!(code, Some(0), "second run failed:\n{}", second.stderr());

    let k = assert_once_in_order_then(&server.texts(), accepted, &resend);
    assert_eq!(
        server.connection_ids(),
        vec![session.clone()],
        "the second run resumed the same session"
    );
    assert_eq!(server.resumed().as_slice(), [session]);
    let second_out = second.stdout_lines();
    assert_inbound_complete(&first_out, &second_out, down_total);
    eprintln!(
        "accepted before the crash: {accepted}; delivered from the store: {k}; \
         server->client: {down_total}, printed by the first run: {}",
        first_out.len()
    );
    drop(server.tcp);
}

#[actix_rt::test]
async fn a_client_killed_mid_stream_resumes_and_delivers_exactly_once() {
    killed_and_restarted(&[], true).await;
}

#[actix_rt::test]
async fn a_crash_between_two_commits_loses_and_duplicates_nothing() {
    // The store's writer aborts the process right after its 40th commit,
    // before anyone hears of it: a batch on disk that no `send()` confirmed.
    killed_and_restarted(&[("RWS_STORE_CRASH_AFTER_COMMITS", "40")], false).await;
}

#[actix_rt::test]
async fn a_crash_in_the_middle_of_a_commit_loses_and_duplicates_nothing() {
    // The writer takes its 40th batch and the process dies 20 ms later,
    // before the batch is durable: nothing of it may have reached the
    // server, or its seqs would be given to other messages after restart.
    killed_and_restarted(&[("RWS_STORE_CRASH_IN_COMMIT", "40")], false).await;
}

#[actix_rt::test]
async fn outside_the_resume_window_a_fresh_session_gets_every_line_with_its_id() {
    let server = Server::start(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client.store");
    let mut first = rws_connect(&server.url(), &store, &[]);
    first.feed(1, 1_000_000);
    first
        .wait_until("1000 lines accepted", |c| {
            c.accepted.load(Ordering::SeqCst) >= 1000
        })
        .await;
    first.child.0.kill().unwrap();
    first.exit_code().await;
    let accepted = first.accepted.load(Ordering::SeqCst);
    // Let the session expire.
    let start = Instant::now();
    while server.reliable.sessions() > 0 {
        assert!(start.elapsed() < DEADLINE, "session never expired");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    let mut second = rws_connect(&server.url(), &store, &[]);
    second.close_stdin();
    assert_eq!(second.exit_code().await, Some(0), "{}", second.stderr());
    assert!(
        second.stderr().contains("session lost"),
        "the client says it fell back: {}",
        second.stderr()
    );
    let received = server.inbox.all();
    assert_eq!(server.connection_ids().len(), 2, "a fresh session");
    // Every accepted line arrived; one that arrived twice (delivered on the
    // old session, unacknowledged when it died) kept its id.
    let mut ids: HashMap<String, u64> = HashMap::new();
    for (_, seq, text) in &received {
        if let Some(old) = ids.insert(text.clone(), *seq) {
            assert_eq!(old, *seq, "{text} re-sent with another id");
        }
    }
    for n in 1..=accepted {
        assert!(ids.contains_key(&format!("m{n}")), "m{n} was lost");
    }
}

#[actix_rt::test]
async fn two_processes_on_one_store_the_second_is_refused_as_locked() {
    let server = Server::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("client.store");
    let mut first = rws_connect(&server.url(), &store, &[]);
    first.feed(1, 1_000_000);
    first
        .wait_until("the first to run", |c| {
            c.accepted.load(Ordering::SeqCst) > 0
        })
        .await;
    let mut second = rws_connect(&server.url(), &store, &[]);
    second.close_stdin();
    assert_eq!(second.exit_code().await, Some(2));
    let err = second.stderr();
    assert!(err.contains("is locked"), "{err}");
    assert!(
        first.child.0.try_wait().unwrap().is_none(),
        "the first goes on"
    );
}

#[actix_rt::test]
async fn a_garbage_or_truncated_store_is_refused_and_kept() {
    let server = Server::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.store");
    std::fs::write(&garbage, b"this is not a database".repeat(500)).unwrap();
    let mut c = rws_connect(&server.url(), &garbage, &[]);
    c.close_stdin();
    assert_eq!(c.exit_code().await, Some(2));
    assert!(c.stderr().contains("corrupt"), "{}", c.stderr());
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        b"this is not a database".repeat(500),
        "left as it was"
    );

    // A real store, cut short.
    let truncated = dir.path().join("truncated.store");
    let mut c = rws_connect(&server.url(), &truncated, &[]);
    c.feed(1, 2000);
    c.wait_until("some lines accepted", |c| {
        c.accepted.load(Ordering::SeqCst) >= 500
    })
    .await;
    c.child.0.kill().unwrap();
    c.exit_code().await;
    let len = std::fs::metadata(&truncated).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let mut c = rws_connect(&server.url(), &truncated, &[]);
    c.close_stdin();
    assert_eq!(c.exit_code().await, Some(2));
    assert!(c.stderr().contains("corrupt"), "{}", c.stderr());
}

// ---------------------------------------------------------------------------
// The library in one process: a durable client through network cuts, raw
// mode's durable outbox, and a store of one's own.

#[actix_rt::test]
async fn a_durable_client_delivers_exactly_once_in_order_through_cuts() {
    use resilient_ws::testing::FaultProxy;
    let server = Server::start(Duration::from_secs(60));
    let proxy = FaultProxy::start(server.tcp.as_ref().unwrap().addr())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rec = resilient_ws::testing::EventRecorder::start();
    let ws = rec
        .attach(
            resilient_ws::ResilientWebSocket::builder(proxy.ws_url())
                .reconnect_mode(resilient_ws::ReconnectMode::Stateful)
                .reconnect_delays(Duration::from_millis(10), Duration::from_millis(50), 0)
                .durable_store(dir.path().join("c.store")),
        )
        .connect()
        .await
        .unwrap();
    let total = 6000u64;
    let sender = {
        let ws = ws.clone();
        actix_rt::spawn(async move {
            for chunk in (1..=total).collect::<Vec<_>>().chunks(200) {
                ws.send_batch(chunk.iter().map(|n| format!("m{n}")))
                    .await
                    .unwrap();
            }
        })
    };
    for _ in 0..4 {
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        proxy.cut_all();
    }
    sender.await.unwrap();
    ws.disconnect().await.unwrap();
    // The server acks a message once it handed it to the application; the
    // recorder may still have the last ones in its mailbox.
    let start = Instant::now();
    while (server.texts().len() as u64) < total && start.elapsed() < DEADLINE {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    // Every cut was resumed: no session was lost (that would re-send with
    // the same ids, at least once by design).
    assert_eq!(
        server.connection_ids().len(),
        1,
        "a session was lost; the client saw: {:?}",
        rec.closed()
    );
    let texts = server.texts();
    assert_once_in_order_then(&texts, total, &[]);
    assert_eq!(texts.len() as u64, total);
    assert!(proxy.connections_total() > 1, "the cuts forced reconnects");
}

#[test]
fn raw_mode_keeps_what_waits_in_the_outbox_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("raw.store");
    // A port nobody listens on yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{addr}/ws");

    let (u, s) = (url.clone(), store.clone());
    thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let ws = resilient_ws::ResilientWebSocket::builder(u)
                .reconnect_mode(resilient_ws::ReconnectMode::None)
                .durable_store(s)
                .build()
                .unwrap();
            for i in 1..=100 {
                ws.send(format!("r{i}")).await.unwrap();
            }
            assert_eq!(ws.stats().messages_buffered, 100);
        })
    })
    .join()
    .unwrap();

    actix_rt::System::new().block_on(async move {
        let server = TestServer::echo_at(addr, Default::default()).unwrap();
        let rec = resilient_ws::testing::EventRecorder::start();
        // The first process's store closes as its actors go: until then the
        // store is locked, which `build()` reports rather than waits out.
        let start = Instant::now();
        let ws = loop {
            let b = rec.attach(
                resilient_ws::ResilientWebSocket::builder(url.clone())
                    .reconnect_mode(resilient_ws::ReconnectMode::None)
                    .durable_store(store.clone()),
            );
            match b.build() {
                Ok(ws) => break ws,
                Err(e) if e.to_string().contains("locked") && start.elapsed() < DEADLINE => {
                    actix_rt::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(ws.stats().messages_buffered, 100, "found again");
        ws.connect().await.unwrap();
        let got = rec.wait_messages(100, DEADLINE).await;
        let got: Vec<String> = got
            .iter()
            .map(|p| p.as_text().unwrap().to_string())
            .collect();
        assert_eq!(got, (1..=100).map(|i| format!("r{i}")).collect::<Vec<_>>());
        ws.disconnect().await.unwrap();
        server.stop().await;
    });
}

/// A store of one's own that fails every commit after the first few.
struct FailingStore(resilient_ws::queue::MemoryStore, usize);

impl resilient_ws::queue::QueueStore for FailingStore {
    fn load(
        &mut self,
    ) -> Result<resilient_ws::queue::StoredState, resilient_ws::queue::StoreError> {
        self.0.load()
    }
    fn commit(
        &mut self,
        ops: &[resilient_ws::queue::StoreOp],
    ) -> Result<(), resilient_ws::queue::StoreError> {
        if self.1 == 0 {
            return Err(resilient_ws::queue::StoreError::Other("disk full".into()));
        }
        self.1 -= 1;
        self.0.commit(ops)
    }
}

#[actix_rt::test]
async fn a_failing_store_makes_send_fail_with_a_clear_error() {
    let (server, _reliable) = TestServer::reliable(ServerOptions::default()).unwrap();
    let rec = resilient_ws::testing::EventRecorder::start();
    let ws = rec
        .attach(
            resilient_ws::ResilientWebSocket::builder(server.ws_url())
                .reconnect_mode(resilient_ws::ReconnectMode::Stateful)
                .store(FailingStore(Default::default(), 3)),
        )
        .connect()
        .await
        .unwrap();
    let mut first_error = None;
    for i in 0..20 {
        if let Err(e) = ws.send(format!("m{i}")).await {
            first_error = Some(e);
            break;
        }
    }
    let e = first_error.expect("a send failed once the store did");
    assert!(matches!(e, resilient_ws::Error::Store(_)), "{e:?}");
    assert!(e.to_string().contains("disk full"), "{e}");
    // The writer answers the send()s first, then tells the queue actor.
    assert!(
        rec.wait_until(DEADLINE, |events| events
            .iter()
            .any(|e| format!("{e:?}").contains("disk full"))
            .then_some(()))
            .await
            .is_some(),
        "subscribers hear of it too"
    );
}
