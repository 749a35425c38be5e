//! `ws.events()`: every client event as one `futures::Stream` (issue 15
//! item 5). The stream gets the same events, in the same order, as an
//! actor subscribed to every event type (an `EventRecorder` beside it), and
//! it obeys the inbound backpressure rule: a consumer that stops polling
//! stops the client reading the socket (the server's writes block), and
//! polling again delivers everything exactly once and in order.

mod common;

use std::time::Duration;

use common::wait_until;
use futures::StreamExt;
use resilient_ws::{
    server::ServerOptions,
    testing::{opcode, EventRecorder, FaultProxy, RawServer, TestServer},
    ClientEvent, ClientOptions, ConnectionState, EventStream, OverflowPolicy, Payload,
    ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(20);

/// Options through their contract names (not builder shorthands): no
/// heartbeat, quick reconnects, a short close timeout.
fn options(mode: ReconnectMode) -> ClientOptions {
    let mut o = ClientOptions::default();
    o.reconnect_mode = mode;
    o.heartbeat_interval = Duration::ZERO;
    o.reconnect_initial_delay = Duration::from_millis(20);
    o.reconnect_max_delay = Duration::from_millis(20);
    o.close_timeout = Duration::from_millis(500);
    o
}

/// The next event, or a panic naming what was awaited.
async fn next(events: &mut EventStream, what: &str) -> ClientEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap_or_else(|_| panic!("no event while waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
}

/// Reads events up to and including the first one `until` accepts.
async fn read_until(
    events: &mut EventStream,
    seen: &mut Vec<ClientEvent>,
    what: &str,
    until: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    loop {
        let e = next(events, what).await;
        seen.push(e.clone());
        if until(&e) {
            return e;
        }
    }
}

fn is_state(e: &ClientEvent, state: ConnectionState) -> bool {
    matches!(e, ClientEvent::State(s) if s.current == state)
}

fn kind(e: &ClientEvent) -> &'static str {
    match e {
        ClientEvent::State(_) => "state",
        ClientEvent::Message(_) => "message",
        ClientEvent::Error(_) => "error",
        ClientEvent::Closed(_) => "closed",
        ClientEvent::Reconnecting(_) => "reconnecting",
        ClientEvent::Reconnected(_) => "reconnected",
        ClientEvent::Dropped(_) => "dropped",
        ClientEvent::SessionLost(_) => "session_lost",
        _ => "other",
    }
}

/// The stream saw exactly what the recorder (an actor subscribed to every
/// event type) saw, in the same order. Both print their variants with the
/// same names, so their debug forms compare.
async fn assert_same_as_recorder(seen: &[ClientEvent], rec: &EventRecorder) {
    let want = seen.len();
    assert!(
        rec.wait_until(WAIT, |ev| (ev.len() >= want).then_some(()))
            .await
            .is_some(),
        "the recorder got fewer events than the stream"
    );
    let seen: Vec<String> = seen.iter().map(|e| format!("{e:?}")).collect();
    let recorded: Vec<String> = rec.events().iter().map(|e| format!("{e:?}")).collect();
    assert_eq!(seen, recorded);
}

#[actix_rt::test]
async fn every_kind_of_raw_mode_event_arrives_in_order_and_the_stream_ends_with_the_client() {
    let server = RawServer::bind().await.unwrap();
    let rec = EventRecorder::start();
    let mut o = options(ReconnectMode::Stateless);
    // One place in the outbox, the oldest dropped: a way to see `Dropped`.
    o.max_buffered_messages = 1;
    o.overflow_policy = OverflowPolicy::DropOldest;
    let b = ResilientWebSocket::builder(server.ws_url()).options(o);
    let ws = rec.attach(b).build().unwrap();
    // Before connect: the stream sees everything from the first state.
    let mut events = ws.events();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let mut seen = Vec::new();

    conn.send_text("hello").await.unwrap();
    let e = read_until(&mut events, &mut seen, "hello", |e| {
        matches!(e, ClientEvent::Message(_))
    })
    .await;
    let ClientEvent::Message(m) = e else {
        unreachable!()
    };
    assert_eq!(m.payload, Payload::Text("hello".into()));

    // The link dies without a Close: closed (with the error), reconnecting.
    drop(conn);
    let e = read_until(&mut events, &mut seen, "reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting(_))
    })
    .await;
    let ClientEvent::Reconnecting(r) = e else {
        unreachable!()
    };
    assert_eq!(r.attempt, 1);

    // While the next attempt waits for the server: two messages for one
    // place, so the first is dropped.
    ws.send("a").await.unwrap();
    ws.send("b").await.unwrap();
    let e = read_until(&mut events, &mut seen, "dropped", |e| {
        matches!(e, ClientEvent::Dropped(_))
    })
    .await;
    let ClientEvent::Dropped(d) = e else {
        unreachable!()
    };
    assert_eq!(d.payload, Payload::Text("a".into()));

    let mut conn = server.accept().await.unwrap();
    let e = read_until(&mut events, &mut seen, "reconnected", |e| {
        matches!(e, ClientEvent::Reconnected(_))
    })
    .await;
    let ClientEvent::Reconnected(r) = e else {
        unreachable!()
    };
    assert_eq!(r.attempts, 1);
    let frame = conn.read_data_frame().await.unwrap();
    assert_eq!(frame.payload, b"b".to_vec(), "the buffered one went out");

    // A graceful close, answered by the server.
    let answer = async {
        loop {
            let f = conn.read_frame().await.unwrap();
            if f.opcode == opcode::CLOSE {
                conn.send_close(1000, "").await.unwrap();
                break;
            }
        }
    };
    let (res, ()) = tokio::join!(ws.disconnect(), answer);
    res.unwrap();
    read_until(&mut events, &mut seen, "disconnected", |e| {
        is_state(e, ConnectionState::Disconnected)
    })
    .await;

    let kinds: Vec<_> = seen.iter().map(kind).collect();
    println!("{kinds:?}");
    for k in [
        "state",
        "message",
        "error",
        "closed",
        "reconnecting",
        "reconnected",
        "dropped",
    ] {
        assert!(kinds.contains(&k), "no {k} event in {kinds:?}");
    }
    let states: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            ClientEvent::State(s) => Some(s.current),
            _ => None,
        })
        .collect();
    use ConnectionState::*;
    assert_eq!(
        states,
        [
            Connecting,
            Connected,
            Reconnecting,
            Connected,
            Disconnecting,
            Disconnected
        ]
    );
    let closes: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Closed(c) => Some((c.by_us, c.error.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        closes,
        [(false, true), (true, false)],
        "the loss, then ours"
    );
    assert_same_as_recorder(&seen, &rec).await;

    // Every handle gone: the client closes, its actors stop, the stream
    // ends.
    drop(ws);
    let end = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("the stream did not end with the client");
    assert!(end.is_none(), "an event after the close: {end:?}");
}

