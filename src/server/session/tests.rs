//! The session actor alone: no HTTP and no socket task. A fake socket is
//! the channel the socket task would write from ([`Outgoing`]); the test
//! plays the socket task's part (attach, frames, detach) and reads what the
//! session writes.

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use tokio::sync::mpsc;

use super::{
    super::{
        events::{ExpireReason, MessageReceived, SessionExpired},
        handle::ReliableServer,
        send_window::SendWindow,
        socket_tx::{Outgoing, QueueMeter, ReadGate},
        ServerOptions,
    },
    Attach, AttachError, Detached, Drain, Inbound, Outbound, SessionActor,
};
use crate::{close_code, protocol::Frame, Payload};

const TOKEN: &str = "token";

/// Long enough never to fire in a test that does not wait for it.
const NEVER: Duration = Duration::from_secs(3600);

/// What the session wrote into a socket, decoded.
#[derive(Debug, PartialEq)]
enum Wrote {
    Frame(Frame),
    Data(u64, Payload),
    Close(u16, String),
}

/// The socket task's end of an attached socket.
struct FakeSocket {
    id: u64,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    gate: Arc<ReadGate>,
}

impl FakeSocket {
    /// The next thing written, waiting for it (timers run meanwhile).
    async fn next(&mut self) -> Wrote {
        let out = tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
            .await
            .expect("the session wrote nothing")
            .expect("the session dropped the socket");
        decode(out)
    }

    /// Everything written so far (the session's handlers ran: each test
    /// awaits its `send` first).
    fn written(&mut self) -> Vec<Wrote> {
        let mut all = Vec::new();
        while let Ok(out) = self.rx.try_recv() {
            all.push(decode(out));
        }
        all
    }
}

fn decode(out: Outgoing) -> Wrote {
    match out {
        Outgoing::Binary(b) | Outgoing::Metered(b, _) => {
            Wrote::Frame(Frame::decode(b).expect("a valid frame"))
        }
        Outgoing::Data(seq, payload) => Wrote::Data(seq, payload),
        Outgoing::Close(Some(r)) => Wrote::Close(
            u16::from(r.code),
            r.description.unwrap_or_default().to_string(),
        ),
        other => panic!("unexpected write {other:?}"),
    }
}

/// A server (for its shared state and event hub) and one session of it.
fn start(options: ServerOptions) -> (ReliableServer, Addr<SessionActor>) {
    let server = ReliableServer::start(options);
    let window = Arc::new(SendWindow::new(server.shared.options.max_pending_bytes()));
    let session = SessionActor::new(
        server.shared.clone(),
        "c1".into(),
        TOKEN.into(),
        String::new(),
        "client-1".into(),
        usize::MAX,
        window,
    )
    .start();
    (server, session)
}

async fn attach(
    session: &Addr<SessionActor>,
    id: u64,
    last_received: u64,
    first_seq: u64,
) -> (Result<(), AttachError>, FakeSocket) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(ReadGate::default());
    let res = session
        .send(Attach {
            socket_id: id,
            tx,
            meter: Arc::new(QueueMeter::default()),
            gate: gate.clone(),
            token: TOKEN.into(),
            identity: String::new(),
            last_received,
            first_seq,
        })
        .await
        .expect("the session is running");
    (res, FakeSocket { id, rx, gate })
}

/// Attaches and checks the WELCOME.
async fn attached(
    session: &Addr<SessionActor>,
    id: u64,
    last_received: u64,
    resumed: bool,
    delivered: u64,
) -> FakeSocket {
    let (res, mut sock) = attach(session, id, last_received, 1).await;
    res.expect("attached");
    assert_eq!(
        sock.next().await,
        Wrote::Frame(Frame::Welcome {
            resumed,
            last_received: delivered
        })
    );
    sock
}

async fn feed(session: &Addr<SessionActor>, sock: &FakeSocket, frames: Vec<Frame>) {
    session
        .send(Inbound {
            socket_id: sock.id,
            frames,
            gate: sock.gate.clone(),
        })
        .await
        .expect("the session is running");
}

