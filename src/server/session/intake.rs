//! Inbound backpressure: how far the application's [`MessageReceived`]
//! subscribers are behind the client, which decides what the session acks
//! and when the socket's reader pauses.
//!
//! [`MessageReceived`]: super::super::events::MessageReceived

use super::super::ServerOptions;

/// The client's messages on their way through the application's
/// `MessageReceived` subscribers (running totals): what was handed to
/// them and what they are known to have handled (learnt from markers, see
/// [`Subscribers::emit_marker`](crate::fanout::Subscribers::emit_marker)).
/// The session acks only what was handled, and closes the socket's
/// [`ReadGate`](super::super::socket::ReadGate) at the backlog bound.
#[derive(Default)]
pub(super) struct Intake {
    pub(super) handed: u64,
    handed_bytes: u64,
    pub(super) handled: u64,
    pub(super) handled_bytes: u64,
    /// `handed` and `handed_bytes` at the last marker.
    last_marker: (u64, u64),
    /// The highest client seq the subscribers handled: what is acked.
    pub(super) taken: u64,
    pub(super) paused: bool,
}

/// What [`Intake::hand`] decided for one message.
#[derive(Debug, PartialEq)]
pub(super) struct HandStep {
    /// The backlog bound is reached: pause the socket's reader.
    pub(super) pause: bool,
    /// Send it as a marker; its replies mean this many messages (and
    /// bytes) were handled.
    pub(super) marker: Option<(u64, u64)>,
}

impl Intake {
    /// Counts one message of `len` bytes handed to the subscribers and
    /// decides whether it goes as a marker: the last message of a batch
    /// (so every handed message is covered by one) and one every quarter
    /// of the backlog bound (messages, or bytes: also a quarter of the
    /// unacked window, so a client whose window holds fewer messages never
    /// waits for a marker it cannot send).
    ///
    /// Not every message at the bound: a marker costs a reply channel and
    /// a future the session's context polls on every wake, and the
    /// reader's mailbox holds up to 1024 frames past the bound, so a
    /// client merely faster than its subscriber paid that on every
    /// message (and each poll walked every marker still out).
    pub(super) fn hand(&mut self, len: u64, last_in_batch: bool, o: &ServerOptions) -> HandStep {
        self.handed += 1;
        self.handed_bytes += len;
        let pause = !self.paused && self.at_bound(o);
        let every = (o.max_inbound_backlog as u64 / 4).max(1);
        let every_bytes = (o.max_inbound_backlog_bytes.min(o.max_unacked_bytes) as u64 / 4).max(1);
        let due = last_in_batch
            || self.handed - self.last_marker.0 >= every
            || self.handed_bytes - self.last_marker.1 >= every_bytes;
        if due {
            self.last_marker = (self.handed, self.handed_bytes);
        }
        HandStep {
            pause,
            marker: due.then_some(self.last_marker),
        }
    }

    /// Whether the subscribers are a backlog bound behind.
    pub(super) fn at_bound(&self, o: &ServerOptions) -> bool {
        self.handed - self.handled >= o.max_inbound_backlog as u64
            || self.handed_bytes - self.handled_bytes >= o.max_inbound_backlog_bytes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{HandStep, Intake};
    use crate::server::ServerOptions;
    /// Hands `batches` batches of `per_batch` messages of `len` bytes to
    /// subscribers that handle nothing; answers (markers, the 1-based
    /// message at which the reader was paused).
    fn slow_subscriber(
        o: &ServerOptions,
        batches: usize,
        per_batch: usize,
        len: u64,
    ) -> (Vec<(u64, u64)>, Option<u64>) {
        let mut intake = Intake::default();
        let (mut markers, mut paused_at) = (Vec::new(), None);
        for _ in 0..batches {
            for k in 0..per_batch {
                let HandStep { pause, marker } = intake.hand(len, k + 1 == per_batch, o);
                if pause {
                    assert!(paused_at.is_none(), "paused twice without a reopen");
                    paused_at = Some(intake.handed);
                    intake.paused = true;
                }
                markers.extend(marker);
            }
        }
        (markers, paused_at)
    }

    /// Past the backlog bound (the reader's mailbox still holds up to four
    /// batches), messages go out as plain events: markers stay one per
    /// batch end and quarter of the bound, instead of one per message
    /// (each a reply channel and a future the session polls on every
    /// wake), which cost the 64 B stateful echo ~10 % of its throughput.
    #[test]
    fn past_the_backlog_bound_markers_stay_one_per_batch() {
        let o = ServerOptions::default();
        assert_eq!(o.max_inbound_backlog, 1024);
        let (markers, paused_at) = slow_subscriber(&o, 8, 256, 64);
        assert_eq!(paused_at, Some(1024), "the reader pauses at the bound");
        // Every batch's last message is a marker (so every message is
        // covered by one), and nothing else is at this size.
        assert_eq!(
            markers.len(),
            8,
            "{} markers for 2048 messages",
            markers.len()
        );
        let want: Vec<(u64, u64)> = (1..=8u64).map(|b| (b * 256, b * 256 * 64)).collect();
        assert_eq!(markers, want);
    }

    /// Below the bound the marker spacing is unchanged: a quarter of the
    /// bound in messages, and a quarter of the smaller of the byte bound
    /// and the unacked window in bytes.
    #[test]
    fn markers_every_quarter_of_the_bound_in_messages_or_bytes() {
        let o = ServerOptions {
            max_inbound_backlog: 40,
            ..ServerOptions::default()
        };
        let (markers, _) = slow_subscriber(&o, 1, 25, 1);
        assert_eq!(markers, vec![(10, 10), (20, 20), (25, 25)]);
        let o = ServerOptions {
            max_unacked_bytes: 64 * 1024,
            ..ServerOptions::default()
        };
        let (markers, paused_at) = slow_subscriber(&o, 1, 40, 1024);
        assert_eq!(paused_at, None);
        let n: Vec<u64> = markers.iter().map(|m| m.0).collect();
        assert_eq!(n, vec![16, 32, 40]);
    }
}
