//! What a watch writes: a line per answer, message or connection event, markers when versions
//! and pods come and go, and the summary; on a terminal, coloured versions and a live split of
//! the recent answers; or JSON lines. Written to any [`Write`]: stdout, or a buffer in tests.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::summary::{Counted, Heard, New, Observation, Sightings, StreamCount, Summary};
use super::{clock_text, stamp, Output};
use crate::stream::End;
use crate::tally::MAX_NAMES;

/// Answers the live split and the "gone" markers look back over.
const WINDOW: usize = 20;

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
        data: Option<&'a str>,
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

/// Writes a watch's lines to `out`. Write errors are ignored: a closed stdout (`| head`) must not
/// end the watch before its summary, nor panic as `println!` would.
pub(super) struct Screen<W: Write> {
    output: Output,
    out: W,
    /// Who answered recently: the split and the "gone" markers.
    recent: VecDeque<(Option<String>, Option<String>)>,
    /// The versions with a colour of their own, in the order they appeared.
    palette: Vec<String>,
    /// The split line is on screen, to be erased before the next line.
    split_shown: bool,
}

impl<W: Write> Screen<W> {
    pub(super) fn new(output: Output, out: W) -> Self {
        Screen {
            output,
            out,
            recent: VecDeque::new(),
            palette: Vec::new(),
            split_shown: false,
        }
    }

