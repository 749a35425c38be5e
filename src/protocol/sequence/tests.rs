//! The sequence rules alone, then a Sender/Receiver pair driven through
//! random socket lifetimes.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

#[test]
fn delivers_in_order_and_drops_duplicates() {
    let mut r = Receiver::new(0);
    assert_eq!(r.on_data(1), Ok(Verdict::Deliver));
    assert_eq!(r.on_data(2), Ok(Verdict::Deliver));
    assert!(!r.ack_pending(), "a delivery counts once the app took it");
    r.count_for_ack(2);
    // A resume replays from an older point: duplicates, then new.
    r.new_socket();
    assert!(!r.ack_pending(), "a new socket starts the ack count again");
    assert_eq!(r.on_data(1), Ok(Verdict::Duplicate));
    assert_eq!(r.on_data(2), Ok(Verdict::Duplicate));
    assert_eq!(r.on_data(3), Ok(Verdict::Deliver));
    assert_eq!(r.delivered, 3);
    assert!(r.ack_pending(), "duplicates count for the ack at once");
    r.ack_sent();
    assert!(!r.ack_pending());
}

#[test]
fn a_gap_and_a_backwards_sequence_are_errors_that_change_nothing() {
    let mut r = Receiver::new(0);
    r.on_data(1).unwrap();
    assert_eq!(r.on_data(3), Err(SequenceError::Gap));
    assert_eq!(r.delivered, 1, "nothing delivered past the gap");
    assert_eq!(r.on_data(2), Ok(Verdict::Deliver));
    assert_eq!(r.on_data(2), Err(SequenceError::Backwards));
    assert_eq!(r.on_data(1), Err(SequenceError::Backwards));
    assert_eq!(r.delivered, 2);
    assert_eq!(SequenceError::Gap.reason(), SequenceError::Gap.to_string());
    assert_eq!(
        SequenceError::Backwards.reason(),
        SequenceError::Backwards.to_string()
    );
}

#[test]
fn a_session_starting_later_delivers_from_first_seq() {
    // The server at session start: delivered = first_seq - 1 (§5).
    let mut r = Receiver::new(41);
    assert_eq!(r.on_data(41), Ok(Verdict::Duplicate));
    assert_eq!(r.on_data(42), Ok(Verdict::Deliver));
    r.reset();
    assert_eq!(r, Receiver::default(), "a lost session numbers from 1");
}

#[test]
fn the_threshold_makes_an_ack_due() {
    let mut r = Receiver::new(0);
    for seq in 1..=3 {
        r.on_data(seq).unwrap();
        r.count_for_ack(1);
    }
    assert!(!r.ack_due(4));
    r.on_data(4).unwrap();
    r.count_for_ack(1);
    assert!(r.ack_due(4));
    assert!(r.ack_due(0), "a zero threshold means every delivery");
}

#[test]
fn the_window_bounds_bytes_but_lets_a_large_message_go_alone() {
    let mut s: Sender<&str> = Sender::new(1, 10);
    assert!(s.has_room(100), "an empty window takes anything");
    assert_eq!(s.push("a", 100), 1);
    assert!(!s.has_room(1));
    s.mark_sent(1);
    assert_eq!(s.on_ack(1), Ok(100));
    assert!(s.is_empty());
    assert_eq!(s.push("b", 6), 2);
    assert!(s.has_room(4));
    assert!(!s.has_room(5));
    assert_eq!(s.bytes(), 6);
    assert_eq!(s.first_unacked(), 2);
    assert_eq!(s.next_seq(), 3);
    s.set_max_bytes(100);
    assert!(s.has_room(94));
}

#[test]
fn acks_are_checked_against_what_was_sent_and_lower_ones_ignored() {
    let mut s: Sender<u8> = Sender::new(1, usize::MAX);
    for p in 0..3 {
        s.push(p, 1);
    }
    s.mark_sent(2);
    assert_eq!(s.on_ack(3), Err(SequenceError::AckNotSent));
    assert_eq!(s.len(), 3, "a refused ack frees nothing");
    assert_eq!(s.on_ack(2), Ok(2));
    assert_eq!(s.on_ack(1), Ok(0), "a lower ack is ignored");
    assert_eq!(s.first_unacked(), 3);
    assert_eq!(check_ack(5, 5), Ok(()));
    assert_eq!(check_ack(6, 5), Err(SequenceError::AckNotSent));
}

#[test]
fn a_resume_drops_what_the_peer_claims_and_replays_the_rest() {
    let mut s: Sender<u8> = Sender::new(1, usize::MAX);
    for p in 1..=4 {
        let seq = s.push(p, 1);
        if seq <= 2 {
            s.mark_sent(seq);
        }
    }
    assert!(matches!(s.resume(3), Err(SequenceError::ClaimAhead)));
    let (freed, replay) = s.resume(1).unwrap();
    let replay: Vec<u64> = replay.map(|m| m.seq).collect();
    assert_eq!((freed, replay), (1, vec![2, 3, 4]));
    // The replay counts as sent: the peer may ack it.
    assert_eq!(s.on_ack(4), Ok(3));
}

