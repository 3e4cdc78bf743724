//! `probe load`: closed-loop load at a target rate, reported like `fortio load`.
//!
//! Each of `-c` workers owns one connection and sends its share of `--qps` on a fixed schedule,
//! waiting for each answer before the next request. Connection errors count as code `-1`
//! (fortio's convention, so the zero-downtime tutorial's output reads the same). A server's
//! `Connection: close` is honoured by reconnecting, which is counted in the sockets used and is
//! not an error. Workers keep their own counts and the report merges them at the end, so the
//! request path shares nothing between workers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::client::{Conn, RequestError, Target};

/// Error events kept per worker; counts stay exact beyond it.
const MAX_ERROR_EVENTS: usize = 10_000;

/// Settings of a load run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to send requests.
    pub target: Target,
    /// Concurrent connections (workers).
    pub connections: usize,
    /// Target requests per second over all workers; 0 means as fast as possible.
    pub qps: f64,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Reuse connections.
    pub keep_alive: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Counts for one second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    /// Answers with a status below 500.
    pub ok: u64,
    /// Connection errors and statuses of 500 and above.
    pub errors: u64,
    /// Answers per version.
    pub versions: BTreeMap<String, u64>,
}

/// One failed request.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEvent {
    /// Milliseconds since the start of the run.
    pub at_ms: f64,
    /// Unix time in milliseconds, to line up with events outside the run.
    pub unix_ms: u128,
    /// `-1` for a connection error, else the HTTP status.
    pub code: i32,
    /// What went wrong.
    pub error: String,
}

/// The result of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The URL loaded.
    pub url: String,
    /// Workers.
    pub connections: usize,
    /// Target rate (0: as fast as possible).
    pub target_qps: f64,
    /// Whether connections were reused.
    pub keep_alive: bool,
    /// Unix time of the start, in milliseconds.
    pub started_unix_ms: u128,
    /// Seconds from the first request to the last answer.
    pub duration_s: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answers per second achieved.
    pub achieved_qps: f64,
    /// Count per code; `-1` is a connection error.
    pub codes: BTreeMap<i32, u64>,
    /// Connection errors plus statuses of 500 and above.
    pub errors: u64,
    /// TCP connections opened.
    pub sockets: u64,
    /// Latency of the answered requests.
    pub latency_ms: Latency,
    /// Answers per version.
    pub versions: BTreeMap<String, u64>,
    /// Per-second counts.
    pub timeline: Vec<Second>,
    /// The failed requests, in time order.
    pub error_events: Vec<ErrorEvent>,
}

#[derive(Default)]
struct WorkerStats {
    codes: BTreeMap<i32, u64>,
    sockets: u64,
    latencies_us: Vec<u32>,
    versions: BTreeMap<String, u64>,
    timeline: Vec<Second>,
    error_events: Vec<ErrorEvent>,
}

impl WorkerStats {
    fn second(&mut self, at: Duration) -> &mut Second {
        let index = at.as_secs() as usize;
        while self.timeline.len() <= index {
            let second = self.timeline.len() as u64;
            self.timeline.push(Second {
                second,
                ..Second::default()
            });
        }
        &mut self.timeline[index]
    }

    fn answer(&mut self, at: Duration, status: u16, version: Option<&str>, latency: Duration) {
        *self.codes.entry(i32::from(status)).or_default() += 1;
        self.latencies_us
            .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
        let second = self.second(at);
        if status >= 500 {
            second.errors += 1;
        } else {
            second.ok += 1;
        }
        if let Some(version) = version {
            count(&mut second.versions, version);
            count(&mut self.versions, version);
        }
        if status >= 500 {
            self.error_event(at, i32::from(status), format!("status {status}"));
        }
    }

    fn failure(&mut self, at: Duration, error: &RequestError) {
        *self.codes.entry(-1).or_default() += 1;
        self.second(at).errors += 1;
        self.error_event(at, -1, error.to_string());
    }

    fn error_event(&mut self, at: Duration, code: i32, error: String) {
        if self.error_events.len() < MAX_ERROR_EVENTS {
            self.error_events.push(ErrorEvent {
                at_ms: at.as_secs_f64() * 1e3,
                unix_ms: 0,
                code,
                error,
            });
        }
    }
}

fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Runs the load until the duration or request count is reached, or Ctrl-C.
pub async fn run(settings: Settings) -> Report {
    let settings = Arc::new(settings);
    let stop = Arc::new(AtomicBool::new(false));
    let tickets = settings.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let start = Instant::now();
    let workers: Vec<_> = (0..settings.connections.max(1))
        .map(|id| {
            let settings = Arc::clone(&settings);
            let stop = Arc::clone(&stop);
            let tickets = tickets.clone();
            tokio::spawn(worker(id, settings, start, stop, tickets))
        })
        .collect();

    let stopper = {
        let stop = Arc::clone(&stop);
        let duration = settings.duration;
        tokio::spawn(async move {
            let timer = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = timer => {}
            }
            stop.store(true, Ordering::Relaxed);
        })
    };

    let mut stats = Vec::with_capacity(workers.len());
    for worker in workers {
        if let Ok(s) = worker.await {
            stats.push(s);
        }
    }
    stopper.abort();
    merge(&settings, stats, start.elapsed(), started_unix_ms)
}

