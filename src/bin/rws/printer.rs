//! The printer actor of `rws connect`: received messages to stdout, every
//! other event to stderr (human lines, or JSON with `--json`), and the
//! verdict "disconnected for good" to the main loop.

use std::io::{self, BufWriter, Stdout, Write};

use actix::prelude::*;
use base64::Engine as _;
use resilient_ws::{
    Closed, ConnectionState, Error, ErrorEvent, IncomingMessage, MessageDropped, Payload,
    Reconnected, Reconnecting, SessionLost, StateChanged,
};
use tokio::sync::mpsc;

use crate::{control::Control, millis};

/// Answered once every event sent to the printer before it was handled.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Barrier;

/// Stdin line `line` (counting from 1) was refused by the client.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct NotSent {
    pub(crate) line: u64,
    /// Why: the client's error, or a line that did not decode (`--binary`).
    pub(crate) error: String,
}

/// Stdin lines up to `line` were accepted (`--print-accepted`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Accepted {
    pub(crate) line: u64,
}

/// Receives the client's events: messages to stdout, everything else to
/// stderr; tells the main loop when the client is finally disconnected.
///
/// One actor gets every event type, so they share one mailbox and arrive in
/// the order the client published them: every message before the `Closed`
/// that follows it, every `Reconnecting` before the `Disconnected` of a
/// client that gave up.
pub(crate) struct Printer {
    json: bool,
    /// Messages on stdout as JSON lines (`--jsonl`).
    jsonl: bool,
    out: BufWriter<Stdout>,
    /// Set once stdout failed; later messages are dropped.
    out_failed: bool,
    echo: Option<mpsc::UnboundedSender<Payload>>,
    control: mpsc::UnboundedSender<Control>,
    state: ConnectionState,
    /// Whether the client was ever connected; before that, a return to
    /// `Disconnected` is a failed `connect()`, which the main task reports.
    was_connected: bool,
    /// Why the last socket (or reconnect attempt) ended.
    last_error: Option<Error>,
}

impl Printer {
    pub(crate) fn new(
        json: bool,
        jsonl: bool,
        echo: Option<mpsc::UnboundedSender<Payload>>,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        Printer {
            json,
            jsonl,
            out: BufWriter::new(io::stdout()),
            out_failed: false,
            echo,
            control,
            state: ConnectionState::Disconnected,
            was_connected: false,
            last_error: None,
        }
    }

    fn write_message(&mut self, msg: &IncomingMessage) -> io::Result<()> {
        if self.jsonl {
            return self.write_json_message(msg);
        }
        match &msg.payload {
            Payload::Text(t) => self.out.write_all(t.as_bytes())?,
            Payload::Binary(b) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                self.out.write_all(b"base64:")?;
                self.out.write_all(encoded.as_bytes())?;
            }
        }
        self.out.write_all(b"\n")?;
        // Flushed per message so a reader sees each line at once; stdout is
        // locked only for the flush, and a message is one or two syscalls.
        self.out.flush()
    }

    /// `--jsonl`: one object per message, its kind saying how to read
    /// `data` (a text message as a JSON string, newlines and all; a binary
    /// one in base64), so nothing in a message can pass for another kind.
    fn write_json_message(&mut self, msg: &IncomingMessage) -> io::Result<()> {
        let encoded;
        let (kind, data) = match &msg.payload {
            Payload::Text(t) => ("text", &**t),
            Payload::Binary(b) => {
                encoded = base64::engine::general_purpose::STANDARD.encode(b);
                ("binary", encoded.as_str())
            }
        };
        let line = JsonMessage {
            kind,
            seq: msg.seq,
            data,
        };
        serde_json::to_writer(&mut self.out, &line).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn event(&self, json: JsonEvent<'_>, human: std::fmt::Arguments<'_>) {
        if self.json {
            match serde_json::to_string(&json) {
                Ok(line) => say!("{line}"),
                Err(e) => log::error!("cannot serialize event: {e}"),
            }
        } else {
            say!("{human}");
        }
    }
}

/// A received message as a `--jsonl` line (fields in this order).
#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    kind: &'a str,
    /// The server's sequence number (reliable mode); left out in raw mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    data: &'a str,
}

/// An event as a `--json` line. A struct-like enum rather than `json!` so
/// that `"event"` comes first and fields keep this order.
#[derive(serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonEvent<'a> {
    State {
        previous: &'a str,
        current: &'a str,
    },
    Error {
        error: &'a str,
    },
    Closed {
        code: Option<u16>,
        reason: &'a str,
        by_us: bool,
        error: Option<&'a str>,
    },
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        reason: &'a str,
    },
    Reconnected {
        attempts: u32,
        downtime_ms: u64,
    },
    Dropped {
        id: u64,
        reason: &'a str,
    },
    NotSent {
        line: u64,
        error: &'a str,
    },
    Accepted {
        line: u64,
    },
    SessionLost {
        connection_id: &'a str,
        resending: usize,
    },
}

