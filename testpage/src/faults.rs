//! Rollout-test knobs on the page: a share of failing answers and added latency, adjustable at
//! run time (`POST /fault`), and a crash (`FAIL_AFTER`) after a time or a number of requests.
//!
//! The crash does not end the process here: `Faults::failure` completes, the server stops
//! at once without a drain, and `main` exits 1.
//!
//! Only `/` is affected: probes and `/metrics` never are, so a fault shows up in the traffic a
//! rollout tool measures, not in the kubelet's view of the pod. With every knob at its default
//! the page pays two relaxed atomic loads.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::duration::{DurationError, Spread};

const PPM: f64 = 1_000_000.0;

/// The longest latency `LATENCY` and `POST /fault` may add, like `/delay`'s cap.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// Parses a latency (`50ms`, `10ms..200ms`) of at most [`MAX_LATENCY`], for `LATENCY` and
/// `POST /fault?latency=`.
pub fn parse_latency(text: &str) -> Result<Spread, DurationError> {
    crate::duration::parse_spread_at_most(text, MAX_LATENCY)
}

/// When `FAIL_AFTER` strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAfter {
    /// After this long from the start of serving.
    Time(Duration),
    /// After this many requests to `/`.
    Requests(u64),
}

/// A `FAIL_AFTER` that is neither a request count nor a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailAfterError {
    /// `0`: there is no zeroth request.
    #[error("a request count must be at least 1")]
    ZeroRequests,
    /// A bare number that is not a whole count (`1e3`, `2.5`): a count or a time?
    #[error("a bare number is a request count and must be whole (write 1000 for requests, 1000s for a time)")]
    NotWhole,
    /// Not a duration either.
    #[error(transparent)]
    Duration(#[from] DurationError),
}

/// Parses `FAIL_AFTER`: a bare whole number (or `5 requests`) is a request count; anything with
/// a unit is a duration.
pub fn parse_fail_after(text: &str) -> Result<FailAfter, FailAfterError> {
    let text = text.trim();
    let count = text
        .strip_suffix("requests")
        .or_else(|| text.strip_suffix("req"))
        .unwrap_or(text)
        .trim();
    match count.parse::<u64>() {
        Ok(0) => Err(FailAfterError::ZeroRequests),
        Ok(n) => Ok(FailAfter::Requests(n)),
        Err(_) if count.parse::<f64>().is_ok() => Err(FailAfterError::NotWhole),
        Err(_) => Ok(FailAfter::Time(crate::duration::parse(text)?)),
    }
}

/// A change asked by `POST /fault?error_rate=0.2&latency=10ms..50ms&version=0.9`; each may be
/// left out. With `version`, only a pod of that version takes it: through a Service a request
/// lands on any pod, and the live view (`/ui`) repeats it until every pod of the version has.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FaultChange {
    /// The new fraction of failing answers.
    pub error_rate: Option<f64>,
    /// The new added latency.
    pub latency: Option<Spread>,
    /// Only for pods of this version.
    pub version: Option<String>,
}

/// A `/fault` query that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FaultChangeError {
    /// `error_rate=` is not a fraction.
    #[error("error_rate: {0}")]
    Rate(#[from] RateError),
    /// `latency=` is not a latency.
    #[error("latency: {0}")]
    Latency(#[from] DurationError),
    /// Another key.
    #[error("unknown fault setting {0:?} (error_rate, latency, version)")]
    Unknown(String),
}

impl std::str::FromStr for FaultChange {
    type Err = FaultChangeError;

    fn from_str(query: &str) -> Result<Self, FaultChangeError> {
        let mut change = FaultChange::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = &percent_decode(value);
            match key {
                "error_rate" => change.error_rate = Some(parse_rate(value)?),
                "latency" => change.latency = Some(parse_latency(value)?),
                "version" => change.version = Some(value.to_owned()),
                other => return Err(FaultChangeError::Unknown(other.to_owned())),
            }
        }
        Ok(change)
    }
}

/// A query value as a form sends it: `+` for a space, `%XX` for a byte (an invalid escape is
/// kept as written).
fn percent_decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A value that is not a fraction from 0.0 to 1.0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a fraction from 0.0 to 1.0")]
pub struct RateError(String);

/// Parses a fraction 0.0-1.0 (`ERROR_RATE`, `POST /fault?error_rate=`).
pub(crate) fn parse_rate(text: &str) -> Result<f64, RateError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| RateError(text.to_owned()))
}

/// What an answer of `/` should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// Wait this long first.
    pub delay: Duration,
    /// Answer with this status instead of the page.
    pub fail_with: Option<u16>,
}

/// Current fault settings, shared by every request.
#[derive(Debug)]
pub(crate) struct Faults {
    error_rate_ppm: AtomicU32,
    error_code: u16,
    latency_min_us: AtomicU64,
    latency_max_us: AtomicU64,
    fail_after: Option<FailAfter>,
    page_requests: AtomicU64,
    failed: CancellationToken,
}

/// The settings as `/fault` reports them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct FaultSettings {
    /// Fraction of `/` answers that fail.
    pub error_rate: f64,
    /// Their status.
    pub error_code: u16,
    /// Added latency, `50ms` or `10ms..200ms`.
    pub latency: String,
}

