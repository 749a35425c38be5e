//! The value parsers of the command line's flags. Each returns a message
//! that clap prints after the flag's name, so a bad value says what was
//! expected.

use std::time::Duration;

use resilient_ws::{server::FailedResumeLimit, OverflowPolicy};

/// Parses a duration in humantime form: `500ms`, `2s`, `1m30s`, `1h`,
/// `1.5s`, `2 min` (the `humantime` crate; `m` is minutes, `M` months).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): expected e.g. 500ms, 2s, 1m30s or 1h"))
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
        "must be greater than zero (--no-buffer turns buffering off)",
    )
}

/// A limit greater than zero (`--max-fragments`, `--max-sessions`, ...).
pub(crate) fn parse_limit(s: &str) -> Result<usize, String> {
    parse_positive(s, "must be greater than zero")
}

/// A whole number greater than zero; `zero` words the error for 0 (the
/// flags differ in what 0 would have meant).
fn parse_positive(s: &str, zero: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err(zero.into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("invalid count {s:?}: expected a whole number")),
    }
}

/// A byte count greater than zero: a plain number of bytes (`65536`) or a
/// number with a unit (`64KiB`, `16MiB`, `1.5MB`; the `bytesize` crate:
/// `KiB`/`MiB`/`GiB` are powers of 1024, `kB`/`MB`/`GB` (and `k`/`M`/`G`)
/// powers of 1000, case-insensitive).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let bytes = s.parse::<bytesize::ByteSize>().map_err(|_| {
        format!("invalid size {s:?}: expected a number of bytes, e.g. 65536, 64KiB or 16MiB")
    })?;
    match usize::try_from(bytes.as_u64()) {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) if n < usize::MAX => Ok(n),
        _ => Err(format!("size {s:?} is too large")),
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

/// `--failed-resume-limit`: a limit, or `off` (`None`). A newtype because
/// clap reads an `Option<T>` field as "the flag may be absent".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailedResumeLimitArg(pub(crate) Option<FailedResumeLimit>);

/// Parses `N/DURATION` (`20/1m`: N > 0 failures within DURATION > 0) or
/// `off`.
pub(crate) fn parse_failed_resume_limit(s: &str) -> Result<FailedResumeLimitArg, String> {
    let s = s.trim();
    if s == "off" {
        return Ok(FailedResumeLimitArg(None));
    }
    let bad = || format!("invalid limit {s:?}: expected N/DURATION (e.g. 20/1m) or off");
    let (n, window) = s.split_once('/').ok_or_else(bad)?;
    let max_failures = match n.trim().parse::<u32>() {
        Ok(0) => return Err(format!("invalid limit {s:?}: N must be greater than zero")),
        Ok(n) => n,
        Err(_) => return Err(bad()),
    };
    let window = parse_timeout(window).map_err(|e| format!("invalid limit {s:?}: {e}"))?;
    Ok(FailedResumeLimitArg(Some(FailedResumeLimit {
        max_failures,
        window,
    })))
}

/// A URL path for a route: starts with `/`, no query, fragment or spaces.
pub(crate) fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "invalid path {s:?}: it must start with /, e.g. /ws"
        ));
    }
    if s.contains(['?', '#']) || s.contains(char::is_whitespace) {
        return Err(format!(
            "invalid path {s:?}: no query (?), fragment (#) or spaces"
        ));
    }
    Ok(s.to_owned())
}

/// A query parameter name: non-empty ASCII letters, digits, `-`, `_`, `.`
/// or `~` (what the client accepts, and needs no percent-encoding).
pub(crate) fn parse_query_param(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid query parameter name {s:?}: expected ASCII letters, digits, -, _, . or ~"
        ))
    }
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
        // humantime's forms, new with the crate.
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 2m"), Ok(Duration::from_secs(3720)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "5", "s", "-1s", "2 parsecs", "ms10", "1x"] {
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
        // humantime reads decimals.
        assert_eq!(parse_interval("0.5s"), Ok(Duration::from_millis(500)));
        for bad in ["", "5", "00x", "-0", "0.5x"] {
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
        assert_eq!(parse_size(" 1024 "), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("16 mib"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0MiB").is_err());
        for bad in ["", "lots", "-1", "16 MiBs", "MiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// Counts and sizes have their own words: their errors must name what
    /// was expected (the words are what a user sees after the flag).
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
        assert_eq!(parse_limit("0"), Err("must be greater than zero".into()));
        assert_eq!(parse_limit("8"), Ok(8));
        assert_eq!(
            parse_size("1x"),
            Err(
                "invalid size \"1x\": expected a number of bytes, e.g. 65536, 64KiB or 16MiB"
                    .into()
            )
        );
    }

    #[test]
    fn failed_resume_limits() {
        assert_eq!(
            parse_failed_resume_limit("off"),
            Ok(FailedResumeLimitArg(None))
        );
        assert_eq!(
            parse_failed_resume_limit("20/1m"),
            Ok(FailedResumeLimitArg(Some(FailedResumeLimit {
                max_failures: 20,
                window: Duration::from_secs(60)
            })))
        );
        for bad in ["", "20", "0/1m", "20/0s", "x/1m", "20/1x", "-1/1m"] {
            assert!(
                parse_failed_resume_limit(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn paths_and_query_params() {
        assert_eq!(parse_path("/feed/v1"), Ok("/feed/v1".into()));
        for bad in ["", "ws", "/a?b", "/a#b", "/a b"] {
            assert!(parse_path(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_query_param("access_token"), Ok("access_token".into()));
        for bad in ["", "a b", "a&b", "ä"] {
            assert!(
                parse_query_param(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
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