#[test]
fn a_rewind_takes_back_the_newest_and_numbers_them_again() {
    let mut s: Sender<u8> = Sender::new(1, usize::MAX);
    for p in 1..=4 {
        s.push(p, 10);
    }
    let back: Vec<u64> = s.rewind(3).into_iter().map(|m| m.seq).collect();
    assert_eq!(back, vec![4, 3]);
    assert_eq!((s.next_seq(), s.bytes(), s.len()), (3, 20, 2));
    assert_eq!(s.push(9, 1), 3);
}

#[test]
fn a_restored_sender_goes_on_with_its_numbering() {
    let mut s: Sender<u8> = Sender::new(1, usize::MAX);
    s.restore(8, [(5, 1, 3), (6, 2, 4), (7, 3, 5)]);
    assert_eq!((s.first_unacked(), s.next_seq(), s.bytes()), (5, 8, 12));
    assert_eq!(s.on_ack(5), Ok(3), "the restored messages were sent before");
    assert_eq!(s.push(4, 1), 8);
    let mut empty: Sender<u8> = Sender::new(1, usize::MAX);
    empty.restore(0, []);
    assert_eq!(empty.first_unacked(), 1);
}

/// One step of the simulated link. Sizes and positions are taken modulo
/// what exists.
#[derive(Debug, Clone)]
enum Op {
    /// The application sends a message of this many bytes.
    Send(usize),
    /// The next DATA on the wire arrives.
    Data,
    /// The next ACK on the wire arrives.
    Ack,
    /// The receiver's ack timer fires.
    AckTimer,
    /// The socket dies: whatever is on the wire is lost; a new socket resumes.
    Cut,
    /// A faulty middlebox drops the DATA at this position (a gap follows).
    LoseData(usize),
    /// ... or delivers it twice (the sequence goes backwards).
    DuplicateData(usize),
    /// An ACK on the wire is lost (acks are cumulative: harmless).
    LoseAck(usize),
    /// The receiving end lost the session (§7): a new one starts at the
    /// sender's oldest unacked seq.
    SessionLost,
}

fn op() -> impl Strategy<Value = Op> {
    ops(0)
}

/// The ops, with lost sessions at weight `session_lost`.
fn ops(session_lost: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        session_lost => Just(Op::SessionLost),
        4 => (1usize..40).prop_map(Op::Send),
        6 => Just(Op::Data),
        3 => Just(Op::Ack),
        1 => Just(Op::AckTimer),
        1 => Just(Op::Cut),
        1 => any::<usize>().prop_map(Op::LoseData),
        1 => any::<usize>().prop_map(Op::DuplicateData),
        1 => any::<usize>().prop_map(Op::LoseAck),
    ]
}

/// A Sender/Receiver pair and the socket between them. Message ids are
/// 0, 1, 2, ... in send order; the receiver's application must see exactly
/// that sequence.
struct Link {
    sender: Sender<u32>,
    outbox: VecDeque<(u32, usize)>,
    sent_ids: u32,
    data_wire: VecDeque<(u64, u32)>,
    ack_wire: VecDeque<u64>,
    receiver: Receiver,
    /// What the receiving application got, in order.
    app: Vec<u32>,
    /// The id the application must get next: one past the last, or after
    /// a lost session the sender's oldest unacked one again.
    expect: u32,
    threshold: u32,
    max_bytes: usize,
    /// A fault was injected on the current socket: a protocol error may
    /// follow (and then the socket closes, like a cut).
    faulty: bool,
}

impl Link {
    fn new(max_bytes: usize, threshold: u32) -> Self {
        Link {
            sender: Sender::new(1, max_bytes),
            outbox: VecDeque::new(),
            sent_ids: 0,
            data_wire: VecDeque::new(),
            ack_wire: VecDeque::new(),
            receiver: Receiver::new(0),
            app: Vec::new(),
            expect: 0,
            threshold,
            max_bytes,
            faulty: false,
        }
    }

    /// The sender writes what the window allows.
    fn pump(&mut self) {
        while let Some(&(id, bytes)) = self.outbox.front() {
            if !self.sender.has_room(bytes) {
                break;
            }
            self.outbox.pop_front();
            let seq = self.sender.push(id, bytes);
            self.sender.mark_sent(seq);
            self.data_wire.push_back((seq, id));
        }
        assert!(
            self.sender.bytes() <= self.max_bytes || self.sender.len() == 1,
            "the window holds {} bytes in {} messages, bound {}",
            self.sender.bytes(),
            self.sender.len(),
            self.max_bytes
        );
    }

    fn send_ack(&mut self) {
        if self.receiver.ack_pending() {
            self.ack_wire.push_back(self.receiver.delivered);
            self.receiver.ack_sent();
        }
    }

