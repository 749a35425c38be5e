//! `rws connect`'s input: stdin lines become text messages (or, with
//! `--binary`, binary messages they spell in base64 or hex), in order, and
//! the end of stdin closes the connection once the lines (and the answers
//! to them) are through.

use std::{
    io::{self, BufRead},
    time::Duration,
};

use actix::prelude::*;
use base64::Engine as _;
use resilient_ws::{ConnectionState, Error, Payload, ResilientWebSocket};
use tokio::sync::mpsc;

use crate::{
    args::{BinaryEncoding, ConnectArgs, Mode},
    control::Control,
    printer::{Accepted, NotSent, Printer},
};

/// How many stdin lines may wait between the reader thread and the socket;
/// beyond this the reader blocks, so a huge pipe does not fill memory.
const STDIN_QUEUE: usize = 256;

/// How often the end of stdin checks whether a reconnect has finished.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// `--linger` with `--mode stateful` when not given.
const STATEFUL_LINGER: Duration = Duration::from_millis(500);

/// The longest the end of stdin lingers for answers in all, so a server
/// that never stops sending cannot keep the command open.
const MAX_LINGER: Duration = Duration::from_secs(5);

/// The most lines handed over in one batch.
const MAX_BATCH: usize = 1024;

/// Starts reading stdin (on its own thread) and handing its lines to `ws`
/// (on the runtime), as `args` say.
pub(crate) fn spawn(
    ws: &ResilientWebSocket,
    args: &ConnectArgs,
    printer: Addr<Printer>,
    control: mpsc::UnboundedSender<Control>,
) {
    let (line_tx, line_rx) = mpsc::channel(STDIN_QUEUE);
    std::thread::spawn(move || read_stdin(line_tx));
    actix_rt::spawn(forward_stdin(
        ws.clone(),
        line_rx,
        Forwarding::new(args),
        printer,
        control,
    ));
}

/// Reads stdin line by line on its own thread (stdin reads block) and hands
/// the lines to the runtime. Dropping `tx` at the end signals end of input.
fn read_stdin(tx: mpsc::Sender<io::Result<String>>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let item = match stdin.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                line_no += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                // Text messages must be UTF-8; sending a lossy copy would
                // silently change the data, so this is an error instead.
                String::from_utf8(std::mem::take(&mut buf)).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("line {line_no} is not valid UTF-8"),
                    )
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

/// How [`forward_stdin`] hands lines over.
struct Forwarding {
    /// At the end of stdin, close after lingering this long for answers (see
    /// [`linger`]); `None` keeps the connection open (`--echo`).
    close_at_eof: Option<Duration>,
    /// Hand the lines stdin has ready over as one `send_batch` (reliable
    /// mode with a store, where no line is refused and each `send` would
    /// wait for its own commit).
    batch: bool,
    /// Report accepted lines (`--print-accepted`).
    print_accepted: bool,
    /// Lines spell binary messages in this encoding (`--binary`).
    binary: Option<BinaryEncoding>,
}

impl Forwarding {
    fn new(args: &ConnectArgs) -> Self {
        let stateful = args.mode == Mode::Stateful;
        let linger = args.linger.unwrap_or(if stateful {
            STATEFUL_LINGER
        } else {
            Duration::ZERO
        });
        Forwarding {
            close_at_eof: (!args.echo).then_some(linger),
            // With a store each send waits for the disk: hand over what
            // stdin has ready in one batch, one commit.
            batch: args.store.is_some() && stateful,
            print_accepted: args.print_accepted,
            binary: args.binary,
        }
    }

    /// The message a stdin line stands for, or why it stands for none.
    fn payload(&self, line: String) -> Result<Payload, String> {
        match self.binary {
            None => Ok(Payload::from(line)),
            Some(encoding) => decode(&line, encoding).map(Payload::from),
        }
    }
}

/// The bytes `line` spells in `encoding` (surrounding spaces ignored).
fn decode(line: &str, encoding: BinaryEncoding) -> Result<Vec<u8>, String> {
    let line = line.trim();
    match encoding {
        BinaryEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| format!("not valid base64 (--binary base64): {e}")),
        BinaryEncoding::Hex => {
            if !line.len().is_multiple_of(2) {
                return Err(format!(
                    "not valid hex (--binary hex): odd number of digits ({})",
                    line.len()
                ));
            }
            line.as_bytes()
                .chunks(2)
                .enumerate()
                .map(|(i, pair)| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| {
                            format!(
                                "not valid hex (--binary hex): {:?} at offset {}",
                                String::from_utf8_lossy(pair),
                                i * 2
                            )
                        })
                })
                .collect()
        }
    }
}

/// Why `payload` cannot be sent, if it is over the peer's known limit.
fn too_large(ws: &ResilientWebSocket, payload: &Payload) -> Option<Error> {
    let max = ws.peer_max_message_size()?;
    (payload.len() > max).then_some(Error::MessageTooLarge {
        size: payload.len(),
        max,
    })
}

