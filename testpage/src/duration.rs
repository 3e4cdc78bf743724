//! Durations as users write them in env vars and flags: `500ms`, `10s`, `1m`, `1h30m`; a bare
//! number (`5`, `0.5`) means seconds, as Kubernetes users expect from `terminationGracePeriodSeconds`.
//!
//! Shared with the `probe` CLI so that both binaries read `--timeout 1s` the same way.

use std::time::Duration;

/// Parses a duration: a bare non-negative number of seconds, or humantime syntax (`250ms`, `1m`).
///
/// The error is a short phrase meant to follow the setting's name in a one-line message.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{text:?} is not a duration (negative or out of range)"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 10s or 1m ({e})"))
}

/// Formats a duration the way [`parse`] reads it back (`1s 500ms`), for logs and messages.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_bare_seconds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_negative_and_garbage() {
        for bad in ["-1", "-0.5", "", "fast", "10 parsecs", "NaN", "inf"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
