//! A minimal client: connect, print what comes back, disconnect.
//!
//! Standalone (starts an in-process echo server on 127.0.0.1, port 0):
//!
//! ```text
//! cargo run --example echo_client
//! ```
//!
//! Against a running server, for example `rws serve --echo`:
//!
//! ```text
//! cargo run --example echo_client -- ws://127.0.0.1:8080/ws
//! ```
//!
//! Set `RUST_LOG=resilient_ws=debug` to see the client's own log lines.

use std::time::Duration;

use actix::prelude::*;
use resilient_ws::{
    testing::TestServer, Closed, ErrorEvent, IncomingMessage, Payload, ResilientWebSocket,
    StateChanged,
};
use tokio::sync::mpsc;

/// Prints every event the client publishes, and counts echoes for `main`.
struct Printer {
    echoes: mpsc::UnboundedSender<()>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Printer {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        match &msg.payload {
            Payload::Text(t) => println!("<- text   {t}"),
            Payload::Binary(b) => println!("<- binary {b:?}"),
        }
        let _ = self.echoes.send(());
    }
}

impl Handler<StateChanged> for Printer {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        println!("   state  {:?} -> {:?}", msg.previous, msg.current);
    }
}

impl Handler<ErrorEvent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: ErrorEvent, _: &mut Context<Self>) {
        println!("   error  {}", msg.error);
    }
}

impl Handler<Closed> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        println!(
            "   closed code={:?} by_us={} error={:?}",
            msg.code, msg.by_us, msg.error
        );
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    // A URL from the command line, or an in-process echo server.
    let (url, server) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let server = TestServer::echo().await?;
            println!(
                "no URL given; started an echo server at {}",
                server.ws_url()
            );
            (server.ws_url(), Some(server))
        }
    };

    let (tx, mut echoes) = mpsc::unbounded_channel();
    let printer = Printer { echoes: tx }.start();

    println!("connecting to {url}");
    let ws = ResilientWebSocket::builder(url.as_str())
        .connection_timeout(Duration::from_secs(5))
        .on_state(printer.clone().recipient())
        .on_message(printer.clone().recipient())
        .on_error(printer.clone().recipient())
        .on_closed(printer.recipient())
        .connect()
        .await?;

    println!("-> text   hello");
    ws.send("hello").await?;
    println!("-> binary [1, 2, 3]");
    ws.send(vec![1u8, 2, 3]).await?;
    let json = serde_json::json!({ "type": "greeting", "n": 42 });
    println!("-> json   {json}");
    ws.send_json(&json).await?;

    // Wait briefly for the three echoes (a non-echo server may send none).
    let wait = async {
        for _ in 0..3 {
            if echoes.recv().await.is_none() {
                break;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(2), wait)
        .await
        .is_err()
    {
        println!("   (not every message came back within 2 s)");
    }

    ws.disconnect().await?;
    println!("disconnected");
    // Let the printer print the last events before the System stops.
    tokio::time::sleep(Duration::from_millis(50)).await;

    if let Some(server) = server {
        server.stop().await;
    }
    Ok(())
}
