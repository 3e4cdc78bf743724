//! What a watch counts, apart from how it is shown: a poll's answers and failures; a stream's
//! connections, how they ended, its sequence gaps and longest wait; and either way the versions
//! and pods seen, in bounded tables ([`Tally`]). Pure: times come in as arguments.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{clock_text, stamp};
use crate::client;
use crate::stream::{End, Message};
use crate::tally::Tally;

/// Failures the summary lists (the first ones); the count covers them all.
pub(super) const MAX_FAILURES_LISTED: usize = 100;

/// The characters of a message's data a line shows, when it is not testpage's stamp.
const DATA_SHOWN: usize = 120;

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

/// How often a version or pod was seen, and when first and last (local clock).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Seen {
    pub(super) answers: u64,
    pub(super) first_seen: String,
    pub(super) last_seen: String,
}

/// The versions and pods that answered (or sent messages), as the summary lists them.
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Sightings {
    pub(super) versions: Tally<Seen>,
    pub(super) pods: Tally<Seen>,
}

/// What an answer or a message showed for the first time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct New {
    /// A version without a row of its own yet (beyond the tally's bound, every time).
    pub(super) version: bool,
    /// A pod without a row of its own yet.
    pub(super) pod: bool,
}

impl Sightings {
    /// Counts who answered at `clock` and says what is new.
    pub(super) fn note(&mut self, version: Option<&str>, pod: Option<&str>, clock: &str) -> New {
        let mut new = New::default();
        if let Some(version) = version {
            new.version = !self.versions.contains(version);
            seen(&mut self.versions, version, clock);
        }
        if let Some(pod) = pod {
            new.pod = !self.pods.contains(pod);
            seen(&mut self.pods, pod, clock);
        }
        new
    }
}

fn seen(table: &mut Tally<Seen>, name: &str, clock: &str) {
    table.update(
        name,
        || Seen {
            answers: 0,
            first_seen: clock.to_owned(),
            last_seen: clock.to_owned(),
        },
        |seen| {
            seen.answers += 1;
            seen.last_seen = clock.to_owned();
        },
    );
}

/// What a watch of an `http://` URL saw, printed at the end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Requests sent.
    pub requests: u64,
    /// Answers with a status below 500.
    pub ok: u64,
    #[serde(flatten)]
    pub(super) sightings: Sightings,
    /// Requests without an answer below 500.
    pub failed: u64,
    pub(super) failures: Vec<Observation>,
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
    pub(super) sightings: Sightings,
    pub(super) failures: Vec<Trouble>,
}

/// A failed connection attempt or an abnormal end, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Trouble {
    pub(super) time: String,
    pub(super) error: String,
}

impl Summary {
    /// Counts one request's result, seen at `clock`.
    pub(super) fn record(&mut self, obs: &Observation, clock: &str) -> New {
        self.requests += 1;
        if obs.status.is_some_and(|s| s < 500) {
            self.ok += 1;
        } else {
            // The summary lists the first failures; the count stays exact.
            self.failed += 1;
            if self.failures.len() < MAX_FAILURES_LISTED {
                self.failures.push(obs.clone());
            }
        }
        self.sightings
            .note(obs.version.as_deref(), obs.pod_ip.as_deref(), clock)
    }
}

/// A message as the watch reads it: testpage's stamp if it is one, names and data bounded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Heard {
    /// The event type, cut to [`client::MAX_NAME_CHARS`].
    pub(super) event: String,
    /// The message is testpage's `{"version", "pod", "seq"}`.
    pub(super) stamped: bool,
    pub(super) version: Option<String>,
    pub(super) pod: Option<String>,
    pub(super) seq: Option<u64>,
    /// The start of the data, when it is not a stamp.
    pub(super) data: Option<String>,
}

impl Heard {
    pub(super) fn of(message: &Message) -> Heard {
        let payload = message.stamp();
        Heard {
            event: client::bounded(message.event.clone()),
            stamped: payload.is_some(),
            version: payload.as_ref().map(|s| client::bounded(s.version.clone())),
            pod: payload.as_ref().map(|s| client::bounded(s.pod.clone())),
            seq: payload.as_ref().map(|s| s.seq),
            data: payload
                .is_none()
                .then(|| client::excerpt(&message.data, DATA_SHOWN)),
        }
    }
}

/// What counting a message found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Counted {
    /// Since the previous message, on any connection (none for the first).
    pub(super) gap: Option<Duration>,
    /// The previous `seq` on this connection, when this one does not follow it.
    pub(super) seq_gap_after: Option<u64>,
    pub(super) new: New,
}

/// A stream's counts, and what they need to remember between messages.
#[derive(Debug, Default)]
pub(super) struct StreamCount {
    pub(super) summary: StreamSummary,
    /// When the last message arrived, on any connection.
    last_message: Option<Instant>,
    longest_gap: Option<Duration>,
    /// When the longest gap ended, for the text summary.
    pub(super) longest_gap_clock: Option<String>,
    /// The last `seq` on this connection.
    last_seq: Option<u64>,
}

impl StreamCount {
    /// Counts a connection and returns its number (1 for the first).
    pub(super) fn connected(&mut self) -> u64 {
        self.summary.connections += 1;
        self.summary.reconnections = self.summary.connections - 1;
        self.last_seq = None;
        self.summary.connections
    }

    /// Counts a message that arrived at `at` (`time` on the local clock).
    pub(super) fn message(&mut self, time: OffsetDateTime, at: Instant, heard: &Heard) -> Counted {
        self.summary.messages += 1;
        let gap = self.last_message.map(|last| at - last);
        self.last_message = Some(at);
        if let Some(gap) = gap.filter(|g| self.longest_gap.is_none_or(|l| *g > l)) {
            self.longest_gap = Some(gap);
            self.summary.longest_gap_ms = Some(gap.as_secs_f64() * 1e3);
            self.summary.longest_gap_until = Some(stamp(time));
            self.longest_gap_clock = Some(clock_text(time));
        }
        let mut seq_gap_after = None;
        if let Some(seq) = heard.seq {
            if let Some(last) = self.last_seq {
                if last.checked_add(1) != Some(seq) {
                    self.summary.seq_gaps += 1;
                    self.summary.missed += seq.saturating_sub(last.saturating_add(1));
                    seq_gap_after = Some(last);
                }
            }
            self.last_seq = Some(seq);
        }
        // Only testpage's messages name a version and pod: the others stay out of the tables
        // (and the split, where they would read as errors).
        let new = if heard.stamped {
            self.summary.sightings.note(
                heard.version.as_deref(),
                heard.pod.as_deref(),
                &clock_text(time),
            )
        } else {
            New::default()
        };
        Counted {
            gap,
            seq_gap_after,
            new,
        }
    }

    /// Counts the end of a connection.
    pub(super) fn ended(&mut self, time: OffsetDateTime, end: &End) {
        if end.clean {
            self.summary.clean_closes += 1;
        } else {
            self.summary.abnormal_ends += 1;
            self.trouble(time, &end.detail);
        }
    }

    /// Counts an attempt that gave no stream.
    pub(super) fn failed(&mut self, time: OffsetDateTime, error: &str) {
        self.summary.failed_connects += 1;
        self.trouble(time, error);
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
}
