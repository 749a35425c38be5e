//! The second baseline: tokio-tungstenite, a Rust WebSocket client without
//! actix, against the same server in the same run, written the way the awc
//! task baseline is (feed a batch, flush once, read on another task).

use std::time::{Duration, Instant};

use bytestring::ByteString;
use futures_util::{sink::SinkExt, stream::StreamExt};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// `n` text messages of `text` through tokio-tungstenite, echoed back:
/// the time until the last echo arrived.
pub(super) async fn tput_tungstenite(url: &str, n: usize, text: &ByteString) -> Duration {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("tokio-tungstenite connect");
    // As the other clients have it: no Nagle delay.
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        let _ = tcp.set_nodelay(true);
    }
    let (mut sink, mut stream) = socket.split();
    // Built once and cloned per message (a refcount, as the awc baselines'
    // ByteString clones are).
    let payload = Utf8Bytes::from(text.to_string());
    let reader = actix_rt::spawn(async move {
        let mut left = n;
        while left > 0 {
            match stream.next().await {
                Some(Ok(Message::Text(_))) => left -= 1,
                Some(Ok(_)) => {}
                other => panic!("tokio-tungstenite stream ended: {other:?}"),
            }
        }
    });
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = super::plan::BATCH.min(n - sent);
        for _ in 0..k {
            sink.feed(Message::Text(payload.clone())).await.unwrap();
        }
        sink.flush().await.unwrap();
        sent += k;
    }
    reader.await.unwrap();
    let took = start.elapsed();
    let _ = sink.close().await;
    took
}
