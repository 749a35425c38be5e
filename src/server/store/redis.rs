//! [`RedisSessionStore`]: the connection, the key layout and one Rust
//! wrapper per script (`scripts.rs`). Key layout (P = the prefix):
//! `P:{sid}:meta` (hash), `P:{sid}:out` (stream), `P:expiry` (sorted set
//! of every live session by deadline), channels `P:node:<node id>`.

use std::{sync::Arc, time::Duration};

use redis::{aio::ConnectionManager, Value};
use sha2::{Digest, Sha256};

use super::{
    blob::{encode, kinds_of, parse_entries, BlobArg},
    scripts::Scripts,
    SessionStoreError,
};
use crate::Payload;

/// A Redis session store: one connection (multiplexed, reconnecting) per
/// server node, shared by every session of the node. Cheap to clone.
///
/// # Examples
/// ```no_run
/// use resilient_ws::server::{RedisSessionStore, ReliableServer, ServerOptions, SessionStore};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisSessionStore::connect("redis://127.0.0.1:6379/", "node-a")
///     .await?
///     .with_prefix("myapp");
/// let mut options = ServerOptions::default();
/// options.store = SessionStore::Redis(store);
/// let server = ReliableServer::start(options);
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    link: Arc<Link>,
    node_id: Arc<str>,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

/// The client and its shared connection (behind one `Arc`: the store is
/// cloned into every session and task).
struct Link {
    client: redis::Client,
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The hex SHA-256 of a reconnect token: what Redis holds instead of it.
pub(crate) fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One server→client message as the stream holds it.
pub(crate) type Entry = (u64, Payload);

/// What `take` needs.
pub(crate) struct TakeArgs<'a> {
    pub(crate) sid: &'a str,
    pub(crate) token: &'a str,
    pub(crate) identity: &'a str,
    pub(crate) last_received: u64,
    pub(crate) first_seq: u64,
    /// How long the deadline holds while attached (window + lease).
    pub(crate) hold: Duration,
    pub(crate) ttl: Duration,
}

/// A session this node now owns.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) epoch: u64,
    pub(crate) had_socket: bool,
    pub(crate) in_delivered: u64,
    pub(crate) next_seq: u64,
    pub(crate) acked: u64,
    /// `acked` before the HELLO's `last_received` (an implicit ack): the
    /// difference is what this node counts as acknowledged by the take.
    pub(crate) acked_before: u64,
    pub(crate) client_id: String,
    pub(crate) client_max: usize,
    /// Every entry after `acked`, in seq order.
    pub(crate) entries: Vec<Entry>,
    /// The first seq of each stream entry holding them (a commit's trim
    /// cuts at one: [`CommitArgs::cut`]).
    pub(crate) starts: Vec<u64>,
}

