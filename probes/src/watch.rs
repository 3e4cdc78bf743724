//! `probe watch`: the tutorials' `while true; do curl ...; sleep 1; done`, made readable.
//!
//! One request per interval, each on a new connection as `curl` would make, so that a Service
//! spreads them over its pods. One line per answer; a marker when a version or pod appears or
//! goes away; on a terminal, coloured versions and a live split of the recent answers; a summary
//! at the end (Ctrl-C or `--count`). Ctrl-C during a request ends the watch at once; that request
//! is not counted. Only the start of each body is read ([`BodyRead::PAGE`]).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::builder::{BoolValueParser, TypedValueParser as _};
use hyper::header::{HeaderName, HeaderValue};
use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};
use tokio::time::Instant;

use crate::client::{self, BodyRead, Target};

/// Failures the summary lists (the first ones); the count covers them all.
const MAX_FAILURES_LISTED: usize = 100;

/// Answers the live split and the "gone" markers look back over.
const WINDOW: usize = 20;

/// The accepted `--interval`: 1 ms to 1 h.
pub const INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Colours and a live split line (a terminal).
    Terminal,
    /// Plain lines (a pipe or a file).
    Plain,
    /// One JSON object per answer, then a summary object.
    Json,
}

impl Output {
    /// `--json`, or else whether stdout is a terminal.
    fn from_json_flag(json: bool) -> Output {
        use std::io::IsTerminal;
        if json {
            Output::Json
        } else if std::io::stdout().is_terminal() {
            Output::Terminal
        } else {
            Output::Plain
        }
    }
}

/// Local wall-clock time. The zone's offset is read once, before any other thread exists
/// (reading it later is not thread-safe on Unix); UTC when it cannot be read.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: UtcOffset,
}

impl Clock {
    /// Reads the local offset; call before starting a runtime.
    pub fn local() -> Self {
        Clock {
            offset: UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC),
        }
    }

    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc().to_offset(self.offset)
    }
}

/// `20:01:02.114`
fn clock_text(t: OffsetDateTime) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339 with milliseconds and the local offset: `2026-11-23T20:01:02.114+08:00`.
fn stamp(t: OffsetDateTime) -> String {
    let offset = t.offset();
    let sign = if offset.is_negative() { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02}T{}{sign}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        clock_text(t),
        offset.whole_hours().unsigned_abs(),
        offset.minutes_past_hour().unsigned_abs()
    )
}

/// Settings of a watch, as `probe watch` reads them.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// URL of the Service, NodePort or Ingress.
    #[arg(value_name = "URL", value_parser = client::parse_target)]
    pub target: Target,
    /// Time between requests, 1ms to 1h.
    // Zero, possible from code only, means back to back.
    #[arg(long, default_value = "1s", value_parser = testpage::duration::within(INTERVAL_RANGE))]
    pub interval: Duration,
    /// Stop after this many requests (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Extra request header, Name:value (repeatable): `x-version:v2` for an A/B rule,
    /// `Host:app.example` for an Ingress or Gateway route.
    #[arg(short = 'H', long = "header", value_parser = crate::pod::parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Per-request timeout (more than 0).
    #[arg(long, default_value = "2s",
          value_parser = testpage::duration::positive)]
    pub timeout: Duration,
    /// JSON lines instead of text.
    // Without --json: colours and a live split on a terminal, plain lines elsewhere.
    #[arg(long = "json", value_parser = BoolValueParser::new().map(Output::from_json_flag),
          action = clap::ArgAction::SetTrue, default_value = "false")]
    pub output: Output,
    /// Local time for the lines.
    #[arg(skip = Clock::local())]
    pub clock: Clock,
}

/// One request's result, as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    /// Local time the request was sent, RFC 3339.
    pub time: String,
    /// HTTP status, or null on a connection error.
    pub status: Option<u16>,
    /// The answering version.
    pub version: Option<String>,
    /// The answering pod's IP.
    pub pod_ip: Option<String>,
    /// Round trip in milliseconds.
    pub latency_ms: f64,
    /// The connection error, if any.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Seen {
    answers: u64,
    first_seen: String,
    last_seen: String,
}

