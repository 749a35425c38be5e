//! The queue's rules, one test each: order, ids, overflow policies,
//! removal, retries and dead letters, expiry, configuration.

use super::*;

fn queue(options: QueueOptions) -> MessageQueue {
    MessageQueue::new(options).expect("valid options")
}

fn with_max_size(max_size: usize, overflow: OverflowPolicy) -> MessageQueue {
    queue(QueueOptions {
        max_size,
        overflow,
        ..QueueOptions::default()
    })
}

fn enqueue(q: &mut MessageQueue, text: &str, priority: u8) -> MessageId {
    let outcome = q.enqueue(text, priority).expect("room in the queue");
    assert_eq!(outcome.dropped, None);
    outcome.id
}

fn texts(q: &MessageQueue) -> Vec<String> {
    q.iter()
        .map(|m| m.payload.as_text().unwrap().to_owned())
        .collect()
}

fn drain_texts(q: &mut MessageQueue) -> Vec<String> {
    std::iter::from_fn(|| q.dequeue())
        .map(|m| m.payload.as_text().unwrap().to_owned())
        .collect()
}

#[test]
fn dequeues_higher_priority_first_and_fifo_within_a_priority() {
    let mut q = queue(QueueOptions::default());
    for (text, p) in [
        ("low1", 1),
        ("high1", 200),
        ("mid1", 5),
        ("low2", 1),
        ("high2", 200),
        ("mid2", 5),
        ("zero", 0),
        ("top", 255),
    ] {
        enqueue(&mut q, text, p);
    }
    let expected = [
        "top", "high1", "high2", "mid1", "mid2", "low1", "low2", "zero",
    ];
    assert_eq!(texts(&q), expected, "iter is in dequeue order");
    assert_eq!(q.peek().unwrap().payload.as_text(), Some("top"));
    assert_eq!(drain_texts(&mut q), expected);
    assert!(q.is_empty());
    assert_eq!(q.dequeue(), None);
    assert_eq!(q.peek(), None);
}

#[test]
fn ids_start_at_one_and_strictly_increase_across_priorities_and_drains() {
    let mut q = queue(QueueOptions::default());
    let a = enqueue(&mut q, "a", 3);
    let b = enqueue(&mut q, "b", 0);
    q.dequeue();
    q.clear();
    let c = enqueue(&mut q, "c", 3);
    assert_eq!((a, b, c), (MessageId(1), MessageId(2), MessageId(3)));
    assert_eq!(c.to_string(), "3");
    assert_eq!(serde_json::to_string(&c).unwrap(), "3");
    assert_eq!(serde_json::from_str::<MessageId>("3").unwrap(), c);
}

#[test]
fn full_queue_with_reject_returns_full_and_leaves_the_queue_unchanged() {
    let mut q = with_max_size(2, OverflowPolicy::Reject);
    enqueue(&mut q, "a", 0);
    enqueue(&mut q, "b", 9);
    assert!(q.is_full());
    let before: Vec<QueuedMessage> = q.iter().cloned().collect();

    let err = q.enqueue("c", 5).unwrap_err();
    assert_eq!(
        err,
        QueueError::Full {
            max_size: 2,
            payload: "c".into()
        }
    );
    assert_eq!(err.into_payload(), Some(Payload::from("c")));
    assert_eq!(q.iter().cloned().collect::<Vec<_>>(), before);
    assert_eq!(q.len(), 2);

    // The refused message used no id.
    q.dequeue();
    assert_eq!(enqueue(&mut q, "d", 0), MessageId(3));
}

#[test]
fn drop_oldest_evicts_the_oldest_message_of_the_lowest_priority_and_reports_its_id() {
    let mut q = with_max_size(4, OverflowPolicy::DropOldest);
    enqueue(&mut q, "high-old", 9);
    let low_old = enqueue(&mut q, "low-old", 1);
    enqueue(&mut q, "low-new", 1);
    enqueue(&mut q, "mid", 5);

    let outcome = q.enqueue("incoming", 1).unwrap();
    assert_eq!(outcome.id, MessageId(5));
    assert_eq!(
        outcome.dropped,
        Some(Dropped {
            id: low_old,
            payload: "low-old".into(),
            reason: DropReason::Overflow,
        })
    );
    assert_eq!(q.len(), 4);
    assert_eq!(texts(&q), ["high-old", "mid", "low-new", "incoming"]);
}

