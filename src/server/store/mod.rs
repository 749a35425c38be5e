//! Where a server keeps its sessions: [`SessionStore::Memory`] (the
//! default: the session actors' own state, nothing to install) or, with
//! the `redis` feature, `SessionStore::Redis`: every session's state in
//! Redis, so a client resumes on any node of a cluster (docs/SCALING.md).

#[cfg(feature = "redis")]
mod blob;
#[cfg(feature = "redis")]
mod error;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(all(test, feature = "redis"))]
mod tests;

#[cfg(feature = "redis")]
pub use self::redis::RedisSessionStore;
#[cfg(feature = "redis")]
pub(crate) use self::redis::{
    AppendOutcome, CommitArgs, CommitOutcome, ExpireOutcome, TakeArgs, TakeOutcome, Taken,
};
#[cfg(feature = "redis")]
pub use error::SessionStoreError;

#[cfg(feature = "redis")]
use std::time::Duration;

/// The lease: how often an attached session refreshes its deadline in
/// Redis (a third of the resume window, within [100 ms, 5 s]).
#[cfg(feature = "redis")]
pub(crate) fn lease(window: Duration) -> Duration {
    (window / 3).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// How long a session's keys outlive their last refresh: the window plus
/// two leases and a margin, so a crashed cluster leaks nothing while the
/// sweeper (which keys on the deadline) still sees them first.
#[cfg(feature = "redis")]
pub(crate) fn key_ttl(window: Duration) -> Duration {
    window + 2 * lease(window) + Duration::from_secs(5)
}

/// Where a [`ReliableServer`](super::ReliableServer) keeps its sessions
/// ([`ServerOptions::store`](super::ServerOptions::store)).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum SessionStore {
    /// In this process's memory (the default): a session lives as long as
    /// the process, within its resume window, and only this process can
    /// resume it.
    #[default]
    Memory,
    /// In Redis: every node of a cluster shares the sessions, and a client
    /// resumes on any of them, exactly once both ways, with no sticky
    /// routing (docs/SCALING.md). Needs the `redis` feature.
    #[cfg(feature = "redis")]
    Redis(RedisSessionStore),
}

impl SessionStore {
    /// The Redis store, if this is one.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(&self) -> Option<&RedisSessionStore> {
        match self {
            SessionStore::Redis(r) => Some(r),
            SessionStore::Memory => None,
        }
    }
}