/// What a watch saw, printed at the end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Requests sent.
    pub requests: u64,
    /// Answers with a status below 500.
    pub ok: u64,
    versions: BTreeMap<String, Seen>,
    pods: BTreeMap<String, Seen>,
    /// Requests without an answer below 500.
    pub failed: u64,
    failures: Vec<Observation>,
}

/// Runs the watch until `--count` requests were made or `interrupt` completes (Ctrl-C), prints
/// the summary and returns it.
pub async fn run(settings: Settings, interrupt: impl Future<Output = ()>) -> Summary {
    let mut tracker = Tracker::new(settings.output);
    tokio::pin!(interrupt);
    // Requests start an interval apart. After an answer slower than the interval the next request
    // goes at once and the schedule restarts from it (tokio's `MissedTickBehavior::Delay`): no
    // burst of catch-up requests at a slow pod. `None`: the next slot is beyond the clock's
    // range, so no further request.
    let mut next = Some(Instant::now());
    while settings.count.is_none_or(|n| tracker.summary.requests < n) {
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut interrupt => break,
            () = wait => {}
        }
        next = next
            .map(|at| at.max(Instant::now()))
            .and_then(|at| at.checked_add(settings.interval));
        let time = settings.clock.now();
        let request = client::get_once(
            &settings.target,
            &settings.headers,
            settings.timeout,
            BodyRead::PAGE,
        );
        let result = tokio::select! {
            biased;
            () = &mut interrupt => break,
            result = request => result,
        };
        let observation = match result {
            Ok(answer) => Observation {
                time: stamp(time),
                status: Some(answer.status),
                version: answer.version,
                pod_ip: answer.pod_ip.or(answer.pod),
                latency_ms: answer.latency.as_secs_f64() * 1e3,
                error: None,
            },
            Err(e) => Observation {
                time: stamp(time),
                status: None,
                version: None,
                pod_ip: None,
                latency_ms: (settings.clock.now() - time).as_seconds_f64() * 1e3,
                error: Some(e.to_string()),
            },
        };
        tracker.record(time, observation);
    }
    tracker.finish();
    tracker.summary
}

/// Keeps the counts and prints as answers come in.
struct Tracker {
    output: Output,
    summary: Summary,
    recent: VecDeque<(Option<String>, Option<String>)>,
    palette: Vec<String>,
    split_shown: bool,
}

impl Tracker {
    fn new(output: Output) -> Self {
        Tracker {
            output,
            summary: Summary::default(),
            recent: VecDeque::new(),
            palette: Vec::new(),
            split_shown: false,
        }
    }

    fn record(&mut self, time: OffsetDateTime, obs: Observation) {
        let clock = clock_text(time);
        self.summary.requests += 1;
        let mut markers = Vec::new();
        if obs.status.is_some_and(|s| s < 500) {
            self.summary.ok += 1;
        } else {
            // The summary lists the first failures; the count stays exact.
            self.summary.failed += 1;
            if self.summary.failures.len() < MAX_FAILURES_LISTED {
                self.summary.failures.push(obs.clone());
            }
        }
        if let Some(version) = &obs.version {
            if !self.summary.versions.contains_key(version) {
                markers.push(format!("new version {version}"));
                self.palette.push(version.clone());
            }
            note(&mut self.summary.versions, version, &clock);
        }
        if let Some(pod) = &obs.pod_ip {
            if !self.summary.pods.contains_key(pod) {
                let version = obs.version.as_deref().unwrap_or("?");
                markers.push(format!("new pod {pod} ({version})"));
            }
            note(&mut self.summary.pods, pod, &clock);
        }
        let before = self.window_sets();
        self.recent
            .push_back((obs.version.clone(), obs.pod_ip.clone()));
        let window = WINDOW.max(self.window_sets().1.len() * 6);
        while self.recent.len() > window {
            self.recent.pop_front();
        }
        if self.recent.len() == window {
            let after = self.window_sets();
            for gone in before.0.iter().filter(|v| !after.0.contains(v)) {
                markers.push(format!(
                    "version {gone} gone: not in the last {window} answers"
                ));
            }
            for gone in before.1.iter().filter(|p| !after.1.contains(p)) {
                markers.push(format!("pod {gone} gone: not in the last {window} answers"));
            }
        }
        self.print(&clock, &obs, &markers);
    }

