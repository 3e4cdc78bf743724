//! Rollout-test knobs on the page: a share of failing answers and added latency, adjustable at
//! run time (`POST /fault`), and a crash (`FAIL_AFTER`) after a time or a number of requests.
//!
//! The crash does not end the process here: [`Faults::failure`] completes, the server stops
//! at once without a drain, and `main` exits 1.
//!
//! Only `/` is affected: probes and `/metrics` never are, so a fault shows up in the traffic a
//! rollout tool measures, not in the kubelet's view of the pod. With every knob at its default
//! the page pays two relaxed atomic loads.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::FailAfter;
use crate::duration::Spread;

const PPM: f64 = 1_000_000.0;

/// The longest latency `LATENCY` and `POST /fault` may add, like `/delay`'s cap.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

/// Parses a latency (`50ms`, `10ms..200ms`) of at most [`MAX_LATENCY`], for `LATENCY` and
/// `POST /fault?latency=`.
pub fn parse_latency(text: &str) -> Result<Spread, String> {
    crate::duration::parse_spread_at_most(text, MAX_LATENCY)
}

/// What an answer of `/` should suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Wait this long first.
    pub delay: Duration,
    /// Answer with this status instead of the page.
    pub fail_with: Option<u16>,
}

/// Current fault settings, shared by every request.
#[derive(Debug)]
pub struct Faults {
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
pub struct FaultSettings {
    /// Fraction of `/` answers that fail.
    pub error_rate: f64,
    /// Their status.
    pub error_code: u16,
    /// Added latency, `50ms` or `10ms..200ms`.
    pub latency: String,
}

impl Faults {
    /// Faults as configured at start.
    pub fn new(
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
        faults.set(Some(error_rate), Some(latency));
        faults
    }

    /// Changes the error rate and/or the latency.
    pub fn set(&self, error_rate: Option<f64>, latency: Option<Spread>) {
        if let Some(rate) = error_rate {
            let ppm = (rate.clamp(0.0, 1.0) * PPM).round() as u32;
            self.error_rate_ppm.store(ppm, Ordering::Relaxed);
        }
        if let Some(latency) = latency {
            self.latency_min_us
                .store(latency.min.as_micros() as u64, Ordering::Relaxed);
            self.latency_max_us
                .store(latency.max.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// The current settings.
    pub fn settings(&self) -> FaultSettings {
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
    pub fn draw(&self) -> Fault {
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
    /// also completes [`Faults::failure`].
    pub fn count_page_request(&self) -> bool {
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
    pub async fn failure(&self) -> FailAfter {
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
        faults.set(Some(0.0), None);
        assert_eq!(faults.draw().fail_with, None);
        assert_eq!(faults.settings().latency, "5ms");
        assert!(!faults.count_page_request());
        assert!(faults.count_page_request());
        assert!(!faults.count_page_request());
    }
}
