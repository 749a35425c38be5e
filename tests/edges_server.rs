//! Server correctness edges (issue 11, items 2, 4, 5, 10, 11): drain on
//! shutdown, inbound backpressure, `send_to` that waits, close codes with
//! one meaning, server heartbeats. Real sockets on 127.0.0.1; scripted
//! clients are [`RawConn`]; timers are short configured durations and every
//! wait is bounded.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use actix::prelude::*;
use common::{
    attach_raw, close_code_of, connect_recorded, data, decode, raw_pair, read_until_close,
    reliable_raw, server_options, wait_until, RwsServe, Slow,
};
use resilient_ws::{
    close_code,
    protocol::Frame,
    server::{PlainMode, ReliableServer, ServerError},
    testing::{opcode, EventRecorder, RawConn, RawServer, RecordedEvent, TestServer},
    Payload, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(20);

/// Reads frames until a Close: the last ACK seen before it, and its code.
async fn ack_then_close(conn: &mut RawConn) -> (Option<u64>, Option<u16>) {
    let mut ack = None;
    let code = read_until_close(conn, |f| {
        if f.opcode == opcode::BINARY {
            if let Frame::Ack { seq } = decode(&f) {
                ack = Some(seq);
            }
        }
    })
    .await;
    (ack, code)
}

// ---------------------------------------------------------------------------
// Item 10: close codes mean one thing.

/// A reliable client that acks the echoes without reading them is dropped
/// as "too slow" with 1013 (try again later: the session stays and the
/// client resumes), not with 1008, which a client treats as terminal.
#[actix_rt::test]
async fn a_too_slow_reliable_socket_is_closed_with_1013_not_1008() {
    let (server, reliable): (TestServer, ReliableServer) =
        TestServer::reliable_echo(server_options(|o| {
            o.max_unacked_bytes = 256 * 1024;
        }))
        .unwrap();
    let (mut c, _neg) = reliable_raw(&server).await;
    let chunk = vec![7u8; 32 * 1024];
    let mut seq = 0u64;
    while reliable.stats().attached == 1 {
        seq += 1;
        assert!(seq < 20_000, "never dropped as too slow");
        c.send_binary(&data(seq, chunk.clone())).await.unwrap();
        if seq > 4 {
            // Blind acks for the echoes, 4 behind: within the window.
            c.send_binary(&Frame::Ack { seq: seq - 4 }.to_bytes())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(reliable.sessions(), 1, "the session stays");
    assert_eq!(
        close_code_of(&mut c).await,
        Some(close_code::TRY_AGAIN_LATER)
    );
    server.stop().await;
}

/// The server's own closes carry its pending ACK first: a socket replaced
/// by a newer one (4002) and a session the application ends (1000) hear
/// the ACK for what was delivered before the Close, even when the ack
/// timer has not fired.
#[actix_rt::test]
async fn the_server_sends_its_pending_ack_before_4002_and_1000() {
    let (server, reliable) = TestServer::reliable(server_options(|o| {
        // Far longer than the test: only a close can send the ACK.
        o.ack_interval = Duration::from_secs(60);
        o.ack_threshold = 1000;
    }))
    .unwrap();
    let (mut old, neg) = reliable_raw(&server).await;
    old.send_binary(&data(1, "a")).await.unwrap();
    old.send_binary(&data(2, "b")).await.unwrap();
    // A pong proves the server read both DATA frames first (same socket).
    old.send_frame(true, opcode::PING, b"sync").await.unwrap();
    loop {
        let f = tokio::time::timeout(WAIT, old.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(f.opcode, opcode::BINARY, "no ACK yet: {f:?}");
        if f.opcode == opcode::PONG {
            break;
        }
    }
    let mut new = attach_raw(&server, &neg, 0).await;
    assert_eq!(
        ack_then_close(&mut old).await,
        (Some(2), Some(close_code::REPLACED))
    );
    new.send_binary(&data(3, "c")).await.unwrap();
    new.send_frame(true, opcode::PING, b"sync").await.unwrap();
    loop {
        let f = tokio::time::timeout(WAIT, new.read_frame())
            .await
            .unwrap()
            .unwrap();
        if f.opcode == opcode::PONG {
            break;
        }
    }
    reliable.close_session(&neg.connection_id).unwrap();
    assert_eq!(
        ack_then_close(&mut new).await,
        (Some(3), Some(close_code::NORMAL))
    );
    server.stop().await;
}

/// The client side of the same rule: a server's 1013 is retryable (the
/// client reconnects after its backoff), unlike 1008.
#[actix_rt::test]
async fn a_client_told_1013_reconnects() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let b = rec
        .attach(ResilientWebSocket::builder(server.ws_url()))
        .reconnect_mode(ReconnectMode::Stateless)
        .reconnect_delays(Duration::from_millis(20), Duration::from_millis(50), 0);
    let (ws, mut conn) = raw_pair(&server, b).await;
    conn.send_close(close_code::TRY_AGAIN_LATER, "too slow")
        .await
        .unwrap();
    // It comes back.
    let again = tokio::time::timeout(WAIT, server.accept()).await;
    assert!(matches!(again, Ok(Ok(_))), "the client reconnected");
    let reconnecting = rec.reconnecting();
    assert!(
        !reconnecting.is_empty() && reconnecting[0].reason.close_code() == Some(1013),
        "{reconnecting:?}"
    );
    drop(again);
    let _ = ws.disconnect().await;
}

// ---------------------------------------------------------------------------
// Item 2: ack before close, drain on shutdown (a real `rws serve` child).

/// A rolling restart of one `rws serve --echo` under a streaming stateful
/// client: SIGTERM mid-stream, a new process on the same port. The old
/// server stops taking messages, acks what it delivered, flushes its echoes
/// and waits for their acks before closing with 1012, so the new session
/// re-sends exactly what the old one never delivered: every echo arrives
/// exactly once, in order.
#[actix_rt::test]
async fn a_rolling_restart_under_a_streaming_client_echoes_each_message_exactly_once() {
    const N: usize = 6000;
    const ARGS: &[&str] = &[
        "--echo",
        "--shutdown-reconnect-after",
        "50ms",
        "--shutdown-spread",
        "50ms",
        "--shutdown-drain",
        "5s",
    ];
    let mut first = RwsServe::start_async("127.0.0.1:0", ARGS).await;
    let addr = first.addr().to_owned();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(format!("ws://{addr}/ws")))
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(20), Duration::from_millis(100), 0)
        .buffering(true, 100_000)
        .build()
        .unwrap();
    ws.connect().await.unwrap();
    let sender = {
        let ws = ws.clone();
        actix_rt::spawn(async move {
            for i in 0..N {
                ws.send(format!("m{i}")).await.unwrap();
                if i % 20 == 0 {
                    // A paced stream, not one burst: the restart lands
                    // mid-way, with deliveries the server has not acked.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    rec.wait_until(WAIT, |log| {
        let n = log
            .iter()
            .filter(|e| matches!(e, RecordedEvent::Message(_)))
            .count();
        (n >= N / 4).then_some(())
    })
    .await
    .expect("a quarter of the echoes before the restart");
    let killed = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = first.wait_exit().await;
    assert!(status.success(), "rws serve exited with {status}");
    let _second = RwsServe::start_async(&addr, ARGS).await;
    sender.await.unwrap();
    // A duplicate takes the place of a later message among the first N.
    let got = rec.wait_messages(N, WAIT).await;
    let expected: Vec<Payload> = (0..N)
        .map(|i| Payload::Text(format!("m{i}").into()))
        .collect();
    let got_texts: Vec<String> = got
        .iter()
        .map(|p| match p {
            Payload::Text(t) => t.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    let dups = got_texts.len() - {
        let mut d = got_texts.clone();
        d.sort();
        d.dedup();
        d.len()
    };
    assert_eq!(dups, 0, "{dups} echoes arrived twice");
    assert_eq!(got, expected, "every echo once, in order");
    ws.disconnect().await.unwrap();
}

// ---------------------------------------------------------------------------
// Item 5: `send_to` waits instead of ending the session.

/// One client's burst in broadcast mode, far past 4 × the window, reaches
/// every session in order and ends none: the broadcast waits for room in
/// each session's buffer instead of overflowing it. The burst comes from a
/// plain client (no window of its own) and from a reliable one.
#[actix_rt::test]
async fn a_burst_in_broadcast_mode_ends_no_session() {
    const N: usize = 400;
    let reliable = ReliableServer::broadcast_mode(server_options(|o| {
        o.max_unacked_bytes = 8 * 1024;
        o.plain = PlainMode::Broadcast;
    }));
    let server =
        TestServer::serve_reliable(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), &reliable)
            .unwrap();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (ws, rec) = connect_recorded(
            ResilientWebSocket::builder(server.ws_url())
                .reconnect_mode(ReconnectMode::Stateful)
                .buffering(true, 10_000),
        )
        .await;
        clients.push((ws, rec));
    }
    // 400 × 512 B = 200 KiB, 25 windows, to every session; from the plain
    // client first, then from a reliable one.
    let burst = |tag: char| -> Vec<String> { (0..N).map(|i| format!("{tag}{i:0>511}")).collect() };
    let mut plain = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    assert!(
        wait_until(|| reliable.stats().plain_clients == 1, WAIT).await,
        "timed out: the plain client joined"
    );
    for m in burst('p') {
        plain.send_text(m).await.unwrap();
    }
    for m in burst('r') {
        clients[0].0.send(m).await.unwrap();
    }
    for (_, rec) in &clients {
        let got = rec.wait_messages(2 * N, WAIT).await;
        assert_eq!(got.len(), 2 * N, "every message");
        // The two bursts may interleave; each is whole and in order.
        for tag in ['p', 'r'] {
            let from: Vec<String> = got
                .iter()
                .filter_map(|p| match p {
                    Payload::Text(t) if t.starts_with(tag) => Some(t.to_string()),
                    _ => None,
                })
                .collect();
            assert!(from == burst(tag), "burst {tag}: in order, once");
        }
        let lost = rec
            .events()
            .iter()
            .filter(|e| matches!(e, RecordedEvent::SessionLost(_)))
            .count();
        assert_eq!(lost, 0, "no session ended: {:?}", rec.errors());
    }
    assert_eq!(reliable.sessions(), 2);
    for (ws, _) in clients {
        ws.disconnect().await.unwrap();
    }
    server.stop().await;
}

/// `try_send_to` refuses at once when the session's buffer is full;
/// `send_to` waits for the client's acks, and fails with `Timeout` after
/// `send_timeout`, without ending the session.
#[actix_rt::test]
async fn send_to_waits_for_room_and_try_send_to_is_full_at_once() {
    let (server, reliable) = TestServer::reliable(server_options(|o| {
        o.max_unacked_bytes = 1000;
        o.send_timeout = Duration::from_millis(200);
    }))
    .unwrap();
    let (mut c, neg) = reliable_raw(&server).await;
    let id = neg.connection_id.clone();
    // The buffer holds 4 × 1000 bytes: 40 messages of 100.
    for i in 0..40u8 {
        reliable.try_send_to(&id, vec![i; 100]).unwrap();
    }
    assert_eq!(
        reliable.try_send_to(&id, vec![40; 100]),
        Err(ServerError::Full)
    );
    let t0 = Instant::now();
    assert_eq!(
        reliable.send_to(&id, vec![40; 100]).await,
        Err(ServerError::Timeout)
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(reliable.sessions(), 1, "the session stays");
    // A waiting send_to goes through once the client acks.
    let waiting = {
        let (reliable, id) = (reliable.clone(), id.clone());
        actix_rt::spawn(async move { reliable.send_to(&id, vec![40; 100]).await })
    };
    for seq in 1..=10 {
        let f = tokio::time::timeout(WAIT, c.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(decode(&f), Frame::Data { seq: s, .. } if s == seq));
    }
    c.send_binary(&Frame::Ack { seq: 10 }.to_bytes())
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap(), Ok(()));
    assert_eq!(
        reliable.send_to("no-such-session", "x").await,
        Err(ServerError::UnknownSession)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 11: server heartbeats.

/// The server pings every socket and closes one that stays silent past
/// `client_timeout`: a reliable socket whose client stopped reading and
/// answering is detached (the session waits out its resume window, then
/// expires), a silent plain client is freed, and a client that answers the
/// pings (here with its own heartbeat off) stays connected.
#[actix_rt::test]
async fn silent_sockets_are_closed_by_the_server_heartbeat() {
    let (server, reliable) = TestServer::reliable_echo(server_options(|o| {
        o.keep_alive_interval = Duration::from_millis(50);
        o.client_timeout = Duration::from_millis(300);
        o.resume_window = Duration::from_millis(500);
    }))
    .unwrap();
    // A live client that sends nothing but answers pings.
    let (live, rec) = connect_recorded(
        ResilientWebSocket::builder(server.ws_url())
            .reconnect_mode(ReconnectMode::Stateful)
            .heartbeat(Duration::ZERO, None),
    )
    .await;
    // A reliable and a plain client that go silent after the handshake.
    let t0 = Instant::now();
    let (mut silent, _neg) = reliable_raw(&server).await;
    let plain = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    let attached = |sockets: usize, plain: usize| {
        let s = reliable.stats();
        s.attached == sockets && s.plain_clients == plain
    };
    assert!(
        wait_until(|| attached(2, 1), WAIT).await,
        "timed out: all three attached"
    );
    assert!(
        wait_until(|| attached(1, 0), WAIT).await,
        "timed out: the silent sockets dropped"
    );
    // Not before client_timeout after their last frame.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // The silent reliable socket was told why (it reads it now).
    assert_eq!(
        close_code_of(&mut silent).await,
        Some(close_code::GOING_AWAY)
    );
    // Its session waited for a resume, then expired; the live one stays.
    assert_eq!(reliable.sessions(), 2);
    assert!(
        wait_until(|| reliable.sessions() == 1, WAIT).await,
        "timed out: the silent session expired"
    );
    assert_eq!(reliable.stats().attached, 1);
    assert!(rec.reconnecting().is_empty(), "{:?}", rec.errors());
    live.send("still here").await.unwrap();
    assert_eq!(
        rec.wait_messages(1, WAIT).await,
        vec![Payload::Text("still here".into())]
    );
    drop(plain);
    live.disconnect().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Item 4: server inbound backpressure.

/// Waits until `value` has not changed for `quiet` (bounded by WAIT); the
/// value then.
async fn settled(mut value: impl FnMut() -> u64, quiet: Duration) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut last = value();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(Instant::now() < deadline, "never settled: {now}");
    }
}

/// A client streaming faster than the application's subscriber: the
/// server acks only what the subscriber took, so the client stops after
/// its window, and stops reading past `max_inbound_backlog`: what waits in
/// the server stays bounded (measured) instead of growing with the stream.
/// Released, every message arrives once, in order.
#[actix_rt::test]
async fn a_client_faster_than_a_slow_subscriber_is_bounded_in_the_server() {
    const N: usize = 20_000;
    const BACKLOG: usize = 200;
    let arbiter = Arbiter::new();
    let (slow, gate) = Slow::start_on(&arbiter);
    let (server, reliable) = TestServer::reliable(server_options(|o| {
        // About 600 messages of 100 B in flight per direction.
        o.max_unacked_bytes = 64 * 1024;
        o.max_inbound_backlog = BACKLOG;
    }))
    .unwrap();
    reliable.on_message(slow.recipient());
    let (ws, rec) = connect_recorded(
        ResilientWebSocket::builder(server.ws_url())
            .reconnect_mode(ReconnectMode::Stateful)
            .buffering(true, N + 10),
    )
    .await;
    for i in 0..N {
        ws.send(format!("{i:0>100}")).await.unwrap();
    }
    // The stream stalls: what the client got onto the socket stops moving.
    let sent = settled(|| ws.stats().messages_sent, Duration::from_millis(500)).await;
    let waiting = reliable.stats().inbound_backlog;
    eprintln!("stalled: the client sent {sent}, {waiting} wait for the subscriber");
    assert!(
        sent <= (BACKLOG + 1500) as u64,
        "the client sent {sent} of {N} into a stalled server"
    );
    assert!(
        (BACKLOG..=BACKLOG + 1500).contains(&waiting),
        "{waiting} messages wait for the subscriber"
    );
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    // Released: everything, once, in order.
    gate.release();
    assert!(
        wait_until(|| gate.len() >= N, WAIT).await,
        "timed out: the subscriber got everything"
    );
    let want: Vec<Payload> = (0..N)
        .map(|i| Payload::Text(format!("{i:0>100}").into()))
        .collect();
    assert!(gate.got() == want, "once, in order");
    assert!(
        wait_until(|| reliable.stats().inbound_backlog == 0, WAIT).await,
        "timed out: the backlog is empty"
    );
    ws.disconnect().await.unwrap();
    server.stop().await;
    arbiter.stop();
}

/// A client that ignores its window (a raw one sending DATA without
/// waiting for acks) against a slow subscriber: the server stops reading
/// its socket at `max_inbound_backlog`, so what waits for the subscriber
/// stays bounded (measured) while the rest stays in TCP; released, every
/// message arrives once, in order.
#[actix_rt::test]
async fn a_client_ignoring_its_window_is_not_read_past_the_inbound_backlog() {
    const N: u64 = 20_000;
    const BACKLOG: usize = 200;
    let arbiter = Arbiter::new();
    let (slow, gate) = Slow::start_on(&arbiter);
    let (server, reliable) = TestServer::reliable(server_options(|o| {
        o.max_inbound_backlog = BACKLOG;
    }))
    .unwrap();
    reliable.on_message(slow.recipient());
    let (mut c, _neg) = reliable_raw(&server).await;
    let flood = actix_rt::spawn(async move {
        for seq in 1..=N {
            c.send_binary(&data(seq, format!("{seq:0>100}")))
                .await
                .unwrap();
        }
        c
    });
    let waiting = settled(
        || reliable.stats().inbound_backlog as u64,
        Duration::from_millis(500),
    )
    .await;
    eprintln!("{waiting} wait for the subscriber");
    // The bound, plus what the reader had already handed to the session
    // (at most 4 batches of 256 in its mailbox and one being read).
    assert!(
        (BACKLOG as u64..=(BACKLOG + 5 * 256) as u64).contains(&waiting),
        "{waiting} of {N} messages wait for the subscriber"
    );
    gate.release();
    assert!(
        wait_until(|| gate.len() as u64 >= N, WAIT).await,
        "timed out: the subscriber got everything"
    );
    let want: Vec<Payload> = (1..=N)
        .map(|seq| Payload::Text(format!("{seq:0>100}").into()))
        .collect();
    assert!(gate.got() == want, "once, in order");
    drop(flood.await.unwrap());
    server.stop().await;
    arbiter.stop();
}
