//! The `QueueActor` alone: its connection is a recorder actor reached
//! through the `ConnectionLink` (weak recipients of `WriteBatch` and
//! `Disconnect`), and the tests play the connection's part with
//! `LinkState` and `Acked`. No sleeps: each test waits on an answer (a
//! round trip to the actor, a `send()`'s oneshot) or on what the recorder
//! saw.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::{
    inbox::{inbox, InboxTx},
    messages::{
        Acked, CloseAfterFlush, Enqueue, FirstSeq, LinkState, Outbound, OutgoingMessage, Returned,
    },
    ConnectionLink, QueueActor,
};
use crate::{
    client::{
        admission::{Admission, Ticket},
        connection::messages::{Disconnect, WriteBatch},
        shared::Shared,
        subscribers::Subscribers,
    },
    events::{ConnectionState, MessageDropped, Payload},
    options::{ClientOptions, OverflowPolicy, ReconnectMode},
    Error,
};

const WAIT: Duration = Duration::from_secs(30);

/// What the fake connection (and the drop subscriber) saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A batch for socket `gen`: (seq, text) per message.
    Batch(u64, Vec<(u64, String)>),
    Disconnect,
    Dropped(String),
}

/// The fake connection; it also keeps every message it was given, so a
/// test can hand a batch back as the connection does when its socket is
/// gone.
struct Recorder(mpsc::UnboundedSender<Seen>, Arc<Mutex<Vec<Outbound>>>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<WriteBatch> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: WriteBatch, _: &mut Context<Self>) {
        self.1
            .lock()
            .unwrap()
            .extend(msg.items.iter().map(|m| Outbound {
                seq: m.seq,
                payload: m.payload.clone(),
                receipt: None,
                place: m.place,
            }));
        let items = msg
            .items
            .into_iter()
            .map(|m| (m.seq, m.payload.as_text().unwrap_or_default().to_string()))
            .collect();
        let _ = self.0.send(Seen::Batch(msg.gen, items));
    }
}

impl Handler<Disconnect> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        let _ = self.0.send(Seen::Disconnect);
        let _ = msg.0.send(());
    }
}

impl Handler<MessageDropped> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: MessageDropped, _: &mut Context<Self>) {
        let text = msg.payload.as_text().unwrap_or_default().to_string();
        let _ = self.0.send(Seen::Dropped(text));
    }
}

/// One outbox, its fake connection, and the admission `send()` would use.
struct Rig {
    queue: Addr<QueueActor>,
    /// `send()`'s way in.
    inbox: InboxTx,
    shared: Arc<Shared>,
    admission: Admission,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// What the fake connection was given, oldest first.
    written: Arc<Mutex<Vec<Outbound>>>,
    _conn: Addr<Recorder>,
}

fn rig(opts: ClientOptions) -> Rig {
    let opts = Arc::new(opts);
    let shared = Arc::new(Shared::new());
    let (tx, seen) = mpsc::unbounded_channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let conn = Recorder(tx, written.clone()).start();
    let dropped = Subscribers::default();
    dropped.add(conn.clone().recipient());
    let mut actor = QueueActor::new(
        Admission::outbox_options(&opts),
        opts.reconnect_mode == ReconnectMode::Stateful,
        shared.clone(),
        dropped,
        Subscribers::default(),
    )
    .unwrap();
    let admission = Admission::new(opts.clone(), shared.clone(), false);
    actor.set_admission(admission.clone());
    actor.set_connection(ConnectionLink {
        write: conn.downgrade().recipient(),
        disconnect: conn.downgrade().recipient(),
    });
    let ctx = Context::new();
    let (inbox, rx) = inbox(ctx.address().recipient());
    actor.set_inbox(rx);
    Rig {
        queue: ctx.run(actor),
        inbox,
        shared,
        admission,
        seen,
        written,
        _conn: conn,
    }
}

fn options(mode: ReconnectMode, max: usize, policy: OverflowPolicy) -> ClientOptions {
    ClientOptions {
        reconnect_mode: mode,
        max_buffered_messages: max,
        overflow_policy: policy,
        ..ClientOptions::default()
    }
}

