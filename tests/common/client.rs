//! Clients built for tests, and bounded waits.

use std::time::{Duration, Instant};

use resilient_ws::{
    testing::{EventRecorder, RawConn, RawServer},
    Error, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

/// A stateful client that reconnects at once (5-50 ms), counts any uptime
/// as stable and sends no heartbeats, so tests of the reliable protocol are
/// quick and see only the frames they cause.
pub fn stateful(url: impl Into<String>) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
}

/// Connects the client `b` describes with a fresh [`EventRecorder`]
/// attached: most tests want both, and the recorder must be attached before
/// the client exists to see its first events.
pub async fn connect_recorded(b: ResilientWebSocketBuilder) -> (ResilientWebSocket, EventRecorder) {
    let rec = EventRecorder::start();
    let ws = rec.attach(b).connect().await.unwrap();
    (ws, rec)
}

/// Connects the client `b` describes to a scripted server; the server's
/// side of the socket. The server must accept while the client connects.
pub async fn raw_pair(
    server: &RawServer,
    b: ResilientWebSocketBuilder,
) -> (ResilientWebSocket, RawConn) {
    let ws = b.build().unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    (ws, conn.unwrap())
}

/// Polls `f` every 10 ms until it holds or `limit` passed; whether it
/// holds. Tests wait for a condition rather than sleep for a guessed time.
pub async fn wait_until(mut f: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Asserts that `err` refuses a message of `size` bytes over a limit of
/// `max`: tests of limits check both numbers, not only the kind of error.
pub fn assert_too_large(err: &Error, size: usize, max: usize) {
    assert!(
        matches!(err, Error::MessageTooLarge { size: s, max: m } if *s == size && *m == max),
        "not MessageTooLarge {{ size: {size}, max: {max} }}: {err:?}"
    );
}
