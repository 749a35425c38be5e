//! [`PlainClients`]: a server's open plain (non-protocol) WebSocket
//! clients, as the broadcast and the shutdown see them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use super::{socket_tx::Outgoing, writer::PlainCloser};
use crate::{close_code, Payload};

/// A plain client as the broadcast sees it.
pub(crate) struct PlainClient {
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) closer: Arc<PlainCloser>,
    /// Whether it receives broadcasts (plain mode Broadcast).
    pub(crate) broadcast: bool,
}

/// The open plain clients, by socket id.
#[derive(Default)]
pub(crate) struct PlainClients {
    clients: Mutex<HashMap<u64, PlainClient>>,
}

impl PlainClients {
    pub(crate) fn add(&self, id: u64, client: PlainClient) {
        self.lock().insert(id, client);
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Asks every plain client's writer to close with `code` and `reason`.
    pub(crate) fn close_all(&self, code: u16, reason: &str) {
        for c in self.lock().values() {
            c.closer.close(code, reason);
        }
    }

    /// Sends `payload` to every plain client in broadcast mode; a client
    /// too far behind (its channel full) is closed with 1013 and dropped.
    /// Returns how many it was handed to.
    pub(crate) fn broadcast(&self, payload: &Payload) -> usize {
        let mut sent = 0;
        self.lock().retain(|_, c| {
            if !c.broadcast {
                return true;
            }
            let out = match payload {
                Payload::Text(t) => Outgoing::Text(t.clone()),
                Payload::Binary(b) => Outgoing::Binary(b.clone()),
            };
            match c.tx.try_send(out) {
                Ok(()) => {
                    sent += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::warn!("plain client too slow for the broadcast; closing it");
                    c.closer.close(close_code::TRY_AGAIN_LATER, "too slow");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        sent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, PlainClient>> {
        self.clients.lock().expect("plain lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(
        clients: &PlainClients,
        id: u64,
        capacity: usize,
        broadcast: bool,
    ) -> (mpsc::Receiver<Outgoing>, Arc<PlainCloser>) {
        let (tx, rx) = mpsc::channel(capacity);
        let closer = Arc::new(PlainCloser::default());
        clients.add(
            id,
            PlainClient {
                tx,
                closer: closer.clone(),
                broadcast,
            },
        );
        (rx, closer)
    }

    #[test]
    fn broadcast_skips_echo_clients_and_drops_a_full_or_gone_one() {
        let clients = PlainClients::default();
        let (mut reader, _) = client(&clients, 1, 4, true);
        let (mut echo, _) = client(&clients, 2, 4, false);
        let (_full, full_closer) = client(&clients, 3, 1, true);
        let (gone, _) = client(&clients, 4, 4, true);
        drop(gone);

        assert_eq!(clients.broadcast(&Payload::from("a")), 2, "1 and 3");
        assert_eq!(clients.len(), 3, "the gone one is dropped");
        assert!(matches!(reader.try_recv(), Ok(Outgoing::Text(t)) if t == "a"));
        assert!(echo.try_recv().is_err(), "an echo client gets no broadcast");

        assert_eq!(clients.broadcast(&Payload::from("b")), 1);
        assert_eq!(clients.len(), 2, "the full one is closed and dropped");
        assert!(full_closer.is_closing());

        clients.remove(1);
        clients.remove(1);
        assert_eq!(clients.len(), 1);
    }
}