/// The library's serde name of a unit variant ("connecting", "overflow",
/// ...): those are the documented ones.
fn serde_name<T: serde::Serialize + std::fmt::Debug>(v: T) -> String {
    match serde_json::to_value(&v) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{v:?}"),
    }
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<IncomingMessage> for Printer {
    type Result = ();

    fn handle(&mut self, msg: IncomingMessage, _: &mut Context<Self>) {
        if !self.out_failed {
            if let Err(e) = self.write_message(&msg) {
                self.out_failed = true;
                let _ = self
                    .control
                    .send(Control::Failed(format!("writing to stdout: {e}")));
            }
        }
        if let Some(echo) = &self.echo {
            let _ = echo.send(msg.payload);
        }
    }
}

impl Handler<StateChanged> for Printer {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        let (previous, current) = (serde_name(msg.previous), serde_name(msg.current));
        self.event(
            JsonEvent::State {
                previous: &previous,
                current: &current,
            },
            format_args!("state: {previous} -> {current}"),
        );
        self.state = msg.current;
        match msg.current {
            ConnectionState::Connected => {
                self.was_connected = true;
                self.last_error = None;
            }
            ConnectionState::Disconnected if self.was_connected => {
                let _ = self.control.send(Control::Ended(self.last_error.take()));
            }
            _ => {}
        }
    }
}

impl Handler<ErrorEvent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: ErrorEvent, _: &mut Context<Self>) {
        let error = msg.error.to_string();
        self.event(
            JsonEvent::Error { error: &error },
            format_args!("error: {error}"),
        );
        // A failed reconnect attempt, and then `GaveUp`, is what ends a
        // client that gives up. Errors while connected are followed by a
        // `Closed` that carries them, errors while closing (e.g. an echo
        // refused) do not change how the connection ended, and neither does
        // a full outbox.
        let about_the_link = !matches!(msg.error, Error::BufferFull(_) | Error::NotConnected);
        if about_the_link
            && matches!(
                self.state,
                ConnectionState::Connecting | ConnectionState::Reconnecting
            )
        {
            self.last_error = Some(msg.error);
        }
    }
}

impl Handler<Closed> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Closed, _: &mut Context<Self>) {
        let error = msg.error.as_ref().map(ToString::to_string);
        let who = if msg.by_us { "us" } else { "peer" };
        let code = msg.code.map(|c| format!(", code {c}")).unwrap_or_default();
        let reason = if msg.reason.is_empty() {
            String::new()
        } else {
            format!(", reason {:?}", msg.reason)
        };
        let cause = error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        self.event(
            JsonEvent::Closed {
                code: msg.code,
                reason: &msg.reason,
                by_us: msg.by_us,
                error: error.as_deref(),
            },
            format_args!("closed by {who}{code}{reason}{cause}"),
        );
        self.last_error = msg.error;
    }
}

impl Handler<Reconnecting> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Reconnecting, _: &mut Context<Self>) {
        let reason = msg.reason.to_string();
        self.event(
            JsonEvent::Reconnecting {
                attempt: msg.attempt,
                delay_ms: millis(msg.delay),
                reason: &reason,
            },
            format_args!(
                "reconnecting: attempt {} in {:.3}s after: {reason}",
                msg.attempt,
                msg.delay.as_secs_f64()
            ),
        );
    }
}

impl Handler<Reconnected> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Reconnected, _: &mut Context<Self>) {
        let plural = if msg.attempts == 1 { "" } else { "s" };
        self.event(
            JsonEvent::Reconnected {
                attempts: msg.attempts,
                downtime_ms: millis(msg.downtime),
            },
            format_args!(
                "reconnected after {} attempt{plural} ({:.1}s down)",
                msg.attempts,
                msg.downtime.as_secs_f64()
            ),
        );
    }
}

impl Handler<MessageDropped> for Printer {
    type Result = ();

    fn handle(&mut self, msg: MessageDropped, _: &mut Context<Self>) {
        let reason = serde_name(msg.reason);
        self.event(
            JsonEvent::Dropped {
                id: msg.id.get(),
                reason: &reason,
            },
            format_args!("dropped message {} ({reason})", msg.id),
        );
    }
}

impl Handler<NotSent> for Printer {
    type Result = ();

    fn handle(&mut self, msg: NotSent, _: &mut Context<Self>) {
        let error = msg.error;
        self.event(
            JsonEvent::NotSent {
                line: msg.line,
                error: &error,
            },
            format_args!("line {} not sent: {error}", msg.line),
        );
    }
}

impl Handler<Accepted> for Printer {
    type Result = ();

    fn handle(&mut self, msg: Accepted, _: &mut Context<Self>) {
        self.event(
            JsonEvent::Accepted { line: msg.line },
            format_args!("accepted {}", msg.line),
        );
    }
}

impl Handler<SessionLost> for Printer {
    type Result = ();

    fn handle(&mut self, msg: SessionLost, _: &mut Context<Self>) {
        self.event(
            JsonEvent::SessionLost {
                connection_id: &msg.connection_id,
                resending: msg.resending,
            },
            format_args!(
                "session lost: {}, re-sending {}",
                msg.connection_id, msg.resending
            ),
        );
    }
}

impl Handler<Barrier> for Printer {
    type Result = ();

    fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
}
