//! Ending a socket: the close handshake (ours and the peer's), failing a
//! socket with a Close code, and what the stream's end means.

use actix::prelude::*;
use actix_http::ws::{CloseReason, Frame, Message as WsMessage, ProtocolError};

use super::{
    actor::{ConnectionActor, Phase},
    socket::{Closing, End},
};
use crate::{
    close_code,
    events::{ConnectionState, ErrorEvent},
    ws::{close_reason, codec_violation},
    Error,
};

impl ConnectionActor {
    pub(super) fn record_end(&mut self, end: End) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// The socket or attempt failed: report it and stop (the restart tears
    /// everything down).
    pub(super) fn fail(&mut self, ctx: &mut Context<Self>, error: Error) {
        if self.end.is_none() {
            log::debug!("connection failed: {error}");
            self.bus.errors.publish(ErrorEvent {
                error: error.clone(),
            });
        }
        self.record_end(End {
            code: None,
            reason: String::new(),
            by_us: false,
            error: Some(error),
        });
        ctx.stop();
    }

    /// We must fail the connection (protocol violation, oversize message):
    /// send a Close with the matching code, then stop once the peer is done.
    pub(super) fn fail_with_close(&mut self, ctx: &mut Context<Self>, error: Error) {
        self.fail_closing(ctx, error, false);
    }

    /// Like [`fail_with_close`](Self::fail_with_close) when the codec failed:
    /// the socket cannot be read any more, so no Close of the peer's will
    /// be seen. Instead of waiting out `close_timeout` for it, the TCP
    /// connection ends once our Close is written (RFC 6455 §7.1.7), and a
    /// reconnect starts at once.
    pub(super) fn fail_unreadable(&mut self, ctx: &mut Context<Self>, error: Error) {
        self.fail_closing(ctx, error, true);
    }

    pub(super) fn fail_closing(&mut self, ctx: &mut Context<Self>, error: Error, end_tcp: bool) {
        let code = error.close_code().unwrap_or(close_code::PROTOCOL_ERROR);
        log::warn!("closing with {code}: {error}");
        self.bus.errors.publish(ErrorEvent {
            error: error.clone(),
        });
        self.record_end(End {
            code: None,
            reason: String::new(),
            by_us: true,
            error: Some(error),
        });
        self.ack_before_close(ctx, move |act, ctx| {
            act.close_write_side(ctx, close_reason(code, ""));
            if end_tcp {
                // The sink writes the Close first (transport::WsFramed);
                // its end stops the actor (WriteHandler::finished).
                if let Some(sock) = act.sock.as_mut() {
                    sock.sink.close();
                }
            }
        });
    }

    /// Writes a Close frame behind everything already queued and waits (up to
    /// `close_timeout`) for the peer to end the TCP connection or answer.
    ///
    /// The sink is never `close()`d: awc's `Framed::close` shuts the socket
    /// down without writing what is still in its write buffer, which loses
    /// exactly this last Close frame. Dropping the socket after the peer is
    /// done (or the timer fired) is what ends it.
    pub(super) fn close_write_side(&mut self, ctx: &mut Context<Self>, frame: CloseReason) {
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        if sock.closing == Closing::Done {
            return;
        }
        let _ = sock.write(WsMessage::Close(Some(frame)));
        sock.closing = Closing::Done;
        ctx.run_later(self.opts.close_timeout, |_, ctx| ctx.stop());
    }

