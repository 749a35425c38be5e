//! The scripts against a real Redis (a private `redis-server` from PATH on
//! a free port, as tests/common/redis.rs starts one): each wrapper, and
//! fencing at the store level.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    redis::{AppendOutcome, CommitArgs, CommitOutcome, ExpireOutcome, TakeArgs, TakeOutcome},
    RedisSessionStore,
};
use crate::Payload;

/// A private redis-server, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("these tests need redis-server on PATH");
    let server = Server {
        child,
        url: format!("redis://127.0.0.1:{port}/"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    server
}

fn text(s: &str) -> Payload {
    Payload::Text(s.into())
}

async fn store(url: &str, node: &str) -> RedisSessionStore {
    RedisSessionStore::connect(url, node)
        .await
        .expect("connect")
        .with_prefix("t")
}

fn take_args<'a>(sid: &'a str, token: &'a str, identity: &'a str) -> TakeArgs<'a> {
    TakeArgs {
        sid,
        token,
        identity,
        last_received: 0,
        first_seq: 1,
        hold: Duration::from_secs(10),
        ttl: Duration::from_secs(20),
    }
}

fn commit_args(epoch: u64, known_next: u64, in_delivered: u64, acked: u64) -> CommitArgs {
    CommitArgs {
        epoch,
        known_next,
        in_delivered,
        acked,
        freed: 0,
        refresh: true,
        hold: Duration::from_secs(10),
        ttl: Duration::from_secs(20),
        detach: false,
        window: Duration::from_secs(5),
        cut: 0,
        tries: 0,
    }
}

fn taken(outcome: TakeOutcome) -> super::Taken {
    match outcome {
        TakeOutcome::Taken(t) => t,
        other => panic!("not taken: {other:?}"),
    }
}

/// The meta hash's field, read directly.
fn field(url: &str, sid: &str, name: &str) -> Option<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("HGET")
        .arg(format!("t:{{{sid}}}:meta"))
        .arg(name)
        .query(&mut c)
        .unwrap()
}

fn stream_len(url: &str, sid: &str) -> u64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("XLEN")
        .arg(format!("t:{{{sid}}}:out"))
        .query(&mut c)
        .unwrap()
}

/// Every byte the session's stream holds (IDs, fields and payloads).
fn stream_bytes(url: &str, sid: &str) -> Vec<u8> {
    fn flatten(v: redis::Value, out: &mut Vec<u8>) {
        match v {
            redis::Value::Array(a) => a.into_iter().for_each(|v| flatten(v, out)),
            redis::Value::BulkString(b) => out.extend(b),
            _ => {}
        }
    }
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let v = redis::cmd("XRANGE")
        .arg(format!("t:{{{sid}}}:out"))
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn keys(url: &str) -> Vec<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("KEYS").arg("t:*").query(&mut c).unwrap()
}

/// A batch is one stream entry (one `XADD`, its payloads one blob), read
/// back message by message, and trimmed once every message in it is
/// acked.
#[actix_rt::test]
async fn a_batch_is_one_entry_read_back_per_message() {
    let redis = redis_server();
    let s = store(&redis.url, "n").await;
    let w = Duration::from_secs(5);
    s.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(s.take(take_args("s", "tok", "")).await.unwrap());
    let batch: Vec<Payload> = (0..2500).map(|i| text(&format!("b{i}"))).collect();
    let r = s
        .commit("s", &commit_args(1, 1, 0, 0), batch[..1000].iter())
        .await
        .unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 1,
            recorded: 1000,
            next: 1001,
            deadline: 0,
            others: vec![],
            starts: vec![]
        }
    );
    let r = s
        .commit("s", &commit_args(1, 1001, 0, 0), batch[1000..].iter())
        .await
        .unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 1001,
            recorded: 1500,
            next: 2501,
            deadline: 0,
            others: vec![],
            starts: vec![]
        }
    );
    assert_eq!(
        stream_len(&redis.url, "s"),
        3,
        "2500 messages in 2 entries (and the empty one take made)"
    );
    let mut claim = take_args("s", "tok", "");
    claim.last_received = 1500;
    let t = taken(s.take(claim).await.unwrap());
    let want: Vec<(u64, Payload)> = (1501..=2500u64)
        .map(|seq| (seq, text(&format!("b{}", seq - 1))))
        .collect();
    assert_eq!(t.entries, want, "from the middle of an entry on");
    assert_eq!(
        stream_len(&redis.url, "s"),
        1,
        "the fully acked entries went"
    );
}