#[test]
fn drop_oldest_drops_the_incoming_message_when_its_priority_is_the_lowest() {
    let mut q = with_max_size(2, OverflowPolicy::DropOldest);
    enqueue(&mut q, "a", 5);
    enqueue(&mut q, "b", 5);
    let outcome = q.enqueue("lower", 4).unwrap();
    let dropped = outcome.dropped.unwrap();
    assert_eq!(
        (dropped.id, dropped.reason),
        (outcome.id, DropReason::Overflow)
    );
    assert_eq!(dropped.payload, Payload::from("lower"));
    assert_eq!(texts(&q), ["a", "b"]);
}

#[test]
fn drop_newest_reports_the_incoming_message_under_its_new_id() {
    let mut q = with_max_size(2, OverflowPolicy::DropNewest);
    enqueue(&mut q, "a", 0);
    enqueue(&mut q, "b", 0);
    let outcome = q.enqueue("c", 200).unwrap();
    assert_eq!(outcome.id, MessageId(3));
    assert_eq!(
        outcome.dropped,
        Some(Dropped {
            id: MessageId(3),
            payload: "c".into(),
            reason: DropReason::Overflow,
        })
    );
    assert_eq!(texts(&q), ["a", "b"]);
    q.dequeue();
    assert_eq!(enqueue(&mut q, "d", 0), MessageId(4));
}

#[test]
fn wait_policy_returns_would_wait_with_the_timeout_and_the_payload() {
    let timeout = Duration::from_millis(250);
    let mut q = with_max_size(1, OverflowPolicy::Wait(timeout));
    enqueue(&mut q, "a", 0);
    let err = q.enqueue(vec![1u8, 2], 0).unwrap_err();
    assert_eq!(
        err,
        QueueError::WouldWait {
            max_size: 1,
            timeout,
            payload: Payload::from(vec![1u8, 2]),
        }
    );
    assert_eq!(texts(&q), ["a"]);
    // Once there is room, the same payload goes in.
    q.dequeue();
    let payload = err.into_payload().unwrap();
    assert!(q.enqueue(payload, 0).unwrap().dropped.is_none());
    assert_eq!(q.len(), 1);
}

#[test]
fn queue_errors_convert_to_the_crate_error() {
    let full = QueueError::Full {
        max_size: 7,
        payload: "x".into(),
    };
    let wait = QueueError::WouldWait {
        max_size: 8,
        timeout: Duration::from_secs(1),
        payload: "x".into(),
    };
    assert!(matches!(
        crate::Error::from(full),
        crate::Error::BufferFull(7)
    ));
    assert!(matches!(
        crate::Error::from(wait),
        crate::Error::BufferFull(8)
    ));
    assert!(matches!(
        crate::Error::from(QueueError::InvalidConfig("bad".into())),
        crate::Error::InvalidConfig(m) if m == "bad"
    ));
}

#[test]
fn remove_takes_out_exactly_the_message_with_that_id() {
    let mut q = queue(QueueOptions::default());
    enqueue(&mut q, "a", 1);
    let b = enqueue(&mut q, "b", 1);
    enqueue(&mut q, "c", 1);
    let d = enqueue(&mut q, "d", 7);

    assert_eq!(q.remove(b).unwrap().payload.as_text(), Some("b"));
    assert_eq!(q.remove(b), None, "already removed");
    assert_eq!(q.remove(MessageId(99)), None);
    assert_eq!(q.remove(d).unwrap().priority, 7);
    assert_eq!(q.len(), 2);
    assert_eq!(texts(&q), ["a", "c"]);
    assert_eq!(drain_texts(&mut q), ["a", "c"]);
}

