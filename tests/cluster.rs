//! Issue 13 end to end: two `rws serve --redis` nodes (real child
//! processes) behind a round-robin proxy with no affinity, a real stateful
//! client, and real faults: nodes killed with SIGKILL, stopped with SIGTERM,
//! paused with SIGSTOP, and Redis itself stopped. Each test checks what the
//! client got: every echo exactly once, in order, across all of it.
//!
//! `rws serve --echo` sends every client message back, so the echoes being
//! exactly the sent sequence shows both directions: a message the server
//! delivered twice would come back twice (with two server seqs), one it
//! lost would not come back.
//!
//! Each test runs its own `redis-server` ([`TestRedis::start`]) and its own
//! key prefix, and bounds every wait.

mod cluster_kit;
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_kit::{connect, hello_at, sessions_lost, stream, ws_frames, Cluster, WAIT};
use common::{
    assert_exactly_once_in_order, negotiate_at, numbered, wait_until, In, Signal, TestRedis,
};
use resilient_ws::{protocol::Frame, testing::RecordedEvent};

// ---------------------------------------------------------------------------
// issue 13, test 1

/// A fault of test 1's schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the node holding the client's socket, then start it again.
    KillOwner,
    /// A rolling restart's step: SIGTERM (the node drains and says 1012),
    /// then start it again. The first step stops the node holding the
    /// socket, the second the other one (by then holding it, as a rule).
    RollingRestart,
}

#[actix_rt::test]
async fn twenty_thousand_each_way_survive_sigkills_and_a_rolling_restart() {
    let redis = TestRedis::start();
    let mut cluster = Cluster::start(&redis, "kills", &[], &[]).await;
    let (ws, rec, echoes) = connect(&cluster).await;
    let started = Instant::now();

    let n = 20_000;
    let sender = stream(ws, 0..n);
    let schedule = [
        Fault::KillOwner,
        Fault::KillOwner,
        Fault::KillOwner,
        Fault::KillOwner,
        Fault::RollingRestart,
        Fault::RollingRestart,
    ];
    let mut killed = Vec::new();
    let mut restarted = Vec::new();
    for (k, fault) in schedule.iter().enumerate() {
        // Each fault only once the stream has moved on since the last one:
        // the cluster recovered, and the next fault hits it under load.
        let at = (k + 1) * n / (schedule.len() + 1);
        assert!(
            echoes.wait(at, WAIT).await,
            "stuck at {} echoes before fault {k} ({fault:?})",
            echoes.count()
        );
        match *fault {
            Fault::KillOwner => {
                let mut owner = cluster.socket_node().await;
                if killed.last() == Some(&owner) {
                    // The client went back to the node killed last (it was
                    // up again before the client retried): move it over, so
                    // the kills alternate.
                    owner = 1 - owner;
                    cluster
                        .proxy
                        .set_upstreams(vec![cluster.addrs[owner]])
                        .unwrap();
                    cluster.proxy.cut_all();
                    let moved = echoes.count() + 100;
                    assert!(echoes.wait(moved, WAIT).await, "{}", echoes.count());
                    cluster.proxy.set_upstreams(cluster.addrs.clone()).unwrap();
                }
                killed.push(owner);
                cluster.nodes[owner].kill_hard().await;
                cluster.nodes[owner].restart().await;
            }
            Fault::RollingRestart => {
                let i = match restarted.first() {
                    None => cluster.socket_node().await,
                    Some(first) => 1 - first,
                };
                restarted.push(i);
                cluster.nodes[i].signal(Signal::Term);
                // `restart` waits (bounded) for the drained node to exit.
                cluster.nodes[i].restart().await;
            }
        }
    }
    assert!(
        echoes.wait(n, WAIT).await,
        "{} of {n} echoes arrived",
        echoes.count()
    );
    let ws = sender.await.unwrap();
    let elapsed = started.elapsed();

    assert_exactly_once_in_order(
        &echoes.texts(),
        &numbered("m", 0..n),
        "echoes (client -> server -> client)",
    );
    assert!(
        killed.windows(2).all(|w| w[0] != w[1]),
        "the kills alternate: {killed:?}"
    );
    assert_eq!(sessions_lost(&rec), 0, "resumed every time, never lost");
    let stats = ws.stats();
    // Every kill moved the client, and so did at least the first step of
    // the rolling restart (the second moves it too unless the client went
    // back to the first node meanwhile).
    assert!(
        stats.reconnects >= 5,
        "each fault moved the client: {} reconnects",
        stats.reconnects
    );
    println!(
        "cluster: {n} each way in {elapsed:?}; killed (node holding the socket) {killed:?}, \
         then SIGTERM {restarted:?}; {} reconnects; {} proxy connections",
        stats.reconnects,
        cluster.proxy.connections_total()
    );
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect in time")
        .unwrap();
}

