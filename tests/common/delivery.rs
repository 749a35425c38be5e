//! Exactly-once-in-order assertions: a stream of numbered messages is
//! checked against the numbers it must hold, and a failure names the first
//! place it differs (a 20 000-message stream is unreadable in full).

/// `prefix` followed by each number of `range`: the texts a numbered
/// stream is made of (`numbered("m", 1..=3)` is m1, m2, m3).
pub fn numbered<N: std::fmt::Display>(
    prefix: &str,
    range: impl IntoIterator<Item = N>,
) -> Vec<String> {
    range.into_iter().map(|i| format!("{prefix}{i}")).collect()
}

/// Asserts that `got` is exactly `expected`: each message once, none
/// missing, in order; `what` names the stream in the failure.
pub fn assert_exactly_once_in_order(got: &[String], expected: &[String], what: &str) {
    if got != expected {
        let first_bad = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{what}: {} of {} messages; first difference at {first_bad}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first_bad),
            expected.get(first_bad)
        );
    }
}
