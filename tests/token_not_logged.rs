//! The auth token reaches the server in the `Authorization` header and
//! appears in no log line, even at trace level (this binary owns the global
//! logger, so it is its own test file).

use std::{sync::Mutex, time::Duration};

use resilient_ws::{testing::RawServer, ReconnectMode, ResilientWebSocket};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

const TOKEN: &str = "s3cr3t-T0KEN-value";

#[actix_rt::test]
async fn the_token_is_sent_in_the_header_and_never_logged() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let server = RawServer::bind().await.unwrap();
    let ws = ResilientWebSocket::builder(server.ws_url())
        .reconnect_mode(ReconnectMode::None)
        .auth_token(|| async { Ok(TOKEN.to_string()) })
        .build()
        .unwrap();
    let (conn, res) = tokio::join!(server.accept(), ws.connect());
    res.unwrap();
    let mut conn = conn.unwrap();
    let expected = format!("Bearer {TOKEN}");
    assert_eq!(
        conn.request.header("authorization"),
        Some(expected.as_str())
    );
    assert!(!conn.request.path.contains(TOKEN));

    // Exercise the paths that log: a message, an error, a close.
    ws.send("x").await.unwrap();
    conn.read_data_frame().await.unwrap();
    conn.send_close(4000, "custom").await.unwrap();
    drop(conn);
    for _ in 0..200 {
        if ws.state() == resilient_ws::ConnectionState::Disconnected {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    // A refused attempt logs its error too.
    let (_, res) = tokio::join!(server.refuse(401), ws.connect());
    assert_eq!(res.unwrap_err().http_status(), Some(401));
    // Debug output of the options must not show it either.
    let debug = format!("{:?}", ws.options());

    let lines = LINES.lock().unwrap();
    assert!(
        lines.len() > 3,
        "the capture saw the client's logs: {lines:?}"
    );
    for line in lines.iter() {
        assert!(
            !line.contains(TOKEN),
            "token leaked into a log line: {line}"
        );
    }
    assert!(!debug.contains(TOKEN), "token leaked into Debug: {debug}");
}
