//! `probe watch`: the tutorials' `while true; do curl ...; sleep 1; done`, made readable; and the
//! same for the long-lived answers, a WebSocket or a stream of server-sent events.
//!
//! An `http://` URL is polled: one request per interval, each on a new connection as `curl` would
//! make, so that a Service spreads them over its pods; one line per answer. Only the start of
//! each body is read ([`BodyRead::PAGE`]).
//!
//! A `ws://` URL, or an `http://` one with `--sse`, is a stream ([`crate::stream`]): one line per
//! message; when the connection ends, a line saying how (clean or abnormal), and a new
//! connection after `--interval` (or the event stream's `retry:`). The summary counts the
//! connections and how they ended, the gaps in each connection's sequence numbers, and the
//! longest wait between two messages, reconnections included.
//!
//! Either way, a marker when a version or pod appears or goes away; on a terminal, coloured
//! versions and a live split of the recent answers; a summary at the end (Ctrl-C, SIGTERM or
//! `--count`). Ctrl-C during a request ends the watch at once; that request is not counted.

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

use crate::client::{self, BodyRead, RequestError, Target};
use crate::stream::{self, End, Endpoint, Kind, Message, OpenError, Stream};

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
    /// URL of the Service, NodePort or Ingress: http:// (polled; read as server-sent events
    /// with --sse) or ws:// (a WebSocket).
    #[arg(value_name = "URL", value_parser = stream::parse_endpoint)]
    pub target: Endpoint,
    /// Time between requests, 1ms to 1h; on a stream, the wait before reconnecting (with --sse,
    /// until the stream sends `retry:`).
    // Zero, possible from code only, means back to back.
    #[arg(long, default_value = "1s", value_parser = testpage::duration::within(INTERVAL_RANGE))]
    pub interval: Duration,
    /// Stop after this many requests, or messages on a stream (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Extra request header, Name:value (repeatable): `x-version:v2` for an A/B rule,
    /// `Host:app.example` for an Ingress or Gateway route.
    #[arg(short = 'H', long = "header", value_parser = crate::pod::parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Per-request timeout (more than 0); on a stream, for connecting and the handshake.
    #[arg(long, default_value = "2s",
          value_parser = testpage::duration::positive)]
    pub timeout: Duration,
    /// Read the http:// URL as a stream of server-sent events (text/event-stream).
    #[arg(long)]
    pub sse: bool,
    /// On a stream, end a connection that sends nothing for this long (more than 0), and
    /// reconnect.
    #[arg(long, default_value = "10s", value_parser = testpage::duration::positive)]
    pub idle_timeout: Duration,
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

/// The versions and pods that answered (or sent messages), as the summary lists them.
#[derive(Debug, Default, Clone, Serialize)]
struct Tally {
    versions: BTreeMap<String, Seen>,
    pods: BTreeMap<String, Seen>,
}

/// What a watch of an `http://` URL saw, printed at the end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Requests sent.
    pub requests: u64,
    /// Answers with a status below 500.
    pub ok: u64,
    #[serde(flatten)]
    tally: Tally,
    /// Requests without an answer below 500.
    pub failed: u64,
    failures: Vec<Observation>,
}

/// What a watch of a stream saw, printed at the end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StreamSummary {
    /// Messages received.
    pub messages: u64,
    /// Connections made (answered with the stream).
    pub connections: u64,
    /// Connections made after the first.
    pub reconnections: u64,
    /// Connections the server ended with a goodbye: a WebSocket close 1000 or 1001, or an event
    /// stream's `bye` and then its end.
    pub clean_closes: u64,
    /// Connections that ended otherwise: another close code or none, a reset, an event stream
    /// ended without `bye`, silence for `--idle-timeout`, a message too large.
    pub abnormal_ends: u64,
    /// Attempts that gave no stream: refused, timed out, or answered with something else.
    pub failed_connects: u64,
    /// Messages whose `seq` is not one more than the previous message's on the same connection.
    pub seq_gaps: u64,
    /// Sequence numbers skipped over in those gaps.
    pub missed: u64,
    /// The longest time between two messages, in milliseconds, reconnections included (null
    /// before the second message).
    pub longest_gap_ms: Option<f64>,
    /// When the message that ended the longest gap arrived, RFC 3339.
    pub longest_gap_until: Option<String>,
    #[serde(flatten)]
    tally: Tally,
    failures: Vec<Trouble>,
}