#[test]
fn mark_failed_puts_the_message_back_at_the_front_of_its_priority_with_one_more_attempt() {
    let mut q = queue(QueueOptions::default());
    enqueue(&mut q, "high", 9);
    let first = enqueue(&mut q, "first", 1);
    enqueue(&mut q, "second", 1);

    assert_eq!(q.dequeue().unwrap().payload.as_text(), Some("high"));
    let msg = q.dequeue().unwrap();
    assert_eq!((msg.id, msg.attempts), (first, 0));
    enqueue(&mut q, "third", 1);

    assert_eq!(q.mark_failed(msg), Ok(first));
    assert_eq!(q.len(), 3);
    let again = q.peek().unwrap();
    assert_eq!((again.id, again.attempts), (first, 1));
    assert_eq!(texts(&q), ["first", "second", "third"]);
}

#[test]
fn mark_failed_restores_the_original_order_of_a_failed_batch_in_any_order() {
    let mut q = queue(QueueOptions::default());
    for t in ["a", "b", "c", "d"] {
        enqueue(&mut q, t, 0);
    }
    let mut batch = q.dequeue_batch(3);
    enqueue(&mut q, "e", 0);
    // Hand them back out of order.
    let b = batch.remove(1);
    q.mark_failed(b).unwrap();
    for m in batch {
        q.mark_failed(m).unwrap();
    }
    assert_eq!(texts(&q), ["a", "b", "c", "d", "e"]);
}

#[test]
fn mark_failed_dead_letters_the_message_when_attempts_reach_max_retries() {
    let mut q = queue(QueueOptions {
        max_retries: 3,
        ..QueueOptions::default()
    });
    let id = enqueue(&mut q, "doomed", 4);
    enqueue(&mut q, "other", 4);
    for attempt in 1..3 {
        let msg = q.dequeue().unwrap();
        assert_eq!(msg.id, id);
        assert_eq!(q.mark_failed(msg), Ok(id), "attempt {attempt} is retried");
    }
    let msg = q.dequeue().unwrap();
    assert_eq!(msg.attempts, 2);
    assert_eq!(
        q.mark_failed(msg),
        Err(Dropped {
            id,
            payload: "doomed".into(),
            reason: DropReason::RetriesExhausted,
        })
    );
    assert_eq!(texts(&q), ["other"]);
    assert_eq!(q.len(), 1);
}

#[test]
fn mark_failed_on_a_peeked_copy_updates_the_queued_message_instead_of_duplicating_it() {
    let mut q = queue(QueueOptions {
        max_retries: 2,
        ..QueueOptions::default()
    });
    let id = enqueue(&mut q, "a", 0);
    let copy = q.peek().unwrap().clone();
    assert_eq!(q.mark_failed(copy), Ok(id));
    assert_eq!(q.len(), 1);
    assert_eq!(q.peek().unwrap().attempts, 1);

    let copy = q.peek().unwrap().clone();
    assert_eq!(
        q.mark_failed(copy).unwrap_err().reason,
        DropReason::RetriesExhausted
    );
    assert!(q.is_empty(), "the dead letter leaves the queue");
    assert_eq!(q.peek(), None);
}

#[test]
fn drain_expired_drops_messages_queued_for_the_ttl_and_reports_their_ids() {
    let ttl = Duration::from_secs(60);
    let mut q = queue(QueueOptions {
        ttl: Some(ttl),
        ..QueueOptions::default()
    });
    let a = enqueue(&mut q, "a", 0);
    let b = enqueue(&mut q, "b", 9);

    assert_eq!(q.drain_expired(Instant::now()), [], "not yet expired");
    assert_eq!(q.len(), 2);
    let expiry = q.next_expiry().unwrap();
    assert!(expiry >= q.iter().map(|m| m.enqueued_at).min().unwrap() + ttl);

    let later = Instant::now() + ttl + Duration::from_millis(1);
    let expired = q.drain_expired(later);
    assert_eq!(
        expired,
        [
            Dropped {
                id: b,
                payload: "b".into(),
                reason: DropReason::Expired
            },
            Dropped {
                id: a,
                payload: "a".into(),
                reason: DropReason::Expired
            },
        ]
    );
    assert!(q.is_empty());
    assert_eq!(q.next_expiry(), None);
}

