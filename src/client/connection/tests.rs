//! The `ConnectionActor` alone, against a scripted raw server on
//! 127.0.0.1: the heartbeat, the reconnect supervisor and the outbox are one
//! recorder actor, reached through the `Links` recipients.

use std::{sync::Arc, time::Duration};

use actix::{prelude::*, Supervisor};
use tokio::sync::{mpsc, oneshot};

use super::{
    messages::{Connect, Disconnect, HeartbeatTimeout, SendPing, WriteBatch},
    ConnectionActor, Links,
};
use crate::{
    client::{
        heartbeat::{Unwatch, Watch},
        queue_actor::messages::{Acked, FirstSeq, LinkState, Outbound, Returned, Shutdown},
        reconnect::{AskRetry, ConnectionUp, NextAttempt, Recovery, TakeRecovery},
        shared::Shared,
        subscribers::EventBus,
    },
    events::{ConnectionState, ErrorEvent, Payload},
    options::{ClientOptions, ReconnectMode, UrlProvider},
    testing::{opcode, RawConn, RawServer},
    Error,
};

const WAIT: Duration = Duration::from_secs(30);

/// What the fake peers were told.
#[derive(Debug)]
enum Seen {
    LinkStopped,
    Watch {
        gen: u64,
    },
    Unwatch {
        gen: u64,
    },
    ConnectionUp,
    TakeRecovery,
    AskRetry(Error),
    LinkUp {
        gen: u64,
    },
    LinkDown,
    Acked,
    Shutdown,
    /// A batch handed back: how many messages.
    Returned(usize),
    Error(Error),
}

/// The heartbeat, the reconnect supervisor and the outbox in one recorder.
/// `retry` is the supervisor's answer: wait that long, or give up.
struct Peers {
    seen: mpsc::UnboundedSender<Seen>,
    retry: Option<Duration>,
    attempts: u32,
}

impl Actor for Peers {
    type Context = Context<Self>;
}

impl Peers {
    fn tell(&self, s: Seen) {
        let _ = self.seen.send(s);
    }
}

macro_rules! record {
    ($msg:ty, |$m:ident| $seen:expr) => {
        impl Handler<$msg> for Peers {
            type Result = ();
            fn handle(&mut self, $m: $msg, _: &mut Context<Self>) {
                self.tell($seen);
            }
        }
    };
}
record!(Watch, |m| Seen::Watch { gen: m.gen });
record!(Unwatch, |m| Seen::Unwatch { gen: m.gen });
record!(ConnectionUp, |_m| Seen::ConnectionUp);
record!(Acked, |_m| Seen::Acked);
record!(Shutdown, |_m| Seen::Shutdown);
record!(Returned, |m| Seen::Returned(m.0.len()));
record!(ErrorEvent, |m| Seen::Error(m.error));
record!(LinkState, |m| match m {
    LinkState::Up { gen, .. } => Seen::LinkUp { gen },
    LinkState::Down => Seen::LinkDown,
    LinkState::Stopped(_) => Seen::LinkStopped,
    LinkState::Paused { .. } | LinkState::Resumed { .. } => unreachable!("no backpressure here"),
});

impl Handler<TakeRecovery> for Peers {
    type Result = Option<Recovery>;
    fn handle(&mut self, _: TakeRecovery, _: &mut Context<Self>) -> Option<Recovery> {
        self.tell(Seen::TakeRecovery);
        None
    }
}

impl Handler<AskRetry> for Peers {
    type Result = MessageResult<AskRetry>;
    fn handle(&mut self, msg: AskRetry, _: &mut Context<Self>) -> Self::Result {
        self.tell(Seen::AskRetry(msg.error));
        self.attempts += 1;
        MessageResult(match self.retry {
            Some(delay) => NextAttempt::After {
                attempt: self.attempts,
                delay,
            },
            None => NextAttempt::GiveUp {
                attempts: self.attempts - 1,
            },
        })
    }
}

impl Handler<FirstSeq> for Peers {
    type Result = u64;
    fn handle(&mut self, _: FirstSeq, _: &mut Context<Self>) -> u64 {
        1
    }
}

