//! [`Registry`]: a server's live sessions by connection id, with the
//! session limits, the live sessions per identity, and the message size
//! each client said it accepts.
//!
//! Generic over the session's address `S` so that it sits below the
//! session actor (the actor removes itself from it) and can be tested
//! with plain values; the server uses `Addr<SessionActor>` (see
//! `hub::ServerShared`).
//!
//! Sessions are created on every worker thread at once (each starts its
//! session actors on its own arbiter), so the limits are checked and the
//! session inserted under one lock ([`admit_and_insert`](Registry::admit_and_insert)):
//! two negotiates cannot both pass the last free place.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::ThreadId,
};

use super::{error::ServerError, send_window::SendWindow, workers::Deferred};

/// A live session: its address and its send buffer.
#[derive(Clone)]
pub(crate) struct SessionEntry<S> {
    pub(crate) addr: S,
    pub(crate) window: Arc<SendWindow>,
    /// The thread (an actix-web worker's arbiter) its actor runs on, or
    /// will run on unless a socket starts it elsewhere (see `deferred`).
    pub(crate) thread: ThreadId,
    /// The start of an actor created deferred (memory mode's negotiate),
    /// which its first socket's worker runs (see `workers`).
    deferred: Deferred,
}

impl<S> SessionEntry<S> {
    /// A session whose actor runs on `thread`.
    pub(crate) fn new(addr: S, window: Arc<SendWindow>, thread: ThreadId) -> Self {
        SessionEntry {
            addr,
            window,
            thread,
            deferred: Deferred::default(),
        }
    }

    /// The same, its actor created deferred (`thread`: where it starts if
    /// no socket starts it first).
    pub(crate) fn deferred(mut self, deferred: Deferred) -> Self {
        self.deferred = deferred;
        self
    }
}

/// The live sessions of one server.
pub(crate) struct Registry<S> {
    sessions: Mutex<HashMap<String, SessionEntry<S>>>,
    /// Live sessions per (non-anonymous) identity.
    per_identity: Mutex<HashMap<String, usize>>,
    /// Clients' stated message size limits, by connection id (only for
    /// clients that stated one).
    client_limits: Mutex<HashMap<String, usize>>,
    /// See [`ServerStats::broadcast_skipped`](super::ServerStats::broadcast_skipped).
    broadcast_skipped: AtomicU64,
    max_sessions: usize,
    max_sessions_per_identity: usize,
    /// Held over a check of the limits and the insert that follows it.
    admission: Mutex<()>,
    /// Sockets that attached on the worker their session's actor runs on,
    /// and on another one (a hop between threads per batch each way).
    attached_here: AtomicU64,
    attached_elsewhere: AtomicU64,
}

impl<S: Clone> Registry<S> {
    pub(crate) fn new(max_sessions: usize, max_sessions_per_identity: usize) -> Self {
        Registry {
            sessions: Mutex::new(HashMap::new()),
            per_identity: Mutex::new(HashMap::new()),
            client_limits: Mutex::new(HashMap::new()),
            broadcast_skipped: AtomicU64::new(0),
            max_sessions,
            max_sessions_per_identity,
            admission: Mutex::new(()),
            attached_here: AtomicU64::new(0),
            attached_elsewhere: AtomicU64::new(0),
        }
    }

    pub(crate) fn session(&self, id: &str) -> Option<S> {
        self.entry(id).map(|e| e.addr)
    }