fn data(seq: u64, text: &str) -> Frame {
    Frame::Data {
        seq,
        payload: Payload::from(text),
    }
}

fn ack(seq: u64) -> Wrote {
    Wrote::Frame(Frame::Ack { seq })
}

async fn send(session: &Addr<SessionActor>, text: &str) {
    session
        .send(Outbound {
            payload: Payload::from(text),
            reserved: false,
        })
        .await
        .expect("the session is running");
}

/// Forwards an event type into a channel the test awaits.
struct Recorder<M>(mpsc::UnboundedSender<M>);

impl<M: Unpin + 'static> Actor for Recorder<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Unpin + Send + 'static> Handler<M> for Recorder<M> {
    type Result = ();

    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

fn recorder<M: Message<Result = ()> + Unpin + Send + 'static>(
) -> (Recipient<M>, mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder(tx).start().recipient(), rx)
}

async fn next_event<M>(rx: &mut mpsc::UnboundedReceiver<M>) -> M {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no event")
        .expect("recorder gone")
}

fn options() -> ServerOptions {
    ServerOptions {
        ack_interval: NEVER,
        ack_threshold: 2,
        resume_window: NEVER,
        ..ServerOptions::default()
    }
}

#[actix_rt::test]
async fn delivers_in_order_and_acks_at_the_threshold() {
    let (server, session) = start(options());
    let (on_message, mut received) = recorder::<MessageReceived>();
    server.on_message(on_message);
    let mut sock = attached(&session, 1, 0, false, 0).await;

    feed(&session, &sock, vec![data(1, "a")]).await;
    let m = next_event(&mut received).await;
    assert_eq!(
        (m.seq, m.payload, m.client_id.as_str()),
        (1, "a".into(), "client-1")
    );
    feed(&session, &sock, vec![data(2, "b")]).await;
    assert_eq!(next_event(&mut received).await.seq, 2);
    // Acked once the subscriber took both: the threshold is 2.
    assert_eq!(sock.next().await, ack(2));
    assert!(sock.written().is_empty(), "one ack for two messages");
}

#[actix_rt::test]
async fn a_resume_gets_duplicates_dropped_but_acked() {
    let (_server, session) = start(options());
    let mut first = attached(&session, 1, 0, false, 0).await;
    feed(&session, &first, vec![data(1, "a"), data(2, "b")]).await;
    assert_eq!(first.written(), vec![ack(2)]);
    session.send(Detached { socket_id: 1 }).await.unwrap();

    // The client missed the ack and replays both, then a new one.
    let mut second = attached(&session, 2, 0, true, 2).await;
    feed(&session, &second, vec![data(1, "a"), data(2, "b")]).await;
    assert_eq!(
        second.written(),
        vec![ack(2)],
        "duplicates count for the ack"
    );
    feed(&session, &second, vec![data(3, "c")]).await;
    assert!(
        second.written().is_empty(),
        "one message: below the threshold"
    );
    feed(&session, &second, vec![data(4, "d")]).await;
    assert_eq!(second.written(), vec![ack(4)]);
}

#[actix_rt::test]
async fn a_gap_closes_the_socket_with_a_protocol_error_and_keeps_the_session() {
    let (_server, session) = start(options());
    let mut sock = attached(&session, 1, 0, false, 0).await;
    feed(&session, &sock, vec![data(1, "a"), data(3, "c")]).await;
    assert_eq!(
        sock.written(),
        vec![
            // The pending ack goes out before the close.
            ack(1),
            Wrote::Close(close_code::PROTOCOL_ERROR, "gap in data sequence".into()),
        ]
    );
    // The session stays: the client resumes and sends the missing one.
    let mut again = attached(&session, 2, 0, true, 1).await;
    feed(&session, &again, vec![data(2, "b"), data(3, "c")]).await;
    assert_eq!(again.written(), vec![ack(3)]);
}

#[actix_rt::test]
async fn an_ack_for_a_message_never_sent_is_a_protocol_error() {
    let (_server, session) = start(options());
    let mut sock = attached(&session, 1, 0, false, 0).await;
    send(&session, "x").await;
    assert_eq!(sock.written(), vec![Wrote::Data(1, "x".into())]);
    feed(&session, &sock, vec![Frame::Ack { seq: 2 }]).await;
    assert_eq!(
        sock.written(),
        vec![Wrote::Close(
            close_code::PROTOCOL_ERROR,
            "ack for a message never sent".into()
        )]
    );
}