// ---------------------------------------------------------------------------
// issue 13, test 2

/// Fencing with the real client: the owner is paused (SIGSTOP) while the
/// client resumes on the other node and keeps streaming; the owner comes
/// back (SIGCONT) and then serves the session again. No duplicate, no
/// reordering, nothing of the stale node's in Redis or on its socket.
#[actix_rt::test]
async fn a_paused_owner_that_comes_back_is_fenced_off() {
    let redis = TestRedis::start();
    // No server heartbeat: the paused node, once back, writes nothing of
    // its own accord, so whatever it writes comes from what it read (the
    // client's messages still in its socket) and tried to record.
    let cluster = Cluster::start(
        &redis,
        "fencing",
        &["--keep-alive", "0", "--client-timeout", "30s"],
        &[],
    )
    .await;
    let (ws, rec, echoes) = connect(&cluster).await;

    // Phase 1: a stream through one node, all of it echoed, so that node
    // has nothing recorded that it has not written yet.
    let before = 1_000;
    let ws = stream(ws, 0..before).await.unwrap();
    assert!(echoes.wait(before, WAIT).await, "{}", echoes.count());
    let owner = cluster.socket_node().await;
    let other = 1 - owner;
    let sid = cluster.session_id(&redis);

    // Phase 2: the owner is paused (a GC pause, a frozen VM) and taken out
    // of the rotation (the load balancer's health check). What the client
    // sends now first goes into the paused node's socket; the client's
    // heartbeat gives up on it and resumes on the other node.
    cluster.nodes[owner].signal(Signal::Stop);
    let paused_at = Instant::now();
    cluster.proxy.capture_from(cluster.addrs[owner], true);
    cluster
        .proxy
        .set_upstreams(vec![cluster.addrs[other]])
        .unwrap();
    let during = 3_000;
    let ws = stream(ws, before..during).await.unwrap();
    assert!(
        echoes.wait(during, WAIT).await,
        "the client did not resume on the other node: {} echoes",
        echoes.count()
    );
    let moved_after = paused_at.elapsed();
    assert_eq!(
        cluster.socket_node().await,
        other,
        "the socket is on the other node now"
    );

    // The paused node comes back, with the socket the client gave up on
    // and perhaps messages it never recorded: whatever it does, it must
    // write nothing new anywhere (its epoch is stale). Whether it gets to
    // read those messages depends on how the dead connection ends; the
    // test below makes sure it does.
    cluster.nodes[owner].signal(Signal::Cont);
    let owner_addr = cluster.addrs[owner];
    assert!(
        wait_until(|| cluster.proxy.connections_to(owner_addr) == 0, WAIT).await,
        "the resumed node must close its stale socket: {:?}",
        cluster.proxy.connections()
    );
    cluster.proxy.capture_from(owner_addr, false);

    // Phase 3: the node is back in the rotation and serves the session
    // again once a reconnect lands on it.
    cluster.proxy.set_upstreams(cluster.addrs.clone()).unwrap();
    cluster.proxy.cut_all();
    let after = 4_000;
    let ws = stream(ws, during..after).await.unwrap();
    assert!(
        echoes.wait(after, WAIT).await,
        "{} of {after} echoes",
        echoes.count()
    );

    assert_exactly_once_in_order(&echoes.texts(), &numbered("m", 0..after), "echoes");
    assert_eq!(sessions_lost(&rec), 0);
    // In Redis, the session's stream got exactly one entry per echo:
    // nothing of the stale node's.
    assert_eq!(
        cluster.next_seq(&redis, &sid),
        after as u64 + 1,
        "one server seq per echo"
    );

    // What the paused node sent after it came back: no DATA (it had
    // written all it recorded before its pause), and no ACK beyond what it
    // had recorded then (client seqs start at 1).
    let captured = cluster.proxy.captured_from(owner_addr);
    let mut seen = Vec::new();
    for conn in &captured {
        for (opcode, payload) in ws_frames(conn).unwrap_or_else(|e| panic!("{e}: {conn:?}")) {
            match opcode {
                // Binary: a frame of the reliable protocol.
                2 => {
                    let frame = Frame::decode(payload.clone())
                        .unwrap_or_else(|e| panic!("not a protocol frame ({e}): {payload:?}"));
                    match frame {
                        Frame::Data { seq, .. } => {
                            panic!("the stale node wrote DATA seq {seq} after its pause")
                        }
                        Frame::Ack { seq } => assert!(
                            seq <= before as u64,
                            "the stale node acked client seq {seq}, sent after its pause"
                        ),
                        other => seen.push(format!("{other:?}")),
                    }
                }
                // Close (4002 "replaced" when it saw it was stale), ping,
                // pong: control frames carry no message.
                8 if payload.len() >= 2 => seen.push(format!(
                    "close {} {:?}",
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8_lossy(&payload[2..])
                )),
                8..=10 => seen.push(format!("control opcode {opcode}")),
                _ => panic!("the stale node wrote a data frame (opcode {opcode}): {payload:?}"),
            }
        }
    }
    println!(
        "fencing: the client moved in {moved_after:?}; the stale node wrote {} bytes after its \
         pause: {seen:?}",
        captured.iter().map(Bytes::len).sum::<usize>()
    );
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect in time")
        .unwrap();
}

