//! What the socket brings in: frames joined into messages, handed to the
//! subscribers (raw mode) or, in reliable mode, decoded and run through the
//! receive side of the session (deliver once, in order; acks back).

use actix::prelude::*;
use actix_http::ws::Frame;

use super::{actor::ConnectionActor, socket::Closing};
use crate::client::{queue_actor::messages::Acked, reliable::Verdict, stats::Counters};
use crate::{
    close_code,
    events::{IncomingMessage, Payload},
    protocol::Frame as ProtoFrame,
    ws::Inbound,
    Error,
};

impl ConnectionActor {
    pub(super) fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        // The frame's sign of life is recorded by the stream (`Gated`).
        if matches!(sock.closing, Closing::Done | Closing::Acking) {
            // Once the socket is failed or closed by the peer, nothing more is
            // delivered; the peer's Close (or the TCP end) finishes it. Not
            // by stopping at once: our own Close may still be unwritten (a
            // peer that sends two Closes in a row), and dropping the sink
            // would lose it. Closing the sink writes it first; its end
            // stops the actor.
            if matches!(frame, Frame::Close(_)) {
                sock.sink.close();
            }
            return;
        }
        match sock.assembler.push(frame) {
            Ok(Inbound::Message(payload)) if self.reliable.session.is_some() => match payload {
                Payload::Binary(b) => match ProtoFrame::decode(b) {
                    Ok(ProtoFrame::Data { payload, .. })
                        if payload.len() > self.opts.max_message_size =>
                    {
                        let max = self.opts.max_message_size;
                        let size = payload.len();
                        self.fail_with_close(ctx, Error::MessageTooLarge { size, max });
                    }
                    Ok(frame) => self.on_protocol_frame(frame, ctx),
                    Err(e) => self.fail_with_close(
                        ctx,
                        Error::Protocol {
                            close_code: e.close_code(),
                            message: format!("malformed frame: {e}"),
                        },
                    ),
                },
                Payload::Text(_) => self.fail_with_close(
                    ctx,
                    Error::Protocol {
                        close_code: close_code::PROTOCOL_ERROR,
                        message: "text message in reliable mode".into(),
                    },
                ),
            },
            Ok(Inbound::Message(payload)) => {
                Counters::add(&self.shared.counters.received, 1);
                self.bus
                    .messages
                    .publish(IncomingMessage { payload, seq: None });
            }
            Ok(Inbound::Partial) => {}
            Ok(Inbound::Pong(b)) => self.on_pong(&b),
            Ok(Inbound::Ping(b)) => self.on_ping(b, ctx),
            Ok(Inbound::Close(reason)) => self.on_peer_close(reason, ctx),
            Err(e) => self.fail_with_close(ctx, e),
        }
    }

    /// Reliable mode: one decoded protocol frame from the server.
    pub(super) fn on_protocol_frame(&mut self, frame: ProtoFrame, ctx: &mut Context<Self>) {
        let ready = self.sock.as_ref().is_some_and(|s| s.welcomed);
        let result = match frame {
            ProtoFrame::Welcome {
                last_received,
                resumed,
            } if !ready => {
                if let Err(e) = self.reliable.on_ack(last_received) {
                    Err(e)
                } else {
                    self.acked = self.acked.max(last_received);
                    if let Some(sock) = self.sock.as_mut() {
                        sock.welcomed = true;
                    }
                    self.link_up(ctx, Some(last_received), resumed);
                    Ok(())
                }
            }
            ProtoFrame::Data { seq, payload } if ready => match self.reliable.on_data(seq) {
                Ok(verdict) => {
                    if verdict == Verdict::Deliver {
                        Counters::add(&self.shared.counters.received, 1);
                        self.bus.messages.publish(IncomingMessage {
                            payload,
                            seq: Some(seq),
                        });
                    }
                    self.schedule_ack(ctx);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            ProtoFrame::Ack { seq } if ready => self.reliable.on_ack(seq).map(|()| {
                self.acked = self.acked.max(seq);
                self.links.acked.do_send(Acked(seq));
            }),
            // Our PING's answer (PROTOCOL.md §5a): its arrival already
            // counted for the heartbeat; the nonce is our send time.
            ProtoFrame::Pong { nonce } if ready => {
                self.on_pong(&nonce.to_be_bytes());
                Ok(())
            }
            other => Err(Error::Protocol {
                close_code: close_code::PROTOCOL_ERROR,
                message: format!("unexpected frame {}", frame_name(&other)),
            }),
        };
        if let Err(e) = result {
            self.fail_with_close(ctx, e);
        }
    }
}

fn frame_name(f: &ProtoFrame) -> &'static str {
    match f {
        ProtoFrame::Hello { .. } => "HELLO",
        ProtoFrame::Welcome { .. } => "WELCOME",
        ProtoFrame::Data { .. } => "DATA before WELCOME",
        ProtoFrame::Ack { .. } => "ACK before WELCOME",
        ProtoFrame::Ping { .. } => "PING",
        ProtoFrame::Pong { .. } => "PONG before WELCOME",
    }
}