#[actix_rt::test]
async fn a_hello_claiming_more_than_was_sent_is_refused() {
    let (_server, session) = start(options());
    let (res, _sock) = attach(&session, 1, 1, 1).await;
    assert!(
        matches!(
            res,
            Err(AttachError::Protocol(
                "last_received is ahead of what was sent"
            ))
        ),
        "{res:?}"
    );
    let (res, _sock) = attach(&session, 2, 0, 0).await;
    assert!(matches!(res, Err(AttachError::Protocol(_))), "{res:?}");
}

#[actix_rt::test]
async fn unacked_messages_are_replayed_on_the_next_socket() {
    let (_server, session) = start(options());
    let mut first = attached(&session, 1, 0, false, 0).await;
    send(&session, "a").await;
    send(&session, "b").await;
    feed(&session, &first, vec![Frame::Ack { seq: 1 }]).await;
    session.send(Detached { socket_id: 1 }).await.unwrap();
    // Sent while detached: kept, numbered, not written anywhere.
    send(&session, "c").await;
    assert_eq!(
        first.written(),
        vec![Wrote::Data(1, "a".into()), Wrote::Data(2, "b".into())]
    );

    // The client claims 1 (what the ack said): 2 and 3 are replayed.
    let mut second = attached(&session, 2, 1, true, 0).await;
    assert_eq!(
        second.written(),
        vec![Wrote::Data(2, "b".into()), Wrote::Data(3, "c".into())]
    );
    // A claim of 3 on the next socket acks everything: nothing to replay.
    session.send(Detached { socket_id: 2 }).await.unwrap();
    let mut third = attached(&session, 3, 3, true, 0).await;
    assert!(third.written().is_empty());
}

#[actix_rt::test]
async fn the_unacked_window_holds_messages_until_acks_make_room() {
    let (_server, session) = start(ServerOptions {
        max_unacked_bytes: 4,
        ..options()
    });
    let mut sock = attached(&session, 1, 0, false, 0).await;
    send(&session, "abc").await;
    send(&session, "def").await;
    assert_eq!(sock.written(), vec![Wrote::Data(1, "abc".into())]);
    feed(&session, &sock, vec![Frame::Ack { seq: 1 }]).await;
    assert_eq!(sock.written(), vec![Wrote::Data(2, "def".into())]);
}

#[actix_rt::test]
async fn a_replaced_socket_gets_the_pending_ack_then_4002() {
    let (_server, session) = start(ServerOptions {
        ack_threshold: 10,
        ..options()
    });
    let mut old = attached(&session, 1, 0, false, 0).await;
    feed(&session, &old, vec![data(1, "a")]).await;
    assert!(old.written().is_empty(), "the ack waits for its timer");
    let _new = attached(&session, 2, 0, true, 1).await;
    assert_eq!(
        old.written(),
        vec![
            ack(1),
            Wrote::Close(close_code::REPLACED, "replaced".into())
        ]
    );
    // Frames still coming from the replaced socket are ignored.
    feed(&session, &old, vec![data(2, "b")]).await;
    assert!(old.written().is_empty());
}