#[test]
fn drain_expired_keeps_messages_enqueued_after_the_cutoff() {
    let ttl = Duration::from_secs(10);
    let mut q = queue(QueueOptions {
        ttl: Some(ttl),
        ..QueueOptions::default()
    });
    let t0 = Instant::now();
    let young_at = t0 + Duration::from_secs(5);
    let mut ids = Vec::new();
    for (text, priority, at) in [
        ("old-low", 0, t0),
        ("old-high", 7, t0),
        ("young-low", 0, young_at),
        ("young-mid", 3, young_at),
    ] {
        let outcome = q.enqueue_at(text, priority, at).unwrap();
        assert_eq!(outcome.dropped, None);
        ids.push(outcome.id);
    }
    assert_eq!(q.next_expiry(), Some(t0 + ttl));

    let expired = q.drain_expired(t0 + ttl);
    // In dequeue order: the high-priority one first.
    let expired_ids: Vec<_> = expired.iter().map(|d| d.id).collect();
    assert_eq!(expired_ids, [ids[1], ids[0]]);
    assert!(expired.iter().all(|d| d.reason == DropReason::Expired));
    assert_eq!(q.len(), 2);
    assert_eq!(q.next_expiry(), Some(young_at + ttl));
    // Priority 7 is now empty: dequeue must move on to the live ones.
    assert_eq!(drain_texts(&mut q), ["young-mid", "young-low"]);
}

#[test]
fn mark_failed_keeps_expiry_in_fifo_order_even_if_enqueued_at_was_edited() {
    let ttl = Duration::from_secs(10);
    let mut q = queue(QueueOptions {
        ttl: Some(ttl),
        ..QueueOptions::default()
    });
    // Offset so that the edit below can go back a second without underflow.
    let t0 = Instant::now() + Duration::from_secs(10);
    let s = Duration::from_secs(1);
    for (i, text) in ["a", "b", "c"].into_iter().enumerate() {
        let outcome = q.enqueue_at(text, 0, t0 + s * i as u32).unwrap();
        assert_eq!(outcome.dropped, None);
    }
    let mut batch = q.dequeue_batch(2);
    // A caller edits the public field; the queue keeps its order anyway.
    batch[0].enqueued_at = t0 + s * 100;
    batch[1].enqueued_at = t0 - s;
    let b = batch.pop().unwrap();
    let a = batch.pop().unwrap();
    q.mark_failed(a).unwrap();
    q.mark_failed(b).unwrap();
    // Each stamp is clamped between its neighbours': a no later than c,
    // b no earlier than a.
    let stamps: Vec<_> = q.iter().map(|m| m.enqueued_at).collect();
    assert_eq!(stamps, [t0 + s * 2; 3]);

    // Everything stamped up to c's time expires together.
    assert_eq!(q.drain_expired(t0 + s * 2 + ttl).len(), 3);
    assert!(q.is_empty());
}

#[test]
fn enqueue_at_never_stamps_a_message_earlier_than_the_previous_one() {
    let mut q = queue(QueueOptions::default());
    let t0 = Instant::now() + Duration::from_secs(5);
    let a = q.enqueue_at("a", 0, t0).unwrap().id;
    let b = q
        .enqueue_at("b", 0, t0 - Duration::from_secs(1))
        .unwrap()
        .id;
    assert!(a < b);
    let stamps: Vec<Instant> = q.iter().map(|m| m.enqueued_at).collect();
    assert_eq!(stamps, [t0, t0]);
}

#[test]
fn drain_expired_without_a_ttl_drops_nothing() {
    let mut q = queue(QueueOptions::default());
    enqueue(&mut q, "a", 0);
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    assert_eq!(q.drain_expired(far), []);
    assert_eq!(q.next_expiry(), None);
    assert_eq!(q.len(), 1);
}

#[test]
fn dequeue_batch_respects_priority_order_and_max() {
    let mut q = queue(QueueOptions::default());
    for (t, p) in [("l1", 1), ("h1", 8), ("l2", 1), ("h2", 8), ("m1", 4)] {
        enqueue(&mut q, t, p);
    }
    let batch = q.dequeue_batch(3);
    let got: Vec<_> = batch.iter().map(|m| m.payload.as_text().unwrap()).collect();
    assert_eq!(got, ["h1", "h2", "m1"]);
    assert_eq!(q.len(), 2);

    assert!(q.dequeue_batch(0).is_empty());
    assert_eq!(q.len(), 2);

    let mut out = Vec::new();
    assert_eq!(q.dequeue_batch_into(&mut out, 10), 2);
    let got: Vec<_> = out.iter().map(|m| m.payload.as_text().unwrap()).collect();
    assert_eq!(got, ["l1", "l2"]);
    assert!(q.is_empty());
    assert_eq!(q.peek(), None);
}

