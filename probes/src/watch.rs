//! `probe watch`: the tutorials' `while true; do curl ...; sleep 1; done`, made readable; and the
//! same for the long-lived answers, a WebSocket or a stream of server-sent events.
//!
//! An `http://` URL is polled: one request per interval, each on a new connection as `curl` would
//! make, so that a Service spreads them over its pods; one line per answer. Only the start of
//! each body is read ([`BodyRead::PAGE`](crate::client::BodyRead::PAGE)).
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
//!
//! By concern: `drive` makes the requests and connections and hands each event to `summary`,
//! which counts it (pure), then to `screen`, which writes its line; this module holds the
//! settings and the clock.

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::builder::{BoolValueParser, TypedValueParser as _};
use hyper::header::{HeaderName, HeaderValue};
use time::{OffsetDateTime, UtcOffset};

use crate::stream::{self, Endpoint, Kind};

mod drive;
mod screen;
mod summary;

pub use summary::{Observation, StreamSummary, Summary};

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
    let screen = screen::Screen::new(settings.output, std::io::stdout());
    match (&settings.target, settings.sse) {
        (Endpoint::WebSocket(target), _) => Report::Stream(
            drive::stream(Kind::WebSocket, target, &settings, screen, interrupt).await,
        ),
        (Endpoint::Http(target), true) => {
            Report::Stream(drive::stream(Kind::Events, target, &settings, screen, interrupt).await)
        }
        (Endpoint::Http(target), false) => {
            Report::Poll(drive::poll(target, &settings, screen, interrupt).await)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::{Date, Month};

    /// 2026-11-23 20:01:02.114 at `offset` (hours, minutes), plus `ms`.
    pub(crate) fn at(offset: (i8, i8), ms: u32) -> OffsetDateTime {
        let offset = UtcOffset::from_hms(offset.0, offset.1, 0).unwrap();
        Date::from_calendar_date(2026, Month::November, 23)
            .unwrap()
            .with_hms_milli(20, 1, 2, 114)
            .unwrap()
            .assume_offset(offset)
            + time::Duration::milliseconds(i64::from(ms))
    }

    #[test]
    fn a_line_shows_the_local_clock_to_the_millisecond() {
        assert_eq!(clock_text(at((8, 0), 0)), "20:01:02.114");
        assert_eq!(clock_text(at((0, 0), 886)), "20:01:03.000");
    }

    #[test]
    fn a_stamp_is_rfc_3339_with_the_local_offset() {
        assert_eq!(stamp(at((8, 0), 0)), "2026-11-23T20:01:02.114+08:00");
        assert_eq!(stamp(at((-3, -30), 0)), "2026-11-23T20:01:02.114-03:30");
        assert_eq!(stamp(at((0, 0), 0)), "2026-11-23T20:01:02.114+00:00");
    }
}