#[actix_rt::test]
async fn a_lost_session_arrives_in_order_with_the_messages_around_it() {
    let (server, _reliable) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(
            ResilientWebSocket::builder(proxy.ws_url()).options(options(ReconnectMode::Stateful)),
        )
        .build()
        .unwrap();
    let mut events = ws.events();
    ws.connect().await.unwrap();
    let mut seen = Vec::new();
    ws.send("one").await.unwrap();
    read_until(&mut events, &mut seen, "one", |e| {
        matches!(e, ClientEvent::Message(_))
    })
    .await;

    // A server that never heard of the session takes over: the resume is
    // refused and a fresh session starts.
    let (server2, _reliable2) = TestServer::reliable_echo(ServerOptions::default()).unwrap();
    proxy.set_upstream(server2.addr());
    proxy.cut_all();
    let e = read_until(&mut events, &mut seen, "session lost", |e| {
        matches!(e, ClientEvent::SessionLost(_))
    })
    .await;
    let ClientEvent::SessionLost(lost) = e else {
        unreachable!()
    };
    // `one` is re-sent if its ack had not come back before the cut.
    let resent = lost.resending;
    assert!(resent <= 1, "{resent} re-sent of one message");
    read_until(&mut events, &mut seen, "reconnected", |e| {
        matches!(e, ClientEvent::Reconnected(_))
    })
    .await;
    ws.send("two").await.unwrap();
    read_until(
        &mut events,
        &mut seen,
        "two",
        |e| matches!(e, ClientEvent::Message(m) if m.payload.as_text() == Some("two")),
    )
    .await;

    let messages: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some((m.seq, m.payload.clone())),
            _ => None,
        })
        .collect();
    // Each session numbers its messages from 1; the fresh one first echoes
    // `one` again if it was re-sent (at least once across a lost session).
    let mut want = vec![(Some(1), Payload::Text("one".into()))];
    if resent == 1 {
        want.push((Some(1), Payload::Text("one".into())));
    }
    want.push((Some(1 + resent as u64), Payload::Text("two".into())));
    assert_eq!(messages, want);
    let kinds: Vec<_> = seen.iter().map(kind).collect();
    println!("{kinds:?}");
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(at("closed") < at("reconnecting"), "{kinds:?}");
    assert!(at("session_lost") < at("reconnected"), "{kinds:?}");
    assert_same_as_recorder(&seen, &rec).await;
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn a_consumer_that_stops_reading_stops_the_socket_and_then_gets_everything_once_in_order() {
    const BACKLOG: usize = 16;
    const TOTAL: usize = 400;
    // 400 x 64 KiB = 25 MiB: far more than the loopback socket buffers
    // hold, so the server's writes block once the client stops reading.
    const SIZE: usize = 64 * 1024;
    let server = RawServer::bind().await.unwrap();
    let mut o = options(ReconnectMode::None);
    o.max_inbound_backlog = BACKLOG;
    o.max_inbound_backlog_bytes = 64 * 1024 * 1024;
    let ws = ResilientWebSocket::builder(server.ws_url())
        .options(o)
        .build()
        .unwrap();
    let mut events = ws.events();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let mut seen = Vec::new();
    read_until(&mut events, &mut seen, "connected", |e| {
        is_state(e, ConnectionState::Connected)
    })
    .await;

    let flood = actix_rt::spawn(async move {
        for i in 0..TOTAL {
            let mut text = format!("m{i:04}");
            text.push_str(&"x".repeat(SIZE - text.len()));
            conn.send_text(text).await.unwrap();
        }
        conn
    });
    let mut flood = flood;

    // Nobody polls the stream: the client reads up to the backlog (plus
    // the one event the stream holds) and stops.
    assert!(
        wait_until(|| ws.stats().messages_received >= BACKLOG as u64, WAIT).await,
        "the client read {} messages",
        ws.stats().messages_received
    );
    let held = ws.stats().messages_received;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut flood)
            .await
            .is_err(),
        "the server wrote everything: the client kept reading"
    );
    let after = ws.stats().messages_received;
    assert_eq!(after, held, "reading went on while nobody polled");
    assert!(
        after <= BACKLOG as u64 + 1,
        "{after} messages read for a backlog of {BACKLOG}"
    );

    // Polled again: all of them, each once, in order.
    let mut got = Vec::with_capacity(TOTAL);
    while got.len() < TOTAL {
        match next(&mut events, "the flood").await {
            ClientEvent::Message(m) => {
                let text = m.payload.as_text().expect("text").to_owned();
                assert_eq!(text.len(), SIZE);
                got.push(text[..5].to_owned());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let want: Vec<_> = (0..TOTAL).map(|i| format!("m{i:04}")).collect();
    assert_eq!(got, want);
    let mut conn = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the server finished writing")
        .unwrap();
    // Nothing more: the next thing is the server's close, not a repeat.
    conn.send_close(1000, "").await.unwrap();
    let e = read_until(&mut events, &mut seen, "closed", |e| {
        !is_state(e, ConnectionState::Disconnecting)
    })
    .await;
    assert!(matches!(e, ClientEvent::Closed(_)), "{e:?}");
}

#[actix_rt::test]
async fn a_stream_dropped_while_the_client_waits_for_it_lets_reading_go_on() {
    const BACKLOG: usize = 8;
    const TOTAL: usize = 300;
    const SIZE: usize = 64 * 1024;
    let server = RawServer::bind().await.unwrap();
    let mut o = options(ReconnectMode::None);
    o.max_inbound_backlog = BACKLOG;
    let ws = ResilientWebSocket::builder(server.ws_url())
        .options(o)
        .build()
        .unwrap();
    let events = ws.events();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let flood = actix_rt::spawn(async move {
        let text = "x".repeat(SIZE);
        for _ in 0..TOTAL {
            conn.send_text(&text).await.unwrap();
        }
        conn
    });
    assert!(wait_until(|| ws.stats().messages_received >= BACKLOG as u64, WAIT).await);
    // Held for a stream nobody reads; dropping it unsubscribes, and the
    // client reads on.
    drop(events);
    assert!(
        wait_until(|| ws.stats().messages_received == TOTAL as u64, WAIT).await,
        "the client read {} of {TOTAL} after the stream was dropped",
        ws.stats().messages_received
    );
    tokio::time::timeout(WAIT, flood)
        .await
        .expect("the server finished writing")
        .unwrap();
}

#[test]
fn off_the_systems_threads_the_stream_says_so_and_ends() {
    let system = actix_rt::System::new();
    let ws = system.block_on(async {
        ResilientWebSocket::builder("ws://127.0.0.1:1/ws")
            .build()
            .unwrap()
    });
    let events = std::thread::spawn(move || {
        let events = ws.events();
        futures::executor::block_on(events.collect::<Vec<_>>())
    })
    .join()
    .expect("no panic");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], ClientEvent::Error(e)
            if matches!(&e.error, resilient_ws::Error::InvalidConfig(m) if m.contains("inside the actix System"))),
        "{events:?}"
    );
}
