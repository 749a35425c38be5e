//! Hardening (issue 7), the server's side: every limit tested both ways
//! (just under passes, just over gets the documented close code), and
//! clients that misbehave on purpose ([`RawConn::connect`]). Each test
//! checks that another session on the same server (a `Bystander`) is
//! unaffected. Real sockets on 127.0.0.1; every wait is bounded; timers are
//! short configured durations. (Moved from hardening.rs, unchanged.)

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{App, HttpServer};
use common::{
    attach_raw, close_code_of, data, decode, negotiate_with, reliable_raw, server_options,
    wait_until,
};
use resilient_ws::{
    close_code,
    protocol::{Frame, SUBPROTOCOL},
    server::{reliable_route, AuthRefusal, ReliableServer, ServerOptions},
    testing::{opcode, EventRecorder, RawConn, TestServer},
    ConnectionState, Payload, ReconnectMode, ResilientWebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The server: helpers.

/// A reliable echo server (plain clients get echo too).
fn echo_server(options: ServerOptions) -> (TestServer, ReliableServer) {
    TestServer::reliable_echo(options).unwrap()
}

/// A well-behaved session on the same server, to show it is unaffected.
struct Bystander {
    ws: ResilientWebSocket,
    rec: EventRecorder,
    sent: usize,
}

impl Bystander {
    async fn connect(server: &TestServer) -> Bystander {
        let rec = EventRecorder::start();
        let ws = rec
            .attach(ResilientWebSocket::builder(server.ws_url()))
            .reconnect_mode(ReconnectMode::Stateful)
            .connect()
            .await
            .unwrap();
        Bystander { ws, rec, sent: 0 }
    }

    /// Sends one message and expects it back; no error, no reconnect.
    async fn still_fine(&mut self) {
        self.sent += 1;
        let text = format!("bystander {}", self.sent);
        self.ws.send(text.as_str()).await.unwrap();
        let got = self.rec.wait_messages(self.sent, WAIT).await;
        assert_eq!(got.last(), Some(&Payload::Text(text.into())));
        assert!(self.rec.errors().is_empty(), "{:?}", self.rec.errors());
        assert!(self.rec.reconnecting().is_empty());
        assert_eq!(self.ws.state(), ConnectionState::Connected);
    }
}

/// Reads protocol frames until a DATA; its seq and payload.
async fn next_data(c: &mut RawConn) -> (u64, Payload) {
    loop {
        let f = tokio::time::timeout(WAIT, c.read_frame())
            .await
            .unwrap()
            .unwrap();
        if f.opcode != opcode::BINARY {
            continue;
        }
        if let Frame::Data { seq, payload } = decode(&f) {
            return (seq, payload);
        }
    }
}

// ---------------------------------------------------------------------------
// Server limits.

#[actix_rt::test]
async fn server_message_size_limit_both_ways_plain_and_reliable() {
    let (server, _reliable) = echo_server(server_options(|o| {
        o.max_message_size = 1024;
    }));
    let mut by = Bystander::connect(&server).await;
    // Plain client: the whole WebSocket message is bounded.
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    c.send_binary(&[7; 1024]).await.unwrap();
    assert_eq!(c.read_frame().await.unwrap().payload.len(), 1024);
    c.send_binary(&[7; 1025]).await.unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1009));
    // Reliable client: the DATA payload is bounded.
    let (mut c, _) = reliable_raw(&server).await;
    c.send_binary(&data(1, vec![1u8; 1024])).await.unwrap();
    assert_eq!(
        next_data(&mut c).await,
        (1, Payload::Binary(vec![1u8; 1024].into()))
    );
    c.send_binary(&data(2, vec![1u8; 1025])).await.unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1009));
    by.still_fine().await;
    server.stop().await;
}