struct Setup {
    conn: Addr<ConnectionActor>,
    shared: Arc<Shared>,
    seen: mpsc::UnboundedReceiver<Seen>,
    _peers: Addr<Peers>,
}

/// A raw-mode connection actor for `server`, wired to a `Peers` recorder.
fn start(server: &RawServer, mode: ReconnectMode, retry: Option<Duration>) -> Setup {
    let (tx, seen) = mpsc::unbounded_channel();
    let peers = Peers {
        seen: tx,
        retry,
        attempts: 0,
    }
    .start();
    let links = Links {
        watch: peers.clone().recipient(),
        unwatch: peers.clone().recipient(),
        connection_up: peers.clone().recipient(),
        take_recovery: peers.clone().recipient(),
        ask_retry: peers.clone().recipient(),
        link_state: peers.clone().recipient(),
        returned: peers.clone().recipient(),
        acked: peers.clone().recipient(),
        first_seq: peers.clone().recipient(),
        shutdown: peers.clone().recipient(),
    };
    let opts = Arc::new(ClientOptions {
        reconnect_mode: mode,
        close_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    });
    let shared = Arc::new(Shared::new());
    let bus = EventBus::default();
    bus.errors.add(peers.clone().recipient());
    let url = UrlProvider::fixed(server.ws_url());
    let s = shared.clone();
    let conn = Supervisor::start(move |_| ConnectionActor::new(opts, url, bus, s, links));
    Setup {
        conn,
        shared,
        seen,
        _peers: peers,
    }
}

/// Connects `s.conn` to `server`; returns the server's side of the socket.
async fn connect(s: &Setup, server: &RawServer) -> RawConn {
    let (tx, rx) = oneshot::channel();
    s.conn.do_send(Connect(tx));
    let (raw, res) = tokio::join!(server.accept(), rx);
    res.unwrap().unwrap();
    raw.unwrap()
}

/// The next thing the peers were told.
async fn next(s: &mut Setup) -> Seen {
    tokio::time::timeout(WAIT, s.seen.recv())
        .await
        .expect("the peers were told nothing")
        .expect("peers gone")
}

async fn wait_state(s: &Setup, state: ConnectionState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.shared.state() != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}, not {state:?}",
            s.shared.state()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn out(p: impl Into<Payload>) -> Outbound {
    Outbound {
        seq: 0,
        payload: p.into(),
        receipt: None,
        place: None,
    }
}

#[actix_rt::test]
async fn a_new_socket_is_announced_to_the_heartbeat_the_supervisor_and_the_outbox() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::Stateless, None);
    let _raw = connect(&s, &server).await;

    assert!(matches!(next(&mut s).await, Seen::Watch { gen: 1 }));
    assert!(matches!(next(&mut s).await, Seen::ConnectionUp));
    assert!(matches!(next(&mut s).await, Seen::LinkUp { gen: 1 }));
    assert_eq!(s.shared.state(), ConnectionState::Connected);
    assert_eq!(s.shared.counters.snapshot().live_socket_tasks, 1);
}

#[actix_rt::test]
async fn a_write_batch_reaches_the_wire_in_order_as_one_batch() {
    let server = RawServer::bind().await.unwrap();
    let s = start(&server, ReconnectMode::Stateless, None);
    let mut raw = connect(&s, &server).await;

    s.conn.do_send(WriteBatch {
        gen: 1,
        items: vec![out("a"), out(vec![1u8, 2]), out("c")],
    });

    let frames = [
        raw.read_data_frame().await.unwrap(),
        raw.read_data_frame().await.unwrap(),
        raw.read_data_frame().await.unwrap(),
    ];
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (opcode::TEXT, &b"a"[..])
    );
    assert_eq!(
        (frames[1].opcode, &frames[1].payload[..]),
        (opcode::BINARY, &[1u8, 2][..])
    );
    assert_eq!(
        (frames[2].opcode, &frames[2].payload[..]),
        (opcode::TEXT, &b"c"[..])
    );
    let stats = s.shared.counters.snapshot();
    assert_eq!((stats.messages_sent, stats.write_batches), (3, 1));
}

