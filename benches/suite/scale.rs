//! Server scale: many stateful sessions streaming at once against a server
//! child process with 1 worker, then with 2 workers (same run); the key
//! `server_scale_2w_ratio` is the second's echoed messages per second over
//! the first's.
//!
//! The load must cost far less per message than the server, or on a
//! 2-core machine it takes the second core the second worker needs (the
//! first attempt at this section drove our full client from two child
//! processes, and its ratio was noise). So the load generator (role
//! `scale`) speaks the protocol by hand on one thread: negotiate and HELLO
//! as a client does, then per session [`IN_FLIGHT`] DATA frames at a time,
//! written with a zero mask key (allowed: the key must be present, not
//! random, for a server) straight from a template, read back with no more
//! parsing than the frame headers, the frame type and the seq, and a
//! cumulative ACK per read. It counts the server's echoes: each is a
//! message the server's session received, delivered and sent back.
//!
//! Correctness is checked, not assumed: a close frame or an echo out of
//! order fails the run, and the server's stats afterwards must show every
//! session still attached and at least as many messages received as were
//! echoed.

use std::{
    cell::Cell,
    io::Write as _,
    rc::Rc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    child::ChildProc,
    plan::{Plan, Report},
};

/// Messages each session keeps in flight (sent, echo not yet read):
/// enough that each read and write carries many (both sides' cost per
/// message is then the protocol's, not the system calls'), few enough
/// that 1 000 sessions stay far from the send windows (64 x 64 B).
const IN_FLIGHT: u64 = 64;

/// Payload size of each message (text).
const SIZE: usize = 64;