/// A failed connection attempt or an abnormal end, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
struct Trouble {
    time: String,
    error: String,
}

/// What a watch saw: a summary of answers or of a stream's messages.
#[derive(Debug, Clone)]
pub enum Report {
    /// An `http://` URL, polled.
    Poll(Summary),
    /// A WebSocket or a stream of server-sent events.
    Stream(StreamSummary),
}

/// Runs the watch until `--count` requests (or messages) or `interrupt` completes (Ctrl-C),
/// prints the summary and returns it.
pub async fn run(settings: Settings, interrupt: impl Future<Output = ()>) -> Report {
    match (&settings.target, settings.sse) {
        (Endpoint::WebSocket(target), _) => {
            Report::Stream(watch_stream(Kind::WebSocket, target, &settings, interrupt).await)
        }
        (Endpoint::Http(target), true) => {
            Report::Stream(watch_stream(Kind::Events, target, &settings, interrupt).await)
        }
        (Endpoint::Http(target), false) => Report::Poll(poll(target, &settings, interrupt).await),
    }
}

/// Polls `target` every interval.
async fn poll(
    target: &Target,
    settings: &Settings,
    interrupt: impl Future<Output = ()>,
) -> Summary {
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
        let request = client::get_once(target, &settings.headers, settings.timeout, BodyRead::PAGE);
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

/// Follows a stream at `target`, reconnecting whenever it ends, until `--count` messages or
/// `interrupt`. A connection still open then is dropped, counted neither clean nor abnormal.
async fn watch_stream(
    kind: Kind,
    target: &Target,
    settings: &Settings,
    interrupt: impl Future<Output = ()>,
) -> StreamSummary {
    let mut tracker = StreamTracker::new(settings.output);
    let wanted =
        |tracker: &StreamTracker| settings.count.is_none_or(|n| tracker.summary.messages < n);
    let mut delay = settings.interval;
    tokio::pin!(interrupt);
    'watch: while wanted(&tracker) {
        let time = settings.clock.now();
        let open = tokio::time::timeout(
            settings.timeout,
            Stream::open(kind, target, &settings.headers),
        );
        let opened = tokio::select! {
            biased;
            () = &mut interrupt => break,
            opened = open => opened.unwrap_or_else(|_| {
                Err(OpenError::Request(RequestError::Timeout(settings.timeout)))
            }),
        };
        match opened {
            Err(error) => tracker.failed(time, &error.to_string(), delay),
            Ok(mut stream) => {
                tracker.connected(time, stream.status());
                let end = loop {
                    if !wanted(&tracker) {
                        break 'watch;
                    }
                    let next = tokio::time::timeout(settings.idle_timeout, stream.next());
                    let next = tokio::select! {
                        biased;
                        () = &mut interrupt => break 'watch,
                        next = next => next,
                    };
                    match next {
                        Ok(Ok(Some(message))) => {
                            tracker.message(settings.clock.now(), Instant::now(), &message);
                        }
                        // A sign of life: a ping, a comment, part of a message.
                        Ok(Ok(None)) => {}
                        Ok(Err(end)) => break end,
                        Err(_) => {
                            break End::abnormal(format!(
                                "nothing received for {}",
                                testpage::duration::format(settings.idle_timeout)
                            ))
                        }
                    }
                };
                // An event stream's `retry:` sets the delay for this and every later connection,
                // as in a browser; within --interval's range, whatever the server says.
                if let Some(retry) = stream.retry() {
                    delay = retry.clamp(*INTERVAL_RANGE.start(), *INTERVAL_RANGE.end());
                }
                drop(stream);
                tracker.ended(settings.clock.now(), end, delay);
            }
        }
        tokio::select! {
            biased;
            () = &mut interrupt => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    tracker.finish();
    tracker.summary
}

/// Writes the lines: markers when versions and pods come and go, and on a terminal, coloured
/// versions and a live split of the recent answers; or JSON lines.
struct Screen {
    output: Output,
    recent: VecDeque<(Option<String>, Option<String>)>,
    palette: Vec<String>,
    split_shown: bool,
}

impl Screen {
    fn new(output: Output) -> Self {
        Screen {
            output,
            recent: VecDeque::new(),
            palette: Vec::new(),
            split_shown: false,
        }
    }

    /// Notes who answered, in `tally` and in the recent window, and returns the markers for
    /// the line: a version or pod new, or gone from the window.
    fn see(
        &mut self,
        tally: &mut Tally,
        version: Option<&str>,
        pod: Option<&str>,
        clock: &str,
    ) -> Vec<String> {
        let mut markers = Vec::new();
        if let Some(version) = version {
            if !tally.versions.contains_key(version) {
                markers.push(format!("new version {version}"));
                // Colours for the versions the tally names; the others share the first.
                if self.palette.len() < client::MAX_NAMES {
                    self.palette.push(version.to_owned());
                }
            }
            note(&mut tally.versions, version, clock);
        }
        if let Some(pod) = pod {
            if !tally.pods.contains_key(pod) {
                let version = version.unwrap_or("?");
                markers.push(format!("new pod {pod} ({version})"));
            }
            note(&mut tally.pods, pod, clock);
        }
        let before = self.window_sets();
        self.recent
            .push_back((version.map(str::to_owned), pod.map(str::to_owned)));
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
        markers
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

    /// `version`, coloured on a terminal. Pad before painting: escape codes would count as width.
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

    /// Prints `markers` and `line`, then on a terminal the split under them.
    fn print(&mut self, markers: &[String], line: &str) {
        // Not println!, which panics when stdout is closed: a closed stdout is ignored.
        let mut out = std::io::stdout().lock();
        if self.split_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        for marker in markers {
            let _ = writeln!(out, "── {marker}");
        }
        let _ = writeln!(out, "{line}");
        if self.output == Output::Terminal {
            let _ = write!(out, "{}", self.split());
            self.split_shown = true;
        }
        let _ = out.flush();
    }

    /// Prints one JSON line.
    fn print_json(&self, value: &impl Serialize) {
        let mut out = std::io::stdout().lock();
        // Serialising these plain fields cannot fail; a closed stdout is ignored like above.
        let _ = serde_json::to_writer(&mut out, value);
        let _ = writeln!(out);
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

    /// Prints the summary's text: `head` lines, the version and pod tables (`unit` counted, of
    /// `total`), and the failures listed (of `failed`).
    fn summary(
        &mut self,
        head: &[String],
        tally: &Tally,
        (unit, total): (&str, u64),
        failures: (u64, &[(String, String)]),
    ) {
        let mut out = std::io::stdout().lock();
        if self.split_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        for line in head {
            let _ = writeln!(out, "── {line}");
        }
        for (title, table) in [("version", &tally.versions), ("pod", &tally.pods)] {
            let _ = writeln!(
                out,
                "{title:<18} {unit:>8} {:>7}  first seen    last seen",
                "share"
            );
            for (name, seen) in table {
                let share = seen.answers as f64 * 100.0 / total.max(1) as f64;
                let _ = writeln!(
                    out,
                    "{name:<18} {:>8} {share:>6.1}%  {}  {}",
                    seen.answers, seen.first_seen, seen.last_seen
                );
            }
        }
        let (failed, listed) = failures;
        if !listed.is_empty() {
            let _ = writeln!(
                out,
                "failures: {failed} (the first {} listed)",
                listed.len()
            );
            for (time, what) in listed {
                let _ = writeln!(out, "  {time}  {what}");
            }
        }
        let _ = out.flush();
    }
}

/// Counts the answers of a polled URL and prints as they come in.
struct Tracker {
    screen: Screen,
    summary: Summary,
}

impl Tracker {
    fn new(output: Output) -> Self {
        Tracker {
            screen: Screen::new(output),
            summary: Summary::default(),
        }
    }

    fn record(&mut self, time: OffsetDateTime, obs: Observation) {
        let clock = clock_text(time);
        self.summary.requests += 1;
        if obs.status.is_some_and(|s| s < 500) {
            self.summary.ok += 1;
        } else {
            // The summary lists the first failures; the count stays exact.
            self.summary.failed += 1;
            if self.summary.failures.len() < MAX_FAILURES_LISTED {
                self.summary.failures.push(obs.clone());
            }
        }
        let markers = self.screen.see(
            &mut self.summary.tally,
            obs.version.as_deref(),
            obs.pod_ip.as_deref(),
            &clock,
        );
        if self.screen.output == Output::Json {
            self.screen.print_json(&obs);
            return;
        }
        let line = match (&obs.status, &obs.error) {
            (Some(status), _) => {
                let version = format!("{:<8}", obs.version.as_deref().unwrap_or("?"));
                format!(
                    "{clock}  {status}  {} {:<16} {:>7.1}ms",
                    self.screen.paint(&version),
                    obs.pod_ip.as_deref().unwrap_or("?"),
                    obs.latency_ms
                )
            }
            (None, error) => format!("{clock}  ERR  {}", error.as_deref().unwrap_or("")),
        };
        self.screen.print(&markers, &line);
    }

    fn finish(&mut self) {
        let summary = &self.summary;
        if self.screen.output == Output::Json {
            self.screen
                .print_json(&serde_json::json!({ "summary": summary }));
            return;
        }
        let failed = summary.requests - summary.ok;
        let head = format!(
            "summary: {} requests, {} ok, {failed} failed",
            summary.requests, summary.ok
        );
        let failures: Vec<(String, String)> = summary
            .failures
            .iter()
            .map(|f| {
                let what = f
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("status {}", f.status.unwrap_or(0)));
                (f.time.clone(), what)
            })
            .collect();
        self.screen.summary(
            &[head],
            &summary.tally,
            ("answers", summary.requests),
            (summary.failed, &failures),
        );
    }
}

/// A line of a stream's watch, as JSON.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamLine<'a> {
    /// A connection answered with the stream.
    Connected {
        time: String,
        status: u16,
        /// 1 for the first connection, 2 for the first reconnection, and so on.
        connection: u64,
    },
    /// A message.
    Message {
        time: String,
        event: &'a str,
        version: Option<&'a str>,
        pod: Option<&'a str>,
        seq: Option<u64>,
        /// Since the previous message (null for the first).
        gap_ms: Option<f64>,
        /// The start of the data, when it is not testpage's `{"version", "pod", "seq"}`.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<String>,
    },
    /// A connection ended.
    Ended {
        time: String,
        clean: bool,
        detail: &'a str,
        retry_ms: u64,
    },
    /// An attempt gave no stream.
    Failed {
        time: String,
        error: &'a str,
        retry_ms: u64,
    },
}

/// The characters of a message's data a line shows, when it is not testpage's stamp.
const DATA_SHOWN: usize = 120;

/// Counts a stream's connections and messages and prints as they come in.
struct StreamTracker {
    screen: Screen,
    summary: StreamSummary,
    /// When the last message arrived, on any connection.
    last_message: Option<Instant>,
    longest_gap: Option<Duration>,
    /// When the longest gap ended, for the text summary.
    longest_gap_clock: Option<String>,
    /// The last `seq` on this connection.
    last_seq: Option<u64>,
}

impl StreamTracker {
    fn new(output: Output) -> Self {
        StreamTracker {
            screen: Screen::new(output),
            summary: StreamSummary::default(),
            last_message: None,
            longest_gap: None,
            longest_gap_clock: None,
            last_seq: None,
        }
    }

    fn connected(&mut self, time: OffsetDateTime, status: u16) {
        self.summary.connections += 1;
        self.summary.reconnections = self.summary.connections - 1;
        self.last_seq = None;
        let connection = self.summary.connections;
        if self.screen.output == Output::Json {
            self.screen.print_json(&StreamLine::Connected {
                time: stamp(time),
                status,
                connection,
            });
            return;
        }
        let which = match connection {
            1 => String::new(),
            n => format!(" (reconnection {})", n - 1),
        };
        self.screen.print(
            &[],
            &format!("{}  {status}  connected{which}", clock_text(time)),
        );
    }

    fn message(&mut self, time: OffsetDateTime, at: Instant, message: &Message) {
        let clock = clock_text(time);
        self.summary.messages += 1;
        let gap = self.last_message.map(|last| at - last);
        self.last_message = Some(at);
        if let Some(gap) = gap.filter(|g| self.longest_gap.is_none_or(|l| *g > l)) {
            self.longest_gap = Some(gap);
            self.summary.longest_gap_ms = Some(gap.as_secs_f64() * 1e3);
            self.summary.longest_gap_until = Some(stamp(time));
            self.longest_gap_clock = Some(clock.clone());
        }
        let payload = message.stamp();
        let version = payload.as_ref().map(|s| client::bounded(s.version.clone()));
        let pod = payload.as_ref().map(|s| client::bounded(s.pod.clone()));
        let seq = payload.as_ref().map(|s| s.seq);
        let mut markers = Vec::new();
        if let Some(seq) = seq {
            if let Some(last) = self.last_seq {
                if last.checked_add(1) != Some(seq) {
                    self.summary.seq_gaps += 1;
                    let missed = seq.saturating_sub(last.saturating_add(1));
                    self.summary.missed += missed;
                    markers.push(format!("sequence gap: #{seq} after #{last}"));
                }
            }
            self.last_seq = Some(seq);
        }
        // Only testpage's messages name a version and pod: the others stay out of the split,
        // where they would read as errors.
        if payload.is_some() {
            markers.extend(self.screen.see(
                &mut self.summary.tally,
                version.as_deref(),
                pod.as_deref(),
                &clock,
            ));
        }
        let event = client::bounded(message.event.clone());
        let data = payload
            .is_none()
            .then(|| client::excerpt(&message.data, DATA_SHOWN));
        let gap_ms = gap.map(|g| g.as_secs_f64() * 1e3);
        if self.screen.output == Output::Json {
            self.screen.print_json(&StreamLine::Message {
                time: stamp(time),
                event: &event,
                version: version.as_deref(),
                pod: pod.as_deref(),
                seq,
                gap_ms,
                data,
            });
            return;
        }
        let kind = if event == "message" { "msg" } else { &event };
        let version = format!("{:<8}", version.as_deref().unwrap_or("?"));
        let seq = seq.map_or_else(|| "#?".to_owned(), |s| format!("#{s}"));
        let gap = gap_ms.map_or_else(String::new, |g| format!("{g:>9.1}ms"));
        let mut line = format!(
            "{clock}  {kind:<3}  {} {:<16} {seq:<7}{gap}",
            self.screen.paint(&version),
            pod.as_deref().unwrap_or("?"),
        );
        if let Some(data) = data {
            line.push_str("  ");
            line.push_str(&data);
        }
        self.screen.print(&markers, line.trim_end());
    }

    fn ended(&mut self, time: OffsetDateTime, end: End, retry: Duration) {
        if end.clean {
            self.summary.clean_closes += 1;
        } else {
            self.summary.abnormal_ends += 1;
            self.trouble(time, &end.detail);
        }
        if self.screen.output == Output::Json {
            self.screen.print_json(&StreamLine::Ended {
                time: stamp(time),
                clean: end.clean,
                detail: &end.detail,
                retry_ms: millis(retry),
            });
            return;
        }
        let how = if end.clean { "clean" } else { "abnormal" };
        self.screen.print(
            &[],
            &format!(
                "{}  END  {how}: {}; reconnecting in {}",
                clock_text(time),
                end.detail,
                testpage::duration::format(retry)
            ),
        );
    }

    fn failed(&mut self, time: OffsetDateTime, error: &str, retry: Duration) {
        self.summary.failed_connects += 1;
        self.trouble(time, error);
        if self.screen.output == Output::Json {
            self.screen.print_json(&StreamLine::Failed {
                time: stamp(time),
                error,
                retry_ms: millis(retry),
            });
            return;
        }
        self.screen.print(
            &[],
            &format!(
                "{}  ERR  {error}; retrying in {}",
                clock_text(time),
                testpage::duration::format(retry)
            ),
        );
    }

    /// Lists a failure in the summary (the first ones; the counts cover them all).
    fn trouble(&mut self, time: OffsetDateTime, error: &str) {
        if self.summary.failures.len() < MAX_FAILURES_LISTED {
            self.summary.failures.push(Trouble {
                time: stamp(time),
                error: error.to_owned(),
            });
        }
    }

    fn finish(&mut self) {
        let s = &self.summary;
        if self.screen.output == Output::Json {
            self.screen.print_json(&serde_json::json!({ "summary": s }));
            return;
        }
        let longest = match (s.longest_gap_ms, &self.longest_gap_clock) {
            (Some(ms), Some(until)) => format!("{ms:.1}ms (until {until})"),
            _ => "none (fewer than two messages)".to_owned(),
        };
        let head = [
            format!(
                "summary: messages {}, connections {}, reconnections {}, clean closes {}, \
                 abnormal ends {}, failed connects {}",
                s.messages,
                s.connections,
                s.reconnections,
                s.clean_closes,
                s.abnormal_ends,
                s.failed_connects
            ),
            format!(
                "sequence gaps {} ({} missed), longest gap between messages {longest}",
                s.seq_gaps, s.missed
            ),
        ];
        let failures: Vec<(String, String)> = s
            .failures
            .iter()
            .map(|t| (t.time.clone(), t.error.clone()))
            .collect();
        self.screen.summary(
            &head,
            &s.tally,
            ("messages", s.messages),
            (s.abnormal_ends + s.failed_connects, &failures),
        );
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
