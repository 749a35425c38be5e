//! A scripted server: negotiate answers and WELCOMEs for a [`RawServer`]
//! (resilient_ws::testing), and a WebSocket upgrade answered by hand on a
//! std `TcpStream`, for tests that hold the server's socket in a thread.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use resilient_ws::{
    protocol::{new_connection_id, new_reconnect_token, Frame, SUBPROTOCOL},
    testing::RawConn,
};

/// A negotiate answer for a fresh session (new ids), its socket at `url`
/// (`None`: the negotiate URL's host), with the given limit and ack timer.
pub fn negotiate_body(url: Option<&str>, max_message_size: usize, ack_interval_ms: u64) -> String {
    serde_json::json!({
        "protocol": SUBPROTOCOL, "version": 1, "connection_id": new_connection_id(),
        "reconnect_token": new_reconnect_token(), "url": url,
        "resume_window_ms": 30000, "max_message_size": max_message_size,
        "max_unacked_bytes": 1048576, "ack_interval_ms": ack_interval_ms, "ack_threshold": 64
    })
    .to_string()
}

/// Answers a client's HELLO with a WELCOME of a fresh session that has
/// received up to `last_received`.
pub async fn welcome(conn: &mut RawConn, last_received: u64) {
    let welcome = Frame::Welcome {
        resumed: false,
        last_received,
    };
    conn.send_binary(&welcome.to_bytes()).await.unwrap();
}

/// Reads a client's upgrade request from `stream` and answers 101 by hand;
/// the request head. For a server that must hold its socket in a thread
/// (a peer that stops reading, a scripted close).
pub fn accept_upgrade(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read upgrade request");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ASCII request head");
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .expect("Sec-WebSocket-Key header");
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).expect("base64 is ASCII");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).expect("write 101");
    head
}

/// Reads one client frame from `stream` (clients must mask; ours never
/// fragments): its opcode and unmasked payload.
pub fn read_client_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).expect("frame header");
    assert!(h[0] & 0x80 != 0, "expected unfragmented frames");
    assert!(h[1] & 0x80 != 0, "client frames must be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).expect("length");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).expect("length");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask).expect("mask");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("payload");
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (h[0] & 0x0f, payload)
}
