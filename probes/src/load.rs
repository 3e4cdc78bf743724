//! `probe load`: closed-loop load at a target rate, reported like `fortio load`.
//!
//! Each of `-c` workers owns one connection and sends its share of `--qps` on a fixed schedule,
//! waiting for each answer before the next request. Connection errors count as code `-1`
//! (fortio's convention, so the zero-downtime tutorial's output reads the same). A server's
//! `Connection: close` is honoured by reconnecting, which is counted in the sockets used and is
//! not an error; so is a body too long to read through ([`BodyRead::PAGE`]), whose connection
//! cannot be reused. Workers keep their own counts and the report merges them at the end, so the
//! request path shares nothing between workers.
//!
//! The run ends on time. At `-t`, Ctrl-C or SIGTERM no request is sent any more, and those in
//! flight get [`END_GRACE`] (or the request timeout, if shorter) to be answered. One still without
//! an answer then is counted in [`Report::unanswered`] and as an error (code `-1`), so a target
//! that hangs fails `--max-errors` however the run ends.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::builder::TypedValueParser as _;
use hyper::header::{HeaderName, HeaderValue};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use testpage::duration;

use crate::client::{Answer, BodyRead, Conn, RequestError, Target};
use crate::histogram::Histogram;
use crate::tally::Tally;

/// How long requests in flight at `-t` may still take to be answered.
pub const END_GRACE: Duration = Duration::from_secs(1);

/// The accepted `--qps` besides 0 (as fast as possible): 0.01 to 1,000,000 requests a second.
pub const QPS_RANGE: RangeInclusive<f64> = 0.01..=1e6;

/// Error events kept per worker; counts stay exact beyond it.
const MAX_ERROR_EVENTS: usize = 10_000;

/// Connections a version split needs before its shares move in steps of 1 % or less: a
/// Service balances connections, not requests, so a kept-alive connection stays on one pod and
/// with `-c 8` a split comes in steps of 12.5 %.
pub const SPLIT_SOCKETS: u64 = 100;

/// How long a run lasts when neither `-t` nor `-n` is given (fortio's default).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// Settings of a load run, as `probe load` reads them.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// URL to load.
    #[arg(value_name = "URL", value_parser = crate::client::parse_target)]
    pub target: Target,
    /// Concurrent connections (workers).
    #[arg(short = 'c', long = "connections", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub connections: usize,
    /// Target requests per second over all connections, 0.01 to 1000000; 0 = as fast as
    /// possible (`-qps` as fortio spells it works too).
    #[arg(long, default_value_t = 500.0, value_parser = parse_qps)]
    pub qps: f64,
    /// Duration, more than 0 (default 60s unless -n is given); ends the run on time, cutting
    /// off the requests still unanswered.
    #[arg(short = 't', long = "duration", value_parser = duration::positive)]
    pub duration: Option<Duration>,
    /// Total requests.
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,
    /// Reuse connections.
    #[arg(long = "keepalive", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub keep_alive: bool,
    /// Per-request timeout (more than 0).
    #[arg(long, default_value = "10s", value_parser = duration::positive)]
    pub timeout: Duration,
    /// Extra request header, Name:value (repeatable): `x-version:v2` for an A/B rule,
    /// `Host:app.example` for an Ingress or Gateway route.
    #[arg(short = 'H', long = "header", value_parser = crate::pod::parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Settings {
    /// How long the run lasts: `-t`, else [`DEFAULT_DURATION`] unless `-n` counts requests.
    fn run_for(&self) -> Option<Duration> {
        self.duration
            .or(self.requests.is_none().then_some(DEFAULT_DURATION))
    }
}

/// Parses `--qps`: 0 (as fast as possible) or a rate within [`QPS_RANGE`].
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not 0 (as fast as possible) or a rate from {} to {}", QPS_RANGE.start(), QPS_RANGE.end())]
pub struct QpsError {
    text: String,
}

fn parse_qps(text: &str) -> Result<f64, QpsError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|q| *q == 0.0 || QPS_RANGE.contains(q))
        .ok_or_else(|| QpsError {
            text: text.to_owned(),
        })
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
    pub versions: Tally<u64>,
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
    /// Seconds from the start to the end of the run.
    pub duration_s: f64,
    /// Requests with a result: an answer or an error.
    pub requests: u64,
    /// Requests still connecting or waiting for an answer [`END_GRACE`] after the run ended;
    /// each is also an error with code `-1`.
    pub unanswered: u64,
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
    pub versions: Tally<u64>,
    /// Per-second counts.
    pub timeline: Vec<Second>,
    /// The failed requests, in time order.
    pub error_events: Vec<ErrorEvent>,
}

