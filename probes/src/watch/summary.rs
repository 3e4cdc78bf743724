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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::watch::tests::at;

    /// An answer of `version` from `pod`, or with `status` None a connection error.
    pub(in crate::watch) fn answer(status: Option<u16>, version: &str, pod: &str) -> Observation {
        Observation {
            time: "2026-11-23T20:01:02.114+08:00".to_owned(),
            status,
            version: status.map(|_| version.to_owned()),
            pod_ip: status.map(|_| pod.to_owned()),
            latency_ms: 12.3,
            error: status
                .is_none()
                .then(|| "connect 10.0.0.9:80: refused".to_owned()),
        }
    }

    /// testpage's message `seq` from `version` on `pod`.
    pub(in crate::watch) fn stamped(version: &str, pod: &str, seq: u64) -> Heard {
        Heard::of(&Message {
            event: "message".to_owned(),
            data: format!(r#"{{"version":"{version}","pod":"{pod}","seq":{seq}}}"#),
        })
    }

    #[test]
    fn a_status_below_500_is_ok_and_the_rest_failed() {
        let mut summary = Summary::default();
        for status in [Some(200), Some(499), Some(500), None] {
            summary.record(&answer(status, "0.9", "10.0.0.1"), "20:01:02.114");
        }
        assert_eq!((summary.requests, summary.ok, summary.failed), (4, 2, 2));
        let listed: Vec<Option<u16>> = summary.failures.iter().map(|f| f.status).collect();
        assert_eq!(listed, [Some(500), None]);
    }

    #[test]
    fn failures_listed_stop_at_the_bound_and_the_count_stays_exact() {
        let mut summary = Summary::default();
        for _ in 0..MAX_FAILURES_LISTED + 50 {
            summary.record(&answer(None, "", ""), "20:01:02.114");
        }
        assert_eq!(summary.failed, MAX_FAILURES_LISTED as u64 + 50);
        assert_eq!(summary.failures.len(), MAX_FAILURES_LISTED);
    }

    #[test]
    fn new_is_what_has_no_row_yet_and_seen_keeps_first_and_last() {
        let mut sightings = Sightings::default();
        let new = |version, pod| New { version, pod };
        assert_eq!(
            sightings.note(Some("0.8"), Some("a"), "t1"),
            new(true, true)
        );
        assert_eq!(
            sightings.note(Some("0.8"), Some("a"), "t2"),
            new(false, false)
        );
        assert_eq!(
            sightings.note(Some("0.9"), Some("a"), "t3"),
            new(true, false)
        );
        assert_eq!(sightings.note(None, None, "t4"), new(false, false));
        let seen = |answers, first: &str, last: &str| Seen {
            answers,
            first_seen: first.to_owned(),
            last_seen: last.to_owned(),
        };
        assert_eq!(sightings.versions.get("0.8"), Some(&seen(2, "t1", "t2")));
        assert_eq!(sightings.pods.get("a"), Some(&seen(3, "t1", "t3")));
    }

    #[test]
    fn a_message_is_read_as_testpage_stamp_or_as_bounded_data() {
        let heard = stamped("0.9", "pod-a", 3);
        assert!(heard.stamped);
        assert_eq!(
            (heard.version.as_deref(), heard.pod.as_deref(), heard.seq),
            (Some("0.9"), Some("pod-a"), Some(3))
        );
        assert_eq!(heard.data, None);
        let other = Heard::of(&Message {
            event: "tick".to_owned(),
            data: format!("line\n{}", "x".repeat(200)),
        });
        assert!(!other.stamped && other.version.is_none() && other.seq.is_none());
        let data = other.data.unwrap_or_default();
        assert!(
            data.starts_with("line\u{fffd}x") && data.ends_with('…'),
            "{data}"
        );
        assert_eq!(data.chars().count(), DATA_SHOWN + 1);
    }

    #[test]
    fn sequence_gaps_count_the_numbers_skipped_and_restart_with_each_connection() {
        let mut count = StreamCount::default();
        let t0 = Instant::now();
        assert_eq!(count.connected(), 1);
        let mut gaps = Vec::new();
        for seq in [1, 2, 5, 6, 6] {
            gaps.push(
                count
                    .message(at((0, 0), 0), t0, &stamped("0.9", "a", seq))
                    .seq_gap_after,
            );
        }
        assert_eq!(gaps, [None, None, Some(2), None, Some(6)]);
        assert_eq!(count.connected(), 2);
        let after = count.message(at((0, 0), 0), t0, &stamped("0.9", "b", 1));
        assert_eq!(after.seq_gap_after, None);
        let s = &count.summary;
        assert_eq!((s.seq_gaps, s.missed, s.messages), (2, 2, 6));
        assert_eq!((s.connections, s.reconnections), (2, 1));
    }

    #[test]
    fn the_longest_gap_spans_reconnections_and_says_when_it_ended() {
        let mut count = StreamCount::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        count.connected();
        let first = count.message(at((8, 0), 0), t0, &stamped("0.8", "a", 1));
        assert_eq!(first.gap, None);
        count.message(at((8, 0), 10), t0 + ms(10), &stamped("0.8", "a", 2));
        count.ended(at((8, 0), 20), &End::abnormal("reset"));
        count.connected();
        let late = count.message(at((8, 0), 500), t0 + ms(500), &stamped("0.9", "b", 1));
        count.message(at((8, 0), 600), t0 + ms(600), &stamped("0.9", "b", 2));
        assert_eq!(late.gap, Some(ms(490)));
        assert_eq!(count.summary.longest_gap_ms, Some(490.0));
        assert_eq!(
            count.summary.longest_gap_until.as_deref(),
            Some("2026-11-23T20:01:02.614+08:00")
        );
        assert_eq!(count.longest_gap_clock.as_deref(), Some("20:01:02.614"));
    }

    #[test]
    fn only_stamped_messages_are_tallied() {
        let mut count = StreamCount::default();
        let other = Heard::of(&Message {
            event: "tick".to_owned(),
            data: "{}".to_owned(),
        });
        let counted = count.message(at((0, 0), 0), Instant::now(), &other);
        assert_eq!(counted.new, New::default());
        assert!(count.summary.sightings.versions.is_empty());
        assert_eq!(count.summary.messages, 1);
    }

    #[test]
    fn abnormal_ends_and_failed_connects_are_listed_clean_closes_are_not() {
        let mut count = StreamCount::default();
        count.ended(at((0, 0), 0), &End::abnormal("close 1011"));
        count.failed(at((0, 0), 5), "connect refused");
        count.ended(
            at((0, 0), 9),
            &End {
                clean: true,
                detail: "close 1001 going away".to_owned(),
            },
        );
        let s = &count.summary;
        assert_eq!(
            (s.clean_closes, s.abnormal_ends, s.failed_connects),
            (1, 1, 1)
        );
        let listed: Vec<&str> = s.failures.iter().map(|t| t.error.as_str()).collect();
        assert_eq!(listed, ["close 1011", "connect refused"]);
        assert_eq!(s.failures[1].time, "2026-11-23T20:01:02.119+00:00");
    }
}
