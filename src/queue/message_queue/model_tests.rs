//! A model-based test: random operations on a [`MessageQueue`] and on a
//! plain list sorted by (priority descending, id ascending) must agree.

use super::*;

use rand::{rngs::StdRng, Rng, SeedableRng};

fn queue(options: QueueOptions) -> MessageQueue {
    MessageQueue::new(options).expect("valid options")
}

/// A model of the queue: a plain list, the dequeue order computed by
/// sorting on (priority descending, id ascending).
#[derive(Clone, Debug, PartialEq)]
struct Modeled {
    id: MessageId,
    priority: u8,
    attempts: u32,
    payload: Payload,
}

fn model_order(model: &mut [Modeled]) {
    model.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id));
}

fn snapshot(q: &MessageQueue) -> Vec<Modeled> {
    q.iter()
        .map(|m| Modeled {
            id: m.id,
            priority: m.priority,
            attempts: m.attempts,
            payload: m.payload.clone(),
        })
        .collect()
}

#[test]
fn random_operations_match_a_simple_model() {
    let policies = [
        OverflowPolicy::Reject,
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropNewest,
        OverflowPolicy::Wait(Duration::from_millis(5)),
    ];
    for (seed, policy) in policies.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(0x5eed + seed as u64);
        let max_size = 8;
        let max_retries = 3;
        let mut q = queue(QueueOptions {
            max_size,
            max_retries,
            overflow: policy,
            ..QueueOptions::default()
        });
        let mut model: Vec<Modeled> = Vec::new();
        let mut in_flight: Vec<QueuedMessage> = Vec::new();
        let mut next_id = 1u64;

        for step in 0..5000 {
            match rng.random_range(0..10) {
                0..=3 => {
                    let priority = rng.random_range(0..4u8);
                    let payload = Payload::from(format!("m{next_id}"));
                    let result = q.enqueue(payload.clone(), priority);
                    if model.len() < max_size {
                        let outcome = result.unwrap();
                        assert_eq!(outcome.id, MessageId(next_id));
                        assert_eq!(outcome.dropped, None);
                        model.push(Modeled {
                            id: outcome.id,
                            priority,
                            attempts: 0,
                            payload,
                        });
                        next_id += 1;
                    } else {
                        match policy {
                            OverflowPolicy::Reject => {
                                assert!(matches!(result, Err(QueueError::Full { max_size: 8, .. })))
                            }
                            OverflowPolicy::Wait(_) => assert!(matches!(
                                result,
                                Err(QueueError::WouldWait { max_size: 8, .. })
                            )),
                            OverflowPolicy::DropNewest => {
                                let outcome = result.unwrap();
                                let dropped = outcome.dropped.unwrap();
                                assert_eq!(dropped.id, MessageId(next_id));
                                assert_eq!(dropped.payload, payload);
                                next_id += 1;
                            }
                            OverflowPolicy::DropOldest => {
                                let outcome = result.unwrap();
                                let dropped = outcome.dropped.unwrap();
                                let lowest = model.iter().map(|m| m.priority).min().unwrap();
                                if priority < lowest {
                                    assert_eq!(dropped.id, outcome.id);
                                } else {
                                    let victim = model
                                        .iter()
                                        .enumerate()
                                        .filter(|(_, m)| m.priority == lowest)
                                        .min_by_key(|(_, m)| m.id)
                                        .map(|(i, _)| i)
                                        .unwrap();
                                    let victim = model.remove(victim);
                                    assert_eq!(dropped.id, victim.id);
                                    model.push(Modeled {
                                        id: outcome.id,
                                        priority,
                                        attempts: 0,
                                        payload,
                                    });
                                }
                                assert_eq!(outcome.id, MessageId(next_id));
                                assert_eq!(dropped.reason, DropReason::Overflow);
                                next_id += 1;
                            }
                        }
                    }
                }
                4 | 5 => {
                    model_order(&mut model);
                    let expected = (!model.is_empty()).then(|| model.remove(0));
                    let got = q.dequeue();
                    assert_eq!(got.as_ref().map(|m| m.id), expected.map(|m| m.id));
                    in_flight.extend(got);
                }
                6 => {
                    let max = rng.random_range(0..5);
                    model_order(&mut model);
                    let take = max.min(model.len());
                    let expected: Vec<MessageId> = model.drain(..take).map(|m| m.id).collect();
                    let got = q.dequeue_batch(max);
                    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), expected);
                    in_flight.extend(got);
                }
                7 if !in_flight.is_empty() => {
                    let i = rng.random_range(0..in_flight.len());
                    let msg = in_flight.swap_remove(i);
                    let (id, attempts) = (msg.id, msg.attempts + 1);
                    let (priority, payload) = (msg.priority, msg.payload.clone());
                    match q.mark_failed(msg) {
                        Ok(got) => {
                            assert!(attempts < max_retries);
                            assert_eq!(got, id);
                            model.push(Modeled {
                                id,
                                priority,
                                attempts,
                                payload,
                            });
                        }
                        Err(dropped) => {
                            assert!(attempts >= max_retries);
                            assert_eq!(dropped.id, id);
                            assert_eq!(dropped.reason, DropReason::RetriesExhausted);
                        }
                    }
                }
                8 if next_id > 1 => {
                    let id = MessageId(rng.random_range(1..next_id));
                    let expected = model
                        .iter()
                        .position(|m| m.id == id)
                        .map(|i| model.remove(i).id);
                    assert_eq!(q.remove(id).map(|m| m.id), expected);
                }
                _ => {
                    // Sent successfully: forget one in-flight message.
                    if !in_flight.is_empty() {
                        let i = rng.random_range(0..in_flight.len());
                        in_flight.swap_remove(i);
                    }
                }
            }
            model_order(&mut model);
            assert_eq!(snapshot(&q), model, "{policy:?}, step {step}");
            assert_eq!(q.len(), model.len());
            assert_eq!(q.is_empty(), model.is_empty());
            assert_eq!(q.peek().map(|m| m.id), model.first().map(|m| m.id));
        }
    }
}