#[derive(Default)]
struct WorkerStats {
    codes: BTreeMap<i32, u64>,
    unanswered: u64,
    sockets: u64,
    latencies: Histogram,
    versions: Tally<u64>,
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
        self.latencies.record(latency);
        let second = self.second(at);
        if status >= 500 {
            second.errors += 1;
        } else {
            second.ok += 1;
        }
        if let Some(version) = version {
            second.versions.add(version, 1);
            self.versions.add(version, 1);
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

    /// A request still unanswered [`END_GRACE`] after the run ended: an error, like a timeout.
    fn overdue(&mut self, at: Duration, grace: Duration) {
        self.unanswered += 1;
        *self.codes.entry(-1).or_default() += 1;
        self.second(at).errors += 1;
        let grace = grace.as_secs_f64();
        self.error_event(
            at,
            -1,
            format!("no answer by the end of the run (+ {grace}s)"),
        );
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

/// Runs the load until the duration or request count is reached, or `interrupt` completes
/// (Ctrl-C), and returns the report.
pub async fn run(settings: Settings, interrupt: impl Future<Output = ()>) -> Report {
    let settings = Arc::new(settings);
    // Two signals: `stop` ends the sending (at -t, Ctrl-C or SIGTERM), `cut` abandons the
    // requests still in flight END_GRACE later.
    let stop = CancellationToken::new();
    let cut = CancellationToken::new();
    let tickets = settings.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let start = Instant::now();
    // `None`: no duration, or one beyond the clock's range.
    let end = settings.run_for().and_then(|d| start.checked_add(d));
    let mut workers = JoinSet::new();
    for id in 0..settings.connections.max(1) {
        workers.spawn(worker(
            id,
            Arc::clone(&settings),
            start,
            end,
            Stop {
                sending: stop.clone(),
                cut: cut.clone(),
            },
            tickets.clone(),
        ));
    }

    let deadline = async {
        match end {
            Some(end) => tokio::time::sleep_until(end.into()).await,
            None => std::future::pending().await,
        }
    };
    let grace = settings.timeout.min(END_GRACE);
    let grace_over = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline, interrupt, grace_over);
    let mut stats = Vec::with_capacity(settings.connections.max(1));
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(Ok(s)) => stats.push(s),
                // Release builds abort on panic. Elsewhere, pass it on rather than report a run
                // that silently lost a worker.
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(_)) => {}
                // Every worker is done: the request count was reached (or the stop was told).
                None => break,
            },
            () = &mut deadline, if !stop.is_cancelled() => stop.cancel(),
            () = &mut interrupt, if !stop.is_cancelled() => stop.cancel(),
            () = &mut grace_over, if !cut.is_cancelled() => cut.cancel(),
        }
    }
    merge(&settings, stats, start.elapsed(), started_unix_ms)
}

/// When a worker sends its next request: as soon as it can, or at its slot in a fixed schedule.
struct Schedule {
    interval: Duration,
    /// `None`: the next slot is at or after the end of the run, or beyond the clock's range, so
    /// it never comes.
    next: Option<Instant>,
    /// The end of the run, if it has one.
    end: Option<Instant>,
}

impl Schedule {
    /// Worker `id`'s share of the rate, its first slot offset so that the workers interleave
    /// evenly; `None` for "as fast as possible".
    fn new(settings: &Settings, id: usize, start: Instant, end: Option<Instant>) -> Option<Self> {
        if settings.qps <= 0.0 {
            return None;
        }
        let workers = settings.connections.max(1) as f64;
        // Out of range (a rate far below QPS_RANGE) means a slot too far away to come.
        let interval = Duration::try_from_secs_f64(workers / settings.qps).unwrap_or(Duration::MAX);
        let offset = Duration::try_from_secs_f64(interval.as_secs_f64() * id as f64 / workers)
            .unwrap_or(Duration::MAX);
        let mut schedule = Schedule {
            interval,
            next: start.checked_add(offset),
            end,
        };
        schedule.drop_late_slot();
        Some(schedule)
    }

    /// A slot at the very end would send a request only to cut it off.
    fn drop_late_slot(&mut self) {
        if let (Some(next), Some(end)) = (self.next, self.end) {
            if next >= end {
                self.next = None;
            }
        }
    }