#[actix_rt::test]
async fn server_fragment_count_limit_both_ways_plain_and_reliable() {
    let (server, _reliable) = echo_server(server_options(|o| {
        o.max_fragments = 4;
    }));
    let mut by = Bystander::connect(&server).await;
    /// Sends `bytes` as one binary message in `frames` frames (one byte
    /// each, the rest in the last).
    async fn fragmented(c: &mut RawConn, bytes: &[u8], frames: usize) {
        for i in 0..frames {
            let last = i + 1 == frames;
            let chunk = if last { &bytes[i..] } else { &bytes[i..i + 1] };
            let op = if i == 0 {
                opcode::BINARY
            } else {
                opcode::CONTINUATION
            };
            c.send_frame(last, op, chunk).await.unwrap();
        }
    }
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    fragmented(&mut c, b"abcd", 4).await;
    assert_eq!(c.read_frame().await.unwrap().payload, b"abcd");
    fragmented(&mut c, b"abcde", 5).await;
    assert_eq!(close_code_of(&mut c).await, Some(1009));

    let (mut c, _) = reliable_raw(&server).await;
    fragmented(&mut c, &data(1, "wxyz"), 4).await;
    assert_eq!(next_data(&mut c).await, (1, Payload::Text("wxyz".into())));
    fragmented(&mut c, &data(2, "vwxyz"), 5).await;
    assert_eq!(close_code_of(&mut c).await, Some(1009));
    by.still_fine().await;
    server.stop().await;
}

#[actix_rt::test]
async fn server_unacked_bytes_bound_both_ways() {
    let (server, reliable) = echo_server(server_options(|o| {
        o.max_unacked_bytes = 1000;
    }));
    let (mut c, neg) = reliable_raw(&server).await;
    // 10 × 100 bytes fill the window exactly; the 11th waits for an ack.
    for i in 0..11u8 {
        reliable
            .send_to(&neg.connection_id, vec![i; 100])
            .await
            .unwrap();
    }
    for seq in 1..=10 {
        assert_eq!(next_data(&mut c).await.0, seq);
    }
    let more = tokio::time::timeout(Duration::from_millis(300), c.read_frame()).await;
    assert!(more.is_err(), "nothing past 1000 unacked bytes: {more:?}");
    c.send_binary(&Frame::Ack { seq: 1 }.to_bytes())
        .await
        .unwrap();
    assert_eq!(next_data(&mut c).await.0, 11);
    server.stop().await;
}

#[actix_rt::test]
async fn sessions_per_identity_and_in_all_are_bounded() {
    let options = server_options(|o| {
        o.max_sessions_per_identity = 2;
        o.max_sessions = 4;
    })
    .with_auth(|req| {
        req.headers()
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(|u| {
                if u == "anon" {
                    String::new()
                } else {
                    u.to_owned()
                }
            })
            .ok_or(AuthRefusal::Unauthorized)
    });
    let (server, reliable) = TestServer::reliable(options).unwrap();
    let alice = [("x-user", "alice")];
    let a1 = negotiate_with(&server, &alice).await.unwrap();
    let _a2 = negotiate_with(&server, &alice).await.unwrap();
    assert_eq!(negotiate_with(&server, &alice).await.unwrap_err(), 429);
    // Another identity has its own count.
    let _b1 = negotiate_with(&server, &[("x-user", "bob")]).await.unwrap();
    // A session that ends frees its slot.
    reliable.close_session(&a1.connection_id).unwrap();
    assert!(wait_until(|| reliable.sessions() == 2, WAIT).await);
    let _a3 = negotiate_with(&server, &alice).await.unwrap();
    // Anonymous callers are bounded only by the total (4).
    let _n1 = negotiate_with(&server, &[("x-user", "anon")])
        .await
        .unwrap();
    assert_eq!(reliable.sessions(), 4);
    assert_eq!(
        negotiate_with(&server, &[("x-user", "anon")])
            .await
            .unwrap_err(),
        503
    );
    assert_eq!(
        negotiate_with(&server, &[("x-user", "carol")])
            .await
            .unwrap_err(),
        503
    );
    server.stop().await;
}

