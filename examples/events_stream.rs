//! A client without actors: `ws.events()` is one `futures::Stream` of every
//! event (state changes, messages, errors, closes, reconnects, drops), read
//! with a plain `while let` loop.
//!
//! Standalone (starts an in-process echo server on 127.0.0.1, port 0):
//!
//! ```text
//! cargo run --example events_stream
//! ```
//!
//! Against a running server, for example `rws serve --echo`:
//!
//! ```text
//! cargo run --example events_stream -- ws://127.0.0.1:8080/ws
//! ```
//!
//! A slow loop is safe: while it does not poll the stream, the client stops
//! reading the socket once `max_inbound_backlog` messages wait for it (the
//! server is slowed down by TCP), so memory stays bounded.

use std::time::Duration;

use futures::StreamExt;
use resilient_ws::{
    testing::TestServer, ClientEvent, ConnectionState, Payload, ResilientWebSocket,
};

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

    let ws = ResilientWebSocket::builder(url.as_str())
        .connection_timeout(Duration::from_secs(5))
        .build()?;
    // Subscribe before connecting, so the stream sees every event.
    let mut events = ws.events();
    println!("connecting to {url}");
    ws.connect().await?;
    for text in ["one", "two", "three"] {
        println!("-> {text}");
        ws.send(text).await?;
    }

    // Read events until the three echoes are back (a server that does not
    // echo sends none: give up after 2 s without an event).
    let mut echoes = 0;
    while echoes < 3 {
        match tokio::time::timeout(Duration::from_secs(2), events.next()).await {
            Ok(Some(event)) => {
                echoes += usize::from(matches!(event, ClientEvent::Message(_)));
                print(&event);
            }
            Ok(None) => break,
            Err(_) => {
                println!("   (not every message came back within 2 s)");
                break;
            }
        }
    }

    ws.disconnect().await?;
    // The close's own events, up to `Disconnected`. (The stream itself
    // goes on while the client could connect again; it ends once every
    // handle is dropped.)
    while let Some(event) = events.next().await {
        print(&event);
        if matches!(&event, ClientEvent::State(s) if s.current == ConnectionState::Disconnected) {
            break;
        }
    }
    println!("disconnected");

    if let Some(server) = server {
        server.stop().await;
    }
    Ok(())
}

fn print(event: &ClientEvent) {
    match event {
        ClientEvent::Message(m) => match &m.payload {
            Payload::Text(t) => println!("<- {t}"),
            Payload::Binary(b) => println!("<- binary {b:?}"),
        },
        ClientEvent::State(s) => println!("   state  {:?} -> {:?}", s.previous, s.current),
        ClientEvent::Error(e) => println!("   error  {}", e.error),
        ClientEvent::Closed(c) => println!("   closed code={:?} by_us={}", c.code, c.by_us),
        ClientEvent::Reconnecting(r) => {
            println!("   reconnecting: attempt {} in {:?}", r.attempt, r.delay)
        }
        // Reconnected, Dropped, SessionLost, and any event added later.
        other => println!("   {other:?}"),
    }
}