/// Fencing, frame by frame: a scripted client keeps its socket to the
/// paused owner open and puts messages in it while the session moves to
/// the other node; when the owner comes back it reads them, and the only
/// thing it may do is give up (4002): no echo of them on its socket, no
/// ACK of them, and no entry of theirs in the session's stream.
#[actix_rt::test]
async fn a_stale_owner_reading_queued_messages_writes_nothing() {
    let redis = TestRedis::start();
    // No server heartbeat and a long client timeout: once back, the paused
    // node neither pings nor times the client out; what it writes comes
    // only from the messages it reads.
    let cluster = Cluster::start(
        &redis,
        "fencing-frames",
        &["--keep-alive", "0", "--client-timeout", "30s"],
        &[],
    )
    .await;
    let (a, b) = (cluster.addrs[0], cluster.addrs[1]);
    let neg = negotiate_at(a, &[]).await.expect("negotiate");
    let sid = neg.connection_id.clone();

    // m1..m10 through node a, echoed and acked both ways.
    let (mut on_a, resumed, _) = hello_at(a, &neg, 0).await;
    assert!(!resumed);
    for i in 1..=10 {
        on_a.data(i, format!("m{i}")).await;
    }
    let echoes = on_a.recv_data(10).await;
    assert_eq!(echoes.last().map(|(seq, _)| *seq), Some(10));
    on_a.ack(10).await;
    loop {
        match on_a.recv(WAIT).await {
            In::Frame(Frame::Ack { seq: 10 }) => break,
            In::Frame(Frame::Ack { .. }) => {}
            other => panic!("expected the ACK of m10, got {other:?}"),
        }
    }

    // Node a is paused; m11..m20 wait in its socket.
    cluster.nodes[0].signal(Signal::Stop);
    for i in 11..=20 {
        on_a.data(i, format!("m{i}")).await;
    }
    // The client resumes on node b and sends them again, and more.
    let (mut on_b, resumed, delivered) = hello_at(b, &neg, 10).await;
    assert!(resumed);
    assert_eq!(delivered, 10, "node b knows what node a recorded");
    for i in 11..=25 {
        on_b.data(i, format!("m{i}")).await;
    }
    let from_b = on_b.recv_data(15).await;
    let want: Vec<(u64, String)> = (11..=25).map(|i| (i, format!("m{i}"))).collect();
    let got: Vec<(u64, String)> = from_b
        .iter()
        .map(|(seq, p)| (*seq, p.as_text().unwrap().to_owned()))
        .collect();
    assert_eq!(got, want);

    // Node a comes back and reads m11..m20.
    cluster.nodes[0].signal(Signal::Cont);
    let mut after = Vec::new();
    let close = loop {
        match on_a.recv(WAIT).await {
            In::Close(code, reason) => break Some((code, reason)),
            In::End | In::Timeout => break None,
            other => after.push(other),
        }
    };
    for i in &after {
        match i {
            In::Frame(Frame::Data { seq, payload }) => {
                panic!("the stale node wrote DATA {seq} {payload:?}")
            }
            In::Frame(Frame::Ack { seq }) => assert!(
                *seq <= 10,
                "the stale node acked m{seq}, which it could not record"
            ),
            _ => {}
        }
    }
    assert_eq!(
        close,
        Some((Some(4002), "replaced".to_owned())),
        "the stale node gives its socket up as replaced; before it: {after:?}"
    );

    // Whatever node a tried is over (it closed); node b's next message
    // shows the stream: m26's echo comes right after m25's, nothing of
    // node a's in between.
    on_b.data(26, "m26").await;
    let next = on_b.recv_data(1).await;
    assert_eq!(next[0].0, 26);
    assert_eq!(next[0].1.as_text(), Some("m26"));
    assert_eq!(cluster.next_seq(&redis, &sid), 27, "one entry per echo");
    on_b.close().await;
}

