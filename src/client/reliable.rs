//! Reliable mode, receiving side and session bookkeeping of the connection:
//! the sequence rules of docs/PROTOCOL.md §5 as a plain type, so they are
//! unit-tested apart from sockets and actors.
//!
//! It lives in the `ConnectionActor`'s fields (which survive its restarts);
//! the sending half (numbering, the unacked window, replay) is the
//! `QueueActor`'s.

use super::transport::SessionInfo;
use crate::{close_code, queue::StoredSession, Error};

impl From<&SessionInfo> for StoredSession {
    fn from(s: &SessionInfo) -> Self {
        StoredSession {
            connection_id: s.connection_id.clone(),
            reconnect_token: s.reconnect_token.clone(),
            socket_url: s.socket_url.clone(),
            max_unacked_bytes: s.max_unacked_bytes,
            ack_interval: s.ack_interval,
            ack_threshold: s.ack_threshold,
            resume_window: Some(s.resume_window),
            max_message_size: s.max_message_size,
            client_id: s.client_id.clone(),
        }
    }
}

impl From<&StoredSession> for SessionInfo {
    fn from(s: &StoredSession) -> Self {
        SessionInfo {
            connection_id: s.connection_id.clone(),
            reconnect_token: s.reconnect_token.clone(),
            socket_url: s.socket_url.clone(),
            max_unacked_bytes: s.max_unacked_bytes,
            ack_interval: s.ack_interval,
            ack_threshold: s.ack_threshold,
            max_message_size: s.max_message_size,
            resume_window: s
                .resume_window
                .unwrap_or(super::transport::DEFAULT_RESUME_WINDOW),
            client_id: s.client_id.clone(),
        }
    }
}

/// What to do with a DATA frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The next message: hand it to the application.
    Deliver,
    /// Already delivered (a replay): drop it, but ack it.
    Duplicate,
}

/// The session state of the receiving side.
#[derive(Debug, Default)]
pub(crate) struct ReliableState {
    /// The session being used; `None` until negotiated, and after the server
    /// said it is gone.
    pub(crate) session: Option<SessionInfo>,
    /// The highest server seq delivered to the application.
    pub(crate) delivered: u64,
    /// The highest client seq written to any socket of this session: an
    /// ack beyond it acknowledges something never sent.
    pub(crate) highest_written: u64,
    /// The previous DATA seq on the current socket.
    last_on_socket: u64,
    /// Deliveries (and duplicates) not acknowledged yet.
    unacked: u32,
}

fn violation(message: &str) -> Error {
    Error::Protocol {
        close_code: close_code::PROTOCOL_ERROR,
        message: message.into(),
    }
}

impl ReliableState {
    /// A new socket: per-socket rules start again.
    pub(crate) fn new_socket(&mut self) {
        self.last_on_socket = 0;
        self.unacked = 0;
    }

    /// The server lost the session: the next one numbers its messages to us
    /// from 1 again. Our own numbering goes on (the seq is the message id).
    pub(crate) fn session_gone(&mut self) -> Option<SessionInfo> {
        self.delivered = 0;
        self.session.take()
    }

    /// Applies §5 to a DATA frame's seq.
    pub(crate) fn on_data(&mut self, seq: u64) -> Result<Verdict, Error> {
        if seq <= self.last_on_socket {
            return Err(violation("data sequence went backwards"));
        }
        self.last_on_socket = seq;
        self.unacked += 1;
        if seq <= self.delivered {
            Ok(Verdict::Duplicate)
        } else if seq == self.delivered + 1 {
            self.delivered = seq;
            Ok(Verdict::Deliver)
        } else {
            Err(violation("gap in data sequence"))
        }
    }

    /// Checks an ACK from the peer.
    pub(crate) fn on_ack(&self, seq: u64) -> Result<(), Error> {
        if seq > self.highest_written {
            return Err(violation("ack for a message never sent"));
        }
        Ok(())
    }

    /// Records a DATA frame we wrote.
    pub(crate) fn note_written(&mut self, seq: u64) {
        self.highest_written = self.highest_written.max(seq);
    }

    /// Whether an ack must go out now (threshold reached).
    pub(crate) fn ack_now(&self, threshold: u32) -> bool {
        self.unacked >= threshold.max(1)
    }

    /// Whether anything waits to be acknowledged.
    pub(crate) fn ack_pending(&self) -> bool {
        self.unacked > 0
    }

    /// An ACK is being sent: returns its seq.
    pub(crate) fn take_ack(&mut self) -> u64 {
        self.unacked = 0;
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_session_keeps_the_servers_limits() {
        let stored = StoredSession {
            connection_id: "c".into(),
            max_message_size: Some(4096),
            resume_window: Some(std::time::Duration::from_secs(7)),
            ..StoredSession::default()
        };
        let info = SessionInfo::from(&stored);
        assert_eq!(info.max_message_size, Some(4096));
        assert_eq!(info.resume_window, std::time::Duration::from_secs(7));
        assert_eq!(StoredSession::from(&info), stored);
    }

    #[test]
    fn delivers_in_order_and_drops_duplicates() {
        let mut s = ReliableState::default();
        s.new_socket();
        assert_eq!(s.on_data(1).unwrap(), Verdict::Deliver);
        assert_eq!(s.on_data(2).unwrap(), Verdict::Deliver);
        // A resume replays from an older point: duplicates, then new.
        s.new_socket();
        assert_eq!(s.on_data(1).unwrap(), Verdict::Duplicate);
        assert_eq!(s.on_data(2).unwrap(), Verdict::Duplicate);
        assert_eq!(s.on_data(3).unwrap(), Verdict::Deliver);
        assert_eq!(s.delivered, 3);
        assert!(s.ack_pending());
        assert_eq!(s.take_ack(), 3);
        assert!(!s.ack_pending());
    }

    #[test]
    fn a_gap_and_a_backwards_sequence_are_protocol_errors() {
        let mut s = ReliableState::default();
        s.new_socket();
        assert_eq!(s.on_data(1).unwrap(), Verdict::Deliver);
        let gap = s.on_data(3).unwrap_err();
        assert_eq!(gap.close_code(), Some(1002));
        assert_eq!(s.delivered, 1, "nothing delivered past the gap");

        let mut s = ReliableState::default();
        s.new_socket();
        s.on_data(1).unwrap();
        s.on_data(2).unwrap();
        let back = s.on_data(2).unwrap_err();
        assert!(back.to_string().contains("backwards"), "{back}");
        assert_eq!(s.delivered, 2);
    }

    #[test]
    fn acks_beyond_what_was_written_are_refused() {
        let mut s = ReliableState::default();
        s.note_written(5);
        assert!(s.on_ack(5).is_ok());
        assert!(s.on_ack(6).is_err());
    }

    #[test]
    fn the_threshold_triggers_an_early_ack() {
        let mut s = ReliableState::default();
        s.new_socket();
        for seq in 1..=3 {
            s.on_data(seq).unwrap();
        }
        assert!(!s.ack_now(4));
        s.on_data(4).unwrap();
        assert!(s.ack_now(4));
    }

    #[test]
    fn a_lost_session_restarts_the_inbound_numbering() {
        let mut s = ReliableState::default();
        s.new_socket();
        s.on_data(1).unwrap();
        s.note_written(9);
        s.session_gone();
        s.new_socket();
        assert_eq!(s.on_data(1).unwrap(), Verdict::Deliver);
        assert_eq!(s.highest_written, 9, "our ids go on");
    }
}
