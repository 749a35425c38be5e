//! A protocol socket (docs/PROTOCOL.md), on the actix-web worker thread
//! that accepted it.
//!
//! Each socket has two tasks: a writer (`writer.rs`) and a reader, here.
//! The reader waits for the HELLO (`hello.rs`), attaches to its session,
//! then decodes frames, does the cheap per-frame checks that need no session
//! state ([`SocketChecks`]: malformed, text, too big, a HELLO or WELCOME
//! after the handshake) and forwards the rest to the session actor in
//! batches (the sequence rules, backwards included, are the session's
//! `protocol::sequence::Receiver`'s alone):
//! everything already buffered goes in one `do_send`, never one actor round
//! trip per message. Keep-alive and pongs are in `keep_alive.rs`; the
//! plain (non-protocol) socket is `plain_socket.rs`.
//!
//! The reader holds its session's strong address while the socket lives:
//! it is the session's socket, and the session must see `Detached` from
//! it; the session itself is owned by the registry.

use std::sync::Arc;

use actix::Addr;
use actix_ws::AggregatedMessage;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{
    admission::HelloPermit,
    hello::wait_hello,
    hub::{Hub, ServerShared},
    joined::{Joined, JoinedItem, Step},
    keep_alive::{abort_later, KeepAlive, PongSlot},
    session::{Attach, AttachError, Detached, EndSession, Inbound, SessionActor},
    socket_tx::{answer_ping, next_socket_id, MAX_BATCH},
    writer::write_loop,
};
use crate::{
    close_code,
    protocol::{Frame, MAX_HELLO_LEN},
    ws,
};

pub use super::plain_socket::{ECHO_BUFFER_BYTES, PLAIN_CLIENT_BUFFER};
// Compatibility for src/server/session.rs (rewritten on another branch this
// session), which still imports these from here; the lead points its `use`
// line at `socket_tx` after the merge and then makes this a private `use`.
use super::socket_tx::{Outgoing, QueueMeter, ReadGate, SocketTx};

/// The largest WebSocket message accepted for a payload limit of `max`:
/// room for the frame type and a 10-byte varint.
pub(crate) fn max_ws_message(max: usize) -> usize {
    max.saturating_add(crate::protocol::MAX_DATA_HEADER_LEN)
}

/// The reader's checks that need no session state: one frame at a time,
/// nothing remembered between frames. Whether a seq may come next (gap,
/// duplicate, backwards) is the session's `Receiver`'s rule, kept in one
/// place.
#[derive(Debug)]
struct SocketChecks {
    max_message_size: usize,
}

impl SocketChecks {
    fn classify(&self, item: JoinedItem) -> Step {
        let msg = match item {
            None => return Step::End,
            Some(Err(step)) => return step,
            Some(Ok(m)) => m,
        };
        let bytes = match msg {
            AggregatedMessage::Binary(b) => b,
            AggregatedMessage::Text(_) => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "text message".to_owned())
            }
            AggregatedMessage::Ping(p) => return Step::Ping(p),
            AggregatedMessage::Pong(_) => return Step::Skip,
            AggregatedMessage::Close(r) => return Step::Closed(r),
        };
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return Step::Violation(e.close_code(), format!("malformed frame: {e}")),
        };
        match &frame {
            Frame::Data { payload, .. } => {
                if payload.len() > self.max_message_size {
                    return Step::Violation(
                        close_code::MESSAGE_TOO_BIG,
                        "message too big".to_owned(),
                    );
                }
            }
            Frame::Ack { .. } | Frame::Ping { .. } => {}
            Frame::Pong { .. } => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "unexpected PONG".to_owned())
            }
            Frame::Hello { .. } => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "unexpected HELLO".to_owned())
            }
            Frame::Welcome { .. } => {
                return Step::Violation(close_code::PROTOCOL_ERROR, "unexpected WELCOME".to_owned())
            }
        }
        Step::Frame(frame)
    }
}