/// The batch blob keeps every payload as it was: binary with length-like
/// bytes, empty, text with multi-byte characters, in one entry with an
/// `append` from another node; the owner's next commit reads the append
/// back, and a take counts the unacked bytes (what `append` bounds by).
#[actix_rt::test]
async fn payloads_of_every_kind_survive_the_batch_blob() {
    let redis = redis_server();
    let (a, b) = (store(&redis.url, "a").await, store(&redis.url, "b").await);
    let w = Duration::from_secs(5);
    a.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(a.take(take_args("s", "tok", "")).await.unwrap());
    let batch = [
        Payload::Binary(Bytes::from_static(&[0, 0, 0, 9, 255, 0])),
        Payload::Binary(Bytes::new()),
        text(""),
        text("żółw ✓"),
    ];
    let r = a
        .commit("s", &commit_args(1, 1, 0, 0), batch.iter())
        .await
        .unwrap();
    assert!(matches!(r, CommitOutcome::Ok { first: 1, .. }), "{r:?}");
    let other = Payload::Binary(Bytes::from_static(b"from b"));
    assert_eq!(
        b.append("s", &other, 1 << 20).await.unwrap(),
        AppendOutcome::Appended(5)
    );
    let r = a
        .commit("s", &commit_args(1, 5, 0, 0), [text("last")].iter())
        .await
        .unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 6,
            recorded: 0,
            next: 6,
            deadline: 0,
            others: vec![(5, other.clone())],
            starts: vec![5]
        },
        "the append read back by the owner, the batch not recorded at a taken seq"
    );
    let r = a
        .commit("s", &commit_args(1, 6, 0, 0), [text("last")].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 6,
                recorded: 1,
                next: 7,
                ..
            }
        ),
        "{r:?}"
    );
    let mut claim = take_args("s", "tok", "");
    claim.last_received = 1;
    let t = taken(b.take(claim).await.unwrap());
    let mut want: Vec<(u64, Payload)> = (2..).zip(batch[1..].iter().cloned()).collect();
    want.push((5, other));
    want.push((6, text("last")));
    assert_eq!(t.entries, want);
    let unacked = t.entries.iter().map(|(_, p)| p.len()).sum::<usize>();
    assert_eq!(
        b.append("s", &text("x"), unacked).await.unwrap(),
        AppendOutcome::Full,
        "the take counted {unacked} unacked bytes"
    );
    assert_eq!(
        b.append("s", &text("x"), unacked + 1).await.unwrap(),
        AppendOutcome::Appended(7)
    );
}

/// A commit trims at the owner's cut (the start of the entry holding
/// the first unacked message) without reading an entry, and ignores a cut
/// past the acked messages (it reads the boundary itself instead), so no
/// unacked message is ever trimmed.
#[actix_rt::test]
async fn a_commit_trims_at_the_owners_cut_and_never_past_the_acks() {
    let redis = redis_server();
    let s = store(&redis.url, "n").await;
    let w = Duration::from_secs(5);
    s.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(s.take(take_args("s", "tok", "")).await.unwrap());
    let abc = [text("a"), text("b"), text("c")];
    let def = [text("d"), text("e"), text("f")];
    s.commit("s", &commit_args(1, 1, 0, 0), abc.iter())
        .await
        .unwrap();
    s.commit("s", &commit_args(1, 4, 0, 0), def.iter())
        .await
        .unwrap();
    assert_eq!(
        stream_len(&redis.url, "s"),
        3,
        "two batches and the empty entry"
    );
    // A cut past acked + 1 (a wrong one) is not followed: the entry
    // holding 2..3 stays.
    let mut wrong = commit_args(1, 7, 0, 1);
    wrong.cut = 4;
    s.commit("s", &wrong, [].iter()).await.unwrap();
    assert_eq!(stream_len(&redis.url, "s"), 2, "only the empty entry went");
    let mut right = commit_args(1, 7, 0, 4);
    right.cut = 4;
    s.commit("s", &right, [].iter()).await.unwrap();
    assert_eq!(stream_len(&redis.url, "s"), 1, "the acked batch went");
    let mut claim = take_args("s", "tok", "");
    claim.last_received = 4;
    let t = taken(s.take(claim).await.unwrap());
    assert_eq!(t.entries, vec![(5, text("e")), (6, text("f"))]);
    assert_eq!(t.starts, vec![4], "the entry holding them");
}

