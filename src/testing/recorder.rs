//! An actor that records every event a client publishes, for assertions.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use tokio::sync::Notify;

use crate::{
    Closed, ConnectionState, ErrorEvent, IncomingMessage, MessageDropped, Payload, Reconnected,
    Reconnecting, ResilientWebSocketBuilder, SessionLost, StateChanged,
};

/// One recorded event: the events [`ResilientWebSocket::events`] streams,
/// one variant per event type.
///
/// [`ResilientWebSocket::events`]: crate::ResilientWebSocket::events
pub type RecordedEvent = crate::ClientEvent;

#[derive(Default)]
struct Log {
    events: Mutex<Vec<RecordedEvent>>,
    changed: Notify,
}

struct RecorderActor(Arc<Log>);

impl Actor for RecorderActor {
    type Context = Context<Self>;
}

macro_rules! record {
    ($ty:ty, $variant:ident) => {
        impl Handler<$ty> for RecorderActor {
            type Result = ();
            fn handle(&mut self, msg: $ty, _: &mut Context<Self>) {
                self.0
                    .events
                    .lock()
                    .expect("recorder lock")
                    .push(RecordedEvent::$variant(msg));
                self.0.changed.notify_waiters();
            }
        }
    };
}
record!(StateChanged, State);
record!(IncomingMessage, Message);
record!(ErrorEvent, Error);
record!(Closed, Closed);
record!(Reconnecting, Reconnecting);
record!(Reconnected, Reconnected);
record!(MessageDropped, Dropped);
record!(SessionLost, SessionLost);

/// Records every event of the clients it is attached to.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use resilient_ws::{testing::{EventRecorder, TestServer}, ResilientWebSocket};
///
/// #[actix::main]
/// async fn main() {
///     let server = TestServer::echo().await.unwrap();
///     let rec = EventRecorder::start();
///     let ws = rec
///         .attach(ResilientWebSocket::builder(server.ws_url()))
///         .connect()
///         .await
///         .unwrap();
///     ws.send("hi").await.unwrap();
///     let got = rec.wait_messages(1, Duration::from_secs(5)).await;
///     assert_eq!(got[0].as_text(), Some("hi"));
/// }
/// ```
#[derive(Clone)]
pub struct EventRecorder {
    addr: Addr<RecorderActor>,
    log: Arc<Log>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("events", &self.events().len())
            .finish()
    }
}

impl EventRecorder {
    /// Starts the recording actor on the current arbiter.
    pub fn start() -> Self {
        let log = Arc::new(Log::default());
        let addr = RecorderActor(log.clone()).start();
        EventRecorder { addr, log }
    }

    /// Subscribes the recorder to every event type of a client being built.
    pub fn attach(&self, b: ResilientWebSocketBuilder) -> ResilientWebSocketBuilder {
        b.on_state(self.addr.clone().recipient())
            .on_message(self.addr.clone().recipient())
            .on_error(self.addr.clone().recipient())
            .on_closed(self.addr.clone().recipient())
            .on_reconnecting(self.addr.clone().recipient())
            .on_reconnected(self.addr.clone().recipient())
            .on_dropped(self.addr.clone().recipient())
            .on_session_lost(self.addr.clone().recipient())
    }

    /// Everything recorded so far, in arrival order.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.log.events.lock().expect("recorder lock").clone()
    }

    /// The sequence of states entered so far.
    pub fn states(&self) -> Vec<ConnectionState> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::State(s) => Some(s.current),
                _ => None,
            })
            .collect()
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Payload> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::Message(m) => Some(m.payload),
                _ => None,
            })
            .collect()
    }

    /// The errors reported so far.
    pub fn errors(&self) -> Vec<crate::Error> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::Error(e) => Some(e.error),
                _ => None,
            })
            .collect()
    }

    /// The socket-closed events so far.
    pub fn closed(&self) -> Vec<Closed> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::Closed(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The dropped-message reports so far.
    pub fn dropped(&self) -> Vec<MessageDropped> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::Dropped(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// The reconnect announcements so far.
    pub fn reconnecting(&self) -> Vec<Reconnecting> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RecordedEvent::Reconnecting(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Waits until `check` finds what it looks for in the whole log (past
    /// or future events), up to `timeout`; `None` on timeout.
    pub async fn wait_until<T, F>(&self, timeout: Duration, mut check: F) -> Option<T>
    where
        F: FnMut(&[RecordedEvent]) -> Option<T>,
    {
        let wait = async {
            loop {
                // Register interest before looking, so no event slips between.
                let changed = self.log.changed.notified();
                if let Some(t) = check(&self.log.events.lock().expect("recorder lock")) {
                    return t;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Waits until some recorded event matches; returns it, or `None` on
    /// timeout.
    pub async fn wait_for<F>(&self, timeout: Duration, mut pred: F) -> Option<RecordedEvent>
    where
        F: FnMut(&RecordedEvent) -> bool,
    {
        self.wait_until(timeout, |events| events.iter().find(|e| pred(e)).cloned())
            .await
    }

    /// Waits until the client has entered `state` (now or earlier).
    pub async fn wait_state(&self, state: ConnectionState, timeout: Duration) -> bool {
        self.wait_for(
            timeout,
            |e| matches!(e, RecordedEvent::State(s) if s.current == state),
        )
        .await
        .is_some()
    }

    /// Waits until at least `n` messages arrived (or `timeout`) and returns
    /// all received so far.
    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Payload> {
        self.wait_until(timeout, |events| {
            let count = events
                .iter()
                .filter(|e| matches!(e, RecordedEvent::Message(_)))
                .count();
            (count >= n).then_some(())
        })
        .await;
        self.messages()
    }
}
