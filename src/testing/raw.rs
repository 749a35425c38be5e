//! A scripted raw WebSocket peer: it speaks the wire protocol by hand, so a
//! test can make it misbehave (never answer, refuse, send invalid UTF-8,
//! oversize or fragmented frames, ignore a Close, send garbage or huge
//! headers) and can read exactly what the client put on the wire.
//!
//! [`RawServer`] plays a server for the client under test;
//! [`RawConn::connect`] plays a client (masked frames) against a server.

use std::{io, net::SocketAddr};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// Continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// The largest request head the raw server reads before giving up.
const MAX_HEAD: usize = 64 * 1024;

/// A listener on 127.0.0.1:0 that accepts connections one at a time.
#[derive(Debug)]
pub struct RawServer {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The client's upgrade request as the raw server read it.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The request line's path (with query).
    pub path: String,
    /// Every header, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The whole request head as received, for assertions on what was sent.
    pub raw: String,
}

impl UpgradeRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One frame as read off the wire (unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode (see [`opcode`]).
    pub opcode: u8,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code, if this is a Close frame that carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawServer {
    /// Binds 127.0.0.1:0.
    ///
    /// # Errors
    /// If binding fails.
    pub async fn bind() -> io::Result<RawServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        Ok(RawServer { listener, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Accepts a TCP connection and does nothing else (for a server that
    /// never answers the upgrade).
    ///
    /// # Errors
    /// If accepting fails.
    pub async fn accept_tcp(&self) -> io::Result<TcpStream> {
        Ok(self.listener.accept().await?.0)
    }

    /// Accepts a connection and completes the upgrade (101), optionally
    /// selecting a subprotocol.
    ///
    /// # Errors
    /// If the request is not a WebSocket upgrade or I/O fails.
    pub async fn accept(&self) -> io::Result<RawConn> {
        self.accept_with(None).await
    }

    /// Like [`accept`](Self::accept), answering with `protocol` in
    /// `Sec-WebSocket-Protocol`.
    ///
    /// # Errors
    /// If the request is not a WebSocket upgrade or I/O fails.
    pub async fn accept_with(&self, protocol: Option<&str>) -> io::Result<RawConn> {
        self.accept_with_headers(protocol, &[]).await
    }

    /// Like [`accept_with`](Self::accept_with), adding `extra` headers to
    /// the 101 response (for a response head of a chosen size).
    ///
    /// # Errors
    /// If the request is not a WebSocket upgrade or I/O fails.
    pub async fn accept_with_headers(
        &self,
        protocol: Option<&str>,
        extra: &[(String, String)],
    ) -> io::Result<RawConn> {
        let (mut stream, _) = self.listener.accept().await?;
        let mut buf = BytesMut::new();
        let request = read_head(&mut stream, &mut buf).await?;
        let key = request
            .header("sec-websocket-key")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Sec-WebSocket-Key"))?;
        let accept = actix_http::ws::hash_key(key.as_bytes());
        let accept = std::str::from_utf8(&accept).expect("base64 is ASCII");
        let mut resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
        );
        if let Some(p) = protocol {
            resp.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        stream.write_all(resp.as_bytes()).await?;
        Ok(RawConn {
            stream,
            buf,
            request,
            masked: false,
        })
    }

    /// Accepts a connection, reads one HTTP request and writes `response`
    /// as given (any status line, headers and body, valid or not), then
    /// shuts the connection down.
    ///
    /// # Errors
    /// If I/O fails.
    pub async fn respond_raw(&self, response: &[u8]) -> io::Result<UpgradeRequest> {
        let (mut stream, _) = self.listener.accept().await?;
        let mut buf = BytesMut::new();
        let request = read_head(&mut stream, &mut buf).await?;
        stream.write_all(response).await?;
        stream.shutdown().await?;
        Ok(request)
    }

    /// Accepts a connection, reads one HTTP request (a negotiate `POST`, say)
    /// and answers it with `status` and a JSON `body`.
    ///
    /// # Errors
    /// If I/O fails.
    pub async fn respond_json(&self, status: u16, body: &str) -> io::Result<UpgradeRequest> {
        let resp = format!(
            "HTTP/1.1 {status} Answer\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        self.respond_raw(resp.as_bytes()).await
    }

    /// Accepts a connection, reads the upgrade request and refuses it with
    /// `status`.
    ///
    /// # Errors
    /// If I/O fails.
    pub async fn refuse(&self, status: u16) -> io::Result<UpgradeRequest> {
        let resp =
            format!("HTTP/1.1 {status} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        self.respond_raw(resp.as_bytes()).await
    }
}

async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<UpgradeRequest> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = buf.split_to(end + 4);
            let raw = String::from_utf8_lossy(&head).into_owned();
            let mut lines = raw.split("\r\n");
            let path = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or_default()
                .to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Ok(UpgradeRequest { path, headers, raw });
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// An upgraded connection driven by hand: the server side of a
/// [`RawServer`] (unmasked frames), or a client from
/// [`connect`](Self::connect) (masked frames).
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The upgrade request the client sent (for a [`connect`](Self::connect)
    /// client: the server's response head).
    pub request: UpgradeRequest,
    /// Whether frames are sent masked (client to server).
    masked: bool,
}

impl RawConn {
    /// Plays a client: connects to `addr`, sends an upgrade request for
    /// `path` with `headers`, and expects `101`. Frames are then sent
    /// masked.
    ///
    /// # Errors
    /// If I/O fails or the answer is not `101` (the error names the status
    /// line).
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<RawConn> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = BytesMut::new();
        let head = read_head(&mut stream, &mut buf).await?;
        if !head.raw.starts_with("HTTP/1.1 101") {
            let line = head.raw.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("upgrade refused: {line}")));
        }
        Ok(RawConn {
            stream,
            buf,
            request: head,
            masked: true,
        })
    }

    /// Writes one frame: unmasked from a server, masked from a client.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let first = if fin { 0x80 } else { 0 } | opcode;
        self.send_frame_raw(first, payload).await
    }

    /// Writes one frame whose first byte (FIN, RSV1-3, opcode) is given as
    /// is: for frames with reserved bits set or unknown opcodes.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_frame_raw(&mut self, first: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(first);
        let mask_bit = if self.masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= u16::MAX as usize => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if self.masked {
            let mask: [u8; 4] = rand::random();
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        self.stream.write_all(&out).await
    }

    /// Writes raw bytes (garbage, half a frame, ...).
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a text frame (the bytes are sent as given, valid UTF-8 or not).
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_text(&mut self, text: impl AsRef<[u8]>) -> io::Result<()> {
        self.send_frame(true, opcode::TEXT, text.as_ref()).await
    }

    /// Sends a binary frame.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_frame(true, opcode::BINARY, data).await
    }

    /// Sends a Close frame with a code and reason.
    ///
    /// # Errors
    /// If the write fails.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        self.send_frame(true, opcode::CLOSE, &p).await
    }

    /// Reads one frame from the client and unmasks it.
    ///
    /// # Errors
    /// `UnexpectedEof` when the client closed TCP, or an I/O error.
    pub async fn read_frame(&mut self) -> io::Result<RawFrame> {
        loop {
            if let Some(frame) = parse_frame(&mut self.buf) {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads frames until a data frame (text, binary or continuation)
    /// arrives, answering nothing; control frames are skipped.
    ///
    /// # Errors
    /// As for [`read_frame`](Self::read_frame).
    pub async fn read_data_frame(&mut self) -> io::Result<RawFrame> {
        loop {
            let f = self.read_frame().await?;
            if f.opcode < opcode::CLOSE {
                return Ok(f);
            }
        }
    }

    /// Gives the raw TCP stream back (to drop it abruptly, for example).
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

fn parse_frame(buf: &mut BytesMut) -> Option<RawFrame> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut pos) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return None;
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < pos + len {
        return None;
    }
    buf.advance(pos);
    let mut payload = buf.split_to(len).to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some(RawFrame {
        fin,
        opcode,
        payload,
    })
}