/// `commit` sends its own EVALSHA (after the batch's `XADD`, in one
/// `MULTI`): a Redis that forgot the script (restarted, `SCRIPT FLUSH`)
/// gets it loaded and the batch recorded, as every other script does; the
/// first attempt's `XADD` (it went in, its script did not run) is an
/// orphan the resend deletes, so the batch is in the stream once.
#[actix_rt::test]
async fn a_commit_loads_its_script_again_after_redis_forgot_it() {
    let redis = redis_server();
    let s = store(&redis.url, "n").await;
    let w = Duration::from_secs(5);
    s.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(s.take(take_args("s", "tok", "")).await.unwrap());
    let mut c = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let r = s
        .commit("s", &commit_args(1, 1, 0, 0), [text("a")].iter())
        .await
        .unwrap();
    assert!(matches!(r, CommitOutcome::Ok { first: 1, .. }), "{r:?}");
    assert_eq!(
        stream_len(&redis.url, "s"),
        2,
        "the batch is recorded once (and the empty entry take made)"
    );
}

/// Fencing: once node B took the session, node A's commit (its epoch is
/// stale) is refused and writes nothing: no entry, no delivered count.
#[actix_rt::test]
async fn a_stale_epochs_commit_is_refused_and_writes_nothing() {
    let redis = redis_server();
    let (a, b) = (store(&redis.url, "a").await, store(&redis.url, "b").await);
    let w = Duration::from_secs(5);
    a.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    let on_a = taken(a.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!((on_a.epoch, on_a.had_socket, on_a.next_seq), (1, false, 1));
    let first = a
        .commit("s", &commit_args(1, 1, 3, 0), [text("x"), text("y")].iter())
        .await
        .unwrap();
    assert_eq!(
        first,
        CommitOutcome::Ok {
            first: 1,
            recorded: 2,
            next: 3,
            deadline: 0,
            others: vec![],
            starts: vec![]
        }
    );

    let on_b = taken(b.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!(on_b.epoch, 2);
    assert!(on_b.had_socket);
    assert_eq!(on_b.in_delivered, 3, "what A recorded");
    assert_eq!(on_b.entries, vec![(1, text("x")), (2, text("y"))]);

    let entries = stream_len(&redis.url, "s");
    let stale = a
        .commit("s", &commit_args(1, 3, 9, 2), [text("z")].iter())
        .await
        .unwrap();
    assert_eq!(stale, CommitOutcome::Stale);
    assert_eq!(stream_len(&redis.url, "s"), entries, "no entry appended");
    assert_eq!(field(&redis.url, "s", "next_seq").as_deref(), Some("3"));
    assert_eq!(field(&redis.url, "s", "in_delivered").as_deref(), Some("3"));
    assert_eq!(
        field(&redis.url, "s", "acked").as_deref(),
        Some("0"),
        "no trim"
    );
    assert_eq!(field(&redis.url, "s", "owner").as_deref(), Some("b"));

    // The new owner's commit goes on from there.
    let next = b
        .commit("s", &commit_args(2, 3, 4, 0), [text("z")].iter())
        .await
        .unwrap();
    assert_eq!(
        next,
        CommitOutcome::Ok {
            first: 3,
            recorded: 1,
            next: 4,
            deadline: 0,
            others: vec![],
            starts: vec![]
        }
    );
}

/// Fencing holds with the batch written by the node's own `XADD` (in
/// the `MULTI` before the script): a stale owner's batch that went in is
/// deleted by the script in the same transaction, one that sorts below
/// the new owner's entry never goes in, and the new owner's batch at the
/// seq a stale one used goes in (the epoch in the entry ID sorts it
/// above). No stale payload is ever in the stream.
#[actix_rt::test]
async fn a_stale_epochs_batch_never_stays_in_the_stream() {
    let redis = redis_server();
    let (a, b) = (store(&redis.url, "a").await, store(&redis.url, "b").await);
    let w = Duration::from_secs(5);
    a.create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(a.take(take_args("s", "tok", "")).await.unwrap());
    let r = a
        .commit("s", &commit_args(1, 1, 0, 0), [text("x")].iter())
        .await
        .unwrap();
    assert!(matches!(r, CommitOutcome::Ok { recorded: 1, .. }), "{r:?}");
    let on_b = taken(b.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!((on_b.epoch, on_b.next_seq), (2, 2));
    let before = stream_len(&redis.url, "s");

    // A's XADD at seq 2 sorts above every entry: it goes in, and the
    // script deletes it.
    let stale = a
        .commit("s", &commit_args(1, 2, 7, 0), [text("stale-1")].iter())
        .await
        .unwrap();
    assert_eq!(stale, CommitOutcome::Stale);
    assert_eq!(stream_len(&redis.url, "s"), before);
    assert!(!contains(&stream_bytes(&redis.url, "s"), b"stale"));
    assert_eq!(field(&redis.url, "s", "next_seq").as_deref(), Some("2"));
    assert_eq!(field(&redis.url, "s", "in_delivered").as_deref(), Some("0"));

    // The new owner's batch at that seq goes in all the same.
    let r = b
        .commit("s", &commit_args(2, 2, 0, 0), [text("new")].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 2,
                recorded: 1,
                next: 3,
                ..
            }
        ),
        "{r:?}"
    );

    // A again at seq 2 (its XADD fails: B's entry sorts above) and at
    // seq 3 (goes in, deleted).
    let mut again = commit_args(1, 2, 0, 0);
    again.tries = 1;
    let stale = a
        .commit("s", &again, [text("stale-2")].iter())
        .await
        .unwrap();
    assert_eq!(stale, CommitOutcome::Stale);
    let stale = a
        .commit("s", &commit_args(1, 3, 0, 0), [text("stale-3")].iter())
        .await
        .unwrap();
    assert_eq!(stale, CommitOutcome::Stale);
    assert!(!contains(&stream_bytes(&redis.url, "s"), b"stale"));
    assert_eq!(field(&redis.url, "s", "next_seq").as_deref(), Some("3"));

    let t = taken(a.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!(t.entries, vec![(1, text("x")), (2, text("new"))]);
    // A, the owner again (epoch 3), records at 3, above its deleted entry.
    let r = a
        .commit("s", &commit_args(3, 3, 0, 0), [text("y")].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 3,
                recorded: 1,
                next: 4,
                ..
            }
        ),
        "{r:?}"
    );
}