    fn window_sets(&self) -> (Vec<String>, Vec<String>) {
        let mut versions: Vec<String> = self.recent.iter().filter_map(|r| r.0.clone()).collect();
        let mut pods: Vec<String> = self.recent.iter().filter_map(|r| r.1.clone()).collect();
        versions.sort();
        versions.dedup();
        pods.sort();
        pods.dedup();
        (versions, pods)
    }

    fn paint(&self, version: &str) -> String {
        const COLOURS: [&str; 6] = ["32", "36", "33", "35", "34", "92"];
        if self.output != Output::Terminal {
            return version.to_owned();
        }
        let index = self
            .palette
            .iter()
            .position(|v| v == version.trim_end())
            .unwrap_or(0);
        format!("\x1b[1;{}m{version}\x1b[0m", COLOURS[index % COLOURS.len()])
    }

    fn print(&mut self, clock: &str, obs: &Observation, markers: &[String]) {
        let mut out = std::io::stdout().lock();
        if self.output == Output::Json {
            // Serialising these plain fields cannot fail; a closed stdout is ignored like below.
            let _ = serde_json::to_writer(&mut out, obs);
            let _ = writeln!(out);
            return;
        }
        if self.split_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        for marker in markers {
            let _ = writeln!(out, "── {marker}");
        }
        let line = match (&obs.status, &obs.error) {
            (Some(status), _) => {
                // Pad before painting: escape codes would count as width.
                let version = format!("{:<8}", obs.version.as_deref().unwrap_or("?"));
                format!(
                    "{clock}  {status}  {} {:<16} {:>7.1}ms",
                    self.paint(&version),
                    obs.pod_ip.as_deref().unwrap_or("?"),
                    obs.latency_ms
                )
            }
            (None, error) => format!("{clock}  ERR  {}", error.as_deref().unwrap_or("")),
        };
        let _ = writeln!(out, "{line}");
        if self.output == Output::Terminal {
            let _ = write!(out, "{}", self.split());
            self.split_shown = true;
        }
        let _ = out.flush();
    }

    /// `0.8 ██████ 60%  0.9 ████ 40%` over the recent answers.
    fn split(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (version, _) in &self.recent {
            *counts
                .entry(version.as_deref().unwrap_or("error"))
                .or_default() += 1;
        }
        let total = self.recent.len().max(1);
        counts
            .iter()
            .map(|(version, n)| {
                let bar = "█".repeat((n * 10).div_ceil(total));
                format!("{} {bar} {}%", self.paint(version), n * 100 / total)
            })
            .collect::<Vec<_>>()
            .join("  ")
    }

    fn finish(&mut self) {
        let summary = &self.summary;
        let mut out = std::io::stdout().lock();
        if self.output == Output::Json {
            let line = serde_json::json!({ "summary": summary });
            let _ = writeln!(out, "{line}");
            return;
        }
        if self.split_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        let failed = summary.requests - summary.ok;
        let _ = writeln!(
            out,
            "── summary: {} requests, {} ok, {failed} failed",
            summary.requests, summary.ok
        );
        for (title, table) in [("version", &summary.versions), ("pod", &summary.pods)] {
            let _ = writeln!(
                out,
                "{title:<18} {:>8} {:>7}  first seen    last seen",
                "answers", "share"
            );
            for (name, seen) in table {
                let share = seen.answers as f64 * 100.0 / summary.requests.max(1) as f64;
                let _ = writeln!(
                    out,
                    "{name:<18} {:>8} {share:>6.1}%  {}  {}",
                    seen.answers, seen.first_seen, seen.last_seen
                );
            }
        }
        if !summary.failures.is_empty() {
            let _ = writeln!(
                out,
                "failures: {} (the first {} listed)",
                summary.failed,
                summary.failures.len()
            );
            for f in &summary.failures {
                let what = f
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("status {}", f.status.unwrap_or(0)));
                let _ = writeln!(out, "  {}  {what}", f.time);
            }
        }
    }
}

fn note(table: &mut BTreeMap<String, Seen>, key: &str, clock: &str) {
    let key = crate::client::tally_key(table, key);
    let seen = table.entry(key.to_owned()).or_insert_with(|| Seen {
        answers: 0,
        first_seen: clock.to_owned(),
        last_seen: clock.to_owned(),
    });
    seen.answers += 1;
    seen.last_seen = clock.to_owned();
}