    /// A new socket: the receiver claims what it delivered (HELLO), the
    /// sender drops that and replays the rest (§4).
    fn reconnect(&mut self) {
        self.data_wire.clear();
        self.ack_wire.clear();
        self.faulty = false;
        self.receiver.new_socket();
        let claim = self.receiver.delivered;
        let (_, replay) = self.sender.resume(claim).expect("an honest claim");
        let replay: Vec<(u64, u32)> = replay.map(|m| (m.seq, m.payload)).collect();
        self.data_wire.extend(replay);
        self.pump();
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Send(bytes) => {
                self.outbox.push_back((self.sent_ids, bytes));
                self.sent_ids += 1;
            }
            Op::Data => {
                let Some((seq, id)) = self.data_wire.pop_front() else {
                    return;
                };
                match self.receiver.on_data(seq) {
                    Ok(Verdict::Deliver) => {
                        assert_eq!(id, self.expect, "delivered out of order");
                        self.expect += 1;
                        self.app.push(id);
                        self.receiver.count_for_ack(1);
                        if self.receiver.ack_due(self.threshold) {
                            self.send_ack();
                        }
                    }
                    Ok(Verdict::Duplicate) => {
                        assert!(id < self.expect, "a duplicate never delivered");
                    }
                    Err(e) => {
                        assert!(self.faulty, "{e} without a fault on the socket");
                        // Closed with 1002; the session resumes.
                        self.reconnect();
                    }
                }
            }
            Op::Ack => {
                if let Some(seq) = self.ack_wire.pop_front() {
                    self.sender.on_ack(seq).expect("an honest ack");
                }
            }
            Op::AckTimer => self.send_ack(),
            Op::Cut => self.reconnect(),
            Op::SessionLost => {
                // The new session's receiver starts just before the
                // sender's claim (HELLO `first_seq`); the sender keeps its
                // numbering and re-sends everything unacked (§7).
                let first_seq = self.sender.first_unacked();
                self.receiver = Receiver::new(first_seq - 1);
                self.expect = u32::try_from(first_seq - 1).expect("small");
                self.reconnect();
            }
            Op::LoseData(i) if !self.data_wire.is_empty() => {
                let i = i % self.data_wire.len();
                self.data_wire.remove(i);
                self.faulty = true;
            }
            Op::DuplicateData(i) if !self.data_wire.is_empty() => {
                let i = i % self.data_wire.len();
                let f = self.data_wire[i];
                self.data_wire.insert(i + 1, f);
                self.faulty = true;
            }
            Op::LoseAck(i) if !self.ack_wire.is_empty() => {
                let i = i % self.ack_wire.len();
                self.ack_wire.remove(i);
            }
            Op::LoseData(_) | Op::DuplicateData(_) | Op::LoseAck(_) => {}
        }
        self.pump();
    }

    /// A last, healthy socket: everything gets through and is acked.
    fn settle(&mut self) {
        self.reconnect();
        for _ in 0..=self.sent_ids {
            while !self.data_wire.is_empty() {
                self.step(Op::Data);
            }
            self.send_ack();
            while !self.ack_wire.is_empty() {
                self.step(Op::Ack);
            }
            if self.outbox.is_empty() && self.sender.is_empty() {
                return;
            }
        }
        panic!("the link did not settle");
    }
}

proptest! {
    // 256 lifetimes of up to 200 steps each: a second or two unoptimized
    // unoptimized (the two run in parallel).
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the socket lifetimes, lost or doubled frames, the
    /// receiver's application gets every message exactly once, in order,
    /// and the window never grows past its bound.
    #[test]
    fn every_message_arrives_exactly_once_in_order(
        ops in proptest::collection::vec(op(), 0..200),
        max_bytes in 1usize..120,
        threshold in 1u32..6,
    ) {
        let mut link = Link::new(max_bytes, threshold);
        for op in ops {
            link.step(op);
        }
        link.settle();
        let want: Vec<u32> = (0..link.sent_ids).collect();
        prop_assert_eq!(&link.app, &want);
        prop_assert_eq!(link.sender.bytes(), 0);
        prop_assert_eq!(link.sender.first_unacked(), u64::from(link.sent_ids) + 1);
    }

    /// Across lost sessions (§7): at least once and in order. A message
    /// the old session delivered whose ack was lost comes again under its
    /// own seq, and nothing is skipped.
    #[test]
    fn across_lost_sessions_every_message_arrives_in_order_at_least_once(
        ops in proptest::collection::vec(ops(1), 0..200),
        max_bytes in 1usize..120,
        threshold in 1u32..6,
    ) {
        let mut link = Link::new(max_bytes, threshold);
        for op in ops {
            link.step(op);
        }
        link.settle();
        // Each delivery was checked against `expect` as it happened; here:
        // every id at least once, and the last run ends with the last id.
        let mut seen = vec![false; link.sent_ids as usize];
        for &id in &link.app {
            seen[id as usize] = true;
        }
        prop_assert!(seen.iter().all(|s| *s), "{:?}", link.app);
        prop_assert_eq!(link.expect, link.sent_ids);
        prop_assert_eq!(link.sender.bytes(), 0);
    }
}