/// Sends a raw HTTP request head and reads the answer's status line (empty
/// if the connection ended without one).
async fn raw_request(server: &TestServer, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[actix_rt::test]
async fn server_request_head_size_both_ways() {
    // actix-web reads a request head of at most 96 headers and 128 KiB;
    // more is refused with 431 before any of our code runs.
    let (server, _reliable) = echo_server(ServerOptions::default());
    let mut by = Bystander::connect(&server).await;
    let upgrade = |extra: String| {
        format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    };
    let pad = |n: usize, len: usize| {
        (0..n)
            .map(|i| format!("x-pad-{i}: {}\r\n", "p".repeat(len)))
            .collect::<String>()
    };
    assert!(raw_request(&server, &upgrade(pad(80, 1500)))
        .await
        .starts_with("HTTP/1.1 101"));
    assert!(raw_request(&server, &upgrade(pad(100, 10)))
        .await
        .starts_with("HTTP/1.1 431"));
    assert!(raw_request(&server, &upgrade(pad(1, 140 * 1024)))
        .await
        .starts_with("HTTP/1.1 431"));
    by.still_fine().await;
    server.stop().await;
}

// ---------------------------------------------------------------------------
// A client that misbehaves.

#[actix_rt::test]
async fn a_client_that_never_completes_the_handshake_is_dropped() {
    let reliable = ReliableServer::echo(server_options(|o| {
        o.hello_timeout = Duration::from_millis(300);
    }));
    let r = reliable.clone();
    // The HTTP head deadline is actix-web's `client_request_timeout`
    // (5 s by default); short here (actix measures it from a clock cached
    // for up to 500 ms, so not shorter than a second).
    let http = HttpServer::new(move || {
        let r = r.clone();
        App::new().configure(move |c| reliable_route(c, "/ws", r))
    })
    .workers(1)
    .disable_signals()
    .client_request_timeout(Duration::from_secs(1))
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = http.addrs()[0];
    let http = http.run();
    let handle = http.handle();
    actix_rt::spawn(http);
    let server = TestServer::serve_reliable(([127, 0, 0, 1], 0).into(), &reliable).unwrap();
    let mut by = Bystander::connect(&server).await;

    // Half a request head, never finished: 408, then the connection ends.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: webs")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Upgraded but no HELLO: closed with 1002 after hello_timeout, which
    // starts at the upgrade (after `started`).
    let started = std::time::Instant::now();
    let mut c = RawConn::connect(addr, "/ws", &[("Sec-WebSocket-Protocol", SUBPROTOCOL)])
        .await
        .unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1002));
    assert!(started.elapsed() >= Duration::from_millis(300));
    by.still_fine().await;
    handle.stop(false).await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_client_that_never_reads_is_bounded_then_dropped() {
    let (server, reliable) = echo_server(server_options(|o| {
        o.max_unacked_bytes = 256 * 1024;
    }));
    let (mut c, _neg) = reliable_raw(&server).await;
    // 256 KiB go out unacked, 1 MiB may wait; past that the session ends.
    // (`send_to` would wait for room instead; `broadcast` does not. The
    // bystander joins afterwards, so that the broadcast is not its.)
    let chunk = vec![9u8; 64 * 1024];
    let mut handed = 0;
    while reliable.sessions() == 1 {
        reliable.broadcast(chunk.clone());
        handed += 1;
        assert!(handed < 100, "the session should have ended");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(handed >= 20, "{handed}");
    let mut by = Bystander::connect(&server).await;
    assert_eq!(reliable.sessions(), 1, "the bystander's");
    by.still_fine().await;
    // What the non-reader finds when it finally reads: at most the unacked
    // window of data, then 4001 and the end of the connection.
    let mut data_bytes = 0;
    let code = loop {
        let f = tokio::time::timeout(WAIT, c.read_frame()).await.unwrap();
        match f {
            Ok(f) if f.opcode == opcode::CLOSE => break f.close_code(),
            Ok(f) => data_bytes += f.payload.len(),
            Err(_) => break None,
        }
    };
    assert_eq!(code, Some(close_code::SESSION_GONE));
    assert!(data_bytes <= 256 * 1024 + 64, "{data_bytes}");
    let eof = tokio::time::timeout(WAIT, c.read_frame()).await.unwrap();
    assert!(eof.is_err(), "{eof:?}");
    server.stop().await;
}

#[actix_rt::test]
async fn a_ping_flood_from_a_client_that_never_reads_gets_one_pong_at_a_time() {
    let (server, _reliable) = echo_server(ServerOptions::default());
    let mut by = Bystander::connect(&server).await;
    let (mut c, _) = reliable_raw(&server).await;
    // ~15 MB of pongs if each ping were answered: more than the socket
    // buffers hold, so the server's writer blocks while the flood goes on.
    let pings = 120_000u32;
    let mut payload = vec![0u8; 125];
    let flood = async {
        for i in 0..pings {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            c.send_frame(true, opcode::PING, &payload).await.unwrap();
        }
    };
    tokio::time::timeout(WAIT, flood)
        .await
        .expect("the server keeps reading the flood");
    by.still_fine().await;
    c.send_binary(&data(1, "after")).await.unwrap();
    let last = (pings - 1).to_be_bytes();
    let mut pongs = 0u32;
    let (mut echoed, mut newest_answered) = (false, false);
    let read = async {
        // Both, in either order: the echo, and the pong of the newest ping.
        while !(echoed && newest_answered) {
            let f = c.read_frame().await.unwrap();
            match f.opcode {
                opcode::PONG => {
                    pongs += 1;
                    newest_answered |= f.payload[..4] == last;
                }
                opcode::BINARY => {
                    if let Frame::Data { payload, .. } = decode(&f) {
                        assert_eq!(payload, Payload::Text("after".into()));
                        echoed = true;
                    }
                }
                other => panic!("unexpected opcode {other}"),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the echo and the newest ping's pong arrive");
    assert!(pongs < pings, "{pongs} pongs for {pings} pings");
    by.still_fine().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_client_sending_garbage_reserved_bits_or_bad_close_gets_1002_and_keeps_its_session() {
    let (server, reliable) = echo_server(ServerOptions::default());
    let mut by = Bystander::connect(&server).await;
    let (mut c, neg) = reliable_raw(&server).await;
    c.send_binary(&data(1, "one")).await.unwrap();
    assert_eq!(next_data(&mut c).await.1, Payload::Text("one".into()));
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("reserved bits", 0x80 | 0x40 | opcode::BINARY, data(2, "x")),
        ("unknown opcode", 0x80 | 0x3, vec![]),
        ("control frame too long", 0x80 | opcode::PING, vec![0; 126]),
        (
            "close code 999",
            0x80 | opcode::CLOSE,
            999u16.to_be_bytes().to_vec(),
        ),
        (
            "close reason not UTF-8",
            0x80 | opcode::CLOSE,
            vec![0x03, 0xE8, 0xC3, 0x28],
        ),
    ];
    for (name, first, payload) in cases {
        let mut c = attach_raw(&server, &neg, 1).await;
        c.send_frame_raw(first, &payload).await.unwrap();
        assert_eq!(close_code_of(&mut c).await, Some(1002), "{name}");
    }
    // Unmasked frames from a client are refused too.
    let mut c = attach_raw(&server, &neg, 1).await;
    c.send_raw(&[0x82, 0x01, 0x05]).await.unwrap();
    assert_eq!(close_code_of(&mut c).await, Some(1002), "unmasked");
    // The session is intact and resumes.
    let mut c = attach_raw(&server, &neg, 1).await;
    c.send_binary(&data(2, "two")).await.unwrap();
    assert_eq!(next_data(&mut c).await.1, Payload::Text("two".into()));
    assert_eq!(reliable.sessions(), 2);
    by.still_fine().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_plain_echo_client_that_never_reads_is_not_read_either() {
    let (server, _reliable) = echo_server(ServerOptions::default());
    let mut by = Bystander::connect(&server).await;
    let mut c = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    // 64 MB of messages, none of the echoes read: the server stops reading
    // once its echo buffer (ECHO_BUFFER_BYTES) and the socket buffers are
    // full, so the sender blocks instead of the server's memory growing.
    let chunk_size = 64 * 1024;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let flood = actix_rt::spawn(async move {
        let chunk = vec![5u8; chunk_size];
        for _ in 0..1024 {
            c.send_binary(&chunk).await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
        c
    });
    // Wait until the sender has been stuck for a while.
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last || std::time::Instant::now() > deadline {
            break;
        }
        last = now;
    }
    assert!(!flood.is_finished(), "the server kept reading");
    // What the server took: its echo buffer plus what the kernel's socket
    // buffers hold on both sides, far below the 64 MiB sent at it.
    let taken = sent.load(Ordering::SeqCst) * chunk_size;
    assert!(
        taken < resilient_ws::server::ECHO_BUFFER_BYTES + 24 * 1024 * 1024,
        "{taken} bytes taken from a client that never reads"
    );
    by.still_fine().await;
    flood.abort();
    server.stop().await;
}

#[actix_rt::test]
async fn a_client_that_acks_without_reading_is_dropped_as_too_slow() {
    let (server, reliable) = echo_server(server_options(|o| {
        o.max_unacked_bytes = 1024 * 1024;
    }));
    let mut by = Bystander::connect(&server).await;
    let (mut c, neg) = reliable_raw(&server).await;
    assert_eq!(reliable.stats().attached, 2);
    // The client counts the application's messages and acks them (20
    // behind: within the window of 16, well inside the pending bound of
    // 64) without reading a byte, so the window keeps moving: the data
    // piles up in front of the socket instead.
    let chunk = vec![1u8; 64 * 1024];
    let mut dropped_after = None;
    for seq in 1..=2000u64 {
        reliable
            .send_to(&neg.connection_id, chunk.clone())
            .await
            .unwrap();
        if seq > 20 {
            let ack = Frame::Ack { seq: seq - 20 }.to_bytes();
            let sent = tokio::time::timeout(Duration::from_secs(1), c.send_binary(&ack)).await;
            assert!(matches!(sent, Ok(Ok(()))), "ack {}: {sent:?}", seq - 20);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        if reliable.stats().attached == 1 {
            dropped_after = Some(seq);
            break;
        }
    }
    // Dropped once more than 2 × max_unacked_bytes waited unwritten
    // (after the socket buffers filled up); the session stays.
    let seq = dropped_after.expect("the socket was dropped as too slow");
    assert!(seq < 1000, "{seq}");
    assert_eq!(reliable.sessions(), 2);
    by.still_fine().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_client_text_frame_that_is_not_utf8_gets_1007_whole_or_fragmented() {
    let (server, _reliable) = echo_server(ServerOptions::default());
    let mut by = Bystander::connect(&server).await;
    // A plain socket: actix-ws rejects a whole text frame itself; the
    // assembler rejects a fragmented one. Both are 1007.
    let mut whole = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    whole
        .send_frame(true, opcode::TEXT, &[0xC3, 0x28])
        .await
        .unwrap();
    assert_eq!(close_code_of(&mut whole).await, Some(1007), "whole");
    let mut parts = RawConn::connect(server.addr(), "/ws", &[]).await.unwrap();
    parts
        .send_frame(false, opcode::TEXT, &[b'a', 0xC3])
        .await
        .unwrap();
    parts
        .send_frame(true, opcode::CONTINUATION, &[0x28])
        .await
        .unwrap();
    assert_eq!(close_code_of(&mut parts).await, Some(1007), "fragmented");
    by.still_fine().await;
    server.stop().await;
}
