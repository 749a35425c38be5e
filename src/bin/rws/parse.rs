//! The value parsers of the command line's flags. Each returns a message
//! that clap prints after the flag's name, so a bad value says what was
//! expected.

use std::time::Duration;

use resilient_ws::OverflowPolicy;

/// Parses `500ms`, `2s`, `1m`, `1h` (a whole number and a unit).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let bad = || format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1m or 1h");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs_per_unit = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(secs_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// A duration that may be zero, also written as a bare `0` (for intervals
/// and delays, where zero means "none": `--heartbeat-interval 0`).
pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// A duration that must not be zero (both timeouts need time to pass).
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// A message count greater than zero (`--buffer`).
pub(crate) fn parse_count(s: &str) -> Result<usize, String> {
    parse_positive(
        s,
        "count",
        "a whole number",
        "must be greater than zero (--no-buffer turns buffering off)",
    )
}

/// A byte count greater than zero.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    parse_positive(s, "size", "a number of bytes", "must be greater than zero")
}

/// A whole number greater than zero; `noun` and `expected` word the error
/// for a value that is not a number, `zero` the one for 0 (counts and sizes
/// differ only in those words).
fn parse_positive(s: &str, noun: &str, expected: &str, zero: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err(zero.into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid {noun} {s:?}: expected {expected}")),
    }
}

/// Parses `reject`, `drop-oldest`, `drop-newest` or `wait:DURATION` (a
/// duration greater than zero).
pub(crate) fn parse_overflow(s: &str) -> Result<OverflowPolicy, String> {
    let s = s.trim();
    match s {
        "reject" => Ok(OverflowPolicy::Reject),
        "drop-oldest" => Ok(OverflowPolicy::DropOldest),
        "drop-newest" => Ok(OverflowPolicy::DropNewest),
        _ => match s.strip_prefix("wait:") {
            Some(d) => parse_timeout(d)
                .map(OverflowPolicy::Wait)
                .map_err(|e| format!("invalid wait in {s:?}: {e}")),
            None => Err(format!(
                "invalid overflow policy {s:?}: expected reject, drop-oldest, \
                 drop-newest or wait:DURATION (e.g. wait:2s)"
            )),
        },
    }
}

/// Parses `Name: value`.
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid header {s:?}: the name is empty"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "1.5s", "-1s", "2 minutes", "1d", "ms10"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }

    #[test]
    fn intervals_may_be_zero() {
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        assert_eq!(parse_interval(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse_interval("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "5", "00x", "-0", "0.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert!(parse_timeout("0ms").is_err());
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1k").is_err());
    }

    /// Counts and sizes share one parser: their errors must still name
    /// what was expected (the words are what a user sees after the flag).
    #[test]
    fn counts_and_sizes_word_their_errors() {
        assert_eq!(parse_count("7"), Ok(7));
        assert_eq!(
            parse_count("0"),
            Err("must be greater than zero (--no-buffer turns buffering off)".into())
        );
        assert_eq!(
            parse_count("lots"),
            Err("invalid count \"lots\": expected a whole number".into())
        );
        assert_eq!(parse_size("0"), Err("must be greater than zero".into()));
        assert_eq!(
            parse_size("1k"),
            Err("invalid size \"1k\": expected a number of bytes".into())
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Client: demo"),
            Ok(("X-Client".into(), "demo".into()))
        );
        assert_eq!(
            parse_header("X-Url:http://a:1/"),
            Ok(("X-Url".into(), "http://a:1/".into()))
        );
        assert_eq!(parse_header("X-Empty:"), Ok(("X-Empty".into(), "".into())));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(parse_overflow("reject"), Ok(OverflowPolicy::Reject));
        assert_eq!(
            parse_overflow("drop-oldest"),
            Ok(OverflowPolicy::DropOldest)
        );
        assert_eq!(
            parse_overflow("drop-newest"),
            Ok(OverflowPolicy::DropNewest)
        );
        assert_eq!(
            parse_overflow("wait:2s"),
            Ok(OverflowPolicy::Wait(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_overflow("wait:250ms"),
            Ok(OverflowPolicy::Wait(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "wait",
            "wait:",
            "wait:0s",
            "wait:2",
            "wait 2s",
            "drop",
            "Reject",
            "drop_oldest",
        ] {
            assert!(parse_overflow(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