    pub(crate) fn entry(&self, id: &str) -> Option<SessionEntry<S>> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned()
    }

    /// Checks the limits for one more session of `identity` and, if it
    /// is within them, inserts the session `make` creates (its connection
    /// id and entry), as one step: concurrent calls from several workers
    /// cannot both take the last free place. `make` runs only when the
    /// session is admitted.
    pub(crate) fn admit_and_insert(
        &self,
        identity: &str,
        make: impl FnOnce() -> (String, SessionEntry<S>),
    ) -> Result<(), ServerError> {
        let _one_at_a_time = self.admission.lock().expect("admission lock");
        self.admit(identity)?;
        let (id, entry) = make();
        self.insert(id, identity, entry);
        Ok(())
    }

    /// Whether one more session for `identity` is within the limits.
    /// Only [`admit_and_insert`](Self::admit_and_insert) (and tests) call
    /// it: apart from the insert, the answer may be stale.
    pub(crate) fn admit(&self, identity: &str) -> Result<(), ServerError> {
        if self.len() >= self.max_sessions {
            return Err(ServerError::TooManySessions);
        }
        let held = self
            .per_identity
            .lock()
            .expect("identity lock")
            .get(identity)
            .copied()
            .unwrap_or(0);
        if !identity.is_empty() && held >= self.max_sessions_per_identity {
            return Err(ServerError::TooManySessionsForIdentity);
        }
        Ok(())
    }

    /// Adds a session (its id is new).
    pub(crate) fn insert(&self, id: String, identity: &str, entry: SessionEntry<S>) {
        let old = self.replace(id, identity, entry);
        debug_assert!(old.is_none(), "session ids are new");
    }

    /// Puts `addr` in place of whatever holds `id` now (a node took a
    /// session it already had an actor for): the identity count stays.
    /// Answers the entry it replaced.
    pub(crate) fn replace(
        &self,
        id: String,
        identity: &str,
        entry: SessionEntry<S>,
    ) -> Option<SessionEntry<S>> {
        let old = self
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(id, entry);
        if old.is_none() && !identity.is_empty() {
            *self
                .per_identity
                .lock()
                .expect("identity lock")
                .entry(identity.to_owned())
                .or_default() += 1;
        }
        old
    }

    /// Forgets a session if its entry is `is_mine` (an actor that was
    /// replaced must not remove its successor).
    pub(crate) fn remove_if(&self, id: &str, identity: &str, is_mine: impl Fn(&S) -> bool) {
        let mine = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .is_some_and(|e| is_mine(&e.addr));
        if mine {
            self.remove(id, identity);
        }
    }

    /// Records the largest message the session's client accepts.
    pub(crate) fn set_client_limit(&self, id: &str, max: usize) {
        self.client_limits
            .lock()
            .expect("limits lock")
            .insert(id.to_owned(), max);
    }

    /// Forgets a session (idempotent).
    pub(crate) fn remove(&self, id: &str, identity: &str) {
        self.client_limits.lock().expect("limits lock").remove(id);
        let removed = self.sessions.lock().expect("sessions lock").remove(id);
        if removed.is_some() && !identity.is_empty() {
            let mut counts = self.per_identity.lock().expect("identity lock");
            if let Some(n) = counts.get_mut(identity) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(identity);
                }
            }
        }
    }

    pub(crate) fn all(&self) -> Vec<S> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .values()
            .map(|e| e.addr.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.lock().expect("sessions lock").len()
    }

    /// Whether the client of `connection_id` accepts a payload of `size`
    /// bytes (a client that stated no limit accepts any).
    pub(crate) fn check_size(&self, connection_id: &str, size: usize) -> Result<(), ServerError> {
        match self
            .client_limits
            .lock()
            .expect("limits lock")
            .get(connection_id)
        {
            Some(&max) if size > max => Err(ServerError::MessageTooLarge { size, max }),
            _ => Ok(()),
        }
    }

    /// The sessions a broadcast of `len` bytes goes to: all but those whose
    /// client accepts less (counted in
    /// [`broadcast_skipped`](Self::broadcast_skipped) and logged).
    pub(crate) fn broadcast_targets(&self, len: usize) -> Vec<SessionEntry<S>> {
        let mut skipped = 0u64;
        let targets: Vec<SessionEntry<S>> = {
            let limits = self.client_limits.lock().expect("limits lock");
            self.sessions
                .lock()
                .expect("sessions lock")
                .iter()
                .filter(|(id, _)| {
                    let skip = limits.get(*id).is_some_and(|&max| len > max);
                    skipped += u64::from(skip);
                    !skip
                })
                .map(|(_, e)| e.clone())
                .collect()
        };
        if skipped > 0 {
            self.broadcast_skipped.fetch_add(skipped, Ordering::Relaxed);
            log::warn!(
                "broadcast of {len} bytes skipped {skipped} session(s) whose client accepts less"
            );
        }
        targets
    }

    /// Starts session `id`'s actor on the calling thread if it was created
    /// deferred and nothing started it yet (a socket attaching here, or a
    /// shutdown); answers whether this call started it.
    pub(crate) fn start_here(&self, id: &str) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        // Started outside the lock: the start spawns the actor.
        if !entry.deferred.start_here() {
            return false;
        }
        if let Some(e) = self.sessions.lock().expect("sessions lock").get_mut(id) {
            e.thread = std::thread::current().id();
        }
        true
    }

    /// The ids of all sessions.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Records where a socket attached to session `id`: on the thread its
    /// actor runs on, or on another worker.
    pub(crate) fn note_attach(&self, id: &str) {
        let Some(entry) = self.entry(id) else { return };
        let counter = if entry.thread == std::thread::current().id() {
            &self.attached_here
        } else {
            &self.attached_elsewhere
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Sockets attached so far on their session's thread, and on another
    /// (read by tests and benches, through the `testing` feature).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn attach_affinity(&self) -> (u64, u64) {
        (
            self.attached_here.load(Ordering::Relaxed),
            self.attached_elsewhere.load(Ordering::Relaxed),
        )
    }

    /// Sessions broadcasts skipped so far, in all.
    pub(crate) fn broadcast_skipped(&self) -> u64 {
        self.broadcast_skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per_identity: usize) -> Registry<u32> {
        Registry::new(max, per_identity)
    }

    fn here() -> ThreadId {
        std::thread::current().id()
    }

    fn window() -> Arc<SendWindow> {
        Arc::new(SendWindow::new(1024))
    }

    #[test]
    fn session_limits_count_live_sessions_per_identity_and_in_all() {
        let r = registry(3, 2);
        r.admit("alice").unwrap();
        r.insert("a1".into(), "alice", SessionEntry::new(1, window(), here()));
        r.insert("a2".into(), "alice", SessionEntry::new(2, window(), here()));
        assert_eq!(
            r.admit("alice"),
            Err(ServerError::TooManySessionsForIdentity)
        );
        assert_eq!(r.admit("bob"), Ok(()), "another identity is not affected");
        assert_eq!(r.admit(""), Ok(()), "anonymous: no per-identity bound");
        r.insert("b1".into(), "bob", SessionEntry::new(3, window(), here()));
        assert_eq!(r.admit("carol"), Err(ServerError::TooManySessions));

        r.remove("a1", "alice");
        r.remove("a1", "alice");
        assert_eq!(r.len(), 2, "removing twice removes once");
        assert_eq!(
            r.admit("alice"),
            Ok(()),
            "the identity's count went down once"
        );
        assert_eq!(r.session("a2"), Some(2));
        assert_eq!(r.session("a1"), None);
        let mut all = r.all();
        all.sort_unstable();
        assert_eq!(all, vec![2, 3]);
    }

    #[test]
    fn admission_is_one_step_across_threads() {
        // Many threads race for 10 places: exactly 10 get one, whatever
        // the interleaving.
        let r = Arc::new(registry(10, usize::MAX));
        let admitted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let r = r.clone();
                    s.spawn(move || {
                        (0..50)
                            .filter(|i| {
                                r.admit_and_insert("", || {
                                    // Widen the window between check and insert.
                                    std::thread::yield_now();
                                    (
                                        format!("{t}-{i}"),
                                        SessionEntry::new(
                                            u32::try_from(t * 100 + i).unwrap(),
                                            window(),
                                            here(),
                                        ),
                                    )
                                })
                                .is_ok()
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(admitted, 10);
        assert_eq!(r.len(), 10);
    }

    #[test]
    fn client_limits_gate_sends_and_broadcasts() {
        let r = registry(10, 10);
        r.insert("small".into(), "", SessionEntry::new(1, window(), here()));
        r.insert("any".into(), "", SessionEntry::new(2, window(), here()));
        r.set_client_limit("small", 10);
        assert_eq!(r.check_size("small", 10), Ok(()));
        assert_eq!(
            r.check_size("small", 11),
            Err(ServerError::MessageTooLarge { size: 11, max: 10 })
        );
        assert_eq!(r.check_size("any", usize::MAX), Ok(()));

        assert_eq!(r.broadcast_targets(10).len(), 2);
        let targets: Vec<u32> = r
            .broadcast_targets(11)
            .into_iter()
            .map(|e| e.addr)
            .collect();
        assert_eq!(targets, vec![2], "the small client is skipped");
        assert_eq!(r.broadcast_skipped(), 1);

        r.remove("small", "");
        assert_eq!(r.check_size("small", 11), Ok(()), "its limit went with it");
    }
}
