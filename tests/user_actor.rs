//! An application's actor that sends through the client, tested alone.
//!
//! The actor depends on a `Recipient<OutgoingMessage>`, not on the client:
//! its unit tests hand it a recorder (no network, no timers), and in
//! production it gets `ResilientWebSocket::sender()`. The last tests run the
//! very same actor against a real server on 127.0.0.1, and check that the
//! recipient answers what `try_send` would.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::prelude::*;
use resilient_ws::{
    client::OutgoingMessage,
    testing::{EventRecorder, TestServer},
    Error, Payload, ReconnectMode, ResilientWebSocket,
};

const WAIT: Duration = Duration::from_secs(30);

// ---- the application's actor (what a user writes) ----

/// Greets people over the WebSocket; an alert goes out ahead of greetings
/// still waiting in the outbox.
struct Greeter {
    out: Recipient<OutgoingMessage>,
}

impl Actor for Greeter {
    type Context = Context<Self>;
}

/// Greet someone; answers what the client said about the message.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
struct Greet(&'static str);

/// Raise an alert (high priority).
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
struct Alert(&'static str);

impl Greeter {
    /// Sends and hands the client's answer back to whoever asked.
    fn forward(&self, msg: OutgoingMessage) -> ResponseFuture<Result<(), Error>> {
        let answer = self.out.send(msg);
        Box::pin(async move { answer.await.map_err(|_| Error::Shutdown)? })
    }
}

impl Handler<Greet> for Greeter {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Greet, _: &mut Context<Self>) -> Self::Result {
        self.forward(OutgoingMessage::new(format!("hello, {}", msg.0)))
    }
}

impl Handler<Alert> for Greeter {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Alert, _: &mut Context<Self>) -> Self::Result {
        self.forward(OutgoingMessage::new(format!("ALERT {}", msg.0)).with_priority(9))
    }
}

// ---- the recorder that stands in for the client in unit tests ----

/// Records every `OutgoingMessage` and answers with `answer`.
struct Recorder {
    seen: Arc<Mutex<Vec<OutgoingMessage>>>,
    answer: fn() -> Result<(), Error>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<OutgoingMessage> for Recorder {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: OutgoingMessage, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push(msg);
        (self.answer)()
    }
}

fn recorder(
    answer: fn() -> Result<(), Error>,
) -> (Recipient<OutgoingMessage>, Arc<Mutex<Vec<OutgoingMessage>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = Recorder {
        seen: seen.clone(),
        answer,
    }
    .start();
    (addr.recipient(), seen)
}

// ---- unit tests of the actor: no network ----

#[actix_rt::test]
async fn the_greeter_sends_its_greetings_and_alerts_without_a_network() {
    let (out, seen) = recorder(|| Ok(()));
    let greeter = Greeter { out }.start();

    greeter.send(Greet("ann")).await.unwrap().unwrap();
    greeter.send(Alert("fire")).await.unwrap().unwrap();

    // The answers came back, so the recorder already holds both.
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            OutgoingMessage::new("hello, ann"),
            OutgoingMessage::new("ALERT fire").with_priority(9),
        ]
    );
}

#[actix_rt::test]
async fn the_greeter_passes_on_the_clients_refusal() {
    let (out, seen) = recorder(|| Err(Error::BufferFull(1)));
    let greeter = Greeter { out }.start();

    let answer = greeter.send(Greet("bob")).await.unwrap();

    assert!(matches!(answer, Err(Error::BufferFull(1))), "{answer:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// ---- the same actor with the real client ----

#[actix_rt::test]
async fn the_same_greeter_talks_through_a_real_client() {
    let server = TestServer::echo().await.unwrap();
    let rec = EventRecorder::start();
    let ws = rec
        .attach(ResilientWebSocket::builder(server.ws_url()))
        .connect()
        .await
        .unwrap();
    let greeter = Greeter { out: ws.sender() }.start();

    greeter.send(Greet("cy")).await.unwrap().unwrap();
    greeter.send(Alert("smoke")).await.unwrap().unwrap();

    let echoed = rec.wait_messages(2, WAIT).await;
    assert_eq!(
        echoed,
        vec![Payload::from("hello, cy"), Payload::from("ALERT smoke")]
    );
    assert_eq!(ws.stats().messages_sent, 2);
    ws.disconnect().await.unwrap();
}

#[actix_rt::test]
async fn the_sender_refuses_what_try_send_would_refuse() {
    let server = TestServer::echo().await.unwrap();

    // Known peer limit: an oversize message is refused at once.
    let ws = ResilientWebSocket::builder(server.ws_url())
        .max_outbound_message_size(4)
        .connect()
        .await
        .unwrap();
    let answer = ws.sender().send(OutgoingMessage::new("too long")).await;
    assert!(
        matches!(answer, Ok(Err(Error::MessageTooLarge { size: 8, max: 4 }))),
        "{answer:?}"
    );
    assert!(matches!(
        ws.try_send("too long"),
        Err(Error::MessageTooLarge { .. })
    ));
    ws.disconnect().await.unwrap();

    // Not connected, buffering off: refused, as `try_send` refuses it.
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .buffering(false, 10)
        .build()
        .unwrap();
    let answer = ws.sender().send(OutgoingMessage::new("early")).await;
    assert!(matches!(answer, Ok(Err(Error::NotConnected))), "{answer:?}");
    assert!(matches!(ws.try_send("early"), Err(Error::NotConnected)));
}

#[actix_rt::test]
async fn the_sender_does_not_keep_the_client_alive() {
    let server = TestServer::echo().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .connect()
        .await
        .unwrap();
    let stats = ws.stats_reader();
    let sender = ws.sender();
    assert_eq!(stats().live_actors, 4);

    drop(ws);

    let deadline = tokio::time::Instant::now() + WAIT;
    while stats().live_actors != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} actors still alive while only a sender is held",
            stats().live_actors
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = sender.send(OutgoingMessage::new("late")).await;
    assert!(matches!(answer, Err(MailboxError::Closed)), "{answer:?}");
}