#[actix_rt::test]
async fn the_ack_timer_acks_below_the_threshold() {
    tokio::time::pause();
    let (_server, session) = start(ServerOptions {
        ack_interval: Duration::from_millis(100),
        ack_threshold: 10,
        ..options()
    });
    let mut sock = attached(&session, 1, 0, false, 0).await;
    let t0 = tokio::time::Instant::now();
    feed(&session, &sock, vec![data(1, "a")]).await;
    assert_eq!(sock.next().await, ack(1));
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

#[actix_rt::test]
async fn a_detached_session_expires_after_the_resume_window() {
    tokio::time::pause();
    let window = Duration::from_secs(30);
    let (server, session) = start(ServerOptions {
        resume_window: window,
        ..options()
    });
    let (on_expired, mut expired) = recorder::<SessionExpired>();
    server.on_session_expired(on_expired);
    let _sock = attached(&session, 1, 0, false, 0).await;
    send(&session, "unacked").await;

    // A resume within the window keeps the session; its timer restarts.
    session.send(Detached { socket_id: 1 }).await.unwrap();
    tokio::time::sleep(window - Duration::from_secs(1)).await;
    let _sock = attached(&session, 2, 0, true, 0).await;
    session.send(Detached { socket_id: 2 }).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let e = next_event(&mut expired).await;
    assert!(t0.elapsed() >= window, "expired after {:?}", t0.elapsed());
    assert_eq!(
        (e.connection_id.as_str(), e.undelivered, e.reason),
        ("c1", 1, ExpireReason::ResumeWindow)
    );
    assert!(
        session.send(Detached { socket_id: 2 }).await.is_err(),
        "the actor stopped"
    );
}

#[actix_rt::test]
async fn a_drain_acks_now_delivers_nothing_more_and_closes_once_all_is_acked() {
    let (_server, session) = start(ServerOptions {
        ack_threshold: 10,
        shutdown_drain_timeout: NEVER,
        ..options()
    });
    let mut sock = attached(&session, 1, 0, false, 0).await;
    feed(&session, &sock, vec![data(1, "a")]).await;
    send(&session, "x").await;
    assert_eq!(sock.written(), vec![Wrote::Data(1, "x".into())]);

    let (done, mut drained) = tokio::sync::oneshot::channel();
    session
        .send(Drain {
            reason: "restart".into(),
            done,
        })
        .await
        .unwrap();
    assert_eq!(sock.written(), vec![ack(1)], "the pending ack, at once");
    // Not delivered (nor acked): the client re-sends it to the next server.
    feed(&session, &sock, vec![data(2, "b")]).await;
    assert!(sock.written().is_empty());
    assert!(drained.try_recv().is_err(), "x is not acked yet");

    feed(&session, &sock, vec![Frame::Ack { seq: 1 }]).await;
    assert_eq!(
        sock.written(),
        vec![Wrote::Close(close_code::SERVICE_RESTART, "restart".into())]
    );
    assert!(drained.await.is_ok(), "done fires once closed");
}

#[actix_rt::test]
async fn a_negotiated_session_without_a_socket_expires_a_window_after_its_negotiate() {
    // Its actor starts after the first-socket grace period (no socket
    // came), but its window counts from the negotiate.
    tokio::time::pause();
    let window = Duration::from_secs(30);
    let server = ReliableServer::start(ServerOptions {
        resume_window: window,
        ..options()
    });
    let (on_expired, mut expired) = recorder::<SessionExpired>();
    server.on_session_expired(on_expired);
    let t0 = tokio::time::Instant::now();
    let (id, _token) = super::super::hub::create_session(
        &server.shared,
        String::new(),
        crate::protocol::NegotiateParams::default(),
    )
    .unwrap();
    let e = next_event(&mut expired).await;
    assert_eq!(e.connection_id, id);
    assert_eq!(e.reason, ExpireReason::ResumeWindow);
    let after = t0.elapsed();
    assert!(
        after >= window && after < window + Duration::from_secs(1),
        "expired {after:?} after the negotiate"
    );
    assert_eq!(server.sessions(), 0);
}

#[actix_rt::test]
async fn a_shutdown_drains_a_session_still_waiting_for_its_first_socket_at_once() {
    // Not after the first-socket grace period: the shutdown starts it.
    tokio::time::pause();
    let server = ReliableServer::start(ServerOptions {
        resume_window: Duration::from_secs(30),
        shutdown_drain_timeout: Duration::from_secs(30),
        ..options()
    });
    super::super::hub::create_session(
        &server.shared,
        String::new(),
        crate::protocol::NegotiateParams::default(),
    )
    .unwrap();
    let t0 = tokio::time::Instant::now();
    server
        .shutdown(crate::protocol::ShutdownAdvice {
            reconnect_after_ms: 0,
            spread_ms: 0,
        })
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "drained after {:?}",
        t0.elapsed()
    );
}
