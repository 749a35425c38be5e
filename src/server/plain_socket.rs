//! A plain (non-protocol) socket of a [`ReliableServer`](super::ReliableServer)
//! in [`PlainMode::Echo`] or [`PlainMode::Broadcast`]: any RFC 6455 client,
//! no sessions, no guarantees. It shares the reliable socket's parts (the
//! writer, the fragment assembly, the keep-alive) and the server's limits
//! and shutdown.
//!
//! Its echo differs on purpose from the other two echo paths: unlike
//! [`echo_route`](super::echo_route) (a stateless endpoint for tests and
//! conformance runs, with actix-ws's own aggregation) it is one of the
//! server's clients (counted, closed by a shutdown, kept alive, limited by
//! [`ServerOptions`](super::ServerOptions)); unlike the reliable echo mode
//! (done by the session, numbered and acknowledged) it paces by the
//! client's reading alone, through [`ECHO_BUFFER_BYTES`].

use std::sync::Arc;

use actix_ws::AggregatedMessage;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{
    hub::ServerShared,
    joined::{Joined, Step},
    keep_alive::{abort_later, KeepAlive},
    options::PlainMode,
    plain_clients::PlainClient,
    relay::broadcast_paced,
    socket_tx::{next_socket_id, Outgoing},
    writer::{write_plain, PlainCloser},
};
use crate::{close_code, Payload};

/// How many messages a plain client may fall behind before it is closed
/// with 1013 "too slow" (in [`PlainMode::Broadcast`]).
pub const PLAIN_CLIENT_BUFFER: usize = 1024;

/// The payload bytes an echo client's answers may take while waiting to be
/// written (a larger `max_message_size` raises it to one message): a
/// client that sends and never reads stops being read once this is full.
pub const ECHO_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Starts the tasks of a plain (non-protocol) socket in `mode` (Echo or
/// Broadcast).
pub(crate) fn spawn_plain(
    shared: Arc<ServerShared>,
    mode: PlainMode,
    ws: actix_ws::Session,
    stream: actix_ws::MessageStream,
) {
    let options = &shared.options;
    let stream = Joined::new(stream, options.max_message_size, options.max_fragments);
    let (tx, rx) = mpsc::channel(PLAIN_CLIENT_BUFFER);
    let closer = Arc::new(PlainCloser::default());
    let (done_tx, done_rx) = oneshot::channel();
    let id = next_socket_id();
    shared.plain.add(
        id,
        PlainClient {
            tx: tx.clone(),
            closer: closer.clone(),
            broadcast: mode == PlainMode::Broadcast,
        },
    );
    if let Some(reason) = shared.shutdown_reason() {
        closer.close(close_code::SERVICE_RESTART, &reason);
    }
    let writer = actix_rt::spawn(write_plain(ws, rx, closer.clone(), done_tx));
    actix_rt::spawn(read_plain(
        shared,
        mode,
        id,
        stream,
        tx,
        (done_rx, writer.abort_handle()),
        closer,
    ));
}

async fn read_plain(
    shared: Arc<ServerShared>,
    mode: PlainMode,
    id: u64,
    mut stream: Joined,
    tx: mpsc::Sender<Outgoing>,
    (mut writer_done, writer): (oneshot::Receiver<()>, tokio::task::AbortHandle),
    closer: Arc<PlainCloser>,
) {
    let max = shared.options.max_message_size;
    let budget = ECHO_BUFFER_BYTES.max(max).min(Semaphore::MAX_PERMITS);
    let echo_bytes = Arc::new(Semaphore::new(budget));
    let mut keep_alive = KeepAlive::of(&shared.options);
    let end = loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut writer_done => break None,
            silent = keep_alive.tick() => {
                if silent {
                    log::debug!("plain socket: closing with 1001: client timeout");
                    closer.close(close_code::GOING_AWAY, "client timeout");
                    abort_later(writer);
                    break None;
                }
                // A full channel already has frames for the client to
                // answer; skip this ping then.
                let _ = tx.try_send(Outgoing::Ping);
                continue;
            }
        };
        keep_alive.seen();
        let payload = match item {
            None => break Some(Outgoing::Stop),
            Some(Err(step)) => break Some(step.ending()),
            Some(Ok(AggregatedMessage::Close(r))) => break Some(Step::Closed(r).ending()),
            Some(Ok(AggregatedMessage::Ping(p))) => {
                if tx.send(Outgoing::Pong(p, None)).await.is_err() {
                    break None;
                }
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Text(t))) => Payload::Text(t),
            Some(Ok(AggregatedMessage::Binary(b))) => Payload::Binary(b),
        };
        match mode {
            PlainMode::Broadcast => {
                // Paced: this client is not read while the sessions have no
                // room (see `broadcast_paced`).
                broadcast_paced(shared.clone(), payload).await;
            }
            _ => {
                // Echo: the client's own pace is the backpressure. Reading
                // stops while its unwritten answers hold the byte budget.
                let n = u32::try_from(payload.len().clamp(1, budget)).unwrap_or(u32::MAX);
                let permit = tokio::select! {
                    p = echo_bytes.clone().acquire_many_owned(n) => match p {
                        Ok(p) => p,
                        Err(_) => break None,
                    },
                    _ = &mut writer_done => break None,
                };
                if tx.send(Outgoing::Echo(payload, permit)).await.is_err() {
                    break None;
                }
            }
        }
    };
    shared.plain.remove(id);
    if let Some(out) = end {
        let _ = tx.send(out).await;
    }
}
