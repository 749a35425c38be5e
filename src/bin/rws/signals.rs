//! SIGINT and SIGTERM, for both `serve` and `connect`: each decides what a
//! signal means (a graceful stop, a close), this only reports them.

/// Calls `notify` on every SIGINT and SIGTERM, until it returns `false`
/// (whoever listened is gone). A second signal is reported too: both
/// commands stop at once on it.
pub(crate) async fn watch_signals(mut notify: impl FnMut() -> bool) {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            log::warn!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if !notify() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    loop {
        if actix_rt::signal::ctrl_c().await.is_err() {
            return std::future::pending().await;
        }
        if !notify() {
            return;
        }
    }
}
