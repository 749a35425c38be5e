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
//!
//! A failed commit is not progress. The queue actor's submissions form a
//! chain (each builds on the state the ones before it left), so once a
//! commit of chain `epoch` fails, every later submission of that epoch is
//! refused without touching the store, with the same error: the actor
//! rolls its state back to the last commit that held, and starts the next
//! epoch on top of it. A panic in the store's `commit` ends the writer (the
//! store's state is unknown after it): the submissions of that commit hear
//! an error, every later one hears that the writer stopped, and the actor
//! sees the progress stream end.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
};

use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::queue::{QueueStore, StoreError, StoreOp};

/// Answers one `send()` (or an ack waiting for its `Delivered`) once the
/// commit holding its change is durable.
pub(crate) type Done = oneshot::Sender<Result<(), StoreError>>;

/// The most submissions one commit takes, so waiters are answered in
/// bounded time under a flood.
const MAX_GROUP: usize = 8192;

/// Test hooks for crash tests (fault injection, like failpoints), read from
/// the environment. Debug builds only (the test suite's profile): a release
/// build has no code that aborts on an environment variable.
#[cfg(debug_assertions)]
mod crash {
    /// Abort the process right after commit N, before anyone hears of it...
    const AFTER_COMMITS: &str = "RWS_STORE_CRASH_AFTER_COMMITS";
    /// ...or in the middle of commit N: its changes are taken, the actors
    /// get 20 ms to act on them, and the process dies before they are
    /// durable.
    const IN_COMMIT: &str = "RWS_STORE_CRASH_IN_COMMIT";

    /// The hooks set for this process, and the commits counted so far.
    pub(super) struct Hooks {
        after: Option<u64>,
        within: Option<u64>,
        commits: u64,
    }

    impl Hooks {
        pub(super) fn from_env() -> Hooks {
            let hook = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
            Hooks {
                after: hook(AFTER_COMMITS),
                within: hook(IN_COMMIT),
                commits: 0,
            }
        }

        /// A commit's changes are taken, not yet written.
        pub(super) fn before_commit(&self) {
            if self.within == Some(self.commits + 1) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                log::error!("{IN_COMMIT} reached: aborting (test hook)");
                std::process::abort();
            }
        }

        /// A commit ended (durable or failed), before anyone hears of it.
        pub(super) fn after_commit(&mut self) {
            self.commits += 1;
            if self.after == Some(self.commits) {
                log::error!("{AFTER_COMMITS} reached: aborting (test hook)");
                std::process::abort();
            }
        }
    }
}

/// The writer is done with `ticket` of chain `epoch`: committed, or not
/// (then nothing of it was applied).
#[derive(actix::Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Committed {
    pub(crate) ticket: u64,
    pub(crate) epoch: u64,
    pub(crate) result: Result<(), StoreError>,
    /// When it failed: the `send()`s in it, for the queue actor to answer
    /// after it rolled back, so that a `send()` that saw the error and
    /// sends again builds on the durable state, never on the failed one.
    pub(crate) failed: Vec<Done>,
}

/// A submission's place in the queue actor's chain: its ticket and epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain {
    pub(crate) ticket: u64,
    pub(crate) epoch: u64,
}

struct Submission {
    ops: Vec<StoreOp>,
    waiters: Vec<Done>,
    chain: Option<Chain>,
}

impl Drop for Submission {
    fn drop(&mut self) {
        // Unanswered here only when the writer stopped with it still in
        // its channel: say why instead of a bare hang-up.
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(writer_stopped()));
        }
    }
}