impl Rig {
    /// What `send()` does: a credit, or an ask whose answer comes back on
    /// the returned channel (`None`: taken without asking).
    fn hand_over(&self, text: &str) -> Result<Option<oneshot::Receiver<crate::Result<()>>>, Error> {
        let payload = Payload::from(text);
        let ticket = self.admission.admit(&payload)?;
        let (answer, rx) = match ticket {
            Ticket::Ask => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let taken = self.inbox.try_send(Enqueue {
            payload,
            priority: 0,
            done: None,
            ticket,
            answer,
            id: self.shared.next_message_id(),
            receipt: None,
        });
        assert!(taken.is_ok(), "the inbox has room");
        Ok(rx)
    }

    /// `send()`: handed over, and the answer awaited if it had to ask.
    async fn send(&self, text: &str) -> crate::Result<()> {
        match self.hand_over(text)? {
            None => Ok(()),
            Some(rx) => tokio::time::timeout(WAIT, rx).await.unwrap().unwrap(),
        }
    }

    /// A round trip: everything sent to the actor before it is handled.
    async fn turn(&self) {
        self.queue.send(FirstSeq).await.unwrap();
    }

    fn up(&self, gen: u64, peer_last_received: Option<u64>, max_unacked_bytes: usize) {
        self.shared.set_state(ConnectionState::Connected);
        self.queue.do_send(LinkState::Up {
            gen,
            peer_last_received,
            max_unacked_bytes,
            preamble: Vec::new(),
        });
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the recorder saw something in time")
            .expect("recorder alive")
    }

    /// Nothing more was seen up to now (after a `turn`).
    fn nothing_more(&mut self) {
        if let Ok(s) = self.seen.try_recv() {
            panic!("unexpected {s:?}");
        }
    }

    /// The texts of the batches seen until `n` messages came, in order.
    async fn batched(&mut self, n: usize) -> (Vec<(u64, String)>, usize) {
        let mut all = Vec::new();
        let mut batches = 0;
        while all.len() < n {
            match self.next().await {
                Seen::Batch(_, items) => {
                    batches += 1;
                    all.extend(items);
                }
                other => panic!("expected a batch, saw {other:?}"),
            }
        }
        (all, batches)
    }
}

fn raw(items: &[&str]) -> Vec<(u64, String)> {
    items.iter().map(|t| (0, t.to_string())).collect()
}

#[actix_rt::test]
async fn reject_refuses_a_full_outbox_at_once_and_keeps_what_it_took() {
    let mut rig = rig(options(ReconnectMode::Stateless, 2, OverflowPolicy::Reject));
    rig.send("a").await.unwrap();
    rig.send("b").await.unwrap();
    // No credit left: the actor decides, with no count to race against.
    assert!(matches!(rig.send("c").await, Err(Error::BufferFull(2))));
    rig.up(1, None, usize::MAX);
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["a", "b"])));
    // The outbox gave its places back: connected, messages pass through.
    rig.send("d").await.unwrap();
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["d"])));
    rig.turn().await;
    assert_eq!(rig.admission.credits().unwrap().available(), 2);
}

