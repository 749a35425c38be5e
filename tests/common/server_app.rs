//! The server application's side: what a [`ReliableServer`]'s application
//! saw, and the slowest application there is.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use actix::prelude::*;
use resilient_ws::{
    server::{
        AuthRefusal, MessageReceived, ReliableServer, ServerOptions, SessionExpired, SessionOpened,
        SessionResumed,
    },
    IncomingMessage, Payload,
};

/// Server options that hold acks long (30 s, a million messages), so what a
/// client sent is still unacknowledged when its link dies; sessions can be
/// resumed for `resume_window`. For tests of replay and of lost sessions.
pub fn held_acks(resume_window: Duration) -> ServerOptions {
    server_options(|o| {
        o.resume_window = resume_window;
        o.ack_interval = Duration::from_secs(30);
        o.ack_threshold = 1_000_000;
    })
}

/// The default server options with the changes `set` makes: the options
/// are `#[non_exhaustive]` (no struct literal outside the crate), and a
/// test reads best with its changes in one expression.
pub fn server_options(set: impl FnOnce(&mut ServerOptions)) -> ServerOptions {
    let mut options = ServerOptions::default();
    set(&mut options);
    options
}

/// `options` with an auth hook that takes the user from an `x-user`
/// header: none is 401, "mallory" is 403, any other name is the identity.
pub fn user_auth(options: ServerOptions) -> ServerOptions {
    options.with_auth(
        |req| match req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
            Some("mallory") => Err(AuthRefusal::Forbidden),
            Some(u) => Ok(u.to_owned()),
            None => Err(AuthRefusal::Unauthorized),
        },
    )
}

/// One event a [`ReliableServer`]'s application saw.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A session was opened.
    Opened(SessionOpened),
    /// A session was resumed on a new socket.
    Resumed(SessionResumed),
    /// A session ended.
    Expired(SessionExpired),
    /// A message was received.
    Message(MessageReceived),
}

/// What a [`ReliableServer`]'s application saw: the sessions opened,
/// resumed and ended and the messages received, in order. Tests check
/// delivery from the server's own events, not from what a client believes
/// it sent.
#[derive(Clone, Default)]
pub struct Inbox {
    events: Arc<Mutex<Vec<ServerEvent>>>,
}

struct InboxActor(Inbox);

impl Actor for InboxActor {
    type Context = Context<Self>;
}

macro_rules! record {
    ($ty:ty, $v:ident) => {
        impl Handler<$ty> for InboxActor {
            type Result = ();
            fn handle(&mut self, msg: $ty, _: &mut Context<Self>) {
                self.0.events.lock().unwrap().push(ServerEvent::$v(msg));
            }
        }
    };
}
record!(SessionOpened, Opened);
record!(SessionResumed, Resumed);
record!(SessionExpired, Expired);
record!(MessageReceived, Message);

impl Inbox {
    /// Subscribes a new inbox to `reliable`'s session events and messages.
    pub fn attach(reliable: &ReliableServer) -> Inbox {
        let inbox = Inbox::default();
        let addr = InboxActor(inbox.clone()).start();
        reliable
            .on_session_opened(addr.clone().recipient())
            .on_session_resumed(addr.clone().recipient())
            .on_session_expired(addr.clone().recipient())
            .on_message(addr.recipient());
        inbox
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<ServerEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The connection ids of the sessions opened so far.
    pub fn opened(&self) -> Vec<String> {
        self.filter(|e| match e {
            ServerEvent::Opened(o) => Some(o.connection_id.clone()),
            _ => None,
        })
    }

    /// The sessions that ended so far.
    pub fn expired(&self) -> Vec<SessionExpired> {
        self.filter(|e| match e {
            ServerEvent::Expired(x) => Some(x.clone()),
            _ => None,
        })
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<MessageReceived> {
        self.filter(|e| match e {
            ServerEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
    }

    fn filter<T>(&self, f: impl FnMut(&ServerEvent) -> Option<T>) -> Vec<T> {
        self.events.lock().unwrap().iter().filter_map(f).collect()
    }

    /// How many messages were received.
    pub fn len(&self) -> usize {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| matches!(e, ServerEvent::Message(_)))
            .count()
    }

    /// Whether no message was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Polls `check` over the events every 5 ms until it holds or `limit`
    /// passed; whether it holds.
    pub async fn wait(
        &self,
        limit: Duration,
        mut check: impl FnMut(&[ServerEvent]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if check(&self.events.lock().unwrap()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (up to `limit`) until `n` messages arrived; every message so
    /// far.
    pub async fn wait_messages(&self, n: usize, limit: Duration) -> Vec<MessageReceived> {
        self.wait(limit, |evs| {
            evs.iter()
                .filter(|e| matches!(e, ServerEvent::Message(_)))
                .count()
                >= n
        })
        .await;
        self.received()
    }

    /// Every message as (connection id, seq, text); `<binary>` for binary.
    pub fn all(&self) -> Vec<(String, u64, String)> {
        self.filter(|e| match e {
            ServerEvent::Message(m) => {
                let text = m.payload.as_text().unwrap_or("<binary>").to_string();
                Some((m.connection_id.clone(), m.seq, text))
            }
            _ => None,
        })
    }

    /// Every message as (seq, text).
    pub fn seq_texts(&self) -> Vec<(u64, String)> {
        self.all().into_iter().map(|m| (m.1, m.2)).collect()
    }

    /// Every message's text.
    pub fn texts(&self) -> Vec<String> {
        self.all().into_iter().map(|m| m.2).collect()
    }
}

/// A subscriber (of a client's [`IncomingMessage`]s or a server's
/// [`MessageReceived`]) that handles nothing until its [`SlowGate`] is
/// released, then records the payloads: the slowest application there is,
/// for tests of backpressure. It blocks its thread, so it runs on an
/// arbiter of its own.
pub struct Slow(SlowGate);

/// Releases a [`Slow`] subscriber and reads what it recorded.
#[derive(Clone)]
pub struct SlowGate {
    latch: Arc<(Mutex<bool>, Condvar)>,
    got: Arc<Mutex<Vec<Payload>>>,
}

impl Slow {
    /// Starts a held subscriber on `arbiter`'s thread.
    pub fn start_on(arbiter: &Arbiter) -> (Addr<Slow>, SlowGate) {
        let gate = SlowGate {
            latch: Arc::new((Mutex::new(false), Condvar::new())),
            got: Arc::new(Mutex::new(Vec::new())),
        };
        let g = gate.clone();
        let addr = Slow::start_in_arbiter(&arbiter.handle(), move |_| Slow(g));
        (addr, gate)
    }

    fn take(&self, payload: Payload) {
        let (lock, cv) = &*self.0.latch;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.0.got.lock().unwrap().push(payload);
    }
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Slow {
    type Result = ();
    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        self.take(msg.payload);
    }
}

impl Handler<MessageReceived> for Slow {
    type Result = ();
    fn handle(&mut self, msg: MessageReceived, _: &mut Context<Self>) {
        self.take(msg.payload);
    }
}

impl SlowGate {
    /// Lets the subscriber handle everything, from now on.
    pub fn release(&self) {
        *self.latch.0.lock().unwrap() = true;
        self.latch.1.notify_all();
    }

    /// What the subscriber handled so far.
    pub fn got(&self) -> Vec<Payload> {
        self.got.lock().unwrap().clone()
    }

    /// How many messages the subscriber handled so far.
    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Whether the subscriber handled nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
