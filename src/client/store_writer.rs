//! The durable store's writer: one thread that owns the [`QueueStore`] and
//! commits what the client's actors hand it, many changes per commit.
//!
//! A commit to a durable store ends in an fsync, which takes about as long
//! as thousands of messages take to send. So the actors never wait for the
//! disk on their own thread: they queue their changes here and go on. The
//! writer takes everything queued while the previous commit ran and commits
//! it as one batch (a group commit), so the number of fsyncs adapts to the
//! load instead of growing with it. After each commit it answers the
//! `send()`s whose messages were in it, and tells the queue actor how far
//! it got, which is when batches of reliable mode may go to the socket.

use std::sync::mpsc;

use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::queue::{QueueStore, StoreError, StoreOp};

/// Answers one `send()` (or an ack waiting for its `Delivered`) once the
/// commit holding its change is durable.
pub(crate) type Done = oneshot::Sender<Result<(), StoreError>>;

/// The most submissions one commit takes, so waiters are answered in
/// bounded time under a flood.
const MAX_GROUP: usize = 8192;

/// Test hooks for crash tests (fault injection, like failpoints): abort the
/// process right after commit N, before anyone hears of it...
const CRASH_AFTER_COMMITS: &str = "RWS_STORE_CRASH_AFTER_COMMITS";
/// ...or in the middle of commit N: its changes are taken, the actors get
/// 20 ms to act on them, and the process dies before they are durable.
const CRASH_IN_COMMIT: &str = "RWS_STORE_CRASH_IN_COMMIT";

/// The writer got as far as `ticket`.
#[derive(actix::Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Committed {
    pub(crate) ticket: u64,
    pub(crate) result: Result<(), StoreError>,
}

struct Submission {
    ops: Vec<StoreOp>,
    waiters: Vec<Done>,
    ticket: Option<u64>,
}

/// A handle to the writer thread; the thread ends (and closes the store,
/// releasing its lock) when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    tx: mpsc::Sender<Submission>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

impl StoreHandle {
    /// Starts the writer thread for `store`; commit progress of ticketed
    /// submissions goes to `progress`.
    pub(crate) fn start(
        mut store: Box<dyn QueueStore>,
        progress: tokio_mpsc::UnboundedSender<Committed>,
    ) -> std::io::Result<StoreHandle> {
        let (tx, rx) = mpsc::channel::<Submission>();
        let hook = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let (crash_after, crash_in) = (hook(CRASH_AFTER_COMMITS), hook(CRASH_IN_COMMIT));
        std::thread::Builder::new()
            .name("rws-store".into())
            .spawn(move || {
                let mut commits = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(s) => group.push(s),
                            Err(_) => break,
                        }
                    }
                    let mut ops = Vec::with_capacity(group.iter().map(|s| s.ops.len()).sum());
                    let mut ticket = None;
                    for s in &mut group {
                        ops.append(&mut s.ops);
                        ticket = s.ticket.or(ticket);
                    }
                    if crash_in == Some(commits + 1) {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        log::error!("{CRASH_IN_COMMIT} reached: aborting (test hook)");
                        std::process::abort();
                    }
                    let result = if ops.is_empty() {
                        Ok(())
                    } else {
                        store.commit(&ops)
                    };
                    if let Err(e) = &result {
                        log::error!("durable store commit failed: {e}");
                    }
                    commits += 1;
                    if crash_after == Some(commits) {
                        log::error!("{CRASH_AFTER_COMMITS} reached: aborting (test hook)");
                        std::process::abort();
                    }
                    for s in group {
                        for w in s.waiters {
                            let _ = w.send(result.clone());
                        }
                    }
                    if let Some(ticket) = ticket {
                        let _ = progress.send(Committed { ticket, result });
                    }
                }
                log::debug!("durable store closed");
            })?;
        Ok(StoreHandle { tx })
    }

    /// Queues changes; `waiters` hear when they are durable, and the queue
    /// actor hears of `ticket`.
    pub(crate) fn submit(&self, ops: Vec<StoreOp>, waiters: Vec<Done>, ticket: Option<u64>) {
        let sub = Submission {
            ops,
            waiters,
            ticket,
        };
        if let Err(mpsc::SendError(sub)) = self.tx.send(sub) {
            // The writer is gone only if it panicked: say so to whoever waits.
            for w in sub.waiters {
                let _ = w.send(Err(StoreError::Other("the store writer stopped".into())));
            }
        }
    }

    /// Queues changes and returns a receiver that hears when they are
    /// durable.
    pub(crate) fn submit_wait(
        &self,
        ops: Vec<StoreOp>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.submit(ops, vec![tx], None);
        rx
    }
}