/// Fencing under load: the owner is paused while it has work in hand (a
/// commit in flight, client messages read and not yet recorded). When it
/// comes back, that work must go nowhere: what it recorded before the other
/// node took the session is replayed by that node, the rest is refused.
#[actix_rt::test]
async fn an_owner_paused_under_load_adds_nothing_when_it_comes_back() {
    let redis = TestRedis::start();
    let cluster = Cluster::start(
        &redis,
        "fencing-load",
        &["--keep-alive", "0", "--client-timeout", "30s"],
        &[],
    )
    .await;
    let (ws, rec, echoes) = connect(&cluster).await;
    let n = 6_000;
    let sender = stream(ws, 0..n);
    assert!(echoes.wait(1_500, WAIT).await, "{}", echoes.count());
    let owner = cluster.socket_node().await;
    let other = 1 - owner;
    let sid = cluster.session_id(&redis);

    cluster.nodes[owner].signal(Signal::Stop);
    cluster
        .proxy
        .set_upstreams(vec![cluster.addrs[other]])
        .unwrap();
    assert!(
        echoes.wait(3_500, WAIT).await,
        "the client did not resume on the other node: {} echoes",
        echoes.count()
    );
    cluster.nodes[owner].signal(Signal::Cont);
    let owner_addr = cluster.addrs[owner];
    assert!(
        wait_until(|| cluster.proxy.connections_to(owner_addr) == 0, WAIT).await,
        "the resumed node must let go of its stale socket: {:?}",
        cluster.proxy.connections()
    );
    cluster.proxy.set_upstreams(cluster.addrs.clone()).unwrap();

    assert!(echoes.wait(n, WAIT).await, "{} of {n}", echoes.count());
    let ws = sender.await.unwrap();
    assert_exactly_once_in_order(&echoes.texts(), &numbered("m", 0..n), "echoes");
    assert_eq!(sessions_lost(&rec), 0);
    assert_eq!(
        cluster.next_seq(&redis, &sid),
        n as u64 + 1,
        "one server seq per echo: nothing appended by the stale node"
    );
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect in time")
        .unwrap();
}

// ---------------------------------------------------------------------------
// issue 13, test 4

/// The close a node sends when it cannot record a session's state in time.
const STORE_UNAVAILABLE: &str = "session store unavailable";