    /// Waits for the next slot and moves on to the one after. Slots missed after a slow answer
    /// are caught up rather than lost, like fortio.
    async fn wait(&mut self) {
        match self.next {
            Some(at) => {
                tokio::time::sleep_until(at.into()).await;
                self.next = at.checked_add(self.interval);
                self.drop_late_slot();
            }
            None => std::future::pending().await,
        }
    }
}

/// What ends a worker's part.
struct Stop {
    /// No more requests.
    sending: CancellationToken,
    /// Abandon the request in flight.
    cut: CancellationToken,
}

async fn worker(
    id: usize,
    settings: Arc<Settings>,
    start: Instant,
    end: Option<Instant>,
    stop: Stop,
    tickets: Option<Arc<AtomicU64>>,
) -> WorkerStats {
    let grace = settings.timeout.min(END_GRACE);
    let mut stats = WorkerStats::default();
    let mut schedule = Schedule::new(&settings, id, start, end);
    let mut conn: Option<Conn> = None;
    // One timer for the worker's whole run rather than one per request: it is moved only when
    // it goes off, to the deadline of the request then in flight (if that is later).
    let watchdog = tokio::time::sleep(settings.timeout);
    tokio::pin!(watchdog);
    while take_ticket(tickets.as_deref()) && next_slot(schedule.as_mut(), &stop.sending).await {
        let sent = Instant::now();
        let deadline = sent + settings.timeout;
        let result = {
            let exchange = exchange(&mut conn, &settings, &mut stats.sockets);
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    biased;
                    () = stop.cut.cancelled() => break None,
                    result = &mut exchange => break Some(result),
                    () = &mut watchdog => {
                        if Instant::now() >= deadline {
                            break Some(Err(RequestError::Timeout(settings.timeout)));
                        }
                        watchdog.as_mut().reset(deadline.into());
                    }
                }
            }
        };
        let at = sent.duration_since(start);
        match result {
            None => {
                stats.overdue(at, grace);
                break;
            }
            Some(Ok(answer)) => {
                stats.answer(at, answer.status, answer.version.as_deref(), answer.latency);
                if answer.close || !settings.keep_alive {
                    conn = None;
                }
            }
            Some(Err(error)) => {
                stats.failure(at, &error);
                conn = None;
            }
        }
    }
    stats
}

/// With `-n`, takes one of the requests left; false when none is.
fn take_ticket(tickets: Option<&AtomicU64>) -> bool {
    tickets.is_none_or(|left| {
        left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    })
}

/// Waits for the worker's next slot (at once without a schedule); false once sending stopped.
async fn next_slot(schedule: Option<&mut Schedule>, stop_sending: &CancellationToken) -> bool {
    if stop_sending.is_cancelled() {
        return false;
    }
    match schedule {
        Some(schedule) => tokio::select! {
            biased;
            () = stop_sending.cancelled() => false,
            () = schedule.wait() => true,
        },
        None => true,
    }
}

