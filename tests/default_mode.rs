//! Issue 15 item 12: `rws connect` and the library have different default
//! modes on purpose (`none` for a command in pipes and scripts,
//! `Stateless` for a service), and both helps say so. These tests hold
//! the statements to the real defaults and show the difference on one
//! server going away.

use common::cli::*;
use futures::StreamExt;
use resilient_ws::{ClientEvent, ClientOptions, ReconnectMode, ResilientWebSocket};

mod common;

#[test]
fn rws_connect_help_states_its_default_mode_and_the_librarys() {
    let mut cmd = rws();
    cmd.args(["connect", "--help"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    let help = out.stdout;
    // The --mode entry: its line and the indented ones under it, up to
    // the next flag (flags are indented less than their text).
    let mut lines = help.lines().skip_while(|l| !l.contains("--mode <MODE>"));
    let first = lines.next().expect("a --mode entry");
    let rest = lines.take_while(|l| {
        let indent = l.len() - l.trim_start().len();
        !(l.trim_start().starts_with('-') && indent < 8)
    });
    let entry = std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n");
    let entry = entry.as_str();
    assert!(entry.contains("[default: none]"), "{entry}");
    // The library default it names is the real one.
    let library = format!(
        "ReconnectMode::{:?}",
        ClientOptions::default().reconnect_mode
    );
    assert_eq!(library, "ReconnectMode::Stateless");
    let flat = entry.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("The library's default differs: `{library}`")),
        "{entry}"
    );
    assert!(flat.contains("ends with status 1"), "{entry}");
}

#[test]
fn the_builder_starts_from_the_library_default() {
    let ws = actix_rt::System::new().block_on(async {
        ResilientWebSocket::builder("ws://127.0.0.1:1/ws")
            .build()
            .unwrap()
    });
    assert_eq!(ws.options().reconnect_mode, ReconnectMode::Stateless);
}

#[actix_rt::test]
async fn when_the_server_goes_away_rws_connect_exits_and_a_default_library_client_reconnects() {
    let server = start_echo_server();
    // Both with their defaults: no --mode, no reconnect_mode.
    let mut cmd = rws();
    cmd.args(["connect", &server.url]);
    let mut cli = Running::connected(cmd);
    let ws = ResilientWebSocket::builder(server.url.clone())
        .build()
        .unwrap();
    let mut events = ws.events();
    ws.connect().await.unwrap();

    drop(server);
    let reconnecting = tokio::time::timeout(TIMEOUT, async {
        while let Some(e) = events.next().await {
            if let ClientEvent::Reconnecting(r) = e {
                return Some(r);
            }
        }
        None
    })
    .await
    .expect("the library client did not try to reconnect")
    .expect("events ended");
    assert_eq!(reconnecting.attempt, 1);

    let (mut cli, status) = actix_rt::task::spawn_blocking(move || {
        let status = cli.finish(TIMEOUT);
        (cli, status)
    })
    .await
    .unwrap();
    cli.assert_exit(status, 1);
    let dump = cli.dump();
    assert!(
        !cli.seen_stderr
            .iter()
            .any(|l| l.starts_with("reconnecting")),
        "rws connect reconnected by default\n{dump}"
    );
    drop(ws);
}
