//! The fault proxy in front of several upstreams: each new TCP connection
//! goes to the next one in turn (no affinity), the test can see which
//! upstream each open connection goes to and what an upstream sent.
//!
//! The upstreams are plain TCP servers that greet each connection with
//! their name and then echo, so every assertion is about bytes that really
//! went through the proxy.

use std::{net::SocketAddr, time::Duration};

use resilient_ws::testing::FaultProxy;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const WAIT: Duration = Duration::from_secs(10);

/// A TCP server on 127.0.0.1:0 that writes `name` to each new connection,
/// then echoes what it reads.
async fn named_upstream(name: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(name).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Connects through the proxy and reads the upstream's one-byte name.
async fn connect_and_greet(proxy: &FaultProxy) -> (TcpStream, u8) {
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut name = [0u8; 1];
    tokio::time::timeout(WAIT, c.read_exact(&mut name))
        .await
        .expect("the upstream's greeting in time")
        .unwrap();
    (c, name[0])
}

/// An address nothing listens on (bound, then released).
async fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[actix_rt::test]
async fn new_connections_go_to_each_upstream_in_turn_and_the_test_sees_where() {
    let (a, b, c) = (
        named_upstream(b"A").await,
        named_upstream(b"B").await,
        named_upstream(b"C").await,
    );
    let proxy = FaultProxy::start_round_robin(vec![a, b, c]).await.unwrap();
    assert_eq!(proxy.upstreams(), vec![a, b, c]);
    assert_eq!(proxy.upstream(), a, "the first of the rotation");

    let mut conns = Vec::new();
    let mut names = Vec::new();
    for _ in 0..7 {
        let (conn, name) = connect_and_greet(&proxy).await;
        conns.push(conn);
        names.push(name);
    }
    // Per connection, not per client: the same client's next connection
    // goes elsewhere.
    assert_eq!(names, b"ABCABCA");

    let open = proxy.connections();
    assert_eq!(open.len(), 7);
    let upstreams: Vec<SocketAddr> = open.iter().map(|c| c.upstream).collect();
    assert_eq!(upstreams, vec![a, b, c, a, b, c, a], "oldest first");
    assert!(open.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(proxy.connections_to(a), 3);
    assert_eq!(proxy.connections_to(b), 2);
    assert_eq!(proxy.connections_to(c), 2);

    // Each connection still forwards both ways to its own upstream, and
    // counts the bytes each way.
    conns[1].write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(WAIT, conns[1].read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"hello");
    let second = proxy.connections()[1];
    assert_eq!(second.upstream, b);
    assert_eq!(second.to_upstream, 5);
    assert_eq!(second.from_upstream, 1 + 5, "the greeting and the echo");
    assert_eq!(proxy.bytes_from(a), 3, "three greetings");
    assert_eq!(proxy.bytes_from(b), 2 + 5);

    // Closing connections to B leaves the others.
    drop(conns.remove(4));
    drop(conns.remove(1));
    assert!(proxy.wait_open(5, WAIT).await);
    assert_eq!(proxy.connections_to(b), 0);
    assert_eq!(proxy.connections_to(a), 3);
    // The totals keep what closed connections carried.
    assert_eq!(proxy.bytes_from(b), 2 + 5);
}

#[actix_rt::test]
async fn a_connection_to_a_dead_upstream_is_closed_and_the_next_goes_to_the_live_one() {
    let live = named_upstream(b"L").await;
    let dead = dead_address().await;
    let proxy = FaultProxy::start_round_robin(vec![dead, live])
        .await
        .unwrap();

    // The first goes to the dead one: the proxy closes it (EOF), as a
    // load balancer in front of a crashed node would.
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, first.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "no upstream, no bytes");
    // A retry gets the next in turn.
    let (_conn, name) = connect_and_greet(&proxy).await;
    assert_eq!(name, b'L');
    assert!(proxy.wait_open(1, WAIT).await);
    assert_eq!(proxy.connections_to(live), 1);
    assert_eq!(proxy.connections_total(), 2);
}

#[actix_rt::test]
async fn set_upstreams_changes_the_rotation_for_new_connections_only() {
    let (a, b, c) = (
        named_upstream(b"A").await,
        named_upstream(b"B").await,
        named_upstream(b"C").await,
    );
    let proxy = FaultProxy::start_round_robin(vec![a, b]).await.unwrap();
    let (mut kept, name) = connect_and_greet(&proxy).await;
    assert_eq!(name, b'A');

    // B taken out and C put in (a health check, a new node).
    proxy.set_upstreams(vec![c, a]).unwrap();
    assert_eq!(proxy.upstreams(), vec![c, a]);
    let mut names = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let (conn, name) = connect_and_greet(&proxy).await;
        conns.push(conn);
        names.push(name);
    }
    assert!(!names.contains(&b'B'), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == b'C').count(), 2);
    assert_eq!(names.iter().filter(|n| **n == b'A').count(), 2);

    // The connection opened before still goes to A.
    kept.write_all(b"x").await.unwrap();
    let mut echo = [0u8; 1];
    tokio::time::timeout(WAIT, kept.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"x");
    assert_eq!(proxy.connections()[0].upstream, a);

    // set_upstream (one) still works on a round-robin proxy.
    proxy.set_upstream(b);
    assert_eq!(proxy.upstreams(), vec![b]);
    let (_conn, name) = connect_and_greet(&proxy).await;
    assert_eq!(name, b'B');
}

#[actix_rt::test]
async fn an_empty_rotation_is_refused_with_an_error() {
    let err = FaultProxy::start_round_robin(Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("at least one upstream"), "{err}");

    let a = named_upstream(b"A").await;
    let proxy = FaultProxy::start_round_robin(vec![a]).await.unwrap();
    let err = proxy.set_upstreams(Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // Nothing changed.
    assert_eq!(proxy.upstreams(), vec![a]);
    let (_conn, name) = connect_and_greet(&proxy).await;
    assert_eq!(name, b'A');
}

#[actix_rt::test]
async fn capture_keeps_what_one_upstream_sent_while_on() {
    let (a, b) = (named_upstream(b"A").await, named_upstream(b"B").await);
    let proxy = FaultProxy::start_round_robin(vec![a, b]).await.unwrap();
    let (mut to_a, _) = connect_and_greet(&proxy).await;
    let (mut to_b, _) = connect_and_greet(&proxy).await;

    async fn round_trip(c: &mut TcpStream, bytes: &[u8]) {
        c.write_all(bytes).await.unwrap();
        let mut echo = vec![0u8; bytes.len()];
        tokio::time::timeout(WAIT, c.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, bytes);
    }
    // Before the capture: counted, not kept.
    round_trip(&mut to_a, b"before").await;
    assert!(proxy.captured_from(a).is_empty());

    proxy.capture_from(a, true);
    round_trip(&mut to_a, b"during").await;
    round_trip(&mut to_b, b"not A").await;
    // A new connection to A is captured too, as a buffer of its own
    // (greeting included).
    let (_third, _) = connect_and_greet(&proxy).await;
    proxy.capture_from(a, false);
    round_trip(&mut to_a, b"after").await;

    let got = proxy.captured_from(a);
    assert_eq!(got, vec![&b"during"[..], &b"A"[..]]);
    assert!(proxy.captured_from(b).is_empty());
    assert_eq!(
        proxy.bytes_from(a),
        (1 + 6 + 6 + 1 + 5) as u64,
        "the counts go on regardless"
    );
}
