//! [`Workers`]: the actix-web worker threads a server's routes run on, and
//! which of them a new session actor is started on.
//!
//! Placement (measured in docs/PERFORMANCE.md, "Sessions over workers"):
//! a server with one worker runs each session on that worker, so one
//! worker is one thread. With more workers, a session goes where its
//! socket is expected *not* to be, so a busy stream keeps its socket's I/O
//! and its session's work on two threads in parallel (as with the single
//! session arbiter this replaced), while many sessions spread over every
//! worker:
//! - in memory mode negotiate creates the session, on the negotiating
//!   worker ([`Placement::Here`]). The client opens a new connection for
//!   the upgrade (ours does, and browsers do), which actix-web deals to
//!   the next worker in turn: another one, unless other connections came
//!   in between (then it is one in N);
//! - in Redis mode the socket's HELLO creates the actor, which goes to
//!   another worker in turn ([`Placement::Elsewhere`]).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    thread::ThreadId,
};

use actix::prelude::*;
use actix_rt::ArbiterHandle;

/// Where a new session's actor goes, relative to the calling worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the calling worker (negotiate's: the socket comes on another
    /// connection, most likely to another worker).
    Here,
    /// On another worker, in turn, if there is one (a socket's HELLO: the
    /// socket is here).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Elsewhere,
}

/// One worker thread's arbiter.
#[derive(Clone)]
struct Worker {
    thread: ThreadId,
    arbiter: ArbiterHandle,
}

/// The worker threads a server's routes were registered on.
#[derive(Default)]
pub(crate) struct Workers {
    list: Mutex<Vec<Worker>>,
    /// Turns through the candidates so sessions spread evenly.
    next: AtomicUsize,
}

impl Workers {
    /// Records the calling thread's arbiter as one of the server's workers
    /// (actix-web runs the app factory, and so `reliable_route`, on every
    /// worker thread). Workers of a stopped HTTP server are forgotten.
    pub(crate) fn register(&self) {
        let Some(arbiter) = actix_rt::Arbiter::try_current() else {
            return;
        };
        let thread = std::thread::current().id();
        let mut list = self.list.lock().expect("workers lock");
        list.retain(|w| w.thread != thread && alive(&w.arbiter));
        list.push(Worker { thread, arbiter });
    }

    /// Starts the actor `make` builds on the worker `placement` picks (see
    /// the module docs); answers its address and its thread. Without a
    /// registered worker (a session created off the HTTP server), on the
    /// current arbiter.
    pub(crate) fn start<A>(
        &self,
        placement: Placement,
        make: impl FnOnce() -> A + Send + 'static,
    ) -> (Addr<A>, ThreadId)
    where
        A: Actor<Context = Context<A>>,
    {
        match self.pick(placement) {
            Some(w) => (A::start_in_arbiter(&w.arbiter, |_| make()), w.thread),
            None => (make().start(), std::thread::current().id()),
        }
    }

    /// The worker for a new session (`None`: the current arbiter).
    fn pick(&self, placement: Placement) -> Option<Worker> {
        let here = std::thread::current().id();
        let mut list = self.list.lock().expect("workers lock");
        loop {
            let on_worker = list.iter().any(|w| w.thread == here);
            let candidates: Vec<&Worker> = match placement {
                // The calling worker itself: no hop to start it.
                Placement::Here if on_worker => return None,
                Placement::Elsewhere if list.len() > 1 => {
                    list.iter().filter(|w| w.thread != here).collect()
                }
                _ => list.iter().collect(),
            };
            if candidates.is_empty() {
                return None;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
            let w = candidates[i].clone();
            if alive(&w.arbiter) {
                return Some(w);
            }
            // Its HTTP server stopped: forget it and pick again.
            list.retain(|x| x.thread != w.thread);
        }
    }
}

/// Whether an arbiter still runs (a stopped one refuses work).
fn alive(arbiter: &ArbiterHandle) -> bool {
    arbiter.spawn(std::future::ready(()))
}