/// A commit that Redis ran but whose answer the node never got (the
/// connection dropped) is sent again, longer by what the session queued
/// meanwhile: the part already recorded is answered as recorded at its
/// seqs, not appended a second time, the rest is left for the next
/// commit, and what another node appended in between comes back as
/// theirs.
#[actix_rt::test]
async fn a_commit_sent_again_after_a_lost_answer_is_recorded_once() {
    let redis = redis_server();
    let (owner, other) = (store(&redis.url, "o").await, store(&redis.url, "x").await);
    let w = Duration::from_secs(5);
    owner
        .create("s", "tok", "", "cid", usize::MAX, w, w * 2)
        .await
        .unwrap();
    taken(owner.take(take_args("s", "tok", "")).await.unwrap());
    let (a, b, c) = (text("a"), text("b"), text("c"));
    let r = owner
        .commit("s", &commit_args(1, 1, 0, 0), [a.clone(), b.clone()].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 1,
                recorded: 2,
                next: 3,
                ..
            }
        ),
        "{r:?}"
    );
    // The answer was lost: the node still thinks seq 1 is next.
    let x = text("from x");
    assert_eq!(
        other.append("s", &x, 1 << 20).await.unwrap(),
        AppendOutcome::Appended(3)
    );
    let mut again = commit_args(1, 1, 0, 0);
    again.tries = 1;
    let r = owner
        .commit("s", &again, [a.clone(), b.clone(), c.clone()].iter())
        .await
        .unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 1,
            recorded: 2,
            next: 4,
            deadline: 0,
            others: vec![(3, x.clone())],
            starts: vec![3]
        },
        "a and b recorded once, c not yet"
    );
    let r = owner
        .commit("s", &commit_args(1, 4, 0, 0), [c.clone()].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 4,
                recorded: 1,
                next: 5,
                ..
            }
        ),
        "{r:?}"
    );
    let t = taken(other.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!(t.entries, vec![(1, a), (2, b), (3, x), (4, c)]);
}