/// Hands the frames read so far (if any) to the session in one message,
/// counted by the read gate until the session has taken them.
fn hand_over(
    session: &Addr<SessionActor>,
    gate: &Arc<ReadGate>,
    socket_id: u64,
    batch: &mut Vec<Frame>,
) {
    if batch.is_empty() {
        return;
    }
    let frames = std::mem::take(batch);
    gate.queue(frames.len());
    session.do_send(Inbound {
        socket_id,
        frames,
        gate: gate.clone(),
    });
}

/// Ends a socket the way `step` says (the writer does the writing).
fn finish(tx: &SocketTx, step: Step) {
    if let Step::Violation(code, text) = &step {
        log::debug!("reliable socket: closing with {code}: {text}");
    }
    let _ = tx.send(step.ending());
}

/// The session a HELLO names: the local actor, or (Redis mode) the
/// actor of the session just taken for this node.
async fn find_session(
    shared: &Arc<ServerShared>,
    hub: &Addr<Hub>,
    hello: &super::hello::Hello,
    identity: &str,
) -> Result<Addr<SessionActor>, AttachError> {
    #[cfg(feature = "redis")]
    if let Some(store) = shared.redis() {
        use super::store::{key_ttl, lease, TakeArgs, TakeOutcome};
        let w = shared.options.resume_window;
        let taken = store
            .take(TakeArgs {
                sid: &hello.connection_id,
                token: &hello.reconnect_token,
                identity,
                last_received: hello.last_received,
                first_seq: hello.first_seq,
                hold: w + lease(w),
                ttl: key_ttl(w),
            })
            .await;
        return match taken {
            Err(e) => {
                shared.store_failed("take", &e);
                Err(AttachError::Unavailable)
            }
            Ok(TakeOutcome::Gone) => Err(AttachError::Gone),
            Ok(TakeOutcome::Refused) => Err(AttachError::Refused),
            Ok(TakeOutcome::Protocol(reason)) => Err(AttachError::Protocol(reason)),
            // The actor starts on this worker, the socket's.
            Ok(TakeOutcome::Taken(taken)) => {
                super::hub::adopt(shared, hello.connection_id.clone(), identity, taken)
                    .ok_or(AttachError::Gone)
            }
        };
    }
    let _ = (hub, identity);
    // A session's first socket starts its actor here, on the socket's
    // worker (see `workers`); later sockets reach it where it runs.
    shared.sessions.start_here(&hello.connection_id);
    shared
        .sessions
        .session(&hello.connection_id)
        .ok_or(AttachError::Gone)
}

/// Closes a socket whose HELLO could not attach.
fn refuse(
    shared: &ServerShared,
    tx: &SocketTx,
    peer: Option<std::net::IpAddr>,
    refusal: AttachError,
) {
    match refusal {
        AttachError::Protocol(text) => {
            finish(tx, Step::Violation(close_code::PROTOCOL_ERROR, text.into()))
        }
        AttachError::ShuttingDown(reason) => {
            let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
                close_code::SERVICE_RESTART,
                &reason,
            ))));
        }
        #[cfg(feature = "redis")]
        AttachError::Unavailable => {
            let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
                close_code::TRY_AGAIN_LATER,
                "session store unavailable",
            ))));
        }
        refusal => {
            // Only a wrong token (or identity) for a session that exists
            // counts: that is what guessing looks like. An unknown or
            // expired id is what every client sends once after a server
            // restart; counting it would lock out clients sharing an
            // address (a NAT, a proxy) just when they all come back.
            if matches!(refusal, AttachError::Refused) {
                shared
                    .resume_limiter
                    .record_failure(peer, std::time::Instant::now());
            }
            let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
                close_code::SESSION_GONE,
                "session gone",
            ))));
        }
    }
}

/// Starts the tasks of a protocol socket.
pub(crate) fn spawn_reliable(
    shared: Arc<ServerShared>,
    hub: Addr<Hub>,
    identity: String,
    peer: Option<std::net::IpAddr>,
    permit: HelloPermit,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let options = &shared.options;
    // Until HELLO, no message larger than a HELLO (see wait_hello).
    let stream = Joined::new(stream, MAX_HELLO_LEN, options.max_fragments);
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    let meter = Arc::new(QueueMeter::default());
    let writer = actix_rt::spawn(write_loop(ws, rx, meter.clone(), done_tx));
    actix_rt::spawn(read_reliable(
        shared,
        hub,
        identity,
        peer,
        permit,
        stream,
        tx,
        meter,
        (done_rx, writer.abort_handle()),
    ));
}

