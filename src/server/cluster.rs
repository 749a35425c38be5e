//! Redis mode's tasks, one set per server (on the arbiter that started
//! it): the listener of this node's channel, the expiry sweeper and the
//! appender (sends to sessions not attached here, in order).
//!
//! The owner of a session learns of entries other nodes appended through
//! pub/sub on its node channel (`P:node:<id>`), not by polling: one
//! connection per node, no traffic while nothing happens, and a message
//! per append only to the one node that holds the socket. Pub/sub loses
//! what is published while the listener is disconnected, so on every
//! (re)connect each local session re-reads its stream; and the lease
//! commit reads it too, so a lost "grew" costs at most a lease of delay.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{
    events::{ExpireReason, SessionExpired},
    hub::ServerShared,
    session::StoreNotice,
    store::{AppendOutcome, ExpireOutcome, RedisSessionStore, SessionStoreError},
};
use crate::Payload;

/// One message for a session not attached here.
pub(crate) struct AppendJob {
    pub(crate) sid: String,
    pub(crate) payload: Payload,
    pub(crate) reply: Option<oneshot::Sender<Result<AppendOutcome, SessionStoreError>>>,
}

/// The appender's queue.
pub(crate) type Appender = mpsc::UnboundedSender<AppendJob>;

/// Starts the tasks of a Redis-mode server; `None` in memory mode.
pub(crate) fn start(shared: &Arc<ServerShared>) -> Option<Appender> {
    let store = shared.redis()?.clone();
    let weak = Arc::downgrade(shared);
    let (tx, rx) = mpsc::unbounded_channel();
    actix_rt::spawn(listen(weak.clone(), store.clone()));
    actix_rt::spawn(sweep(weak.clone(), store.clone()));
    actix_rt::spawn(append_loop(weak, store, rx));
    Some(tx)
}

async fn listen(shared: Weak<ServerShared>, store: RedisSessionStore) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let subscribed = async {
            let mut ps = store.pubsub().await?;
            ps.subscribe(store.channel()).await?;
            Ok::<_, SessionStoreError>(ps)
        }
        .await;
        match subscribed {
            Ok(ps) => {
                backoff = Duration::from_millis(50);
                // Whatever was published while unsubscribed is read now.
                for addr in s.sessions.all() {
                    addr.do_send(StoreNotice::Resync);
                }
                drop(s);
                let mut messages = ps.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            if shared.strong_count() == 0 {
                                return;
                            }
                            continue;
                        }
                    };
                    let Some(msg) = msg else { break };
                    let Some(s) = shared.upgrade() else { return };
                    dispatch(&s, msg.get_payload_bytes());
                }
                log::warn!("session store: node channel lost; resubscribing");
            }
            Err(e) => s.store_failed("subscribe", &e),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// "grew <sid>", "taken <sid>" or "ended <sid>" for a local session.
fn dispatch(shared: &ServerShared, msg: &[u8]) {
    let msg = String::from_utf8_lossy(msg);
    let Some((what, sid)) = msg.split_once(' ') else {
        return;
    };
    let notice = match what {
        "grew" => StoreNotice::Grew,
        "taken" => StoreNotice::Taken,
        "ended" => StoreNotice::Ended,
        _ => return,
    };
    if let Some(addr) = shared.sessions.session(sid) {
        addr.do_send(notice);
    }
}

/// Every node sweeps: an expired session's keys are deleted by exactly
/// one `expire` call, and only that node reports it.
async fn sweep(shared: Weak<ServerShared>, store: RedisSessionStore) {
    let every = {
        let Some(s) = shared.upgrade() else { return };
        (s.options.resume_window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = shared.upgrade() else { return };
        // Everything due, 100 at a time (a storm of detaches comes due at
        // once).
        loop {
            let due = match store.due(100).await {
                Ok(due) => due,
                Err(e) => {
                    s.store_failed("sweep", &e);
                    break;
                }
            };
            let more = due.len() == 100;
            sweep_some(&s, &store, due).await;
            if !more {
                break;
            }
        }
    }
}

/// Expires (or re-indexes, by their deadline in Redis) the sessions
/// `due` names.
async fn sweep_some(s: &ServerShared, store: &RedisSessionStore, due: Vec<String>) {
    for sid in due {
        match store.expire(&sid).await {
            Ok(ExpireOutcome::Expired(undelivered)) => {
                let _ = store.unindex(&sid).await;
                log::debug!("session {sid} expired, {undelivered} undelivered");
                s.events.expired.publish(SessionExpired {
                    connection_id: sid,
                    undelivered,
                    reason: ExpireReason::ResumeWindow,
                });
            }
            Ok(ExpireOutcome::Alive(deadline)) => {
                let _ = store.index(&sid, deadline).await;
            }
            Ok(ExpireOutcome::Gone) => {
                let _ = store.unindex(&sid).await;
            }
            Err(e) => s.store_failed("expire", &e),
        }
    }
}

/// Appends what the handles queued: per session in order, different
/// sessions concurrently (a broadcast to many sessions costs one round
/// trip per batch, not one per session, on the multiplexed connection).
async fn append_loop(
    shared: Weak<ServerShared>,
    store: RedisSessionStore,
    mut rx: mpsc::UnboundedReceiver<AppendJob>,
) {
    let mut jobs = Vec::new();
    while rx.recv_many(&mut jobs, 1024).await > 0 {
        let Some(s) = shared.upgrade() else { return };
        let mut by_session: Vec<(String, Vec<AppendJob>)> = Vec::new();
        for job in jobs.drain(..) {
            match by_session.iter_mut().find(|(sid, _)| *sid == job.sid) {
                Some((_, queue)) => queue.push(job),
                None => by_session.push((job.sid.clone(), vec![job])),
            }
        }
        let cap = s.options.max_pending_bytes();
        let runs = by_session.into_iter().map(|(_, queue)| {
            let (store, s) = (&store, &s);
            async move {
                for job in queue {
                    let r = store.append(&job.sid, &job.payload, cap).await;
                    if let Err(e) = &r {
                        s.store_failed("append", e);
                    }
                    match job.reply {
                        Some(reply) => {
                            let _ = reply.send(r);
                        }
                        None => {
                            if !matches!(r, Ok(AppendOutcome::Appended(_))) {
                                log::debug!("append to {}: {r:?}", job.sid);
                            }
                        }
                    }
                }
            }
        });
        futures_util::future::join_all(runs).await;
    }
}