async fn worker(
    id: usize,
    settings: Arc<Settings>,
    start: Instant,
    stop: Arc<AtomicBool>,
    tickets: Option<Arc<AtomicU64>>,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let workers = settings.connections.max(1);
    // Each worker's share of the rate, started at an offset so the requests interleave evenly.
    let interval =
        (settings.qps > 0.0).then(|| Duration::from_secs_f64(workers as f64 / settings.qps));
    let mut next = interval.map(|i| start + i.mul_f64(id as f64 / workers as f64));
    let mut conn: Option<Conn> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(tickets) = &tickets {
            if tickets
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
        }
        if let (Some(at), Some(interval)) = (next, interval) {
            // Catch up after a slow answer rather than lose requests, like fortio.
            tokio::time::sleep_until(at.into()).await;
            next = Some(at + interval);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let sent = Instant::now();
        let exchange = async {
            if !conn.as_ref().is_some_and(Conn::is_open) {
                conn = Some(Conn::open(&settings.target).await?);
                stats.sockets += 1;
            }
            match conn.as_mut() {
                Some(c) => c.get(&settings.target, &[], settings.keep_alive).await,
                None => unreachable!("connection opened above"),
            }
        };
        let result = tokio::time::timeout(settings.timeout, exchange)
            .await
            .unwrap_or(Err(RequestError::Timeout(settings.timeout)));
        let at = sent.duration_since(start);
        match result {
            Ok(answer) => {
                stats.answer(at, answer.status, answer.version.as_deref(), answer.latency);
                if answer.close || !settings.keep_alive {
                    conn = None;
                }
            }
            Err(error) => {
                stats.failure(at, &error);
                conn = None;
            }
        }
    }
    stats
}

fn merge(settings: &Settings, stats: Vec<WorkerStats>, elapsed: Duration, unix: u128) -> Report {
    let mut report = Report {
        url: settings.target.uri.to_string(),
        connections: settings.connections,
        target_qps: settings.qps,
        keep_alive: settings.keep_alive,
        started_unix_ms: unix,
        duration_s: elapsed.as_secs_f64(),
        ..Report::default()
    };
    let mut latencies = Vec::new();
    for s in stats {
        for (code, n) in s.codes {
            *report.codes.entry(code).or_default() += n;
        }
        report.sockets += s.sockets;
        latencies.extend(s.latencies_us);
        for (version, n) in s.versions {
            *report.versions.entry(version).or_default() += n;
        }
        for second in s.timeline {
            while report.timeline.len() <= second.second as usize {
                let index = report.timeline.len() as u64;
                report.timeline.push(Second {
                    second: index,
                    ..Second::default()
                });
            }
            let merged = &mut report.timeline[second.second as usize];
            merged.ok += second.ok;
            merged.errors += second.errors;
            for (version, n) in second.versions {
                *merged.versions.entry(version).or_default() += n;
            }
        }
        report.error_events.extend(s.error_events);
    }
    report
        .error_events
        .sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    for event in &mut report.error_events {
        event.unix_ms = unix + event.at_ms as u128;
    }
    report.requests = report.codes.values().sum();
    report.errors = report
        .codes
        .iter()
        .filter(|(code, _)| **code < 0 || **code >= 500)
        .map(|(_, n)| n)
        .sum();
    report.achieved_qps = report.requests as f64 / elapsed.as_secs_f64().max(1e-9);
    report.latency_ms = percentiles(&mut latencies);
    report
}

fn percentiles(latencies_us: &mut [u32]) -> Latency {
    if latencies_us.is_empty() {
        return Latency::default();
    }
    latencies_us.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1e3;
    let at = |q: f64| ms(latencies_us[((latencies_us.len() - 1) as f64 * q).round() as usize]);
    let sum: u64 = latencies_us.iter().map(|&us| u64::from(us)).sum();
    Latency {
        min: ms(latencies_us[0]),
        avg: sum as f64 / latencies_us.len() as f64 / 1e3,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: ms(latencies_us[latencies_us.len() - 1]),
    }
}

impl Report {
    /// The report as text, laid out like fortio's so the tutorial's output reads the same.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let rate = if self.target_qps > 0.0 {
            format!("target {} qps", self.target_qps)
        } else {
            "max qps".to_owned()
        };
        let keep = if self.keep_alive {
            "keep-alive"
        } else {
            "no keep-alive"
        };
        let _ = writeln!(
            out,
            "Load {}: {} connections, {rate}, {keep}",
            self.url, self.connections
        );
        let _ = writeln!(
            out,
            "Ended after {:.2}s: {} requests, {:.1} qps",
            self.duration_s, self.requests, self.achieved_qps
        );
        let _ = writeln!(
            out,
            "Sockets used: {} (for perfect keep-alive, would be {})",
            self.sockets, self.connections
        );
        for (code, n) in &self.codes {
            let share = *n as f64 * 100.0 / self.requests.max(1) as f64;
            let _ = writeln!(out, "Code {code:>3} : {n} ({share:.2} %)");
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "Latency ms: min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  avg {:.3}",
            l.min, l.p50, l.p90, l.p99, l.max, l.avg
        );
        if !self.versions.is_empty() {
            let answered: u64 = self.versions.values().sum();
            let split: Vec<String> = self
                .versions
                .iter()
                .map(|(v, n)| format!("{v} {n} ({:.1} %)", *n as f64 * 100.0 / answered as f64))
                .collect();
            let _ = writeln!(out, "Versions: {}", split.join("  "));
        }
        let failing: Vec<&Second> = self.timeline.iter().filter(|s| s.errors > 0).collect();
        if !failing.is_empty() {
            let _ = writeln!(out, "Errors by second:");
            for s in failing {
                let _ = writeln!(out, "  {:>4}s  {} errors, {} ok", s.second, s.errors, s.ok);
            }
        }
        let _ = writeln!(out, "Errors: {} of {}", self.errors, self.requests);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut values: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let l = percentiles(&mut values);
        assert_eq!((l.min, l.p50, l.p99, l.max), (1.0, 51.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []).max, 0.0);
    }
}