impl Faults {
    /// Faults as configured at start.
    pub(crate) fn new(
        error_rate: f64,
        error_code: u16,
        latency: Spread,
        fail_after: Option<FailAfter>,
    ) -> Self {
        let faults = Faults {
            error_rate_ppm: AtomicU32::new(0),
            error_code,
            latency_min_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
            fail_after,
            page_requests: AtomicU64::new(0),
            failed: CancellationToken::new(),
        };
        faults.set(&FaultChange {
            error_rate: Some(error_rate),
            latency: Some(latency),
            version: None,
        });
        faults
    }

    /// Changes the error rate and/or the latency.
    pub(crate) fn set(&self, change: &FaultChange) {
        if let Some(rate) = change.error_rate {
            let ppm = (rate.clamp(0.0, 1.0) * PPM).round() as u32;
            self.error_rate_ppm.store(ppm, Ordering::Relaxed);
        }
        if let Some(latency) = change.latency {
            self.latency_min_us
                .store(latency.min.as_micros() as u64, Ordering::Relaxed);
            self.latency_max_us
                .store(latency.max.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// The current settings.
    pub(crate) fn settings(&self) -> FaultSettings {
        FaultSettings {
            error_rate: f64::from(self.error_rate_ppm.load(Ordering::Relaxed)) / PPM,
            error_code: self.error_code,
            latency: self.latency().to_string(),
        }
    }

    fn latency(&self) -> Spread {
        Spread {
            min: Duration::from_micros(self.latency_min_us.load(Ordering::Relaxed)),
            max: Duration::from_micros(self.latency_max_us.load(Ordering::Relaxed)),
        }
    }

    /// Draws the fault for one answer of `/`.
    pub(crate) fn draw(&self) -> Fault {
        let ppm = self.error_rate_ppm.load(Ordering::Relaxed);
        let fail = ppm > 0 && fastrand::u32(0..1_000_000) < ppm;
        let latency = if self.latency_max_us.load(Ordering::Relaxed) == 0 {
            Duration::ZERO
        } else {
            self.latency().sample()
        };
        Fault {
            delay: latency,
            fail_with: fail.then_some(self.error_code),
        }
    }

    /// Counts a request to `/`; true for the one that reaches `FAIL_AFTER` requests, which
    /// also completes `Faults::failure`.
    pub(crate) fn count_page_request(&self) -> bool {
        let Some(FailAfter::Requests(limit)) = self.fail_after else {
            return false;
        };
        let reached = self.page_requests.fetch_add(1, Ordering::Relaxed) + 1 == limit;
        if reached {
            self.failed.cancel();
        }
        reached
    }

    /// Completes when `FAIL_AFTER` strikes: that long after this is first awaited (the start of
    /// serving), or at the request that reaches the count. Never completes without `FAIL_AFTER`.
    pub(crate) async fn failure(&self) -> FailAfter {
        match self.fail_after {
            Some(FailAfter::Time(after)) => {
                tokio::select! {
                    () = tokio::time::sleep(after) => {}
                    () = self.failed.cancelled() => {}
                }
                FailAfter::Time(after)
            }
            Some(requests) => {
                self.failed.cancelled().await;
                requests
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_queries_are_decoded_as_forms_send_them() {
        let change: FaultChange = "error_rate=0.3&version=v2+beta%2Brc".parse().unwrap();
        assert_eq!(change.version.as_deref(), Some("v2 beta+rc"));
        assert_eq!(percent_decode("%E7%89%88%zz%"), "版%zz%");
        assert_eq!(percent_decode("a%4"), "a%4");
    }

    #[test]
    fn fail_after_is_a_count_or_a_duration() {
        assert_eq!(parse_fail_after("100"), Ok(FailAfter::Requests(100)));
        assert_eq!(parse_fail_after("5 requests"), Ok(FailAfter::Requests(5)));
        assert_eq!(
            parse_fail_after("30s"),
            Ok(FailAfter::Time(Duration::from_secs(30)))
        );
        assert!(parse_fail_after("0").is_err());
    }

    #[test]
    fn defaults_do_nothing() {
        let faults = Faults::new(0.0, 500, Spread::default(), None);
        for _ in 0..1000 {
            assert_eq!(
                faults.draw(),
                Fault {
                    delay: Duration::ZERO,
                    fail_with: None
                }
            );
        }
        assert!(!faults.count_page_request());
    }

    #[test]
    fn full_rate_always_fails_and_settings_change() {
        let faults = Faults::new(
            1.0,
            503,
            Spread::fixed(Duration::from_millis(5)),
            Some(FailAfter::Requests(2)),
        );
        assert_eq!(faults.draw().fail_with, Some(503));
        assert_eq!(faults.draw().delay, Duration::from_millis(5));
        faults.set(&"error_rate=0".parse().unwrap());
        assert_eq!(faults.draw().fail_with, None);
        assert_eq!(faults.settings().latency, "5ms");
        assert!(!faults.count_page_request());
        assert!(faults.count_page_request());
        assert!(!faults.count_page_request());
    }
}
