//! `send()`'s way to the socket: the inbox in front of the outbox (one
//! wake-up of the outbox per burst), order within a burst and across
//! senders, `disconnect()` while other threads send, the inbox's bound
//! (backpressure), and bursts larger than the socket's write high-water
//! mark, which go through the outbox's store-and-forward.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use resilient_ws::{
    client::OutgoingMessage,
    testing::{opcode, RawServer, TestServer},
    Error, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(10);

fn builder(url: impl Into<String>) -> resilient_ws::ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::None)
        .buffering(true, 100_000)
}

#[actix_rt::test]
async fn disconnect_while_other_threads_send_writes_what_they_were_told_was_taken_first() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url()).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    // Read everything until the Close, so the socket never stalls.
    let reader = actix_rt::spawn(async move {
        let mut texts = Vec::new();
        loop {
            let f = conn.read_frame().await.unwrap();
            if f.opcode == opcode::CLOSE {
                conn.send_close(1000, "").await.unwrap();
                return texts;
            }
            texts.push(String::from_utf8(f.payload).unwrap());
        }
    });
    let threads = 3;
    let taken: Arc<Vec<AtomicUsize>> =
        Arc::new((0..threads).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..threads)
        .map(|t| {
            let (ws, taken, stop) = (ws.clone(), taken.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    // Refused (not connected) while the close runs; once
                    // it is done, taken into the outbox (buffering): stop.
                    if stop.load(Ordering::SeqCst)
                        || futures::executor::block_on(ws.send(format!("{t}:{i}"))).is_err()
                    {
                        return;
                    }
                    taken[t].store(i + 1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while taken.iter().any(|n| n.load(Ordering::SeqCst) < 500) {
        assert!(tokio::time::Instant::now() < deadline, "the threads send");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before: Vec<usize> = taken.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    tokio::time::timeout(WAIT, ws.disconnect())
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().unwrap();
    }
    let texts = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    for (t, &before) in before.iter().enumerate() {
        let mine: Vec<&str> = texts
            .iter()
            .filter_map(|x| x.strip_prefix(&format!("{t}:")))
            .collect();
        // In order, none missing, none twice...
        let expected: Vec<String> = (0..mine.len()).map(|i| i.to_string()).collect();
        assert_eq!(mine, expected, "thread {t}'s messages in order");
        // ...and at least every one taken before `disconnect()` was called.
        assert!(
            mine.len() >= before,
            "thread {t}: {} written, {before} taken before the close",
            mine.len()
        );
    }
}

#[actix_rt::test]
async fn send_and_the_sender_recipient_keep_one_order() {
    let server = RawServer::bind().await.unwrap();
    let ws = builder(server.ws_url()).build().unwrap();
    let (conn, ()) = tokio::join!(server.accept(), async { ws.connect().await.unwrap() });
    let mut conn = conn.unwrap();
    let sender = ws.sender();
    for i in 0..50 {
        ws.send(format!("s{i}")).await.unwrap();
        sender
            .send(OutgoingMessage::new(format!("r{i}")))
            .await
            .unwrap()
            .unwrap();
        ws.try_send(format!("t{i}")).unwrap();
    }
    for i in 0..50 {
        for kind in ["s", "r", "t"] {
            let f = tokio::time::timeout(WAIT, conn.read_data_frame())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(f.payload, format!("{kind}{i}").as_bytes());
        }
    }
    let ws2 = ws.clone();
    let closing = actix_rt::spawn(async move { ws2.disconnect().await });
    assert_eq!(conn.read_frame().await.unwrap().opcode, opcode::CLOSE);
    conn.send_close(1000, "").await.unwrap();
    closing.await.unwrap().unwrap();
}

#[actix_rt::test]
async fn try_send_is_refused_once_the_inbox_is_full_and_what_it_took_arrives_in_order() {
    let server = TestServer::echo().await.unwrap();
    let (ws, rec) = common::connect_recorded(builder(server.ws_url())).await;
    // Without an await the outbox never runs: the inbox fills, and its
    // bound (not the outbox's, 100 000) refuses.
    let kib = "x".repeat(1024);
    let mut taken = 0;
    let refused = loop {
        match ws.try_send(format!("{taken:05}{kib}")) {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken < 100_000, "the inbox is bounded");
    };
    assert!(matches!(refused, Error::BufferFull(100_000)), "{refused:?}");
    assert!(taken > 0);
    let got = rec.wait_messages(taken, WAIT).await;
    assert_eq!(got.len(), taken);
    for (i, p) in got.iter().enumerate() {
        assert!(p.as_text().unwrap().starts_with(&format!("{i:05}x")));
    }
    // Taken in, it has room again.
    ws.try_send("after").unwrap();
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_stream_of_8_mib_arrives_whole_and_in_order() {
    let server = TestServer::echo().await.unwrap();
    let (ws, rec) = common::connect_recorded(builder(server.ws_url())).await;
    // 8 MiB in 1 KiB messages, in bursts of up to 512 KiB (the inbox's
    // bound): whenever the socket falls 1 MiB behind, its write side
    // pauses and what comes meanwhile waits in the outbox.
    let n = 8 * 1024;
    let kib = "x".repeat(1000);
    for i in 0..n {
        ws.send(format!("{i:05}{kib}")).await.unwrap();
    }
    let got = rec.wait_messages(n, WAIT).await;
    assert_eq!(got.len(), n);
    for (i, p) in got.iter().enumerate() {
        assert!(p.as_text().unwrap().starts_with(&format!("{i:05}x")));
    }
    assert_eq!(ws.stats().messages_sent, n as u64);
    ws.disconnect().await.unwrap();
}
