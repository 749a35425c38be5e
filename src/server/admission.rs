//! [`Admission`]: what unauthenticated peers may cost a server, checked by
//! the routes before any session work: the anonymous negotiate rate per
//! address, and a bound on the sockets still waiting for their HELLO
//! ([`HelloPermit`], held by the socket's pre-HELLO phase).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use super::{
    options::{FailedResumeLimit, ServerOptions},
    resume_limiter::ResumeLimiter,
};

/// What unauthenticated peers may cost a server: the anonymous negotiate
/// rate per address, and the sockets waiting for their HELLO.
pub(crate) struct Admission {
    /// Anonymous negotiates per address.
    pub(crate) negotiates: ResumeLimiter,
    awaiting_hello: Arc<AtomicUsize>,
    max_awaiting_hello: usize,
}

impl Admission {
    pub(crate) fn new(options: &ServerOptions) -> Self {
        let limit = options
            .anonymous_negotiate_limit
            .map(|l| FailedResumeLimit {
                max_failures: l.max_requests,
                window: l.window,
            });
        Admission {
            negotiates: ResumeLimiter::counting(limit, "anonymous negotiates"),
            awaiting_hello: Arc::new(AtomicUsize::new(0)),
            max_awaiting_hello: options.max_awaiting_hello,
        }
    }

    /// A place among the sockets waiting for HELLO, if one is free.
    pub(crate) fn await_hello(&self) -> Option<HelloPermit> {
        let before = self.awaiting_hello.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_awaiting_hello {
            self.awaiting_hello.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HelloPermit(self.awaiting_hello.clone()))
    }
}

/// Holds a socket's place among those waiting for HELLO; freed on drop.
pub(crate) struct HelloPermit(Arc<AtomicUsize>);

impl Drop for HelloPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_permits_are_bounded_and_freed_on_drop() {
        let options = ServerOptions {
            max_awaiting_hello: 2,
            ..ServerOptions::default()
        };
        let a = Admission::new(&options);
        let p1 = a.await_hello().expect("first");
        let p2 = a.await_hello().expect("second");
        assert!(a.await_hello().is_none(), "a third waits over the bound");
        assert_eq!(
            a.awaiting_hello.load(Ordering::Acquire),
            2,
            "a refusal takes no place"
        );
        drop(p1);
        let p3 = a.await_hello().expect("a dropped permit frees its place");
        drop((p2, p3));
        assert_eq!(a.awaiting_hello.load(Ordering::Acquire), 0);
    }
}