/// `POST /ws/negotiate` on a connection of its own (closed after): the
/// session's connection id and reconnect token.
async fn negotiate(addr: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let body = "{}";
    let req = format!(
        "POST /ws/negotiate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await.unwrap();
    let split = find(&resp, b"\r\n\r\n").expect("a response head") + 4;
    assert!(resp.starts_with(b"HTTP/1.1 200"), "negotiate refused");
    let neg = resilient_ws::protocol::NegotiateResponse::parse(&resp[split..])
        .expect("a negotiate response");
    (neg.connection_id, neg.reconnect_token)
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends one masked (zero key) client frame: FIN, `opcode`, `payload`.
fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(buf: &[u8]) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    for &b in buf {
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// Appends DATA `seq` (text, [`SIZE`] bytes) as one binary frame, its
/// header written in place (no buffer per message).
fn put_data(out: &mut Vec<u8>, seq: u64, text: &[u8]) {
    let mut varint = [0u8; 10];
    let mut n = 0;
    let mut v = seq;
    while v >= 0x80 {
        varint[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    varint[n] = v as u8;
    n += 1;
    let len = 1 + n + text.len();
    debug_assert!(len < 126);
    out.extend_from_slice(&[0x82, 0x80 | len as u8, 0, 0, 0, 0, 0x03]);
    out.extend_from_slice(&varint[..n]);
    out.extend_from_slice(text);
}

/// Upgrades a new connection and attaches it to the session with HELLO;
/// answers the socket once the WELCOME came, with what it read past it.
async fn attach(addr: &str, id: &str, token: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {}\r\n\r\n",
        resilient_ws::protocol::SUBPROTOCOL
    );
    let mut out = req.into_bytes();
    let hello = resilient_ws::protocol::Frame::hello(id, token, 0, 1)
        .unwrap()
        .to_bytes();
    put_frame(&mut out, 0x2, &hello);
    tcp.write_all(&out).await.unwrap();
    let mut buf = Vec::with_capacity(4096);
    loop {
        if tcp.read_buf(&mut buf).await.unwrap() == 0 {
            panic!("the server closed during the upgrade");
        }
        let Some(head) = find(&buf, b"\r\n\r\n") else {
            continue;
        };
        assert!(buf.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        // The WELCOME: a short binary frame right after the head.
        let rest = &buf[head + 4..];
        if rest.len() >= 2 && rest.len() >= 2 + usize::from(rest[1] & 0x7f) {
            let len = 2 + usize::from(rest[1] & 0x7f);
            assert_eq!(rest[2], 0x02, "a WELCOME first");
            let left = rest[len..].to_vec();
            return (tcp, left);
        }
    }
}

/// What one session's stream ended with, if not with the run.
type Failure = String;

/// Streams on one attached socket until the process exits: keeps
/// [`IN_FLIGHT`] messages outstanding; `echoed` holds how many echoes
/// came so far.
async fn stream(
    mut tcp: TcpStream,
    mut buf: Vec<u8>,
    echoed: Rc<Cell<u64>>,
) -> Result<(), Failure> {
    let text = vec![b'x'; SIZE];
    let (mut sent, mut got) = (0u64, 0u64);
    let mut acked_to_server = 0u64;
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        // Refill the window once half of it is free (large writes), and
        // ack what came with it, in one write.
        if sent <= got + IN_FLIGHT / 2 {
            while sent < got + IN_FLIGHT {
                sent += 1;
                put_data(&mut out, sent, &text);
            }
        }
        if got > acked_to_server && !out.is_empty() {
            let mut ack = vec![0x05];
            put_varint(&mut ack, got);
            put_frame(&mut out, 0x2, &ack);
            acked_to_server = got;
        }
        if !out.is_empty() {
            tcp.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        // Read, then take every whole frame.
        if tcp.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the server ended the connection".into());
        }
        let mut at = 0;
        while buf.len() - at >= 2 {
            let (b0, b1) = (buf[at], buf[at + 1]);
            let (len, head) = match b1 & 0x7f {
                126 if buf.len() - at >= 4 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                127 if buf.len() - at >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&buf[at + 2..at + 10]);
                    (u64::from_be_bytes(l) as usize, 10)
                }
                126 | 127 => break,
                l => (usize::from(l), 2),
            };
            if buf.len() - at < head + len {
                break;
            }
            let payload = &buf[at + head..at + head + len];
            match b0 & 0x0f {
                // DATA (an echo). ACKs (what the server got) and anything
                // else need no further look.
                0x2 if matches!(payload.first(), Some(0x03 | 0x04)) => {
                    let seq = read_varint(&payload[1..]);
                    if seq != got + 1 {
                        return Err(format!("echo {seq} after {got}"));
                    }
                    got = seq;
                }
                0x9 => {
                    let p = payload.to_vec();
                    put_frame(&mut out, 0xA, &p);
                }
                0x8 => return Err(format!("closed by the server: {payload:?}")),
                _ => {}
            }
            at += head + len;
        }
        buf.drain(..at);
        echoed.set(got);
    }
}

/// Child role `scale N ADDR SECS`: opens N sessions on the server at
/// ADDR (host:port), prints `ready`, waits for `go`, streams from all of
/// them at once, lets one second pass for warm-up, then prints
/// `ECHOES SECONDS FAILURES` counted over SECS seconds and keeps streaming
/// until stdin closes.
pub(super) fn role_scale(args: &str) {
    let mut it = args.split(' ');
    let n: usize = it.next().unwrap().parse().unwrap();
    let addr = it.next().unwrap().to_string();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    actix_rt::System::new().block_on(async move {
        let mut sockets = Vec::with_capacity(n);
        // Connect in groups: fast, without a thundering herd of handshakes.
        for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
            let opened = futures_util::future::join_all(chunk.iter().map(|_| async {
                let (id, token) = negotiate(&addr).await;
                attach(&addr, &id, &token).await
            }))
            .await;
            sockets.extend(opened);
        }
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        // Stdin on its own thread: this one runs the sessions.
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
            let _ = go_tx.send(());
            l.clear();
            let _ = std::io::stdin().read_line(&mut l);
            std::process::exit(0);
        });
        println!("ready");
        let _ = go_rx.await;
        let failures = Rc::new(Cell::new(0u64));
        let echoes: Vec<Rc<Cell<u64>>> = sockets
            .into_iter()
            .map(|(tcp, left)| {
                let count = Rc::new(Cell::new(0u64));
                let (c, f) = (count.clone(), failures.clone());
                actix_rt::spawn(async move {
                    if let Err(e) = stream(tcp, left, c).await {
                        eprintln!("scale: a session failed: {e}");
                        f.set(f.get() + 1);
                    }
                });
                count
            })
            .collect();
        let total = || echoes.iter().map(|c| c.get()).sum::<u64>();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (c0, t0) = (total(), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (c1, t1) = (total(), Instant::now());
        println!("{} {} {}", c1 - c0, (t1 - t0).as_secs_f64(), failures.get());
        let _ = std::io::stdout().flush();
        futures_util::future::pending::<()>().await;
    });
}

/// CPU seconds (user + system, all threads) process `pid` used so far.
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(std::path::Path::new(&format!("/proc/{pid}/stat"))).unwrap_or(0.0)
}

/// CPU seconds each thread of process `pid` used so far.
fn thread_cpu_secs(pid: u32) -> std::collections::HashMap<String, f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let secs = stat_cpu_secs(&t.path().join("stat"))?;
            Some((t.file_name().to_string_lossy().into_owned(), secs))
        })
        .collect()
}

/// User + system CPU seconds from a `/proc` `stat` file (a process's or
/// a thread's).
fn stat_cpu_secs(path: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command name, which may hold spaces: utime and
    // stime are the 14th and 15th fields, in clock ticks (100 per second).
    let after = stat.rsplit_once(") ")?.1;
    let ticks: f64 = after
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    Some(ticks / 100.0)
}