/// `take` refuses a wrong token, another identity, an unknown session and
/// a claim beyond what was sent; HELLO's claim trims the stream.
#[actix_rt::test]
async fn take_checks_token_identity_and_claim_and_trims_what_the_claim_acks() {
    let redis = redis_server();
    let s = store(&redis.url, "n").await;
    let w = Duration::from_secs(5);
    s.create("s", "tok", "alice", "cid", 10, w, w * 2)
        .await
        .unwrap();
    assert_eq!(
        field(&redis.url, "s", "token").map(|t| t.len()),
        Some(64),
        "a SHA-256 hex, never the token"
    );
    assert_ne!(field(&redis.url, "s", "token").as_deref(), Some("tok"));
    assert!(matches!(
        s.take(take_args("s", "bad", "alice")).await.unwrap(),
        TakeOutcome::Refused
    ));
    assert!(matches!(
        s.take(take_args("s", "tok", "bob")).await.unwrap(),
        TakeOutcome::Refused
    ));
    assert!(matches!(
        s.take(take_args("nope", "tok", "alice")).await.unwrap(),
        TakeOutcome::Gone
    ));
    let mut zero = take_args("s", "tok", "alice");
    zero.first_seq = 0;
    assert!(matches!(
        s.take(zero).await.unwrap(),
        TakeOutcome::Protocol("first_seq must be at least 1")
    ));
    let mut first = take_args("s", "tok", "alice");
    first.first_seq = 5;
    let t = taken(s.take(first).await.unwrap());
    assert_eq!(
        (t.in_delivered, t.client_max),
        (4, 10),
        "first_seq fixes it"
    );
    for p in ["a", "b", "c"] {
        assert!(matches!(
            s.append("s", &text(p), 1 << 20).await.unwrap(),
            AppendOutcome::Appended(_)
        ));
    }
    let mut ahead = take_args("s", "tok", "alice");
    ahead.last_received = 4;
    assert!(matches!(
        s.take(ahead).await.unwrap(),
        TakeOutcome::Protocol(_)
    ));
    let mut claim = take_args("s", "tok", "alice");
    claim.last_received = 2;
    claim.first_seq = 99;
    let t = taken(s.take(claim).await.unwrap());
    assert_eq!(t.epoch, 2, "refusals took nothing");
    assert_eq!(
        t.in_delivered, 4,
        "first_seq only counts on the first socket"
    );
    assert_eq!(t.acked, 2);
    assert_eq!(t.entries, vec![(3, text("c"))], "the claim acked 1 and 2");
    assert_eq!(stream_len(&redis.url, "s"), 1, "trimmed");
}