#[actix_rt::test]
async fn redis_stopped_for_two_seconds_under_load_loses_nothing() {
    // Persistent (appendfsync always): a restarted Redis still has every
    // session it acknowledged, as in production.
    let redis = TestRedis::start_persistent();
    let cluster = Cluster::start(&redis, "redis-down", &[], &[]).await;
    let (ws, rec, echoes) = connect(&cluster).await;
    let n = 6_000;
    let sender = stream(ws, 0..n);
    assert!(echoes.wait(2_000, WAIT).await, "{}", echoes.count());

    let redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.stop();
        redis
    })
    .await
    .unwrap();
    let stopped = Instant::now();
    // The link drops too (a network blip during the outage), so the client
    // has to resume while Redis is down: its HELLO cannot take the session.
    cluster.proxy.cut_all();

    // A clear event: the resume is refused with 1013 and the reason.
    let closed = rec
        .wait_for(
            WAIT,
            |e| matches!(e, RecordedEvent::Closed(c) if c.code == Some(1013)),
        )
        .await
        .expect("the client is told the store is unavailable (1013)");
    let RecordedEvent::Closed(closed) = closed else {
        unreachable!()
    };
    assert_eq!(closed.reason, STORE_UNAVAILABLE, "{closed:?}");
    let told_after = stopped.elapsed();
    assert!(
        told_after < Duration::from_secs(2),
        "told within the outage: {told_after:?}"
    );

    // Nothing goes out that could not be recorded: from here on (the old
    // socket is gone, the new ones are refused) no echo arrives while
    // Redis is down.
    let frozen = echoes.count();
    // A new client cannot start a session now: 503 with Retry-After.
    let resp = tokio::time::timeout(
        WAIT,
        awc::Client::default()
            .post(format!("http://{}/ws/negotiate", cluster.proxy.addr()))
            .send(),
    )
    .await
    .expect("negotiate answered in time")
    .expect("negotiate answered");
    assert_eq!(resp.status().as_u16(), 503, "{resp:?}");
    assert!(
        resp.headers().contains_key("retry-after"),
        "503 without Retry-After: {resp:?}"
    );

    // The outage lasts 2 s (the fault itself, not a wait for a condition).
    actix_rt::time::sleep(Duration::from_secs(2).saturating_sub(stopped.elapsed())).await;
    assert_eq!(
        echoes.count(),
        frozen,
        "echoes were written while Redis was down"
    );
    let reconnects_during = rec.reconnecting().len();
    let redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.restart();
        redis
    })
    .await
    .unwrap();

    assert!(
        echoes.wait(n, WAIT).await,
        "{} of {n} echoes after Redis came back",
        echoes.count()
    );
    let ws = sender.await.unwrap();
    assert_exactly_once_in_order(&echoes.texts(), &numbered("m", 0..n), "echoes");
    assert_eq!(sessions_lost(&rec), 0, "the session survived the outage");
    // While it was down the client kept trying and was told why each time.
    let reasons: Vec<String> = rec
        .reconnecting()
        .iter()
        .map(|r| r.reason.to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains(STORE_UNAVAILABLE)),
        "{reasons:?}"
    );
    println!(
        "redis down: told after {told_after:?}; {reconnects_during} reconnect attempts during the \
         outage; {frozen} echoes before it, {n} in the end"
    );
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .expect("disconnect in time")
        .unwrap();
    drop(redis);
}

// ---------------------------------------------------------------------------
// `rws demo --redis`

/// A row of the demo summary: `sent, received, lost, duplicated, out of
/// order` of the stream called `name`.
fn demo_row(stdout: &str, name: &str) -> Vec<u64> {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} row in:\n{stdout}"))
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("{name:?} row: {w:?}\n{stdout}"))
        })
        .collect()
}

#[test]
fn demo_with_redis_kills_a_node_mid_stream_and_loses_nothing() {
    use common::cli::{run, rws, Input};

    let redis = TestRedis::start();
    let mut cmd = rws();
    cmd.args(["demo", "--redis", redis.url(), "--messages", "3000"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    let both = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert_eq!(out.status.code(), Some(0), "{both}");
    for stream in ["echoed back", "server -> client"] {
        assert_eq!(
            demo_row(&out.stdout, stream),
            [3000, 3000, 0, 0, 0],
            "{stream}: sent, received, lost, duplicated, out of order\n{both}"
        );
    }
    // The server application is another process: its row is the echoes'.
    assert!(!out.stdout.contains("client -> server"), "{both}");
    assert!(out.stdout.contains("2 rws serve --redis nodes"), "{both}");
    let kills = out
        .stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("node kills"))
        .unwrap_or_else(|| panic!("no node kills line\n{both}"));
    assert!(kills.trim_start().starts_with("1 ("), "{both}");
    assert!(
        out.stdout.contains("sessions lost    0"),
        "resumed on the other node, not lost\n{both}"
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some("nothing lost, nothing duplicated"),
        "{both}"
    );
    // The kill really happened mid-stream, and the node came back.
    assert!(
        out.stderr
            .contains("(SIGKILL), which holds the client's socket"),
        "{both}"
    );
    assert!(out.stderr.contains(" restarted on "), "{both}");
    assert!(out.stderr.contains("no Redis keys left"), "{both}");
    // Its two nodes were killed with it: nothing of the run is left.
    assert!(redis.keys("rws-demo-").is_empty(), "{:?}", redis.keys(""));
}