/// How `take` ended.
#[derive(Debug)]
pub(crate) enum TakeOutcome {
    Taken(Taken),
    Gone,
    Refused,
    Protocol(&'static str),
}

/// The owner's batch (`commit`).
pub(crate) struct CommitArgs {
    pub(crate) epoch: u64,
    pub(crate) known_next: u64,
    pub(crate) in_delivered: u64,
    pub(crate) acked: u64,
    /// Payload bytes the client acked since the last commit (the owner's
    /// count: Redis keeps no size per message).
    pub(crate) freed: u64,
    /// The lease: push the deadline and the keys' TTL on.
    pub(crate) refresh: bool,
    pub(crate) hold: Duration,
    pub(crate) ttl: Duration,
    /// The socket is gone: detach (the deadline becomes now + window).
    pub(crate) detach: bool,
    pub(crate) window: Duration,
    /// Where a trim may cut: the first seq of the stream entry holding
    /// `acked + 1`, as far as the owner knows (it saw every entry below
    /// its `known_next`), or 0 (the script then reads the entry to find
    /// it, which costs a batch's bytes in Lua).
    pub(crate) cut: u64,
    /// How many commits this owner sent before at `known_next` (answered
    /// or not): the batch's entry ID must sort above theirs (scripts.rs,
    /// `commit`).
    pub(crate) tries: u32,
}

impl CommitArgs {
    /// The batch's entry ID: `<known_next>-<epoch << 32 | attempt>`, the
    /// attempt `2 * tries`, or one more for the resend after NOSCRIPT.
    fn entry_id(&self, resend: bool) -> String {
        let attempt = u64::from(self.tries) * 2 + u64::from(resend);
        format!(
            "{}-{}",
            self.known_next,
            (self.epoch << 32) | (attempt & 0xffff_ffff)
        )
    }
}

/// How `commit` ended.
#[derive(Debug, PartialEq)]
pub(crate) enum CommitOutcome {
    /// The batch's first `recorded` payloads got the seqs from `first` on
    /// (the rest, if any, were not recorded: send them again); `others`
    /// were appended by other nodes since `known_next`; the session's
    /// next seq is now `next`; `deadline` is the new one (ms) on a detach,
    /// else 0.
    Ok {
        first: u64,
        recorded: usize,
        next: u64,
        deadline: u64,
        others: Vec<Entry>,
        /// The first seq of each entry holding `others`.
        starts: Vec<u64>,
    },
    /// Another node took the session: nothing was written.
    Stale,
    /// The session is gone (ended or expired): nothing was written.
    Gone,
}

/// How `append` ended.
#[derive(Debug, PartialEq)]
pub(crate) enum AppendOutcome {
    Appended(u64),
    Gone,
    TooLarge(usize),
    Full,
}

/// How `expire` ended.
#[derive(Debug, PartialEq)]
pub(crate) enum ExpireOutcome {
    Gone,
    Alive(u64),
    Expired(usize),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(super) fn unexpected(what: &str, v: &Value) -> SessionStoreError {
    SessionStoreError::Unexpected(format!("{what}: {v:?}"))
}

pub(super) fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes_of(v).map(|b| String::from_utf8_lossy(b).into_owned())
}

pub(super) fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse::<f64>().ok().map(|f| f as u64),
    }
}

fn array(what: &str, v: Value) -> Result<Vec<Value>, SessionStoreError> {
    match v {
        Value::Array(a) if !a.is_empty() => Ok(a),
        other => Err(unexpected(what, &other)),
    }
}