    /// Notes who answered in the recent window and returns the markers for the line: a version
    /// or pod new (as `new` says), or gone from the window.
    fn markers(&mut self, new: New, version: Option<&str>, pod: Option<&str>) -> Vec<String> {
        let mut markers = Vec::new();
        if let Some(version) = version.filter(|_| new.version) {
            markers.push(format!("new version {version}"));
            // Colours for the versions the tally names; the others share the first.
            if self.palette.len() < MAX_NAMES {
                self.palette.push(version.to_owned());
            }
        }
        if let Some(pod) = pod.filter(|_| new.pod) {
            let version = version.unwrap_or("?");
            markers.push(format!("new pod {pod} ({version})"));
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
        if self.split_shown {
            let _ = write!(self.out, "\r\x1b[2K");
        }
        for marker in markers {
            let _ = writeln!(self.out, "── {marker}");
        }
        let _ = writeln!(self.out, "{line}");
        if self.output == Output::Terminal {
            let split = self.split();
            let _ = write!(self.out, "{split}");
            self.split_shown = true;
        }
        let _ = self.out.flush();
    }

    /// Prints one JSON line.
    fn print_json(&mut self, value: &impl Serialize) {
        // Serialising these plain fields cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
        let _ = writeln!(self.out);
        let _ = self.out.flush();
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
        sightings: &Sightings,
        (unit, total): (&str, u64),
        failures: (u64, &[(String, String)]),
    ) {
        let out = &mut self.out;
        if self.split_shown {
            let _ = write!(out, "\r\x1b[2K");
        }
        for line in head {
            let _ = writeln!(out, "── {line}");
        }
        for (title, table) in [("version", &sightings.versions), ("pod", &sightings.pods)] {
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

    /// An answer (or a failed request) of a poll sent at `time`, `new` as the summary found it.
    pub(super) fn answer(&mut self, time: OffsetDateTime, obs: &Observation, new: New) {
        let markers = self.markers(new, obs.version.as_deref(), obs.pod_ip.as_deref());
        if self.output == Output::Json {
            self.print_json(obs);
            return;
        }
        let clock = clock_text(time);
        let line = match (&obs.status, &obs.error) {
            (Some(status), _) => {
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
        self.print(&markers, &line);
    }

    /// A poll's summary.
    pub(super) fn poll_summary(&mut self, summary: &Summary) {
        if self.output == Output::Json {
            self.print_json(&serde_json::json!({ "summary": summary }));
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
        self.summary(
            &[head],
            &summary.sightings,
            ("answers", summary.requests),
            (summary.failed, &failures),
        );
    }

    /// Connection number `connection` of a stream answered `status` at `time`.
    pub(super) fn connected(&mut self, time: OffsetDateTime, status: u16, connection: u64) {
        if self.output == Output::Json {
            self.print_json(&StreamLine::Connected {
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
        self.print(
            &[],
            &format!("{}  {status}  connected{which}", clock_text(time)),
        );
    }

    /// A stream's message, arrived at `time`, as the summary `counted` it.
    pub(super) fn message(&mut self, time: OffsetDateTime, heard: &Heard, counted: &Counted) {
        let mut markers = Vec::new();
        if let (Some(last), Some(seq)) = (counted.seq_gap_after, heard.seq) {
            markers.push(format!("sequence gap: #{seq} after #{last}"));
        }
        let (version, pod) = (heard.version.as_deref(), heard.pod.as_deref());
        // Only testpage's messages name a version and pod: the others stay out of the split,
        // where they would read as errors.
        if heard.stamped {
            markers.extend(self.markers(counted.new, version, pod));
        }
        let gap_ms = counted.gap.map(|g| g.as_secs_f64() * 1e3);
        if self.output == Output::Json {
            self.print_json(&StreamLine::Message {
                time: stamp(time),
                event: &heard.event,
                version,
                pod,
                seq: heard.seq,
                gap_ms,
                data: heard.data.as_deref(),
            });
            return;
        }
        let kind = if heard.event == "message" {
            "msg"
        } else {
            &heard.event
        };
        let version = format!("{:<8}", version.unwrap_or("?"));
        let seq = heard
            .seq
            .map_or_else(|| "#?".to_owned(), |s| format!("#{s}"));
        let gap = gap_ms.map_or_else(String::new, |g| format!("{g:>9.1}ms"));
        let mut line = format!(
            "{}  {kind:<3}  {} {:<16} {seq:<7}{gap}",
            clock_text(time),
            self.paint(&version),
            pod.unwrap_or("?"),
        );
        if let Some(data) = &heard.data {
            line.push_str("  ");
            line.push_str(data);
        }
        self.print(&markers, line.trim_end());
    }

    /// A stream's connection ended at `time`; the next one in `retry`.
    pub(super) fn ended(&mut self, time: OffsetDateTime, end: &End, retry: Duration) {
        if self.output == Output::Json {
            self.print_json(&StreamLine::Ended {
                time: stamp(time),
                clean: end.clean,
                detail: &end.detail,
                retry_ms: millis(retry),
            });
            return;
        }
        let how = if end.clean { "clean" } else { "abnormal" };
        self.print(
            &[],
            &format!(
                "{}  END  {how}: {}; reconnecting in {}",
                clock_text(time),
                end.detail,
                testpage::duration::format(retry)
            ),
        );
    }

    /// An attempt at `time` gave no stream; the next one in `retry`.
    pub(super) fn failed(&mut self, time: OffsetDateTime, error: &str, retry: Duration) {
        if self.output == Output::Json {
            self.print_json(&StreamLine::Failed {
                time: stamp(time),
                error,
                retry_ms: millis(retry),
            });
            return;
        }
        self.print(
            &[],
            &format!(
                "{}  ERR  {error}; retrying in {}",
                clock_text(time),
                testpage::duration::format(retry)
            ),
        );
    }

    /// A stream's summary.
    pub(super) fn stream_summary(&mut self, count: &StreamCount) {
        let s = &count.summary;
        if self.output == Output::Json {
            self.print_json(&serde_json::json!({ "summary": s }));
            return;
        }
        let longest = match (s.longest_gap_ms, &count.longest_gap_clock) {
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
        self.summary(
            &head,
            &s.sightings,
            ("messages", s.messages),
            (s.abnormal_ends + s.failed_connects, &failures),
        );
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::summary::tests::{answer, stamped};
    use crate::watch::tests::at;

    fn text(screen: Screen<Vec<u8>>) -> String {
        String::from_utf8(screen.out).unwrap()
    }

    /// A poll of `answers` (status, version, pod), one a second, shown as `output`.
    fn poll(output: Output, answers: &[(Option<u16>, &str, &str)]) -> (Summary, String) {
        let mut summary = Summary::default();
        let mut screen = Screen::new(output, Vec::new());
        for (i, (status, version, pod)) in answers.iter().enumerate() {
            let time = at((8, 0), i as u32 * 1000);
            let obs = answer(*status, version, pod);
            let new = summary.record(&obs, &clock_text(time));
            screen.answer(time, &obs, new);
        }
        screen.poll_summary(&summary);
        (summary, text(screen))
    }

    #[test]
    fn a_poll_prints_a_line_per_answer_markers_and_the_summary() {
        let (_, text) = poll(
            Output::Plain,
            &[
                (Some(200), "0.8", "10.0.0.1"),
                (None, "", ""),
                (Some(503), "0.9", "10.0.0.2"),
            ],
        );
        let expected = "\
── new version 0.8
── new pod 10.0.0.1 (0.8)
20:01:02.114  200  0.8      10.0.0.1            12.3ms
20:01:03.114  ERR  connect 10.0.0.9:80: refused
── new version 0.9
── new pod 10.0.0.2 (0.9)
20:01:04.114  503  0.9      10.0.0.2            12.3ms
── summary: 3 requests, 1 ok, 2 failed
version             answers   share  first seen    last seen
0.8                       1   33.3%  20:01:02.114  20:01:02.114
0.9                       1   33.3%  20:01:04.114  20:01:04.114
pod                 answers   share  first seen    last seen
10.0.0.1                  1   33.3%  20:01:02.114  20:01:02.114
10.0.0.2                  1   33.3%  20:01:04.114  20:01:04.114
failures: 2 (the first 2 listed)
  2026-11-23T20:01:02.114+08:00  connect 10.0.0.9:80: refused
  2026-11-23T20:01:02.114+08:00  status 503
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_poll_in_json_prints_each_observation_then_the_summary() {
        let (_, text) = poll(Output::Json, &[(Some(200), "0.8", "10.0.0.1")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"time":"2026-11-23T20:01:02.114+08:00","status":200,"version":"0.8","pod_ip":"10.0.0.1","latency_ms":12.3,"error":null}"#
        );
        assert!(
            lines[1].starts_with(
                r#"{"summary":{"failed":0,"failures":[],"ok":1,"pods":{"10.0.0.1":{"answers":1,"#
            ),
            "{}",
            lines[1]
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn a_version_gone_from_the_last_answers_is_marked_once() {
        let mut screen = Screen::new(Output::Plain, Vec::new());
        let new = New {
            version: false,
            pod: false,
        };
        assert!(screen.markers(new, Some("0.8"), Some("a")).is_empty());
        let mut marked = Vec::new();
        for i in 1..=WINDOW + 5 {
            for marker in screen.markers(new, Some("0.9"), Some("a")) {
                marked.push((i, marker));
            }
        }
        assert_eq!(
            marked,
            [(
                WINDOW,
                "version 0.8 gone: not in the last 20 answers".to_owned()
            )]
        );
    }

    #[test]
    fn the_window_holds_six_answers_a_pod_and_at_least_twenty() {
        let mut screen = Screen::new(Output::Plain, Vec::new());
        for pod in ["a", "b", "c", "d"].iter().cycle().take(40) {
            screen.markers(New::default(), Some("0.9"), Some(pod));
        }
        assert_eq!(screen.recent.len(), 24);
        for _ in 0..30 {
            screen.markers(New::default(), Some("0.9"), Some("a"));
        }
        assert_eq!(screen.recent.len(), WINDOW);
    }

    #[test]
    fn the_split_shares_the_recent_answers() {
        let mut screen = Screen::new(Output::Plain, Vec::new());
        for version in [Some("0.8"), Some("0.9"), Some("0.8"), None, Some("0.8")] {
            screen.markers(New::default(), version, None);
        }
        assert_eq!(screen.split(), "0.8 ██████ 60%  0.9 ██ 20%  error ██ 20%");
    }

    #[test]
    fn a_terminal_gets_colours_and_the_split_rewritten_under_each_line() {
        let (_, text) = poll(
            Output::Terminal,
            &[(Some(200), "0.8", "a"), (Some(200), "0.9", "b")],
        );
        assert!(
            text.contains("200  \x1b[1;32m0.8     \x1b[0m a "),
            "{text:?}"
        );
        assert!(
            text.contains("200  \x1b[1;36m0.9     \x1b[0m b "),
            "{text:?}"
        );
        // The split stays last, and is erased before the next line.
        assert!(
            text.contains(
                "12.3ms\n\x1b[1;32m0.8\x1b[0m ██████████ 100%\r\x1b[2K── new version 0.9\n"
            ),
            "{text:?}"
        );
        assert!(text.contains("\r\x1b[2K── summary: 2 requests"), "{text:?}");
    }

    #[test]
    fn a_stream_prints_connections_messages_gaps_and_ends() {
        let mut count = StreamCount::default();
        let mut screen = Screen::new(Output::Plain, Vec::new());
        let t0 = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        let connection = count.connected();
        screen.connected(at((8, 0), 0), 101, connection);
        for (offset, seq) in [(0, 1), (250, 2), (500, 5)] {
            let heard = stamped("0.9", "pod-a", seq);
            let time = at((8, 0), offset);
            let counted = count.message(time, t0 + ms(offset.into()), &heard);
            screen.message(time, &heard, &counted);
        }
        let other = Heard::of(&crate::stream::Message {
            event: "tick".to_owned(),
            data: "hello".to_owned(),
        });
        let counted = count.message(at((8, 0), 600), t0 + ms(600), &other);
        screen.message(at((8, 0), 600), &other, &counted);
        let end = End::abnormal("connection reset by peer");
        count.ended(at((8, 0), 700), &end);
        screen.ended(at((8, 0), 700), &end, ms(1500));
        screen.failed(at((8, 0), 2200), "connect 10.0.0.9:80: refused", ms(1000));
        count.failed(at((8, 0), 2200), "connect 10.0.0.9:80: refused");
        screen.stream_summary(&count);
        let expected = "\
20:01:02.114  101  connected
── new version 0.9
── new pod pod-a (0.9)
20:01:02.114  msg  0.9      pod-a            #1
20:01:02.364  msg  0.9      pod-a            #2         250.0ms
── sequence gap: #5 after #2
20:01:02.614  msg  0.9      pod-a            #5         250.0ms
20:01:02.714  tick  ?        ?                #?         100.0ms  hello
20:01:02.814  END  abnormal: connection reset by peer; reconnecting in 1s 500ms
20:01:04.314  ERR  connect 10.0.0.9:80: refused; retrying in 1s
── summary: messages 4, connections 1, reconnections 0, clean closes 0, abnormal ends 1, failed connects 1
── sequence gaps 1 (2 missed), longest gap between messages 250.0ms (until 20:01:02.364)
version            messages   share  first seen    last seen
0.9                       3   75.0%  20:01:02.114  20:01:02.614
pod                messages   share  first seen    last seen
pod-a                     3   75.0%  20:01:02.114  20:01:02.614
failures: 2 (the first 2 listed)
  2026-11-23T20:01:02.814+08:00  connection reset by peer
  2026-11-23T20:01:04.314+08:00  connect 10.0.0.9:80: refused
";
        assert_eq!(text(screen), expected);
    }

    #[test]
    fn a_stream_in_json_prints_one_typed_object_per_event() {
        let mut screen = Screen::new(Output::Json, Vec::new());
        screen.connected(at((0, 0), 0), 101, 2);
        let heard = stamped("0.9", "pod-a", 7);
        let counted = Counted {
            gap: Some(Duration::from_millis(20)),
            ..Counted::default()
        };
        screen.message(at((0, 0), 0), &heard, &counted);
        screen.ended(
            at((0, 0), 0),
            &End::abnormal("close 1011"),
            Duration::from_secs(1),
        );
        let expected = r#"{"type":"connected","time":"2026-11-23T20:01:02.114+00:00","status":101,"connection":2}
{"type":"message","time":"2026-11-23T20:01:02.114+00:00","event":"message","version":"0.9","pod":"pod-a","seq":7,"gap_ms":20.0}
{"type":"ended","time":"2026-11-23T20:01:02.114+00:00","clean":false,"detail":"close 1011","retry_ms":1000}
"#;
        assert_eq!(text(screen), expected);
    }
}