#[allow(clippy::too_many_arguments)]
async fn read_reliable(
    shared: Arc<ServerShared>,
    hub: Addr<Hub>,
    identity: String,
    peer: Option<std::net::IpAddr>,
    permit: HelloPermit,
    mut stream: Joined,
    tx: SocketTx,
    meter: Arc<QueueMeter>,
    (mut writer_done, writer): (oneshot::Receiver<()>, tokio::task::AbortHandle),
) {
    let pongs = Arc::new(PongSlot::default());
    let hello = tokio::select! {
        hello = wait_hello(&mut stream, &tx, &pongs, shared.options.hello_timeout) => hello,
        _ = &mut writer_done => return,
    };
    drop(permit);
    let mut stream = stream.relimit(
        max_ws_message(shared.options.max_message_size),
        shared.options.max_fragments,
    );
    let hello = match hello {
        Ok(h) => h,
        Err(step) => return finish(&tx, step),
    };
    if let Some(reason) = shared.shutdown_reason() {
        let _ = tx.send(Outgoing::Close(Some(ws::close_reason(
            close_code::SERVICE_RESTART,
            &reason,
        ))));
        return;
    }
    let socket_id = next_socket_id();
    let gate = Arc::new(ReadGate::default());
    let found = find_session(&shared, &hub, &hello, &identity).await;
    if found.is_ok() {
        shared.sessions.note_attach(&hello.connection_id);
    }
    let attached = match &found {
        Err(_) => Err(AttachError::Gone),
        Ok(addr) => addr
            .send(Attach {
                socket_id,
                tx: tx.clone(),
                meter: meter.clone(),
                gate: gate.clone(),
                token: hello.reconnect_token,
                identity,
                last_received: hello.last_received,
                first_seq: hello.first_seq,
            })
            .await
            .unwrap_or(Err(AttachError::Gone)),
    };
    let session = match (found, attached) {
        (Ok(addr), Ok(())) => addr,
        (Err(e), _) | (Ok(_), Err(e)) => return refuse(&shared, &tx, peer, e),
    };

    let checks = SocketChecks {
        max_message_size: shared.options.max_message_size,
    };
    let mut batch: Vec<Frame> = Vec::new();
    let mut keep_alive = KeepAlive::of(&shared.options);
    let end = 'outer: loop {
        if gate.is_closed() {
            // The subscribers (or the session) are behind: the client's bytes wait in TCP
            // (and its window) until they catch up. Our pause is not the
            // client's silence, so the heartbeat only pings meanwhile.
            tokio::select! {
                () = gate.opened() => {}
                _ = &mut writer_done => break 'outer Step::End,
                _ = keep_alive.tick() => {
                    let _ = tx.send(Outgoing::Ping);
                }
            }
            keep_alive.seen();
            continue;
        }
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut writer_done => break 'outer Step::End,
            silent = keep_alive.tick() => {
                if silent {
                    abort_later(writer.clone());
                    break 'outer Step::Violation(
                        close_code::GOING_AWAY,
                        "client timeout".to_owned(),
                    );
                }
                let _ = tx.send(Outgoing::Ping);
                continue;
            }
        };
        keep_alive.seen();
        if meter.too_slow(shared.options.max_unacked_bytes) {
            // Acks arrive but the data does not leave: the client acks
            // without reading. Drop the socket; the session stays.
            break 'outer Step::Violation(close_code::TRY_AGAIN_LATER, "too slow".to_owned());
        }
        let mut next = Some(item);
        while let Some(item) = next {
            match checks.classify(item) {
                // The protocol's keep-alive (PROTOCOL.md §5a) is the
                // socket's, not the session's: answered here, metered like
                // the session's frames so a client that pings without
                // reading is caught as too slow.
                Step::Frame(Frame::Ping { nonce }) => {
                    meter.add(0);
                    if tx
                        .send(Outgoing::Metered(Frame::Pong { nonce }.to_bytes(), 0))
                        .is_err()
                    {
                        meter.sub(0);
                    }
                }
                Step::Frame(f) => {
                    batch.push(f);
                    if batch.len() >= MAX_BATCH {
                        hand_over(&session, &gate, socket_id, &mut batch);
                        if gate.is_closed() {
                            // The bound holds inside a burst too: what is
                            // still buffered stays in the stream (and TCP)
                            // until the gate opens, not in the session's
                            // mailbox.
                            break;
                        }
                    }
                }
                Step::Ping(p) => answer_ping(&tx, &pongs, p),
                Step::Skip => {}
                other => break 'outer other,
            }
            // Drain whatever is already buffered before handing over.
            next = stream.next().now_or_never();
        }
        hand_over(&session, &gate, socket_id, &mut batch);
    };
    hand_over(&session, &gate, socket_id, &mut batch);
    // A client's normal close (1000) ends the session (PROTOCOL.md §6):
    // it will not resume, so nothing is kept for the resume window.
    let client_ended = matches!(
        &end,
        Step::Closed(Some(r)) if u16::from(r.code) == close_code::NORMAL
    );
    finish(&tx, end);
    if client_ended {
        session.do_send(EndSession);
    } else {
        session.do_send(Detached { socket_id });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::Payload;

    fn checks() -> SocketChecks {
        SocketChecks {
            max_message_size: 10,
        }
    }

    fn binary(f: Frame) -> JoinedItem {
        Some(Ok(AggregatedMessage::Binary(f.to_bytes())))
    }

    fn data(seq: u64, len: usize) -> JoinedItem {
        binary(Frame::Data {
            seq,
            payload: Payload::Binary(Bytes::from(vec![0u8; len])),
        })
    }

    fn violation(step: Step) -> (u16, String) {
        match step {
            Step::Violation(code, text) => (code, text),
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn data_must_fit_and_its_order_is_the_sessions_call() {
        let c = checks();
        assert!(matches!(c.classify(data(1, 10)), Step::Frame(_)));
        assert!(
            matches!(c.classify(data(5, 0)), Step::Frame(_)),
            "gaps are the session's call"
        );
        assert!(matches!(
            c.classify(binary(Frame::Ack { seq: 3 })),
            Step::Frame(_)
        ));
        // Backwards too: the session's Receiver closes the socket for it
        // (1002, tests/server.rs
        // `protocol_violations_close_the_socket_but_keep_the_session`).
        assert!(matches!(c.classify(data(5, 1)), Step::Frame(_)));
        assert_eq!(
            violation(checks().classify(data(1, 11))),
            (close_code::MESSAGE_TOO_BIG, "message too big".to_owned())
        );
    }

    #[test]
    fn only_binary_data_and_acks_are_frames() {
        let hello = binary(Frame::Hello {
            connection_id: "c".to_owned(),
            reconnect_token: "t".to_owned(),
            last_received: 0,
            first_seq: 1,
        });
        assert_eq!(
            violation(checks().classify(hello)),
            (close_code::PROTOCOL_ERROR, "unexpected HELLO".to_owned())
        );
        assert_eq!(
            violation(checks().classify(Some(Ok(AggregatedMessage::Text("x".into()))))),
            (close_code::PROTOCOL_ERROR, "text message".to_owned())
        );
        let (_, text) = violation(checks().classify(Some(Ok(AggregatedMessage::Binary(
            Bytes::from_static(&[0xff]),
        )))));
        assert!(text.starts_with("malformed frame"), "{text}");
        assert!(matches!(
            checks().classify(Some(Ok(AggregatedMessage::Ping(Bytes::from_static(b"p"))))),
            Step::Ping(p) if p == "p"
        ));
        assert!(matches!(
            checks().classify(Some(Ok(AggregatedMessage::Pong(Bytes::new())))),
            Step::Skip
        ));
        assert!(matches!(checks().classify(None), Step::End));
    }
}
