//! Durations as users write them in env vars and flags: `500ms`, `10s`, `1m`, `1h30m`; a bare
//! number (`5`, `0.5`) means seconds, as Kubernetes users expect from `terminationGracePeriodSeconds`.
//!
//! Shared with the `probe` CLI so that both binaries read `--timeout 1s` the same way.

use std::ops::RangeInclusive;
use std::time::Duration;

/// Why a duration was refused. Each message is a short phrase meant to follow the setting's name
/// in a one-line error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration")]
    Empty,
    /// A bare number that is negative, not finite or too large.
    #[error("{0:?} is not a duration (negative or out of range)")]
    OutOfRange(String),
    /// Neither a bare number nor a duration with units.
    #[error("{text:?} is not a duration like 500ms, 10s or 1m ({reason})")]
    Syntax {
        /// What was written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Longer than the setting allows (a typo, not a plan).
    #[error("{text:?} is longer than the {} maximum", format(*.max))]
    TooLong {
        /// What was written.
        text: String,
        /// The longest accepted.
        max: Duration,
    },
    /// Outside the setting's accepted range.
    #[error("{text:?} is not from {} to {}", format(*.range.start()), format(*.range.end()))]
    NotWithin {
        /// What was written.
        text: String,
        /// The accepted range.
        range: RangeInclusive<Duration>,
    },
    /// Zero where only a positive duration makes sense (a timeout).
    #[error("{0:?}: must be more than 0")]
    Zero(String),
    /// `a..b` with `a` after `b`.
    #[error("{0:?}: the range ends before it starts")]
    Backwards(String),
}

/// Parses a duration: a bare non-negative number of seconds, or humantime syntax (`250ms`, `1m`,
/// `1m30s`).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| DurationError::OutOfRange(text.to_owned()));
    }
    humantime::parse_duration(text).map_err(|e| DurationError::Syntax {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses a duration of at most `max`: settings whose huge values would only ever be typos.
pub fn parse_at_most(text: &str, max: Duration) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d > max {
        return Err(DurationError::TooLong {
            text: text.trim().to_owned(),
            max,
        });
    }
    Ok(d)
}

/// Parses a duration within `range`.
pub fn parse_within(
    text: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if !range.contains(&d) {
        return Err(DurationError::NotWithin {
            text: text.trim().to_owned(),
            range,
        });
    }
    Ok(d)
}

/// A parser for a flag: durations within `range` (clap's `value_parser`).
pub fn within(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, DurationError> + Clone + Send + Sync + 'static {
    move |text| parse_within(text, range.clone())
}

/// Parses a duration of more than zero (timeouts).
pub fn positive(text: &str) -> Result<Duration, DurationError> {
    match parse(text)? {
        Duration::ZERO => Err(DurationError::Zero(text.trim().to_owned())),
        d => Ok(d),
    }
}

/// A parser for a flag: durations of at most `max` (clap's `value_parser`).
pub fn at_most(
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, DurationError> + Clone + Send + Sync + 'static {
    move |text| parse_at_most(text, max)
}

/// A parser for a flag: [`Spread`]s of at most `max` (clap's `value_parser`).
pub fn spread_at_most(
    max: Duration,
) -> impl Fn(&str) -> Result<Spread, DurationError> + Clone + Send + Sync + 'static {
    move |text| parse_spread_at_most(text, max)
}

/// A fixed duration or a uniform random one: `50ms`, or `10ms..200ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spread {
    /// The shortest value.
    pub min: Duration,
    /// The longest value (equal to `min` for a fixed duration).
    pub max: Duration,
}

impl Spread {
    /// A fixed duration.
    pub fn fixed(d: Duration) -> Self {
        Spread { min: d, max: d }
    }

    /// Draws a value, uniformly between `min` and `max`.
    pub fn sample(&self) -> Duration {
        if self.min == self.max {
            return self.min;
        }
        let span = (self.max - self.min).as_micros() as u64;
        self.min + Duration::from_micros(fastrand::u64(0..=span))
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", format(self.min))
        } else {
            write!(f, "{}..{}", format(self.min), format(self.max))
        }
    }
}

/// Parses `50ms` or `10ms..200ms` (min no larger than max).
pub fn parse_spread(text: &str) -> Result<Spread, DurationError> {
    match text.split_once("..") {
        None => parse(text).map(Spread::fixed),
        Some((min, max)) => {
            let (min, max) = (parse(min)?, parse(max)?);
            if min > max {
                return Err(DurationError::Backwards(text.trim().to_owned()));
            }
            Ok(Spread { min, max })
        }
    }
}

/// Parses a [`Spread`] whose longest value is at most `max`.
pub fn parse_spread_at_most(text: &str, max: Duration) -> Result<Spread, DurationError> {
    let spread = parse_spread(text)?;
    if spread.max > max {
        return Err(DurationError::TooLong {
            text: text.trim().to_owned(),
            max,
        });
    }
    Ok(spread)
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
    fn spreads() {
        let s = parse_spread("10ms..20ms").unwrap();
        for _ in 0..100 {
            let d = s.sample();
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
        }
        assert_eq!(parse_spread("2s").unwrap().sample(), Duration::from_secs(2));
        assert!(parse_spread("2s..1s").is_err());
        assert!(parse_spread("fast").is_err());
        assert_eq!(parse_spread("1s..5s").unwrap().to_string(), "1s..5s");
    }

    #[test]
    fn rejects_negative_and_garbage() {
        for bad in ["-1", "-0.5", "", "fast", "10 parsecs", "NaN", "inf"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