#[test]
fn clear_returns_every_message_in_dequeue_order() {
    let mut q = queue(QueueOptions::default());
    enqueue(&mut q, "a", 0);
    enqueue(&mut q, "b", 2);
    let cleared: Vec<_> = q
        .clear()
        .into_iter()
        .map(|m| m.payload.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(cleared, ["b", "a"]);
    assert!(q.is_empty());
    assert_eq!(q.dequeue(), None);
}

#[test]
fn persistent_without_a_store_is_invalid_config() {
    let err = MessageQueue::new(QueueOptions {
        persistent: true,
        ..QueueOptions::default()
    })
    .unwrap_err();
    assert!(matches!(&err, QueueError::InvalidConfig(m) if m.contains("store")));
}

#[test]
fn zero_max_size_and_zero_ttl_are_invalid_config() {
    for options in [
        QueueOptions {
            max_size: 0,
            ..QueueOptions::default()
        },
        QueueOptions {
            ttl: Some(Duration::ZERO),
            ..QueueOptions::default()
        },
    ] {
        assert!(matches!(
            MessageQueue::new(options),
            Err(QueueError::InvalidConfig(_))
        ));
    }
}

#[test]
fn defaults_match_the_documented_values() {
    let o = QueueOptions::default();
    assert_eq!(o.max_size, 1000);
    assert_eq!(o.max_retries, 3);
    assert!(!o.persistent);
    assert_eq!(o.overflow, OverflowPolicy::Reject);
    assert_eq!(o.ttl, None);
}

#[test]
fn priority_set_finds_the_highest_and_lowest_across_words() {
    let mut s = PrioritySet::default();
    assert_eq!((s.highest(), s.lowest()), (None, None));
    for p in [0, 63, 64, 130, 255] {
        s.insert(p);
    }
    assert_eq!((s.highest(), s.lowest()), (Some(255), Some(0)));
    s.remove(255);
    s.remove(0);
    assert_eq!((s.highest(), s.lowest()), (Some(130), Some(63)));
}

/// The client numbers messages before they reach the outbox; concurrent
/// senders' ids may arrive out of order. Each takes its sorted place, so
/// putting a message back (`mark_failed`) still finds its spot.
#[cfg(feature = "client")]
#[test]
fn owner_given_ids_arriving_out_of_order_keep_the_lane_sorted() {
    let mut q = queue(QueueOptions::default());
    let now = Instant::now();
    for (id, text) in [(3, "c"), (1, "a"), (4, "d"), (2, "b")] {
        let outcome = q
            .enqueue_with_id(MessageId(id), text.into(), 0, now)
            .expect("room");
        assert_eq!(outcome.id, MessageId(id));
    }
    assert_eq!(texts(&q), ["a", "b", "c", "d"]);
    let a = q.dequeue().expect("a");
    let b = q.dequeue().expect("b");
    assert_eq!(q.mark_failed(b), Ok(MessageId(2)));
    assert_eq!(q.mark_failed(a), Ok(MessageId(1)));
    assert_eq!(drain_texts(&mut q), ["a", "b", "c", "d"]);
}

/// Under drop-newest, the refused message is reported under the id its
/// owner gave it (the one `send()` returned).
#[cfg(feature = "client")]
#[test]
fn an_owner_given_id_is_the_one_a_drop_reports() {
    let mut q = with_max_size(1, OverflowPolicy::DropNewest);
    let now = Instant::now();
    let kept = q
        .enqueue_with_id(MessageId(7), "kept".into(), 0, now)
        .expect("room");
    assert_eq!(kept.dropped, None);
    let outcome = q
        .enqueue_with_id(MessageId(9), "refused".into(), 0, now)
        .expect("dropped, not refused");
    let dropped = outcome.dropped.expect("dropped");
    assert_eq!(
        (dropped.id, dropped.reason),
        (MessageId(9), DropReason::Overflow)
    );
}