    pub(super) fn on_peer_close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        let code = reason.as_ref().map(|r| u16::from(r.code));
        let text = reason
            .as_ref()
            .and_then(|r| r.description.clone())
            .unwrap_or_default();
        let by_us = self.sock.as_ref().map(|s| s.closing) == Some(Closing::Sent);
        if by_us {
            // The peer answered our Close: the handshake is complete.
            self.record_end(End {
                code,
                reason: text,
                by_us: true,
                error: None,
            });
            ctx.stop();
            return;
        }
        // 1000, or a Close without a code (1005), is a normal end.
        let error = match code {
            None | Some(close_code::NORMAL) => None,
            Some(close_code::SESSION_GONE) if self.reliable.session.is_some() => {
                Some(Error::SessionGone)
            }
            Some(c) => Some(Error::Closed {
                code: c,
                reason: text.clone(),
            }),
        };
        log::debug!("peer closed with {code:?}");
        self.record_end(End {
            code,
            reason: text,
            by_us: false,
            error,
        });
        // Echo the peer's code, as RFC 6455 §5.5.1 asks.
        let echo = close_reason(code.unwrap_or(close_code::NORMAL), "");
        self.close_write_side(ctx, echo);
        // Both Close frames are exchanged, so we may end the TCP connection
        // (§7.1.1); actix-web would otherwise wait a second for it. The sink
        // writes the echo first (transport::WsFramed), then the actor stops.
        if let Some(sock) = self.sock.as_mut() {
            sock.sink.close();
        }
    }

    pub(super) fn start_graceful_close(&mut self, ctx: &mut Context<Self>) {
        self.wanted = false;
        if self.phase == Phase::Reconnecting && self.sock.is_none() {
            // Waiting for a retry (or mid-attempt): just stop trying.
            self.phase = Phase::Idle;
        }
        if let Some(h) = self.attempt.take() {
            // Still connecting: abandon the attempt.
            ctx.cancel_future(h);
            self.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
            return;
        }
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        if sock.closing != Closing::Open {
            return;
        }
        self.set_state(ConnectionState::Disconnecting);
        self.ack_before_close(ctx, |act, ctx| act.write_normal_close(ctx));
    }

    /// The Close of a graceful close; the peer's answer is awaited for up to
    /// `close_timeout`.
    pub(super) fn write_normal_close(&mut self, ctx: &mut Context<Self>) {
        let Some(sock) = self.sock.as_mut() else {
            ctx.stop();
            return;
        };
        // The Close frame queues behind every message already written, so
        // the sink flushes them first; we never call `close()` on the sink
        // before the peer answered, which is how awc loses a last frame.
        let _ = sock.write(WsMessage::Close(Some(close_reason(close_code::NORMAL, ""))));
        sock.closing = Closing::Sent;
        ctx.run_later(self.opts.close_timeout, |act, ctx| {
            log::debug!("peer did not answer our Close in time");
            act.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
        });
    }
}

impl StreamHandler<Result<Frame, ProtocolError>> for ConnectionActor {
    fn handle(&mut self, item: Result<Frame, ProtocolError>, ctx: &mut Context<Self>) {
        match item {
            Ok(frame) => self.on_frame(frame, ctx),
            Err(ProtocolError::Overflow) => {
                let max = self.opts.max_message_size;
                self.fail_with_close(ctx, Error::MessageTooLarge { size: max + 1, max });
            }
            // The codec stops after these (inbound::Gated): nothing more
            // can be read.
            Err(ProtocolError::Io(e)) => match codec_violation(&e) {
                Some((close_code, message)) => self.fail_unreadable(
                    ctx,
                    Error::Protocol {
                        close_code,
                        message: message.into(),
                    },
                ),
                None => self.fail(ctx, Error::io(e)),
            },
            Err(e) => self.fail_unreadable(
                ctx,
                Error::Protocol {
                    close_code: close_code::PROTOCOL_ERROR,
                    message: e.to_string(),
                },
            ),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The TCP stream ended. After a completed or failed close that is
        // expected; otherwise the network or the peer dropped us.
        let expected = self
            .sock
            .as_ref()
            .is_some_and(|s| s.closing != Closing::Open);
        if expected {
            self.record_end(End {
                code: None,
                reason: String::new(),
                by_us: true,
                error: None,
            });
            ctx.stop();
        } else {
            self.fail(ctx, Error::ConnectionLost);
        }
    }
}

impl actix::io::WriteHandler<ProtocolError> for ConnectionActor {
    fn error(&mut self, err: ProtocolError, ctx: &mut Context<Self>) -> Running {
        let error = match err {
            ProtocolError::Io(e) => Error::io(e),
            other => Error::Protocol {
                close_code: close_code::PROTOCOL_ERROR,
                message: other.to_string(),
            },
        };
        self.fail(ctx, error);
        Running::Stop
    }
}