#[actix_rt::test]
async fn wait_parks_the_sender_until_a_place_frees_or_its_timeout() {
    tokio::time::pause();
    let limit = Duration::from_secs(5);
    let mut rig = rig(options(
        ReconnectMode::Stateless,
        1,
        OverflowPolicy::Wait(limit),
    ));
    rig.send("a").await.unwrap();
    let mut b = rig.hand_over("b").unwrap().expect("no credit: it asks");
    rig.turn().await;
    assert!(
        matches!(b.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "the sender waits for a place"
    );
    rig.up(1, None, usize::MAX);
    tokio::time::timeout(WAIT, b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (got, _) = rig.batched(2).await;
    assert_eq!(got, raw(&["a", "b"]));

    // Offline and full, nobody frees a place: the wait ends at its limit.
    rig.queue.do_send(LinkState::Down);
    rig.shared.set_state(ConnectionState::Reconnecting);
    rig.send("c").await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(matches!(rig.send("d").await, Err(Error::BufferFull(1))));
    assert!(started.elapsed() >= limit);
}

#[actix_rt::test]
async fn drop_policies_take_every_message_and_report_what_they_drop() {
    for (policy, dropped, kept) in [
        (OverflowPolicy::DropOldest, "a", ["b", "c"]),
        (OverflowPolicy::DropNewest, "c", ["a", "b"]),
    ] {
        let mut rig = rig(options(ReconnectMode::Stateless, 2, policy));
        assert!(rig.admission.credits().is_none(), "{policy:?}: no credits");
        for t in ["a", "b", "c"] {
            rig.send(t).await.unwrap();
        }
        assert_eq!(
            rig.next().await,
            Seen::Dropped(dropped.into()),
            "{policy:?}"
        );
        rig.up(1, None, usize::MAX);
        assert_eq!(rig.next().await, Seen::Batch(1, raw(&kept)), "{policy:?}");
    }
}

#[actix_rt::test]
async fn a_burst_goes_out_in_order_in_few_batches() {
    let mut rig = rig(options(
        ReconnectMode::Stateless,
        1000,
        OverflowPolicy::Reject,
    ));
    rig.up(1, None, usize::MAX);
    let texts: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    for t in &texts {
        // Handed over without waiting, as `send()` does with a credit.
        assert!(rig.hand_over(t).unwrap().is_none());
    }
    let (got, batches) = rig.batched(texts.len()).await;
    let want: Vec<_> = texts.iter().map(|t| (0, t.clone())).collect();
    assert_eq!(got, want);
    assert!(batches < 50, "{batches} batches for one burst");
}

#[actix_rt::test]
async fn reliable_mode_replays_what_the_peer_did_not_receive_on_a_new_socket() {
    let mut rig = rig(options(
        ReconnectMode::Stateful,
        100,
        OverflowPolicy::Reject,
    ));
    rig.up(1, None, usize::MAX);
    for t in ["a", "b", "c"] {
        rig.send(t).await.unwrap();
    }
    let (got, _) = rig.batched(3).await;
    assert_eq!(got, [(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    rig.queue.do_send(LinkState::Down);
    // The peer says it has 1: 2 and 3 go again, numbered as before.
    rig.up(2, Some(1), usize::MAX);
    assert_eq!(
        rig.next().await,
        Seen::Batch(2, vec![(2, "b".into()), (3, "c".into())])
    );
    assert_eq!(rig.queue.send(FirstSeq).await.unwrap(), 2);
}

#[actix_rt::test]
async fn acks_trim_the_window_and_let_the_outbox_flow() {
    let mut rig = rig(options(
        ReconnectMode::Stateful,
        100,
        OverflowPolicy::Reject,
    ));
    // Room for two one-byte messages unacknowledged.
    rig.up(1, None, 2);
    for t in ["a", "b", "c"] {
        rig.send(t).await.unwrap();
    }
    let (got, _) = rig.batched(2).await;
    assert_eq!(got, [(1, "a".into()), (2, "b".into())]);
    rig.turn().await;
    rig.nothing_more();
    rig.queue.do_send(Acked(1));
    assert_eq!(rig.next().await, Seen::Batch(1, vec![(3, "c".into())]));
    assert_eq!(rig.queue.send(FirstSeq).await.unwrap(), 2);
    rig.queue.do_send(Acked(3));
    assert_eq!(rig.queue.send(FirstSeq).await.unwrap(), 4, "all acked");
}

#[actix_rt::test]
async fn reliable_mode_waits_for_a_place_without_end_and_never_drops() {
    let mut rig = rig(options(
        ReconnectMode::Stateful,
        1,
        OverflowPolicy::DropOldest,
    ));
    rig.send("a").await.unwrap();
    let mut b = rig.hand_over("b").unwrap().expect("no credit: it asks");
    rig.turn().await;
    assert!(matches!(
        b.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    ));
    rig.up(1, None, usize::MAX);
    tokio::time::timeout(WAIT, b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (got, _) = rig.batched(2).await;
    assert_eq!(got, [(1, "a".into()), (2, "b".into())]);
}

#[actix_rt::test]
async fn close_after_flush_waits_for_the_last_ack_then_disconnects() {
    let mut rig = rig(options(
        ReconnectMode::Stateful,
        100,
        OverflowPolicy::Reject,
    ));
    rig.up(1, None, usize::MAX);
    rig.send("a").await.unwrap();
    let (tx, mut closed) = oneshot::channel();
    rig.queue.do_send(CloseAfterFlush(tx));
    assert_eq!(rig.next().await, Seen::Batch(1, vec![(1, "a".into())]));
    rig.turn().await;
    rig.nothing_more();
    assert!(closed.try_recv().is_err(), "not before the ack");
    rig.queue.do_send(Acked(1));
    assert_eq!(rig.next().await, Seen::Disconnect);
    tokio::time::timeout(WAIT, closed).await.unwrap().unwrap();
}

#[actix_rt::test]
async fn an_outgoing_message_never_waits_and_is_refused_by_the_actor_when_full() {
    let mut rig = rig(options(
        ReconnectMode::Stateless,
        1,
        OverflowPolicy::Wait(WAIT),
    ));
    let out = rig.queue.clone().recipient::<OutgoingMessage>();
    out.send(OutgoingMessage::new("a")).await.unwrap().unwrap();
    let refused = out.send(OutgoingMessage::new("b")).await.unwrap();
    assert!(matches!(refused, Err(Error::BufferFull(1))), "{refused:?}");
    rig.up(1, None, usize::MAX);
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["a"])));
}

#[actix_rt::test]
async fn a_waiting_send_that_gave_up_is_not_taken() {
    let mut rig = rig(options(
        ReconnectMode::Stateless,
        1,
        OverflowPolicy::Wait(WAIT),
    ));
    rig.send("a").await.unwrap();
    let b = rig.hand_over("b").unwrap().expect("no credit: it asks");
    rig.turn().await;
    // The `send()` future was dropped: its answer has nobody to hear it.
    drop(b);
    rig.up(1, None, usize::MAX);
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["a"])));
    rig.send("c").await.unwrap();
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["c"])));
    rig.turn().await;
    rig.nothing_more();
    assert_eq!(rig.admission.credits().unwrap().available(), 1);
}

