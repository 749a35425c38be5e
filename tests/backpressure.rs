//! Write-side backpressure: against a peer that stops reading, what the
//! client holds stays bounded (the outbox's bound and overflow policy reach
//! `send()`), and nothing is lost once the peer reads again.

mod common;

use std::{net::TcpListener, sync::mpsc, thread, time::Duration};

use common::{accept_upgrade, read_client_frame, wait_until};
use resilient_ws::{Error, OverflowPolicy, ReconnectMode, ResilientWebSocket};

#[actix_rt::test]
async fn a_peer_that_stops_reading_bounds_the_client_and_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (start_reading, go) = mpsc::channel::<usize>();
    let (report, got) = mpsc::channel::<Vec<String>>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        accept_upgrade(&mut stream);
        // Read nothing until told how many messages to expect.
        let n = go.recv().unwrap();
        let mut texts = Vec::new();
        while texts.len() < n {
            let (op, payload) = read_client_frame(&mut stream);
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
            Ok(_) => accepted += 1,
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
            Ok(_) => break,
            // Refused while the outbox is full: wait until the reading peer
            // lets it drain, then try again.
            Err(Error::BufferFull(_)) if start.elapsed() < Duration::from_secs(20) => {
                wait_until(
                    || ws.stats().messages_buffered < 200,
                    Duration::from_secs(20),
                )
                .await;
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