/// The busiest thread's share of the CPU time the threads of a process
/// used between two readings: 1.0 when one thread did all the work, 0.5
/// when two shared it evenly. It does not depend on how many cores the
/// machine had free, unlike the rates.
fn busiest_share(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
) -> f64 {
    let used: Vec<f64> = after
        .iter()
        .map(|(t, s)| s - before.get(t).copied().unwrap_or(0.0))
        .collect();
    let total: f64 = used.iter().sum();
    used.iter().copied().fold(0.0, f64::max) / total.max(f64::MIN_POSITIVE)
}

/// What one run measured.
struct Run {
    /// Echoed messages per second, all sessions.
    rate: f64,
    /// Share of sockets that attached on their session's worker.
    same_worker: f64,
    /// CPU cores the server and the load generator used while streaming.
    server_cores: f64,
    load_cores: f64,
    /// The busiest server thread's share of the server's CPU time.
    busiest: f64,
}

/// Echoed messages per second of `sessions` streaming sessions against a
/// server child with `workers` workers, and what limited it.
fn scale_run(sessions: usize, workers: usize, secs: f64) -> Run {
    // Uncounted: with the storm counter every message would also hop to
    // the server's main thread, and one worker would not be one thread.
    let mut server = ChildProc::spawn(
        "server",
        &["0".into(), workers.to_string(), "uncounted".into()],
    );
    let url = server.line();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_string();
    let mut load = ChildProc::spawn("scale", &[sessions.to_string(), addr, secs.to_string()]);
    assert_eq!(load.line(), "ready");
    load.say("go");
    // CPU over the whole streaming time (warm-up included): what each side
    // could get of the machine's cores.
    let (s0, l0, t0) = (
        cpu_secs(server.child.id()),
        cpu_secs(load.child.id()),
        Instant::now(),
    );
    let threads0 = thread_cpu_secs(server.child.id());
    let line = load.line();
    let busiest = busiest_share(&threads0, &thread_cpu_secs(server.child.id()));
    let wall = t0.elapsed().as_secs_f64();
    let server_cores = (cpu_secs(server.child.id()) - s0) / wall;
    let load_cores = (cpu_secs(load.child.id()) - l0) / wall;
    let f: Vec<f64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
    let (count, took, failures) = (f[0], f[1], f[2]);
    assert_eq!(failures, 0.0, "scale: sessions failed (see above)");
    server.say("stats");
    let stats: Vec<f64> = server
        .line()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let (live, attached, received) = (stats[0], stats[1], stats[2]);
    assert_eq!(
        (live, attached),
        (sessions as f64, sessions as f64),
        "scale: the server ended or detached sessions"
    );
    assert!(
        received >= count,
        "scale: more echoes than the server received"
    );
    server.say("affinity");
    let f: Vec<f64> = server
        .line()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let (here, elsewhere) = (f[0], f[1]);
    load.finish();
    server.finish();
    Run {
        rate: count / took,
        same_worker: here / (here + elsewhere).max(1.0),
        server_cores,
        load_cores,
        busiest,
    }
}

pub(super) fn bench_scale(plan: &Plan, report: &mut Report) {
    let (sessions, secs) = if plan.quick { (100, 2.0) } else { (1_000, 5.0) };
    let r1 = scale_run(sessions, 1, secs);
    eprintln!("scale: 1 worker done");
    let r2 = scale_run(sessions, 2, secs);
    eprintln!("scale: 2 workers done");
    let (one, two) = (r1.rate, r2.rate);
    for (w, r) in [(1, &r1), (2, &r2)] {
        report.key(&format!("server_scale_{w}w_server_cores"), r.server_cores);
        report.key(&format!("server_scale_{w}w_load_cores"), r.load_cores);
        report.key(
            &format!("server_scale_{w}w_busiest_thread_share"),
            r.busiest,
        );
        report.row(
            &format!("scale {w} worker(s): CPU cores server / load, busiest server thread"),
            format!(
                "{:.2} / {:.2}, {:.0} %",
                r.server_cores,
                r.load_cores,
                r.busiest * 100.0
            ),
            String::new(),
            String::new(),
        );
    }
    let ratio = two / one;
    report.key("server_scale_sessions", sessions as f64);
    report.key("server_scale_1w_msgs_per_s", one.round());
    report.key("server_scale_2w_msgs_per_s", two.round());
    report.key("server_scale_2w_ratio", ratio);
    // How often a socket landed on its session's worker (no hop between
    // threads for it): the load generator, like our client, upgrades on a
    // new connection.
    report.key("server_scale_2w_same_worker_share", r2.same_worker);
    report.row(
        &format!("scale {sessions} stateful, 1 worker (msgs/s)"),
        format!("{one:.0}"),
        String::new(),
        String::new(),
    );
    report.row(
        &format!("scale {sessions} stateful, 2 workers (msgs/s)"),
        format!("{two:.0}"),
        format!("{one:.0}"),
        format!("{ratio:.3}"),
    );
    report.row(
        "scale 2 workers: sockets on their session's worker",
        format!("{:.0} %", r2.same_worker * 100.0),
        String::new(),
        String::new(),
    );
}
