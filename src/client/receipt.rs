//! [`Receipt`]: what `send_with_receipt()` hands back, a future of the
//! message's fate.
//!
//! The outbox keeps the sending half only for messages someone waits for
//! (`queue_actor/receipts.rs`), so a plain `send()` carries none: no
//! channel and no allocation per message.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::oneshot;

use crate::{queue::MessageId, Error, Result};

/// The outbox's half: told once, with the id or why the message failed.
pub(crate) type ReceiptTx = oneshot::Sender<Result<MessageId>>;

/// A delivery receipt: resolves to the message's id once it is delivered,
/// or to why it was not.
///
/// Delivered means, in reliable mode ([`ReconnectMode::Stateful`](crate::ReconnectMode::Stateful)), that
/// the server acknowledged it (after a lost session: acknowledged in the
/// fresh session that re-sent it); in the other modes, that it was written
/// to the socket (handed to the connection's writer; a socket that dies
/// just after may still lose it, the at-most-once of raw mode).
///
/// It fails with [`Error::Dropped`] (and the [`DropReason`](crate::queue::DropReason)
/// its [`MessageDropped`](crate::MessageDropped) event reports) when the
/// outbox dropped it (overflow policy, time to live); with the error that
/// ended the connection (for instance [`Error::GaveUp`]) when the client
/// stopped for good before delivering it, in which case the message stays
/// in the outbox and goes out on a later `connect()`, unconfirmed; with
/// [`Error::Shutdown`] when the client is gone.
///
/// Dropping the receipt does not cancel the message.
///
/// # Examples
/// ```no_run
/// # async fn f(ws: resilient_ws::ResilientWebSocket) -> resilient_ws::Result<()> {
/// let receipt = ws.send_with_receipt("order 42").await?;
/// println!("sent as {}", receipt.id());
/// let id = receipt.await?; // acknowledged by the server (reliable mode)
/// # let _ = id; Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited; `send()` needs none"]
pub struct Receipt {
    id: MessageId,
    rx: oneshot::Receiver<Result<MessageId>>,
}

impl Receipt {
    pub(crate) fn new(id: MessageId) -> (Self, ReceiptTx) {
        let (tx, rx) = oneshot::channel();
        (Receipt { id, rx }, tx)
    }

    /// The message's id: the one `send()` returns and
    /// [`MessageDropped`](crate::MessageDropped) reports.
    pub fn id(&self) -> MessageId {
        self.id
    }
}

impl Future for Receipt {
    type Output = Result<MessageId>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Shutdown)))
    }
}
