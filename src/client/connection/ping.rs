//! Pings and pongs: the heartbeat's ping (carrying its send time, so the
//! pong gives the round-trip time; a PING frame to a server that offers
//! them, else a WebSocket ping), the heartbeat's timeout, and answering
//! the peer's pings under a throttle.

use std::sync::atomic::Ordering;

use actix::prelude::*;
use actix_http::ws::Message as WsMessage;
use actix_rt::time::Instant;
use bytes::Bytes;

use super::{
    actor::ConnectionActor,
    messages::{HeartbeatTimeout, SendPing},
    socket::Closing,
};
use crate::{protocol::Frame as ProtoFrame, ws::PongAction, Error};

impl Handler<SendPing> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SendPing, _: &mut Context<Self>) {
        if let Some(sock) = self.sock.as_mut() {
            if sock.gen == msg.gen && sock.closing == Closing::Open {
                let sent = self.shared.nanos_now();
                // A server that answers PING frames gets those once the
                // socket is ready (PROTOCOL.md §5a): their PONG comes from
                // the server's protocol side, not only its WebSocket layer.
                let frames = self
                    .reliable
                    .session
                    .as_ref()
                    .is_some_and(|s| s.ping_frames);
                if frames && sock.ready {
                    let ping = ProtoFrame::Ping { nonce: sent }.to_bytes();
                    let _ = sock.write(WsMessage::Binary(ping));
                } else {
                    let sent = sent.to_be_bytes();
                    let _ = sock.write(WsMessage::Ping(Bytes::copy_from_slice(&sent)));
                }
            }
        }
    }
}

impl Handler<HeartbeatTimeout> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: HeartbeatTimeout, ctx: &mut Context<Self>) {
        if self.sock.as_ref().is_some_and(|s| s.gen == msg.gen) {
            if self.bus.messages.paused() {
                // We stopped reading for a slow subscriber: the silence is
                // ours, not the peer's. Watch again from now.
                self.shared.touch();
                self.watch(msg.gen, ctx);
                return;
            }
            self.fail(ctx, Error::HeartbeatTimeout(msg.timeout));
        }
    }
}

impl ConnectionActor {
    /// A pong from the peer: ours carry their send time (see `SendPing`),
    /// which gives the round-trip time; anything else is unsolicited.
    pub(super) fn on_pong(&mut self, b: &[u8]) {
        if let Ok(sent) = <[u8; 8]>::try_from(b) {
            let rtt = self
                .shared
                .nanos_now()
                .saturating_sub(u64::from_be_bytes(sent));
            self.shared
                .counters
                .last_rtt_nanos
                .store(rtt.max(1), Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            self.shared.counters.record_rtt(rtt);
        }
    }

    /// A ping from the peer: answered, but coalesced under a ping flood so
    /// a peer cannot make us write a pong per ping.
    pub(super) fn on_ping(&mut self, b: Bytes, ctx: &mut Context<Self>) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        match sock.pongs.on_ping(b, Instant::now()) {
            PongAction::Send(b) => {
                let _ = sock.write(WsMessage::Pong(b));
            }
            PongAction::Later(after) => {
                let gen = sock.gen;
                ctx.run_later(after, move |act, _| {
                    if let Some(sock) = act.sock.as_mut().filter(|s| s.gen == gen) {
                        if let Some(b) = sock.pongs.flush(Instant::now()) {
                            if sock.closing == Closing::Open {
                                let _ = sock.write(WsMessage::Pong(b));
                            }
                        }
                    }
                });
            }
            PongAction::Coalesced => {}
        }
    }
}
