//! Write-side backpressure: against a peer that stops reading, what the
//! client holds stays bounded (the outbox's bound and overflow policy reach
//! `send()`), and nothing is lost once the peer reads again.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::Duration,
};

use resilient_ws::{Error, OverflowPolicy, ReconnectMode, ResilientWebSocket};

/// Accepts one WebSocket client and answers the upgrade by hand.
fn accept_upgrade(listener: &TcpListener) -> TcpStream {
    let (mut stream, _) = listener.accept().unwrap();
    let mut req = Vec::new();
    let mut byte = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        req.push(byte[0]);
    }
    let req = String::from_utf8(req).unwrap();
    let key = req
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .unwrap();
    let accept = actix_http::ws::hash_key(key.as_bytes());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        std::str::from_utf8(&accept).unwrap()
    )
    .unwrap();
    stream
}

/// Reads one (masked, unfragmented) client frame: (opcode, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let mut len = (head[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        stream.read_exact(&mut b).unwrap();
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        stream.read_exact(&mut b).unwrap();
        len = u64::from_be_bytes(b);
    }
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask).unwrap();
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).unwrap();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (head[0] & 0x0f, payload)
}

#[actix_rt::test]
async fn a_peer_that_stops_reading_bounds_the_client_and_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (start_reading, go) = mpsc::channel::<usize>();
    let (report, got) = mpsc::channel::<Vec<String>>();
    thread::spawn(move || {
        let mut stream = accept_upgrade(&listener);
        // Read nothing until told how many messages to expect.
        let n = go.recv().unwrap();
        let mut texts = Vec::new();
        while texts.len() < n {
            let (op, payload) = read_frame(&mut stream);
            if op == 1 {
                texts.push(String::from_utf8(payload).unwrap());
            }
        }
        report.send(texts).unwrap();
    });

    let ws = ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::None)
        .heartbeat(Duration::ZERO, None)
        .buffering(true, 200)
        .overflow_policy(OverflowPolicy::Reject)
        .connect()
        .await
        .unwrap();
    let pad = "x".repeat(1020);
    // Without backpressure every send is accepted and queued in memory:
    // 64 MiB of them would be taken without complaint.
    let limit = 64 * 1024;
    let mut accepted = 0;
    let mut refused = false;
    while accepted < limit {
        match ws.send(format!("m{accepted:06}{pad}")).await {
            Ok(()) => accepted += 1,
            Err(Error::BufferFull(200)) => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        refused,
        "a peer that never reads got {accepted} messages queued"
    );
    // The socket's kernel buffers, the write-side high watermark (1 MiB)
    // and the outbox (200): a few MiB, far below the limit.
    assert!(accepted < 16 * 1024, "{accepted} messages accepted");
    eprintln!("accepted before backpressure: {accepted}");

    start_reading.send(accepted + 1).unwrap();
    // The flow resumes as the peer reads: one more goes through behind the
    // rest once there is room.
    let start = std::time::Instant::now();
    loop {
        match ws.send(format!("m{accepted:06}{pad}")).await {
            Ok(()) => break,
            Err(Error::BufferFull(_)) if start.elapsed() < Duration::from_secs(20) => {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let texts = actix_rt::task::spawn_blocking(move || got.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the peer read everything");
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(&t[..7], format!("m{i:06}"), "message {i} in order, once");
    }
    assert_eq!(texts.len(), accepted + 1);
}