/// Sends the stdin lines in order; each `send` is awaited before the next so
/// the order holds and the last line is handed over before `disconnect()`.
///
/// A line the client refuses because it is not connected (`--no-buffer`) or
/// its buffer is full is reported as [`NotSent`] and the rest go on: the
/// connection may come back. Any other failure ends the program.
async fn forward_stdin(
    ws: ResilientWebSocket,
    mut lines: mpsc::Receiver<io::Result<String>>,
    how: Forwarding,
    printer: Addr<Printer>,
    control: mpsc::UnboundedSender<Control>,
) {
    let mut line_no = 0u64;
    let mut batch = Vec::new();
    while let Some(item) = lines.recv().await {
        let mut next = Some(item);
        let mut failed = None;
        // The number of the batch's last line.
        let mut last = 0;
        // Take what else is ready, up to a batch.
        while let Some(item) = next.take() {
            match item {
                Ok(line) => {
                    line_no += 1;
                    let refused = match how.payload(line) {
                        Ok(payload) => match too_large(&ws, &payload) {
                            Some(error) => Some(error.to_string()),
                            None => {
                                batch.push(payload);
                                last = line_no;
                                None
                            }
                        },
                        Err(error) => Some(error),
                    };
                    // Refused alone, so the lines around it still go
                    // (a batch stops at its first refusal).
                    if let Some(error) = refused {
                        printer.do_send(NotSent {
                            line: line_no,
                            error,
                        });
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if how.batch && batch.len() < MAX_BATCH {
                next = lines.try_recv().ok();
            }
        }
        let result = if how.batch {
            ws.send_batch(batch.drain(..)).await
        } else {
            match batch.pop() {
                Some(line) => ws.send(line).await.map(drop),
                None => Ok(()),
            }
        };
        match result {
            Ok(()) => {
                if how.print_accepted && last > 0 {
                    printer.do_send(Accepted { line: last });
                }
            }
            Err(
                error
                @ (Error::NotConnected | Error::BufferFull(_) | Error::MessageTooLarge { .. }),
            ) => {
                printer.do_send(NotSent {
                    line: last,
                    error: error.to_string(),
                });
            }
            Err(e) => {
                let _ = control.send(Control::Failed(format!("send failed: {e}")));
                return;
            }
        }
        if let Some(e) = failed {
            let _ = control.send(Control::Failed(format!("reading stdin: {e}")));
            return;
        }
    }
    if let Some(quiet) = how.close_at_eof {
        settle(&ws).await;
        if !quiet.is_zero() {
            linger(&ws, quiet).await;
        }
        // Queued behind every line already handed to `send()`.
        let _ = ws.disconnect().await;
    }
}

/// Closing now would cancel a reconnect in progress and strand the buffered
/// lines: waits until it succeeds (they go out first) or the client gives up
/// (then the printer reports the end).
async fn settle(ws: &ResilientWebSocket) {
    while matches!(
        ws.state(),
        ConnectionState::Connecting | ConnectionState::Reconnecting
    ) {
        actix_rt::time::sleep(SETTLE_POLL).await;
    }
}

/// Waits until the outbox is empty and no message arrived for `quiet`
/// (answers to the last lines), for at most [`MAX_LINGER`]; a reconnect
/// meanwhile is waited out first.
async fn linger(ws: &ResilientWebSocket, quiet: Duration) {
    use actix_rt::time::Instant;
    let deadline = Instant::now() + MAX_LINGER;
    let mut received = ws.stats().messages_received;
    let mut last_change = Instant::now();
    loop {
        let stats = ws.stats();
        if stats.messages_received != received || stats.messages_buffered > 0 {
            received = stats.messages_received;
            last_change = Instant::now();
        }
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_change) >= quiet {
            return;
        }
        if ws.state() != ConnectionState::Connected {
            settle(ws).await;
            if ws.state() != ConnectionState::Connected {
                return;
            }
            last_change = Instant::now();
            continue;
        }
        let wake = (last_change + quiet).min(deadline);
        actix_rt::time::sleep_until(wake.min(now + SETTLE_POLL)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, BinaryEncoding};

    #[test]
    fn binary_lines_decode_or_say_why_not() {
        assert_eq!(decode("AQID", BinaryEncoding::Base64), Ok(vec![1, 2, 3]));
        assert_eq!(decode(" AQID ", BinaryEncoding::Base64), Ok(vec![1, 2, 3]));
        assert_eq!(decode("", BinaryEncoding::Base64), Ok(vec![]));
        assert_eq!(decode("0102fF", BinaryEncoding::Hex), Ok(vec![1, 2, 255]));
        assert_eq!(decode("", BinaryEncoding::Hex), Ok(vec![]));
        let e = decode("AQI*", BinaryEncoding::Base64).unwrap_err();
        assert!(e.starts_with("not valid base64"), "{e}");
        let e = decode("010", BinaryEncoding::Hex).unwrap_err();
        assert!(e.contains("odd number of digits"), "{e}");
        let e = decode("01zz", BinaryEncoding::Hex).unwrap_err();
        assert!(e.contains("\"zz\" at offset 2"), "{e}");
        // A multi-byte character must not split a pair into a panic.
        assert!(decode("0é", BinaryEncoding::Hex).is_err());
    }
}