impl RedisSessionStore {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port/db`)
    /// as the node `node_id` (unique in the cluster: other nodes reach
    /// this one's sessions through the channel named after it).
    ///
    /// # Errors
    /// [`SessionStoreError::InvalidUrl`] for a bad URL,
    /// [`SessionStoreError::Unavailable`] if Redis does not answer.
    pub async fn connect(url: &str, node_id: impl Into<String>) -> Result<Self, SessionStoreError> {
        let invalid = |e: redis::RedisError| SessionStoreError::InvalidUrl(format!("{e}"));
        // TCP_NODELAY (the crate leaves Nagle on): the connection is shared
        // by every session of the node, so a commit is often written while
        // another session's is unanswered, and Nagle would hold it until
        // that answer's ACK came back.
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(invalid)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(invalid)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| SessionStoreError::Unavailable("connect timed out".to_owned()))??;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(RedisSessionStore {
            link: Arc::new(Link { client, conn }),
            node_id: node_id.into().into(),
            prefix: "rws".into(),
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// The same store with every key and channel under `prefix` (default
    /// `rws`), so that several applications (or tests) share one Redis.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().into();
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn keys(&self, sid: &str) -> (String, String) {
        (
            format!("{}:{{{sid}}}:meta", self.prefix),
            format!("{}:{{{sid}}}:out", self.prefix),
        )
    }

    fn expiry_key(&self) -> String {
        format!("{}:expiry", self.prefix)
    }

    fn channel_prefix(&self) -> String {
        format!("{}:node:", self.prefix)
    }

    /// This node's channel.
    pub(crate) fn channel(&self) -> String {
        format!("{}{}", self.channel_prefix(), self.node_id)
    }

    /// A new connection for this node's channel subscription.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub, SessionStoreError> {
        Ok(self.link.client.get_async_pubsub().await?)
    }

    /// Negotiate: writes a new session (epoch 0, no owner) and indexes it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create(
        &self,
        sid: &str,
        token: &str,
        identity: &str,
        client_id: &str,
        client_max: usize,
        window: Duration,
        ttl: Duration,
    ) -> Result<(), SessionStoreError> {
        let (meta, _) = self.keys(sid);
        let mut conn = self.link.conn.clone();
        let deadline: u64 = self
            .scripts
            .create
            .key(&meta)
            .arg(token_hash(token))
            .arg(identity)
            .arg(client_id)
            .arg(client_max as u64)
            .arg(ms(window))
            .arg(ms(ttl))
            .invoke_async(&mut conn)
            .await?;
        self.index(sid, deadline).await
    }

    /// Puts `sid` in the expiry index at `deadline` (ms).
    pub(crate) async fn index(&self, sid: &str, deadline: u64) -> Result<(), SessionStoreError> {
        let mut conn = self.link.conn.clone();
        let _: i64 = redis::cmd("ZADD")
            .arg(self.expiry_key())
            .arg(deadline)
            .arg(sid)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// A HELLO: takes the session for this node (epoch + 1) if the token
    /// and identity match.
    pub(crate) async fn take(&self, a: TakeArgs<'_>) -> Result<TakeOutcome, SessionStoreError> {
        let (meta, out) = self.keys(a.sid);
        let mut conn = self.link.conn.clone();
        let v: Value = self
            .scripts
            .take
            .key(&meta)
            .key(&out)
            .arg(&*self.node_id)
            .arg(token_hash(a.token))
            .arg(a.identity)
            .arg(a.last_received)
            .arg(a.first_seq)
            .arg(ms(a.hold))
            .arg(ms(a.ttl))
            .arg(self.channel_prefix())
            .arg(a.sid)
            .invoke_async(&mut conn)
            .await?;
        let r = array("take", v)?;
        match bytes_of(&r[0]) {
            Some(b"gone") => return Ok(TakeOutcome::Gone),
            Some(b"refused") => return Ok(TakeOutcome::Refused),
            Some(b"protocol") => {
                let reason = match r.get(1).and_then(text).as_deref() {
                    Some("first_seq must be at least 1") => "first_seq must be at least 1",
                    _ => "claim ahead of what was sent",
                };
                return Ok(TakeOutcome::Protocol(reason));
            }
            Some(b"ok") if r.len() >= 10 => {}
            _ => return Err(SessionStoreError::Unexpected("take".to_owned())),
        }
        let n = |i: usize| num(&r[i]).ok_or_else(|| unexpected("take", &r[i]));
        let (next, acked) = (n(5)?, n(6)?);
        let mut starts = Vec::new();
        Ok(TakeOutcome::Taken(Taken {
            epoch: n(1)?,
            had_socket: n(3)? != 0,
            in_delivered: n(4)?,
            next_seq: next,
            acked,
            client_id: text(&r[7]).unwrap_or_default(),
            client_max: usize::try_from(n(8)?).unwrap_or(usize::MAX),
            acked_before: n(9)?,
            entries: parse_entries(
                "take",
                r.into_iter().skip(10).collect(),
                acked + 1,
                next - 1,
                &mut starts,
            )?,
            starts,
        }))
    }

    /// The owner's batch: records `in_delivered` and `acked`, appends
    /// `payloads` (in order) if `epoch` is still the session's. A batch
    /// is its own `XADD` in one `MULTI` with the script (the payloads
    /// never pass through Lua: scripts.rs).
    pub(crate) async fn commit(
        &self,
        sid: &str,
        a: &CommitArgs,
        payloads: impl Iterator<Item = &Payload> + Clone,
    ) -> Result<CommitOutcome, SessionStoreError> {
        let (meta, out) = self.keys(sid);
        let kinds = kinds_of(payloads.clone())?;
        let bytes: u64 = payloads.clone().map(|p| p.len() as u64).sum();
        let script = &self.scripts.commit;
        let call = |resend: bool| {
            let id = if kinds.is_empty() {
                String::new()
            } else {
                a.entry_id(resend)
            };
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.get_hash())
                .arg(2)
                .arg(&meta)
                .arg(&out)
                .arg(a.epoch)
                .arg(a.known_next)
                .arg(a.in_delivered)
                .arg(a.acked)
                .arg(a.freed)
                .arg(u8::from(a.refresh))
                .arg(ms(a.hold))
                .arg(ms(a.ttl))
                .arg(u8::from(a.detach))
                .arg(ms(a.window))
                .arg(kinds.len())
                .arg(bytes)
                .arg(a.cut)
                .arg(&id);
            let mut pipe = redis::pipe();
            if !kinds.is_empty() {
                // The XADD's own result is not needed: the script tells
                // whether it went in (an ID at or below the stream's last
                // fails, which is what fences it).
                pipe.atomic()
                    .ignore_errors()
                    .cmd("XADD")
                    .arg(&out)
                    .arg(&id)
                    .arg("k")
                    .arg(&kinds)
                    .arg("b")
                    .arg(BlobArg(payloads.clone()))
                    .ignore();
            } else {
                pipe.ignore_errors();
            }
            pipe.add_command(cmd);
            pipe
        };
        let exec = |pipe: redis::Pipeline| {
            let mut conn = self.link.conn.clone();
            async move {
                let mut r: Vec<Value> = pipe.query_async(&mut conn).await?;
                match r.pop() {
                    Some(Value::ServerError(e)) => Err(redis::RedisError::from(e)),
                    Some(v) => Ok(v),
                    None => Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "commit: no answer",
                    ))),
                }
            }
        };
        let v: Value = match exec(call(false)).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A restarted Redis forgot the script: load it, once more
                // (the XADD that went in without it is an orphan the next
                // commit deletes: its ID is below the resend's).
                let mut conn = self.link.conn.clone();
                script.prepare_invoke().load_async(&mut conn).await?;
                exec(call(true)).await?
            }
            r => r?,
        };
        let r = array("commit", v)?;
        match bytes_of(&r[0]) {
            Some(b"stale") => Ok(CommitOutcome::Stale),
            Some(b"gone") => Ok(CommitOutcome::Gone),
            Some(b"ok") if r.len() >= 5 => {
                let n = |i: usize| num(&r[i]).ok_or_else(|| unexpected("commit", &r[i]));
                let (first, deadline) = (n(1)?, num(&r[2]).unwrap_or(0));
                let recorded = usize::try_from(n(3)?).unwrap_or(usize::MAX);
                let next = n(4)?;
                let flat = r.into_iter().skip(5).collect();
                let mut starts = Vec::new();
                let mut others = parse_entries(
                    "commit",
                    flat,
                    a.known_next,
                    next.saturating_sub(1),
                    &mut starts,
                )?;
                // A retried batch's own entry is not another node's.
                let mine = first..first + recorded as u64;
                others.retain(|(seq, _)| !mine.contains(seq));
                starts.retain(|s| !mine.contains(s));
                Ok(CommitOutcome::Ok {
                    first,
                    recorded,
                    next,
                    deadline,
                    others,
                    starts,
                })
            }
            _ => Err(SessionStoreError::Unexpected("commit".to_owned())),
        }
    }

    /// Appends one message to a session owned by any node (or none).
    pub(crate) async fn append(
        &self,
        sid: &str,
        payload: &Payload,
        max_unacked: usize,
    ) -> Result<AppendOutcome, SessionStoreError> {
        let (meta, out) = self.keys(sid);
        let mut conn = self.link.conn.clone();
        let (kind, blob) = encode(std::iter::once(payload))?;
        let v: Value = self
            .scripts
            .append
            .key(&meta)
            .key(&out)
            .arg(max_unacked as u64)
            .arg(kind)
            .arg(blob)
            .arg(self.channel_prefix())
            .arg(sid)
            .invoke_async(&mut conn)
            .await?;
        let r = array("append", v)?;
        let n = |i: usize| r.get(i).and_then(num);
        Ok(match bytes_of(&r[0]) {
            Some(b"ok") => AppendOutcome::Appended(n(1).unwrap_or(0)),
            Some(b"gone") => AppendOutcome::Gone,
            Some(b"full") => AppendOutcome::Full,
            Some(b"too_large") => {
                AppendOutcome::TooLarge(usize::try_from(n(1).unwrap_or(0)).unwrap_or(usize::MAX))
            }
            _ => return Err(SessionStoreError::Unexpected("append".to_owned())),
        })
    }

    /// Ends a session: deletes its keys; answers (undelivered, owner node,
    /// attached) or `None` if it was already gone.
    pub(crate) async fn end(
        &self,
        sid: &str,
    ) -> Result<Option<(usize, String, bool)>, SessionStoreError> {
        let (meta, out) = self.keys(sid);
        let mut conn = self.link.conn.clone();
        let v: Value = self
            .scripts
            .end
            .key(&meta)
            .key(&out)
            .invoke_async(&mut conn)
            .await?;
        let r = array("end", v)?;
        let _ = self.unindex(sid).await;
        if bytes_of(&r[0]) != Some(b"ok") || r.len() < 4 {
            return Ok(None);
        }
        let undelivered = r.get(1).and_then(num).unwrap_or(0);
        Ok(Some((
            usize::try_from(undelivered).unwrap_or(usize::MAX),
            text(&r[2]).unwrap_or_default(),
            r.get(3).and_then(num) == Some(1),
        )))
    }

    /// The sweeper's step for one session.
    pub(crate) async fn expire(&self, sid: &str) -> Result<ExpireOutcome, SessionStoreError> {
        let (meta, out) = self.keys(sid);
        let mut conn = self.link.conn.clone();
        let v: Value = self
            .scripts
            .expire
            .key(&meta)
            .key(&out)
            .invoke_async(&mut conn)
            .await?;
        let r = array("expire", v)?;
        let n = r.get(1).and_then(num).unwrap_or(0);
        Ok(match bytes_of(&r[0]) {
            Some(b"alive") => ExpireOutcome::Alive(n),
            Some(b"expired") => ExpireOutcome::Expired(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => ExpireOutcome::Gone,
        })
    }

    /// Removes `sid` from the expiry index.
    pub(crate) async fn unindex(&self, sid: &str) -> Result<(), SessionStoreError> {
        let mut conn = self.link.conn.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(self.expiry_key())
            .arg(sid)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Up to `limit` sessions whose indexed deadline passed (by Redis's
    /// clock).
    pub(crate) async fn due(&self, limit: usize) -> Result<Vec<String>, SessionStoreError> {
        let mut conn = self.link.conn.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = secs * 1000 + micros / 1000;
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.expiry_key())
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?)
    }

    /// Every live session of the cluster (the expiry index).
    pub(crate) async fn all_sessions(&self) -> Result<Vec<String>, SessionStoreError> {
        let mut conn = self.link.conn.clone();
        Ok(redis::cmd("ZRANGE")
            .arg(self.expiry_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?)
    }

    /// Publishes `msg` on the channel of node `node`.
    pub(crate) async fn publish(&self, node: &str, msg: &str) -> Result<(), SessionStoreError> {
        let mut conn = self.link.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{}{node}", self.channel_prefix()))
            .arg(msg)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