/// Issue 12: the connection keeps no buffer of its own. A raw-mode batch
/// that reaches it after its socket is gone comes back to the outbox, which
/// puts each message back at its place: counted as buffered, holding its
/// place in the bound, first out on the next socket in order, and never a
/// dead letter however often it comes back (`max_retries` is 3).
#[actix_rt::test]
async fn a_batch_the_connection_hands_back_goes_out_first_on_the_next_socket_in_order() {
    let mut rig = rig(options(
        ReconnectMode::Stateless,
        10,
        OverflowPolicy::Reject,
    ));
    let credits = rig.admission.credits().unwrap();
    rig.send("a").await.unwrap();
    rig.up(1, None, usize::MAX);
    // `a` from the outbox's backlog, `b` passed straight through.
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["a"])));
    rig.send("b").await.unwrap();
    assert_eq!(rig.next().await, Seen::Batch(1, raw(&["b"])));
    for gen in 2..=5 {
        // The socket died under both: the connection says so, then hands
        // back what it could not write, in the order it got it.
        rig.queue.do_send(LinkState::Down);
        let back = std::mem::take(&mut *rig.written.lock().unwrap());
        rig.queue.do_send(Returned(back));
        rig.send(&format!("later{gen}")).await.unwrap();
        rig.turn().await;
        assert_eq!(
            rig.shared.counters.snapshot().messages_buffered,
            3,
            "socket {gen}"
        );
        assert_eq!(credits.available(), 7, "each holds one place, once");
        rig.up(gen, None, usize::MAX);
        let later = format!("later{gen}");
        let (got, _) = rig.batched(3).await;
        assert_eq!(got, raw(&["a", "b", &later]), "socket {gen}");
        rig.turn().await;
        assert_eq!(rig.shared.counters.snapshot().messages_buffered, 0);
        assert_eq!(credits.available(), 10, "every place given back");
        // Only `a` and `b` were lost with the next socket too.
        rig.written
            .lock()
            .unwrap()
            .retain(|m| m.payload.as_text() != Some(later.as_str()));
    }
    rig.turn().await;
    rig.nothing_more();
}