/// What a caller hears when the writer thread is gone.
pub(crate) fn writer_stopped() -> StoreError {
    StoreError::Other("the durable store's writer stopped after a panic in the store; no change is recorded any more".into())
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
    /// `dead` is set when the writer stops for good (the store panicked),
    /// before anyone hears of that commit, so `send()` can refuse at once.
    pub(crate) fn start(
        mut store: Box<dyn QueueStore>,
        progress: tokio_mpsc::UnboundedSender<Committed>,
        dead: Arc<AtomicBool>,
    ) -> std::io::Result<StoreHandle> {
        let (tx, rx) = mpsc::channel::<Submission>();
        #[cfg(debug_assertions)]
        let mut crash = crash::Hooks::from_env();
        std::thread::Builder::new()
            .name("rws-store".into())
            .spawn(move || {
                // The latest chain epoch whose commit failed, and why.
                let mut poisoned: Option<(u64, StoreError)> = None;
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(s) => group.push(s),
                            Err(_) => break,
                        }
                    }
                    // A submission that builds on a failed one is refused.
                    let refused: Vec<Option<StoreError>> = group
                        .iter()
                        .map(|s| match (&s.chain, &poisoned) {
                            (Some(c), Some((e, err))) if c.epoch <= *e => Some(err.clone()),
                            _ => None,
                        })
                        .collect();
                    let mut ops = Vec::with_capacity(group.iter().map(|s| s.ops.len()).sum());
                    let mut epoch = None;
                    for (s, refused) in group.iter_mut().zip(&refused) {
                        if refused.is_none() {
                            ops.append(&mut s.ops);
                            epoch = s.chain.map(|c| c.epoch).or(epoch);
                        }
                    }
                    #[cfg(debug_assertions)]
                    crash.before_commit();
                    let mut died = false;
                    let result = if ops.is_empty() {
                        Ok(())
                    } else {
                        catch_unwind(AssertUnwindSafe(|| store.commit(&ops))).unwrap_or_else(
                            |panic| {
                                died = true;
                                let what = panic
                                    .downcast_ref::<&str>()
                                    .map(|s| (*s).to_string())
                                    .or_else(|| panic.downcast_ref::<String>().cloned())
                                    .unwrap_or_default();
                                Err(StoreError::Other(format!(
                                    "the durable store panicked in commit ({what}); its writer stopped"
                                )))
                            },
                        )
                    };
                    if let Err(e) = &result {
                        log::error!("durable store commit failed: {e}");
                        if let Some(epoch) = epoch {
                            poisoned = Some((epoch, e.clone()));
                        }
                    }
                    if died {
                        dead.store(true, Ordering::Release);
                    }
                    #[cfg(debug_assertions)]
                    crash.after_commit();
                    for (mut s, refused) in group.into_iter().zip(refused) {
                        let waiters = std::mem::take(&mut s.waiters);
                        let result = match refused {
                            Some(e) => Err(e),
                            None => result.clone(),
                        };
                        let Some(c) = s.chain else {
                            for w in waiters {
                                let _ = w.send(result.clone());
                            }
                            continue;
                        };
                        let failed = if result.is_ok() {
                            for w in waiters {
                                let _ = w.send(Ok(()));
                            }
                            Vec::new()
                        } else {
                            waiters
                        };
                        let report = Committed {
                            ticket: c.ticket,
                            epoch: c.epoch,
                            result,
                            failed,
                        };
                        if let Err(tokio_mpsc::error::SendError(report)) = progress.send(report) {
                            // The queue actor is gone: answer for it.
                            for w in report.failed {
                                let _ = w.send(report.result.clone());
                            }
                        }
                    }
                    if died {
                        // The store's state is unknown after a panic: stop
                        // using it. Dropping `rx` and `progress` tells
                        // everyone (see `submit` and the queue actor).
                        break;
                    }
                }
                log::debug!("durable store closed");
            })?;
        Ok(StoreHandle { tx })
    }

    /// Queues changes; `waiters` hear when they are durable, and the queue
    /// actor hears of `chain` (a submission without one stands alone: an
    /// earlier failure does not refuse it).
    pub(crate) fn submit(&self, ops: Vec<StoreOp>, waiters: Vec<Done>, chain: Option<Chain>) {
        let sub = Submission {
            ops,
            waiters,
            chain,
        };
        // The writer is gone only if the store panicked; then dropping
        // the submission tells whoever waits (see its `Drop`).
        let _ = self.tx.send(sub);
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
