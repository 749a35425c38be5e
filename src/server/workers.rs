//! Where a session's actor runs: on the worker thread of its socket.
//!
//! actix-web deals its connections to its workers in turn, and an actor
//! runs on the thread that started it. A session whose actor runs where
//! its socket is costs no hop between threads per message; one on another
//! worker costs two per round trip (socket → session → socket), which
//! doubled the stateful round trip over awc's (docs/PERFORMANCE.md,
//! "A session on its socket's worker"). Sockets, and so sessions, spread
//! over the workers by themselves.
//!
//! In memory mode negotiate creates the session, but the client opens a
//! new connection for the upgrade (ours does, and browsers do), which
//! lands on any worker. So negotiate creates the actor *deferred*
//! ([`start_deferred`]): its address takes messages at once (they wait in
//! its mailbox), and it starts on the worker of its first socket
//! ([`Deferred::start_here`]), or after a grace period on the negotiating
//! worker if no socket comes. (In Redis mode the socket's HELLO creates
//! the actor, on the socket's worker.)

use std::{
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use actix::{dev::channel, prelude::*};

/// The mailbox capacity `Actor::start` gives (actix's `DEFAULT_CAPACITY`,
/// which it does not export).
const MAILBOX_CAPACITY: usize = 16;

/// How long a negotiated session waits for its first socket before its
/// actor starts on the negotiating worker: the upgrade normally follows
/// the negotiate within a round trip or two, and a session that never
/// gets one must still run its resume-window timer (which counts from the
/// negotiate, not from this start).
pub(crate) const FIRST_SOCKET_GRACE: Duration = Duration::from_secs(2);

/// The start of a deferred actor, run once by whoever comes first.
type Run = Box<dyn FnOnce() + Send>;

/// An actor created but maybe not started yet (see [`start_deferred`]).
/// A default one refers to no actor.
#[derive(Clone, Default)]
pub(crate) struct Deferred(Weak<Mutex<Option<Run>>>);

impl Deferred {
    /// Starts the actor on the calling thread's arbiter unless it has
    /// started already; answers whether this call started it.
    pub(crate) fn start_here(&self) -> bool {
        let Some(slot) = self.0.upgrade() else {
            return false;
        };
        // Taken under the lock and run after it: `run` starts the actor.
        let run = slot.lock().expect("deferred start lock").take();
        run.map(|run| run()).is_some()
    }
}

/// Creates the actor `make` builds without starting it: the address
/// answered takes messages at once, and the actor starts on the thread
/// that first calls [`Deferred::start_here`], or on the calling thread's
/// arbiter after `grace`. The calling thread must run an arbiter.
///
/// Nothing is lost meanwhile: messages wait in the mailbox. If the
/// calling arbiter stops before the grace period ends, the waiting start
/// is dropped with it, and the mailbox with it (as an actor running there
/// would have stopped).
pub(crate) fn start_deferred<A>(
    grace: Duration,
    make: impl FnOnce() -> A + Send + 'static,
) -> (Addr<A>, Deferred)
where
    A: Actor<Context = Context<A>>,
{
    let (tx, rx) = channel::channel(MAILBOX_CAPACITY);
    let run: Run = Box::new(move || {
        Context::with_receiver(rx).run(make());
    });
    let slot = Arc::new(Mutex::new(Some(run)));
    let deferred = Deferred(Arc::downgrade(&slot));
    actix_rt::spawn(async move {
        actix_rt::time::sleep(grace).await;
        let run = slot.lock().expect("deferred start lock").take();
        if let Some(run) = run {
            run();
        }
    });
    (Addr::new(tx), deferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers the thread it runs on, for each `Where` it gets.
    struct Probe;

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "std::thread::ThreadId")]
    struct Where;

    impl Handler<Where> for Probe {
        type Result = MessageResult<Where>;

        fn handle(&mut self, _: Where, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::thread::current().id())
        }
    }

    #[actix_rt::test]
    async fn a_deferred_actor_starts_where_it_is_first_asked_to_and_keeps_its_mail() {
        let (addr, deferred) = start_deferred(Duration::from_secs(3600), || Probe);
        // Sent before the start: it waits in the mailbox.
        let early = addr.send(Where);
        let arbiter = actix_rt::Arbiter::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let d = deferred.clone();
        arbiter.spawn_fn(move || {
            let _ = done_tx.send((d.start_here(), std::thread::current().id()));
        });
        let (started, there) = done_rx.await.unwrap();
        assert!(started, "the first start_here starts it");
        assert!(!deferred.start_here(), "a second one does not");
        assert_eq!(
            early.await.unwrap(),
            there,
            "the early message reached it there"
        );
        assert_ne!(there, std::thread::current().id());
        assert_eq!(addr.send(Where).await.unwrap(), there);
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_deferred_actor_nobody_starts_starts_here_after_the_grace_period() {
        tokio::time::pause();
        let (addr, deferred) = start_deferred(Duration::from_secs(2), || Probe);
        let asked = addr.send(Where);
        tokio::pin!(asked);
        tokio::select! {
            _ = &mut asked => panic!("answered before the grace period"),
            () = actix_rt::time::sleep(Duration::from_millis(1999)) => {}
        }
        // Time is paused: were there no start after the grace period, the
        // clock would jump to this timeout instead of hanging.
        let answered = actix_rt::time::timeout(Duration::from_secs(60), asked).await;
        assert_eq!(
            answered.expect("started after the grace period").unwrap(),
            std::thread::current().id()
        );
        assert!(!deferred.start_here(), "already started");
    }
}
