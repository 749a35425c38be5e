//! A socket's writer task: owns the actix-ws
//! [`Session`](actix_ws::Session) and writes what arrives on its channel
//! ([`Outgoing`]); actix-ws joins whatever is queued into one write. A
//! protocol socket's writer also keeps its [`QueueMeter`] current; a plain
//! client's can be told to close while its (bounded) channel is full
//! ([`PlainCloser`]).
//!
//! The writer is a task of its own so that a client slow to read never
//! stops the server from reading it (and the other way round).

use std::sync::{Arc, Mutex};

use actix_ws::CloseReason;
use tokio::sync::{mpsc, oneshot, Notify};

use super::socket_tx::{Outgoing, QueueMeter};
use crate::{protocol::encode_data, ws, Payload};

/// Writes `Outgoing` items until a Close/Stop, the channel ends, or the
/// connection is gone; then fires `done`.
pub(crate) async fn write_loop(
    mut ws: actix_ws::Session,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    meter: Arc<QueueMeter>,
    done: oneshot::Sender<()>,
) {
    while let Some(out) = rx.recv().await {
        let metered = match &out {
            Outgoing::Metered(_, data) => Some(*data),
            Outgoing::Data(_, payload) => Some(payload.len()),
            _ => None,
        };
        let go_on = write_one(&mut ws, out).await;
        if let Some(len) = metered {
            meter.sub(len);
        }
        if !go_on {
            break;
        }
    }
    let _ = done.send(());
}

/// Writes one outgoing item; `false` once the socket is finished (closed,
/// told to stop, or failed).
async fn write_one(ws: &mut actix_ws::Session, out: Outgoing) -> bool {
    let sent = match out {
        Outgoing::Binary(b) | Outgoing::Metered(b, _) => ws.binary(b).await,
        Outgoing::Data(seq, payload) => ws.binary(encode_data(seq, &payload)).await,
        Outgoing::Text(t) => ws.text(t).await,
        Outgoing::Pong(p, slot) => {
            if let Some(slot) = slot {
                slot.written();
            }
            ws.pong(&p).await
        }
        Outgoing::Ping => ws.ping(b"").await,
        Outgoing::LatestPong(slot) => match slot.take() {
            Some(p) => ws.pong(&p).await,
            None => Ok(()),
        },
        Outgoing::Echo(payload, _permit) => match payload {
            Payload::Text(t) => ws.text(t).await,
            Payload::Binary(b) => ws.binary(b).await,
        },
        Outgoing::Close(reason) => {
            let _ = ws.clone().close(reason).await;
            return false;
        }
        Outgoing::Stop => return false,
    };
    sent.is_ok()
}

/// The close signal of a plain client: a reason and a wake-up for its
/// writer (so it can be closed even when its channel is full).
#[derive(Default)]
pub(crate) struct PlainCloser {
    reason: Mutex<Option<Option<CloseReason>>>,
    notify: Notify,
}

impl PlainCloser {
    /// Asks the writer to close with `code`/`text` (the first ask wins).
    pub(crate) fn close(&self, code: u16, text: &str) {
        let mut r = self.reason.lock().expect("closer lock");
        if r.is_none() {
            *r = Some(Some(ws::close_reason(code, text)));
            self.notify.notify_one();
        }
    }

    /// Whether a close was asked for.
    #[cfg(test)]
    pub(crate) fn is_closing(&self) -> bool {
        self.reason.lock().expect("closer lock").is_some()
    }
}

pub(crate) async fn write_plain(
    mut ws: actix_ws::Session,
    mut rx: mpsc::Receiver<Outgoing>,
    closer: Arc<PlainCloser>,
    done: oneshot::Sender<()>,
) {
    loop {
        let out = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => out,
                None => break,
            },
            _ = closer.notify.notified() => {
                let reason = closer.reason.lock().expect("closer lock").take().flatten();
                let _ = ws.close(reason).await;
                break;
            }
        };
        if !write_one(&mut ws, out).await {
            break;
        }
    }
    let _ = done.send(());
}
