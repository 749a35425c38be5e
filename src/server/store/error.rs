//! [`SessionStoreError`]: why the Redis session store could not be reached
//! or used.

/// Why [`RedisSessionStore`](super::RedisSessionStore) failed.
///
/// Its `Display` never contains a reconnect token (the store never sees
/// one, only its hash) nor the URL's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionStoreError {
    /// The URL is not a Redis URL (`redis://host:port/db`).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer, or answered with an error.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A script answered something this version does not understand (a
    /// key of the prefix written by something else).
    #[error("unexpected answer from the session store: {0}")]
    Unexpected(String),
}

impl From<redis::RedisError> for SessionStoreError {
    fn from(e: redis::RedisError) -> Self {
        SessionStoreError::Unavailable(e.to_string())
    }
}
