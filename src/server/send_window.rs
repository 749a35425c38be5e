//! [`SendWindow`]: a session's send buffer as the application's handle
//! sees it, so that `send_to` can wait for room without asking the session
//! actor (a round trip per message would cost more than the message).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::error::ServerError;

/// The payload bytes handed to a session and not yet acknowledged by its
/// client (sent-but-unacked plus queued). The handle reserves room here
/// before it hands a message over; the session releases it as acks come.
pub(crate) struct SendWindow {
    queued: AtomicUsize,
    /// The bound `send_to` waits under
    /// ([`ServerOptions::max_pending_bytes`](super::ServerOptions::max_pending_bytes)).
    cap: usize,
    /// Whether a socket is attached (a detached session's buffer only
    /// drains after a resume: broadcast does not wait for it).
    attached: AtomicBool,
    closed: AtomicBool,
    room: Notify,
}

/// How a message got into the window (see [`SendWindow::acquire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Its bytes are counted here: the session releases them on the ack.
    Reserved,
    /// Not counted (a detached session, `detached_ok`): the session counts
    /// it when it queues it, under its pending bound.
    Unreserved,
}

impl SendWindow {
    pub(crate) fn new(cap: usize) -> Self {
        SendWindow {
            queued: AtomicUsize::new(0),
            cap,
            attached: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// Takes room for `len` bytes if there is some (a message larger than
    /// the bound when the buffer is empty too).
    fn try_reserve(&self, len: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || q.saturating_add(len) <= self.cap).then(|| q.saturating_add(len))
            })
            .is_ok()
    }

    /// Counts bytes the session queued by itself (echo, broadcast).
    pub(crate) fn add(&self, len: usize) {
        self.queued.fetch_add(len, Ordering::AcqRel);
    }

    /// The client acknowledged `len` bytes: room for waiting senders.
    pub(crate) fn release(&self, len: usize) {
        if len > 0 {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.room.notify_waiters();
        }
    }

    pub(crate) fn set_attached(&self, on: bool) {
        self.attached.store(on, Ordering::Release);
        if on {
            self.room.notify_waiters();
        }
    }

    /// The session ended: waiting senders get `UnknownSession`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits for room for `len` bytes until `deadline` (`None`: not at
    /// all). `detached_ok`: do not wait for a session without a socket
    /// (admit the message unreserved instead; the pending bound still
    /// applies). The caller hands the message over on `Ok`.
    ///
    /// # Errors
    /// `UnknownSession` once the session ended, `Full` without a deadline,
    /// `Timeout` past it.
    pub(crate) async fn acquire(
        &self,
        len: usize,
        deadline: Option<tokio::time::Instant>,
        detached_ok: bool,
    ) -> Result<Admitted, ServerError> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before checking, so a release in between is seen.
            room.as_mut().enable();
            if self.is_closed() {
                return Err(ServerError::UnknownSession);
            }
            if self.try_reserve(len) {
                return Ok(Admitted::Reserved);
            }
            if detached_ok && !self.attached.load(Ordering::Acquire) {
                return Ok(Admitted::Unreserved);
            }
            let Some(deadline) = deadline else {
                return Err(ServerError::Full);
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(ServerError::Timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use futures_util::FutureExt;
    use tokio::time::Instant;

    use super::*;

    fn now_or_full(w: &SendWindow, len: usize) -> Result<Admitted, ServerError> {
        w.acquire(len, None, false)
            .now_or_never()
            .expect("no deadline: answers at once")
    }

    #[test]
    fn reserves_up_to_the_cap_and_one_large_message_alone() {
        let w = SendWindow::new(100);
        assert_eq!(now_or_full(&w, 60), Ok(Admitted::Reserved));
        assert_eq!(now_or_full(&w, 40), Ok(Admitted::Reserved));
        assert_eq!(now_or_full(&w, 1), Err(ServerError::Full));
        w.release(100);
        assert_eq!(
            now_or_full(&w, 500),
            Ok(Admitted::Reserved),
            "larger than the cap, into an empty window"
        );
        assert_eq!(now_or_full(&w, 1), Err(ServerError::Full));
        w.release(500);
        w.add(100);
        assert_eq!(
            now_or_full(&w, 1),
            Err(ServerError::Full),
            "bytes the session queued itself count"
        );
    }

    #[test]
    fn a_detached_session_is_not_waited_for_when_asked() {
        let w = SendWindow::new(10);
        w.add(10);
        let unreserved = w.acquire(5, None, true).now_or_never().unwrap();
        assert_eq!(unreserved, Ok(Admitted::Unreserved));
        w.set_attached(true);
        let attached = w.acquire(5, None, true).now_or_never().unwrap();
        assert_eq!(attached, Err(ServerError::Full), "attached: it drains soon");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_sender_gets_room_from_a_release_or_times_out() {
        let w = Arc::new(SendWindow::new(10));
        w.add(10);
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                w.acquire(4, Some(deadline), false).await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "no room yet");
        w.release(6);
        assert_eq!(waiter.await.unwrap(), Ok(Admitted::Reserved));

        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        assert_eq!(
            w.acquire(4, Some(deadline), false).await,
            Err(ServerError::Timeout)
        );
        assert_eq!(Instant::now(), deadline, "gave up exactly at the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_wakes_waiting_senders_with_unknown_session() {
        let w = Arc::new(SendWindow::new(1));
        w.add(1);
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                w.acquire(1, Some(deadline), false).await
            })
        };
        tokio::task::yield_now().await;
        w.close();
        assert_eq!(waiter.await.unwrap(), Err(ServerError::UnknownSession));
        assert_eq!(now_or_full(&w, 0), Err(ServerError::UnknownSession));
    }
}
