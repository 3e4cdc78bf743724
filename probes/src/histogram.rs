//! A latency record of bounded size: counts in log-linear buckets, like an HDR histogram.
//!
//! A duration of `n` microseconds lands in a bucket of width `2^e`, where `e` is chosen so that
//! `n >> e` has at most `SIGNIFICANT_BITS` bits: values below 128 µs are kept exactly, larger
//! ones to within 1/128 (0.8 %) of their value. A quantile reports the middle of its bucket;
//! min, max and mean are exact. A run of any length keeps at most one count per bucket in use,
//! a few thousand at most from 1 µs to an hour, instead of one sample per request.

use std::collections::BTreeMap;
use std::time::Duration;

/// Bits kept of each value: 7 bits, so a bucket is at most 1/128 of its value wide.
const SIGNIFICANT_BITS: u32 = 7;

/// Latency counts in buckets, with the exact extremes and sum.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Count per bucket, keyed by `(e, n >> e)`: in value order.
    buckets: BTreeMap<(u32, u64), u64>,
    count: u64,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Histogram {
    /// Records one latency (to the microsecond).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let exponent = (u64::BITS - us.leading_zeros()).saturating_sub(SIGNIFICANT_BITS);
        *self.buckets.entry((exponent, us >> exponent)).or_default() += 1;
        self.min_us = if self.count == 0 {
            us
        } else {
            self.min_us.min(us)
        };
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.sum_us += u128::from(us);
    }

    /// Adds another record's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (&bucket, &n) in &other.buckets {
            *self.buckets.entry(bucket).or_default() += n;
        }
        self.min_us = if self.count == 0 {
            other.min_us
        } else {
            self.min_us.min(other.min_us)
        };
        self.max_us = self.max_us.max(other.max_us);
        self.count += other.count;
        self.sum_us += other.sum_us;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value (zero when empty).
    pub fn min(&self) -> Duration {
        Duration::from_micros(self.min_us)
    }

    /// The largest value (zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The mean (zero when empty).
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_micros((self.sum_us / u128::from(n)) as u64),
        }
    }

    /// The value below which a fraction `q` (0.0 to 1.0) of the values lie: the middle of the
    /// bucket holding the value of rank `round((count - 1) * q)`, kept within min and max.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count - 1) as f64 * q.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0;
        for (&(exponent, top), &n) in &self.buckets {
            seen += n;
            if seen > rank {
                let low = top << exponent;
                let middle = low + ((1u64 << exponent) >> 1);
                return Duration::from_micros(middle.clamp(self.min_us, self.max_us));
            }
        }
        self.max()
    }

    /// Buckets in use: the record's size.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    #[test]
    fn quantiles_of_known_values_within_a_bucket() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!((ms(h.min()), ms(h.max()), h.count()), (1.0, 100.0, 100));
        assert_eq!(ms(h.mean()), 50.5);
        for (q, exact) in [(0.5, 51.0), (0.9, 90.0), (0.99, 99.0)] {
            let got = ms(h.quantile(q));
            assert!(
                (got - exact).abs() <= exact / 128.0,
                "p{q}: {got} vs {exact}"
            );
        }
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn small_values_are_exact_and_size_stays_bounded() {
        let mut h = Histogram::default();
        for us in 0..128 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.quantile(0.0), Duration::ZERO);
        assert_eq!(h.quantile(1.0), Duration::from_micros(127));
        // A million distinct values from 1 µs to an hour: a few thousand buckets.
        let mut wide = Histogram::default();
        for i in 0..1_000_000u64 {
            wide.record(Duration::from_micros(1 + i * 3_600));
        }
        assert!(wide.buckets() < 4_000, "{}", wide.buckets());
        wide.record(Duration::MAX);
        assert_eq!(wide.max(), Duration::from_micros(u64::MAX));
    }

    #[test]
    fn merging_equals_recording_together() {
        let (mut a, mut b, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for us in [5, 900, 70_000] {
            a.record(Duration::from_micros(us));
            both.record(Duration::from_micros(us));
        }
        for us in [3, 1_000_000] {
            b.record(Duration::from_micros(us));
            both.record(Duration::from_micros(us));
        }
        a.merge(&b);
        a.merge(&Histogram::default());
        for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
            assert_eq!(a.quantile(q), both.quantile(q));
        }
        assert_eq!(
            (a.min(), a.max(), a.mean()),
            (both.min(), both.max(), both.mean())
        );
    }
}
