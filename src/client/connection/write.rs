//! The write path: batches from the outbox onto the socket.

use actix::prelude::*;
use actix_http::ws::Message as WsMessage;

use super::{
    actor::ConnectionActor,
    messages::WriteBatch,
    socket::{to_ws, Closing},
};
use crate::{
    client::{queue_actor::messages::Returned, stats::Counters},
    protocol::encode_data,
};

impl Handler<WriteBatch> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: WriteBatch, _ctx: &mut Context<Self>) {
        let reliable = self.reliable.session.is_some();
        if let Some(sock) = self.sock.as_mut() {
            if sock.closing == Closing::Open && sock.ready && (!reliable || msg.gen == sock.gen) {
                let n = msg.items.len() as u64;
                for out in msg.items {
                    if reliable {
                        self.reliable.note_written(out.seq);
                        let _ = sock.write(WsMessage::Binary(encode_data(out.seq, &out.payload)));
                    } else {
                        let written = sock.write(to_ws(out.payload));
                        if let (Some(tx), Some(place)) = (out.receipt, out.place) {
                            // Raw mode's receipt: handed to the socket's writer.
                            let _ = tx.send(match written {
                                Ok(()) => Ok(place.id),
                                Err(_) => Err(crate::Error::ConnectionLost),
                            });
                        }
                    }
                }
                Counters::add(&self.shared.counters.sent, n);
                Counters::add(&self.shared.counters.batches, 1);
                return;
            }
        }
        if !self.stateful() {
            // Raw mode: the outbox owns what its socket lost and puts it
            // back in its place. The `LinkState::Down` went to the same
            // mailbox before this, the next `Up` goes after it.
            self.links.returned.do_send(Returned(msg.items));
        }
        // Reliable mode: the outbox still holds these and replays them.
    }
}