/// Issue 12: the connection keeps no buffer. A raw-mode batch that finds
/// no socket goes back to the outbox whole, and nothing of it is written on
/// the next socket by the connection itself (the outbox sends it again).
#[actix_rt::test]
async fn a_raw_batch_with_no_socket_is_handed_back_to_the_outbox() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::Stateless, None);
    s.conn.do_send(WriteBatch {
        gen: 0,
        items: vec![out("a"), out("b")],
    });
    assert!(matches!(next(&mut s).await, Seen::Returned(2)));

    let mut raw = connect(&s, &server).await;
    s.conn.do_send(WriteBatch {
        gen: 1,
        items: vec![out("marker")],
    });
    // The first data frame on the new socket is the marker: the lost
    // batch was not kept here.
    assert_eq!(raw.read_data_frame().await.unwrap().payload, b"marker");
    assert_eq!(s.shared.counters.snapshot().messages_sent, 1);
}

#[actix_rt::test]
async fn send_ping_writes_a_timed_ping_whose_pong_gives_the_rtt() {
    let server = RawServer::bind().await.unwrap();
    let s = start(&server, ReconnectMode::Stateless, None);
    let mut raw = connect(&s, &server).await;

    // A ping for another socket is ignored: the marker comes first.
    s.conn.do_send(SendPing { gen: 9 });
    s.conn.do_send(WriteBatch {
        gen: 1,
        items: vec![out("marker")],
    });
    s.conn.do_send(SendPing { gen: 1 });
    let first = raw.read_frame().await.unwrap();
    assert_eq!(
        (first.opcode, &first.payload[..]),
        (opcode::TEXT, &b"marker"[..])
    );
    let ping = raw.read_frame().await.unwrap();
    assert_eq!(ping.opcode, opcode::PING);
    assert_eq!(ping.payload.len(), 8, "the send time");

    raw.send_frame(true, opcode::PONG, &ping.payload)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.shared.counters.snapshot().last_rtt.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no RTT");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn the_peers_normal_close_is_echoed_and_ends_the_link_without_a_retry() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::Stateless, Some(Duration::ZERO));
    let mut raw = connect(&s, &server).await;
    for _ in 0..3 {
        next(&mut s).await; // Watch, ConnectionUp, LinkUp
    }

    raw.send_close(1000, "bye").await.unwrap();
    let echo = raw.read_frame().await.unwrap();
    assert_eq!(
        (echo.opcode, echo.close_code()),
        (opcode::CLOSE, Some(1000))
    );

    assert!(matches!(next(&mut s).await, Seen::Unwatch { gen: 1 }));
    assert!(matches!(next(&mut s).await, Seen::LinkDown));
    // Settling idle tells the outbox, whose receipts cannot be kept.
    assert!(matches!(next(&mut s).await, Seen::LinkStopped));
    wait_state(&s, ConnectionState::Disconnected).await;
    // A round trip through the restarted actor: whatever `started()` asked
    // is in the channel by now.
    let (tx, rx) = oneshot::channel();
    s.conn.send(Disconnect(tx)).await.unwrap();
    rx.await.unwrap();
    let more: Vec<Seen> = std::iter::from_fn(|| s.seen.try_recv().ok()).collect();
    assert!(more.is_empty(), "a normal close is final: {more:?}");
}