/// One request on the worker's connection, opening one (and counting it in `sockets`) when
/// there is none or the last one closed; the worker's timeout covers both.
async fn exchange(
    conn: &mut Option<Conn>,
    settings: &Settings,
    sockets: &mut u64,
) -> Result<Answer, RequestError> {
    let c = match conn.take() {
        Some(c) if c.is_open() => conn.insert(c),
        _ => {
            let c = Conn::open(&settings.target).await?;
            *sockets += 1;
            conn.insert(c)
        }
    };
    c.get(
        &settings.target,
        &settings.headers,
        settings.keep_alive,
        BodyRead::PAGE,
    )
    .await
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
    let mut latencies = Histogram::default();
    for s in stats {
        for (code, n) in s.codes {
            *report.codes.entry(code).or_default() += n;
        }
        report.sockets += s.sockets;
        report.unanswered += s.unanswered;
        latencies.merge(&s.latencies);
        report.versions.merge(&s.versions);
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
            merged.versions.merge(&second.versions);
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
    report.latency_ms = Latency::of(&latencies);
    report
}

impl Latency {
    fn of(histogram: &Histogram) -> Latency {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Latency {
            min: ms(histogram.min()),
            avg: ms(histogram.mean()),
            p50: ms(histogram.quantile(0.50)),
            p90: ms(histogram.quantile(0.90)),
            p99: ms(histogram.quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

impl Report {
    /// The report as pretty JSON, ending in a newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        json
    }

    /// Where `-a` saves it: `probe-load-HOST-PORT-YYYYMMDD-HHMMSS.json` (UTC start time), like
    /// fortio's automatic file names.
    pub fn file_name(&self) -> String {
        let target: String = self
            .url
            .split("://")
            .nth(1)
            .unwrap_or(&self.url)
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let start = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::try_from(self.started_unix_ms).unwrap_or(0) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "probe-load-{}-{:04}{:02}{:02}-{:02}{:02}{:02}.json",
            target.trim_matches('-'),
            start.year(),
            u8::from(start.month()),
            start.day(),
            start.hour(),
            start.minute(),
            start.second()
        )
    }

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
            if self.sockets < SPLIT_SOCKETS {
                let _ = writeln!(
                    out,
                    "Warning: the split counts {} connections: behind a Service it moves in steps of {:.1} %; \
                     --keepalive false (a new connection per request) shows the Service's split",
                    self.sockets,
                    100.0 / self.sockets.max(1) as f64
                );
            }
        }
        let failing: Vec<&Second> = self.timeline.iter().filter(|s| s.errors > 0).collect();
        if !failing.is_empty() {
            let _ = writeln!(out, "Errors by second:");
            for s in failing {
                let _ = writeln!(out, "  {:>4}s  {} errors, {} ok", s.second, s.errors, s.ok);
            }
        }
        let _ = writeln!(out, "Errors: {} of {}", self.errors, self.requests);
        if self.unanswered > 0 {
            let _ = writeln!(
                out,
                "Unanswered when the run ended: {} (still waiting after the end's grace; counted as errors)",
                self.unanswered
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(connections: usize, qps: f64) -> Settings {
        Settings {
            target: Target::parse("http://127.0.0.1:8080/").unwrap(),
            connections,
            qps,
            duration: None,
            requests: None,
            keep_alive: true,
            timeout: Duration::from_secs(10),
            headers: Vec::new(),
        }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// (second, ok, errors) of each second.
    fn seconds(timeline: &[Second]) -> Vec<(u64, u64, u64)> {
        timeline
            .iter()
            .map(|s| (s.second, s.ok, s.errors))
            .collect()
    }

    #[test]
    fn qps_is_zero_or_within_the_range() {
        assert_eq!(parse_qps(" 500 ").ok(), Some(500.0));
        assert_eq!(parse_qps("0").ok(), Some(0.0));
        assert_eq!(parse_qps("0.01").ok(), Some(0.01));
        for bad in ["0.001", "1e7", "-1", "NaN", "fast"] {
            assert!(parse_qps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_lasts_t_or_sixty_seconds_unless_n_counts_requests() {
        let mut s = settings(1, 1.0);
        assert_eq!(s.run_for(), Some(DEFAULT_DURATION));
        s.requests = Some(10);
        assert_eq!(s.run_for(), None);
        s.duration = Some(at(5000));
        assert_eq!(s.run_for(), Some(at(5000)));
    }

    #[test]
    fn workers_interleave_their_share_of_the_rate() {
        let start = Instant::now();
        let s = settings(4, 100.0);
        let slots: Vec<(Duration, Option<Duration>)> = (0..4)
            .filter_map(|id| Schedule::new(&s, id, start, None))
            .map(|w| (w.interval, w.next.map(|n| n - start)))
            .collect();
        let expected: Vec<_> = (0..4).map(|id| (at(40), Some(at(10 * id)))).collect();
        assert_eq!(slots, expected);
        assert!(Schedule::new(&settings(4, 0.0), 0, start, None).is_none());
        // A first slot at the end of the run never comes.
        let late = Schedule::new(&s, 3, start, Some(start + at(30)));
        assert_eq!(late.and_then(|w| w.next), None);
    }

    #[test]
    fn a_worker_counts_codes_seconds_versions_and_errors() {
        let mut w = WorkerStats::default();
        w.answer(at(100), 200, Some("0.8"), at(3));
        w.answer(at(1200), 503, Some("0.9"), at(4));
        w.failure(at(1500), &RequestError::Timeout(Duration::from_secs(1)));
        w.overdue(at(2100), Duration::from_secs(1));
        assert_eq!(
            w.codes.iter().map(|(c, n)| (*c, *n)).collect::<Vec<_>>(),
            [(-1, 2), (200, 1), (503, 1)]
        );
        assert_eq!(seconds(&w.timeline), [(0, 1, 0), (1, 0, 2), (2, 0, 1)]);
        assert_eq!(
            (w.versions.get("0.8"), w.versions.get("0.9")),
            (Some(&1), Some(&1))
        );
        let errors: Vec<(i32, &str)> = w
            .error_events
            .iter()
            .map(|e| (e.code, e.error.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                (503, "status 503"),
                (-1, "timed out after 1s"),
                (-1, "no answer by the end of the run (+ 1s)")
            ]
        );
        assert_eq!(w.unanswered, 1);
    }

    #[test]
    fn merging_adds_the_workers_and_orders_the_error_events() {
        let mut a = WorkerStats::default();
        a.answer(at(100), 200, Some("0.8"), at(2));
        a.answer(at(2500), 500, Some("0.8"), at(2));
        a.sockets = 1;
        let mut b = WorkerStats::default();
        b.answer(at(300), 200, Some("0.9"), at(4));
        b.failure(at(900), &RequestError::Timeout(Duration::from_secs(1)));
        b.sockets = 2;
        let report = merge(&settings(2, 10.0), vec![a, b], at(4000), 1_000_000);
        assert_eq!((report.requests, report.errors, report.sockets), (4, 2, 3));
        assert_eq!(report.achieved_qps, 1.0);
        assert_eq!(report.versions.get("0.8"), Some(&2));
        assert_eq!(seconds(&report.timeline), [(0, 2, 1), (1, 0, 0), (2, 0, 1)]);
        let events: Vec<(u128, i32)> = report
            .error_events
            .iter()
            .map(|e| (e.unix_ms, e.code))
            .collect();
        assert_eq!(events, [(1_000_900, -1), (1_002_500, 500)]);
        assert_eq!(report.latency_ms.min, 2.0);
    }

    #[test]
    fn the_text_report_reads_like_fortio() {
        let mut report = Report {
            url: "http://127.0.0.1:8080/".to_owned(),
            connections: 2,
            target_qps: 10.0,
            keep_alive: true,
            duration_s: 4.0,
            requests: 4,
            unanswered: 1,
            achieved_qps: 1.0,
            codes: BTreeMap::from([(-1, 1), (200, 3)]),
            errors: 1,
            sockets: 3,
            latency_ms: Latency {
                min: 1.0,
                avg: 2.5,
                p50: 2.0,
                p90: 4.0,
                p99: 4.0,
                max: 4.0,
            },
            timeline: vec![
                Second {
                    second: 0,
                    ok: 3,
                    ..Second::default()
                },
                Second {
                    second: 1,
                    errors: 1,
                    ..Second::default()
                },
            ],
            ..Report::default()
        };
        report.versions.add("0.8", 2);
        report.versions.add("0.9", 1);
        let expected = "\
Load http://127.0.0.1:8080/: 2 connections, target 10 qps, keep-alive
Ended after 4.00s: 4 requests, 1.0 qps
Sockets used: 3 (for perfect keep-alive, would be 2)
Code  -1 : 1 (25.00 %)
Code 200 : 3 (75.00 %)
Latency ms: min 1.000  p50 2.000  p90 4.000  p99 4.000  max 4.000  avg 2.500
Versions: 0.8 2 (66.7 %)  0.9 1 (33.3 %)
Warning: the split counts 3 connections: behind a Service it moves in steps of 33.3 %; --keepalive false (a new connection per request) shows the Service's split
Errors by second:
     1s  1 errors, 0 ok
Errors: 1 of 4
Unanswered when the run ended: 1 (still waiting after the end's grace; counted as errors)
";
        assert_eq!(report.to_text(), expected);
    }

    #[test]
    fn the_split_warns_only_when_too_few_connections_carried_it() {
        let mut report = Report {
            requests: 8000,
            sockets: 8,
            ..Report::default()
        };
        let warned = |r: &Report| r.to_text().contains("Warning: the split counts");
        assert!(!warned(&report), "no versions, no split");
        report.versions.add("v1.0.0", 6000);
        report.versions.add("v2.0.0", 2000);
        assert!(report.to_text().contains(
            "the split counts 8 connections: behind a Service it moves in steps of 12.5 %"
        ));
        report.sockets = 8000; // --keepalive false: a connection per request
        assert!(!warned(&report));
        report.sockets = SPLIT_SOCKETS;
        assert!(!warned(&report));
    }

    #[test]
    fn the_saved_file_is_named_for_the_host_port_and_utc_start() {
        let report = Report {
            url: "http://app.example:8080/x?y=1".to_owned(),
            started_unix_ms: 1_795_464_062_114,
            ..Report::default()
        };
        assert_eq!(
            report.file_name(),
            "probe-load-app.example-8080-20261123-200102.json"
        );
    }
}