/// `append` from any node: numbered after the owner's, bounded by the
/// client's size and the unacked bytes; the owner's next commit returns
/// what others appended.
#[actix_rt::test]
async fn append_is_bounded_and_the_owner_reads_it_with_its_next_commit() {
    let redis = redis_server();
    let (owner, other) = (store(&redis.url, "o").await, store(&redis.url, "x").await);
    let w = Duration::from_secs(5);
    owner
        .create("s", "tok", "", "cid", 8, w, w * 2)
        .await
        .unwrap();
    taken(owner.take(take_args("s", "tok", "")).await.unwrap());
    assert_eq!(
        other.append("s", &text("123456789"), 100).await.unwrap(),
        AppendOutcome::TooLarge(8)
    );
    assert_eq!(
        other.append("s", &text("aaaa"), 6).await.unwrap(),
        AppendOutcome::Appended(1)
    );
    assert_eq!(
        other.append("s", &text("bbbb"), 6).await.unwrap(),
        AppendOutcome::Full,
        "4 unacked + 4 > 6"
    );
    assert_eq!(
        other.append("gone", &text("b"), 6).await.unwrap(),
        AppendOutcome::Gone
    );
    let bin = Payload::Binary(Bytes::from_static(&[0, 255]));
    let r = owner
        .commit("s", &commit_args(1, 1, 0, 0), [bin.clone()].iter())
        .await
        .unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 2,
            recorded: 0,
            next: 2,
            deadline: 0,
            others: vec![(1, text("aaaa"))],
            starts: vec![1]
        },
        "seq 1 was taken by the append: the batch goes again after it"
    );
    let r = owner
        .commit("s", &commit_args(1, 2, 0, 0), [bin.clone()].iter())
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            CommitOutcome::Ok {
                first: 2,
                recorded: 1,
                next: 3,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        stream_len(&redis.url, "s"),
        3,
        "the empty entry take made, the append and the batch"
    );
    // Acks free room for other senders (the owner counts the bytes).
    let mut acks = commit_args(1, 3, 0, 2);
    acks.freed = 6;
    let r = owner.commit("s", &acks, std::iter::empty()).await.unwrap();
    assert_eq!(
        r,
        CommitOutcome::Ok {
            first: 3,
            recorded: 0,
            next: 3,
            deadline: 0,
            others: vec![],
            starts: vec![]
        }
    );
    assert_eq!(stream_len(&redis.url, "s"), 0);
    assert_eq!(
        other.append("s", &text("bbbb"), 6).await.unwrap(),
        AppendOutcome::Appended(3)
    );
}

/// `expire` deletes a session past its deadline once (the count goes to
/// one caller), keeps one within it; `end` deletes at once.
#[actix_rt::test]
async fn expire_answers_once_and_leaves_no_keys() {
    let redis = redis_server();
    let (a, b) = (store(&redis.url, "a").await, store(&redis.url, "b").await);
    let short = Duration::from_millis(50);
    a.create("old", "tok", "", "cid", 100, short, Duration::from_secs(10))
        .await
        .unwrap();
    a.append("old", &text("u1"), 100).await.unwrap();
    a.append("old", &text("u2"), 100).await.unwrap();
    let long = Duration::from_secs(60);
    a.create("live", "tok", "", "cid", 100, long, long)
        .await
        .unwrap();
    assert_eq!(a.due(10).await.unwrap(), Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(a.due(10).await.unwrap(), vec!["old".to_owned()]);
    assert_eq!(a.expire("old").await.unwrap(), ExpireOutcome::Expired(2));
    assert_eq!(b.expire("old").await.unwrap(), ExpireOutcome::Gone, "once");
    assert!(matches!(
        b.expire("live").await.unwrap(),
        ExpireOutcome::Alive(_)
    ));
    a.unindex("old").await.unwrap();
    assert_eq!(
        b.end("live").await.unwrap(),
        Some((0, String::new(), false))
    );
    assert_eq!(a.end("live").await.unwrap(), None, "already gone");
    assert_eq!(keys(&redis.url), Vec::<String>::new(), "nothing left");
}
