//! Client edge cases (issue 11, items 1, 2, 6, 8, 9): oversized messages and
//! replays a peer refuses, the ack before a close, the resume claims of a
//! HELLO, no orphan actors after the last handle is dropped, and timers that
//! belong to their moment.

use std::time::{Duration, Instant};

use resilient_ws::{
    server::ServerOptions,
    testing::{FaultProxy, TestServer},
    ConnectionState, ReconnectMode, ResilientWebSocket, ResilientWebSocketBuilder,
};

const WAIT: Duration = Duration::from_secs(30);

fn stateful(url: String) -> ResilientWebSocketBuilder {
    ResilientWebSocket::builder(url)
        .reconnect_mode(ReconnectMode::Stateful)
        .reconnect_delays(Duration::from_millis(5), Duration::from_millis(50), 0)
        .min_uptime(Duration::ZERO)
        .heartbeat(Duration::ZERO, None)
}

/// Polls `f` every 5 ms until it holds or `limit` passed.
async fn wait_until(mut f: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

/// Item 9: the close timer of one `disconnect()` (armed while the last acks
/// were awaited) must not release a later `disconnect()` early: the second
/// one waits its own `close_timeout` for its acks.
#[actix_rt::test]
async fn an_old_disconnect_timer_does_not_cut_a_later_close_short() {
    let opts = ServerOptions {
        ack_threshold: 1,
        ..ServerOptions::default()
    };
    let (server, _reliable) = TestServer::reliable_echo(opts).unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let close_timeout = Duration::from_secs(2);
    let ws = stateful(proxy.ws_url())
        .close_timeout(close_timeout)
        .connect()
        .await
        .unwrap();

    // The first disconnect finds its message unacknowledged (so it arms the
    // close timer) and is released early by the ack.
    let t1 = Instant::now();
    ws.send("one").await.unwrap();
    ws.disconnect().await.unwrap();
    assert!(t1.elapsed() < close_timeout, "released by the ack");

    ws.connect().await.unwrap();
    // The second disconnect's message is never acknowledged.
    proxy.blackhole(true);
    ws.send("two").await.unwrap();
    actix_rt::time::sleep_until((t1 + close_timeout / 2).into()).await;
    let t2 = Instant::now();
    let closing = {
        let ws = ws.clone();
        actix_rt::spawn(async move { ws.disconnect().await })
    };
    assert!(
        wait_until(|| ws.state() == ConnectionState::Disconnecting, WAIT).await,
        "the close starts eventually"
    );
    let waited = t2.elapsed();
    assert!(
        waited >= close_timeout * 9 / 10,
        "the second disconnect waited only {waited:?} for its acks (its own close_timeout is \
         {close_timeout:?}): an earlier disconnect's timer released it"
    );
    proxy.blackhole(false);
    closing.await.unwrap().unwrap();
}
