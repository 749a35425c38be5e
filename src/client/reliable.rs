//! Reliable mode, receiving side and session bookkeeping of the connection.
//! The sequence rules themselves are the protocol's ([`Receiver`], shared
//! with the server); this adds what the client keeps around them.
//!
//! It lives in the `ConnectionActor`'s fields (which survive its restarts);
//! the sending half (numbering, the unacked window, replay) is the
//! `QueueActor`'s.

use super::transport::SessionInfo;
use crate::{
    close_code,
    protocol::sequence::{check_ack, Receiver, SequenceError},
    queue::StoredSession,
    Error,
};

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
            ping_frames: false,
        }
    }
}

/// What to do with a DATA frame (the protocol's rule, re-exported for the
/// connection).
pub(crate) use crate::protocol::sequence::Verdict;

/// The session state of the receiving side: the session in use, the
/// [`Receiver`] that applies §5 to the server's DATA, and what this side
/// wrote (the check of the server's acks).
///
/// It derefs to its [`Receiver`] so the connection reads and restores
/// `delivered` directly; the rules themselves are the Receiver's.
#[derive(Debug, Default)]
pub(crate) struct ReliableState {
    /// The session being used; `None` until negotiated, and after the server
    /// said it is gone.
    pub(crate) session: Option<SessionInfo>,
    /// The server's messages: delivered so far, per-socket order, acks due.
    receiver: Receiver,
    /// The highest client seq written to any socket of this session: an
    /// ack beyond it acknowledges something never sent. Here, not in the
    /// outbox's [`Sender`](crate::protocol::sequence::Sender): the outbox
    /// numbers messages before the connection writes them.
    pub(crate) highest_written: u64,
}

impl std::ops::Deref for ReliableState {
    type Target = Receiver;

    fn deref(&self) -> &Receiver {
        &self.receiver
    }
}

impl std::ops::DerefMut for ReliableState {
    fn deref_mut(&mut self) -> &mut Receiver {
        &mut self.receiver
    }
}

fn violation(e: SequenceError) -> Error {
    Error::Protocol {
        close_code: close_code::PROTOCOL_ERROR,
        message: e.reason().into(),
    }
}

impl ReliableState {
    /// A new socket: per-socket rules start again.
    pub(crate) fn new_socket(&mut self) {
        self.receiver.new_socket();
    }

    /// The server lost the session: the next one numbers its messages to us
    /// from 1 again. Our own numbering goes on (the seq is the message id).
    pub(crate) fn session_gone(&mut self) -> Option<SessionInfo> {
        self.receiver.reset();
        self.session.take()
    }

    /// Applies §5 to a DATA frame's seq. The client's application takes a
    /// message when it is delivered, so it counts for the ack at once.
    pub(crate) fn on_data(&mut self, seq: u64) -> Result<Verdict, Error> {
        let verdict = self.receiver.on_data(seq).map_err(violation)?;
        if verdict == Verdict::Deliver {
            self.receiver.count_for_ack(1);
        }
        Ok(verdict)
    }

    /// Checks an ACK (or a WELCOME's claim) from the peer.
    pub(crate) fn on_ack(&self, seq: u64) -> Result<(), Error> {
        check_ack(seq, self.highest_written).map_err(violation)
    }

    /// Records a DATA frame we wrote.
    pub(crate) fn note_written(&mut self, seq: u64) {
        self.highest_written = self.highest_written.max(seq);
    }

    /// Whether an ack must go out now (threshold reached).
    pub(crate) fn ack_now(&self, threshold: u32) -> bool {
        self.receiver.ack_due(threshold)
    }

    /// An ACK is being sent: returns its seq.
    pub(crate) fn take_ack(&mut self) -> u64 {
        self.receiver.ack_sent();
        self.receiver.delivered
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
