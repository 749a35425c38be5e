//! The event fan-out shared by the client and the server: one
//! [`Subscribers`] list per event type, with the rule from actix-broker:
//! `try_send` first; on a full mailbox `do_send` anyway, so an event is
//! never dropped for a slow subscriber; a subscriber is removed only when
//! its actor is gone.
//!
//! It sits below both ends (it knows only actix), so the client's event bus
//! and the server's event hub are the same type.

use std::sync::RwLock;

use actix::{dev::SendError, Message, Recipient};

/// Sends one event to one subscriber; `true` if its actor is gone (remove
/// it).
pub(crate) fn deliver<M>(r: &Recipient<M>, msg: M) -> bool
where
    M: Message<Result = ()> + Send + 'static,
{
    match r.try_send(msg) {
        Ok(()) => false,
        Err(SendError::Full(m)) => {
            r.do_send(m);
            false
        }
        Err(SendError::Closed(_)) => true,
    }
}

/// The subscribers of one event type.
///
/// Behind a lock so that one list can be shared: the server's handle (on
/// any worker thread) subscribes while its session actors publish. The
/// client's actors own theirs; the uncontended read lock costs them a few
/// nanoseconds per event, and events are rare next to messages (inbound
/// messages have their own bounded fan-out).
pub(crate) struct Subscribers<M>
where
    M: Message<Result = ()> + Send + Clone + 'static,
{
    list: RwLock<Vec<Recipient<M>>>,
}

impl<M> Default for Subscribers<M>
where
    M: Message<Result = ()> + Send + Clone + 'static,
{
    fn default() -> Self {
        Subscribers {
            list: RwLock::new(Vec::new()),
        }
    }
}

impl<M> Clone for Subscribers<M>
where
    M: Message<Result = ()> + Send + Clone + 'static,
{
    /// A new list with the same subscribers (the client hands a copy of
    /// its lists to the queue actor when it starts).
    fn clone(&self) -> Self {
        Subscribers {
            list: RwLock::new(self.read().clone()),
        }
    }
}

impl<M> Subscribers<M>
where
    M: Message<Result = ()> + Send + Clone + 'static,
{
    // A panic while holding the lock cannot leave the list half-changed
    // (push and retain either happen or not), so a poisoned lock is used
    // as is rather than spreading the panic to every publisher.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Recipient<M>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Recipient<M>>> {
        self.list.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a subscriber.
    pub(crate) fn add(&self, r: Recipient<M>) {
        self.write().push(r);
    }

    /// Whether nobody subscribed: a hot path then skips building the event
    /// (a server's `MessageReceived` costs a copy of the connection id).
    // Only the server's session asks (a client-only build has no caller).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Sends `msg` to every subscriber with the fan-out rule, and removes
    /// the ones whose actor is gone.
    pub(crate) fn publish(&self, msg: M) {
        let closed = {
            let list = self.read();
            match list.split_last() {
                None => false,
                Some((last, rest)) => {
                    let mut closed = false;
                    // Payloads are reference-counted, so a clone per
                    // subscriber is cheap; the last one takes the original.
                    for r in rest {
                        closed |= deliver(r, msg.clone());
                    }
                    closed | deliver(last, msg)
                }
            }
        };
        if closed {
            self.write().retain(|r| r.connected());
        }
    }

    /// Sends `msg` to every subscriber with `send`: the replies say that
    /// each subscriber has handled everything up to this message (a
    /// mailbox is FIFO). A fresh clone of a recipient is never parked, so
    /// `send` always enqueues, like `do_send`. A gone subscriber's reply is
    /// an error at once (it waits for nothing).
    #[cfg_attr(not(feature = "server"), allow(dead_code))] // the server's only
    pub(crate) fn emit_marker(&self, msg: M) -> Vec<actix::dev::RecipientRequest<M>> {
        self.read()
            .iter()
            .map(|r| r.clone().send(msg.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::{Duration, Instant},
    };

    use actix::prelude::*;

    use super::Subscribers;

    #[derive(Clone, Message)]
    #[rtype(result = "()")]
    struct Ping(usize);

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stop;

    /// Adds what it receives; its mailbox holds one message, so a burst
    /// finds it full.
    struct Counter(Arc<AtomicUsize>);
    impl Actor for Counter {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(1);
        }
    }
    impl Handler<Ping> for Counter {
        type Result = ();
        fn handle(&mut self, msg: Ping, _: &mut Context<Self>) {
            self.0.fetch_add(msg.0, Ordering::SeqCst);
        }
    }
    impl Handler<Stop> for Counter {
        type Result = ();
        fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[actix_rt::test]
    async fn a_full_mailbox_still_gets_every_event_and_a_gone_subscriber_is_removed() {
        let seen = Arc::new(AtomicUsize::new(0));
        let subs = Subscribers::<Ping>::default();
        assert!(subs.is_empty());
        subs.add(Counter(seen.clone()).start().recipient());
        let gone = Counter(Arc::new(AtomicUsize::new(0))).start();
        subs.add(gone.clone().recipient());
        let copy = subs.clone();
        for _ in 0..10 {
            subs.publish(Ping(1));
        }
        // A marker's answers say everything before it was handled.
        for reply in subs.emit_marker(Ping(0)) {
            reply.await.expect("both subscribers alive");
        }
        assert_eq!(
            seen.load(Ordering::SeqCst),
            10,
            "nothing dropped for a full mailbox"
        );

        gone.send(Stop).await.expect("stop handled");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The stopped actor's mailbox closes once its context is done; the
        // next publish after that removes it.
        while subs.read().len() > 1 {
            assert!(Instant::now() < deadline, "a gone subscriber was kept");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            subs.publish(Ping(1));
        }
        assert!(subs.read()[0].connected(), "the live one stays");
        assert_eq!(copy.read().len(), 2, "a clone is a list of its own");
    }
}