#[actix_rt::test]
async fn a_lost_socket_asks_the_supervisor_and_reconnects_when_it_says() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(
        &server,
        ReconnectMode::Stateless,
        Some(Duration::from_millis(20)),
    );
    let raw = connect(&s, &server).await;
    for _ in 0..3 {
        next(&mut s).await;
    }

    drop(raw.into_inner());

    assert!(matches!(
        next(&mut s).await,
        Seen::Error(Error::ConnectionLost)
    ));
    assert!(matches!(next(&mut s).await, Seen::Unwatch { gen: 1 }));
    assert!(matches!(next(&mut s).await, Seen::LinkDown));
    assert!(matches!(
        next(&mut s).await,
        Seen::AskRetry(Error::ConnectionLost)
    ));
    let _raw = server.accept().await.unwrap();
    assert!(matches!(next(&mut s).await, Seen::Watch { gen: 2 }));
    assert!(matches!(next(&mut s).await, Seen::ConnectionUp));
    assert!(matches!(next(&mut s).await, Seen::LinkUp { gen: 2 }));
    assert!(matches!(next(&mut s).await, Seen::TakeRecovery));
    assert_eq!(s.shared.state(), ConnectionState::Connected);
    assert_eq!(s.shared.counters.snapshot().reconnects, 1);
}

#[actix_rt::test]
async fn when_the_supervisor_gives_up_the_actor_settles_disconnected() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::Stateless, None);
    let raw = connect(&s, &server).await;
    for _ in 0..3 {
        next(&mut s).await;
    }

    drop(raw.into_inner());

    let mut asked = false;
    loop {
        match next(&mut s).await {
            Seen::AskRetry(_) => asked = true,
            Seen::Error(Error::GaveUp { attempts: 0, .. }) => break,
            _ => {}
        }
    }
    assert!(asked);
    wait_state(&s, ConnectionState::Disconnected).await;
}

#[actix_rt::test]
async fn a_heartbeat_timeout_of_the_current_socket_fails_it() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::None, None);
    let mut raw = connect(&s, &server).await;
    for _ in 0..3 {
        next(&mut s).await;
    }
    let timeout = Duration::from_secs(1);

    // Another socket's timeout is not this one's.
    s.conn.do_send(HeartbeatTimeout { gen: 5, timeout });
    s.conn.do_send(WriteBatch {
        gen: 1,
        items: vec![out("alive")],
    });
    assert_eq!(raw.read_data_frame().await.unwrap().payload, b"alive");

    s.conn.do_send(HeartbeatTimeout { gen: 1, timeout });
    assert!(matches!(
        next(&mut s).await,
        Seen::Error(Error::HeartbeatTimeout(d)) if d == timeout
    ));
    assert!(matches!(next(&mut s).await, Seen::Unwatch { gen: 1 }));
    assert!(matches!(next(&mut s).await, Seen::LinkDown));
    wait_state(&s, ConnectionState::Disconnected).await;
    // The socket is dropped, not closed: the peer is presumed dead.
    let end = loop {
        match raw.read_frame().await {
            Ok(f) if f.opcode == opcode::CLOSE => break Ok(f),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    assert!(end.is_err(), "{end:?}");
}

#[actix_rt::test]
async fn dropping_the_last_address_tells_the_outbox_to_shut_down() {
    let server = RawServer::bind().await.unwrap();
    let mut s = start(&server, ReconnectMode::Stateless, None);
    let mut raw = connect(&s, &server).await;
    for _ in 0..3 {
        next(&mut s).await;
    }

    let (tx, rx) = oneshot::channel();
    s.conn.do_send(Disconnect(tx));
    let close = raw.read_frame().await.unwrap();
    assert_eq!(close.close_code(), Some(1000));
    raw.send_close(1000, "").await.unwrap();
    rx.await.unwrap();
    assert!(matches!(next(&mut s).await, Seen::Unwatch { gen: 1 }));
    assert!(matches!(next(&mut s).await, Seen::LinkDown));
    assert!(matches!(next(&mut s).await, Seen::LinkStopped));

    drop(s.conn);
    // Its last stop settles idle once more (nothing owed by then), then
    // the outbox is told to shut down.
    let stopped = tokio::time::timeout(WAIT, s.seen.recv()).await.unwrap();
    assert!(matches!(stopped, Some(Seen::LinkStopped)), "{stopped:?}");
    let last = tokio::time::timeout(WAIT, s.seen.recv()).await.unwrap();
    assert!(matches!(last, Some(Seen::Shutdown)), "{last:?}");
    assert_eq!(s.shared.counters.snapshot().live_actors, 0);
}
