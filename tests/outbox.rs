//! The outbox (`QueueActor` + `MessageQueue`): store-and-forward while
//! disconnected, each overflow policy with its drop events, time to live,
//! priorities, and batched writes while connected.

mod common;

use std::time::Duration;

use common::wait_until;
use resilient_ws::{
    client::OutgoingMessage,
    queue::{DropReason, MessageId},
    testing::{EventRecorder, TestServer},
    Error, OverflowPolicy, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(10);

/// A client whose URL points at a server that is not started yet, so
/// everything sent waits in the outbox until `connect()`.
fn offline(server: &TestServer, max: usize) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .buffering(true, max)
}

fn texts(p: &[resilient_ws::Payload]) -> Vec<String> {
    p.iter().map(|p| p.as_text().unwrap().to_string()).collect()
}

#[actix_rt::test]
async fn reject_refuses_the_message_that_does_not_fit_and_drops_nothing() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(offline(&server, 3)).build().unwrap();
    for i in 0..3 {
        ws.send(format!("m{i}")).await.unwrap();
    }
    assert!(wait_until(|| ws.stats().messages_buffered == 3, WAIT).await);
    assert!(matches!(ws.send("m3").await, Err(Error::BufferFull(3))));
    assert!(matches!(ws.try_send("m3"), Err(Error::BufferFull(3))));
    assert_eq!(ws.stats().messages_buffered, 3);
    ws.connect().await.unwrap();
    assert_eq!(texts(&rec.wait_messages(3, WAIT).await), ["m0", "m1", "m2"]);
    assert!(rec.dropped().is_empty());
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn drop_oldest_and_drop_newest_report_every_drop_with_its_id() {
    for (policy, kept, dropped) in [
        (
            OverflowPolicy::DropOldest,
            ["m2", "m3", "m4"],
            [(1u64, "m0"), (2, "m1")],
        ),
        (
            OverflowPolicy::DropNewest,
            ["m0", "m1", "m2"],
            [(4, "m3"), (5, "m4")],
        ),
    ] {
        let server = TestServer::echo().await.unwrap();
        let rec = EventRecorder::start();
        let ws = rec
            .attach(offline(&server, 3).overflow_policy(policy))
            .build()
            .unwrap();
        for i in 0..5 {
            ws.send(format!("m{i}")).await.unwrap();
        }
        let two = rec
            .wait_until(WAIT, |events| {
                let n = events
                    .iter()
                    .filter(|e| matches!(e, resilient_ws::testing::RecordedEvent::Dropped(_)))
                    .count();
                (n >= 2).then_some(())
            })
            .await;
        assert!(two.is_some(), "{policy:?}: two drop reports");
        let got: Vec<(MessageId, String, DropReason)> = rec
            .dropped()
            .into_iter()
            .map(|d| (d.id, d.payload.as_text().unwrap().to_string(), d.reason))
            .collect();
        let want: Vec<_> = dropped
            .iter()
            .map(|(id, t)| (MessageId(*id), t.to_string(), DropReason::Overflow))
            .collect();
        assert_eq!(got, want, "{policy:?}");
        assert_eq!(ws.stats().messages_dropped, 2);
        ws.connect().await.unwrap();
        assert_eq!(texts(&rec.wait_messages(3, WAIT).await), kept, "{policy:?}");
        ws.disconnect().await.unwrap();
    }
}

#[actix_rt::test]
async fn wait_holds_the_sender_until_space_frees_up_or_the_timeout() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(offline(&server, 2).overflow_policy(OverflowPolicy::Wait(Duration::from_secs(30))))
        .build()
        .unwrap();
    ws.send("a").await.unwrap();
    ws.send("b").await.unwrap();
    assert!(wait_until(|| ws.stats().messages_buffered == 2, WAIT).await);
    // The third send waits; connecting drains the outbox and lets it in.
    // Its first poll hands it to the outbox, which parks it; a refusal
    // answered by the outbox after that shows it was decided, not lost.
    let third = ws.send("c");
    futures::pin_mut!(third);
    assert!(futures::poll!(third.as_mut()).is_pending());
    let refused = ws.sender().send(OutgoingMessage::new("d")).await.unwrap();
    assert!(matches!(refused, Err(Error::BufferFull(2))), "{refused:?}");
    assert!(
        futures::poll!(third.as_mut()).is_pending(),
        "the sender waits for space"
    );
    ws.connect().await.unwrap();
    tokio::time::timeout(WAIT, third).await.unwrap().unwrap();
    assert_eq!(texts(&rec.wait_messages(3, WAIT).await), ["a", "b", "c"]);
    ws.disconnect().await.unwrap();

    // With nobody to drain it, the wait ends in BufferFull after the timeout.
    let ws = offline(&server, 1)
        .overflow_policy(OverflowPolicy::Wait(Duration::from_secs(5)))
        .build()
        .unwrap();
    ws.send("x").await.unwrap();
    assert!(wait_until(|| ws.stats().messages_buffered == 1, WAIT).await);
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    assert!(matches!(ws.send("y").await, Err(Error::BufferFull(1))));
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[actix_rt::test]
async fn messages_past_their_time_to_live_are_dropped_and_reported() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(offline(&server, 10).message_ttl(Duration::from_millis(100)))
        .build()
        .unwrap();
    ws.send("stale").await.unwrap();
    let expired = rec
        .wait_for(WAIT, |e| {
            matches!(e, resilient_ws::testing::RecordedEvent::Dropped(_))
        })
        .await;
    let Some(resilient_ws::testing::RecordedEvent::Dropped(d)) = expired else {
        panic!("no drop report");
    };
    assert_eq!(d.reason, DropReason::Expired);
    assert_eq!(d.payload.as_text(), Some("stale"));
    assert_eq!(ws.stats().messages_buffered, 0);
    ws.connect().await.unwrap();
    ws.send("fresh").await.unwrap();
    assert_eq!(texts(&rec.wait_messages(1, WAIT).await), ["fresh"]);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn higher_priority_leaves_the_outbox_first() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec.attach(offline(&server, 10)).build().unwrap();
    ws.send_with_priority("low 1", 0).await.unwrap();
    ws.send_with_priority("high", 9).await.unwrap();
    ws.send_with_priority("low 2", 0).await.unwrap();
    ws.connect().await.unwrap();
    assert_eq!(
        texts(&rec.wait_messages(3, WAIT).await),
        ["high", "low 1", "low 2"]
    );
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_burst_goes_to_the_socket_in_batches() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()).reconnect_mode(ReconnectMode::None))
        .connect()
        .await
        .unwrap();
    let n = 10_000;
    for i in 0..n {
        ws.send(format!("{i}")).await.unwrap();
    }
    let got = rec.wait_messages(n, WAIT).await;
    assert_eq!(got.len(), n);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, p)| p.as_text() == Some(&i.to_string())));
    let stats = ws.stats();
    assert_eq!(stats.messages_sent, n as u64);
    assert!(
        stats.write_batches * 10 < stats.messages_sent,
        "batched: {} batches for {} messages",
        stats.write_batches,
        stats.messages_sent
    );
    ws.disconnect().await.unwrap();
}
