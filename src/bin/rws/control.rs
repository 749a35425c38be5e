//! What the tasks of `rws connect` (the printer, the stdin forwarder, the
//! signal watcher) tell its main loop. On its own so that they all depend
//! on it rather than on the main loop.

use resilient_ws::Error;

/// A report to the main loop of `connect`.
#[derive(Debug)]
pub(crate) enum Control {
    /// The client is finally `Disconnected`; the error that ended the last
    /// socket (or the last reconnect attempt), `None` for a normal close.
    Ended(Option<Error>),
    /// Something local failed (stdin, stdout, send); close and exit non-zero.
    Failed(String),
    /// SIGINT or SIGTERM.
    Interrupted,
}
