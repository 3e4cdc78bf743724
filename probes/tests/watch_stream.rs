//! `probe watch` on a WebSocket (`ws://`) and on server-sent events (`--sse`): against a real
//! testpage, through a drain and a restart and a SIGKILL; and against servers that say nothing,
//! answer something else, or send messages without end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../testpage/tests/common/mod.rs"]
mod common;

use common::{Server, Signal};

/// Peak RSS allowed to a watch fed an endless message: generous, the probe stays near 10 MiB.
const MAX_PEAK_KIB: u64 = 64 * 1024;

/// A running `probe watch ... --json`, its lines read as they come.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
            .arg("watch")
            .args(args)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line that `want` accepts, within `limit`.
    fn wait_for(&mut self, limit: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {limit:?}; lines: {:#?}", self.seen),
            }
        }
    }

    /// Ctrl-C: the watch ends at once, exit 0, and its summary is the last line.
    fn stop(mut self) -> (Value, Vec<Value>) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGINT).unwrap();
        let status = common::wait_exit(&mut self.child, Duration::from_secs(3))
            .expect("the watch ends on SIGINT");
        assert_eq!(status.code(), Some(0));
        // Every line up to the end of the output (the reader ends with it).
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let summary = self.seen.last().expect("lines")["summary"].clone();
        assert!(summary.is_object(), "no summary: {:#?}", self.seen);
        (summary, std::mem::take(&mut self.seen))
    }

    /// The peak resident set so far (`VmHWM`).
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |line| line["type"] == kind
}

/// `ws://ADDR/ws` and `--sse http://ADDR/events` of one testpage.
fn both(server: &Server) -> [Vec<String>; 2] {
    [
        vec![format!("ws://{}/ws", server.addr)],
        vec!["--sse".into(), server.url("/events")],
    ]
}

fn args(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

#[test]
fn messages_arrive_one_line_each_with_version_pod_and_sequence() {
    let server = Server::start(&[("VERSION", "0.9"), ("POD_NAME", "p-1")]);
    let [ws, sse] = both(&server);
    let run = |url: &[String], json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_probe"));
        command.arg("watch").args(url).args(["--count", "3"]);
        if json {
            command.arg("--json");
        }
        command.stdout(Stdio::piped()).spawn().unwrap()
    };
    // Side by side: each waits about a second a message.
    let runs = [(run(&ws, true), 101), (run(&sse, true), 200)];
    let text = run(&ws, false);
    for (child, status) in runs {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5, "connected, 3 messages, summary: {lines:#?}");
        assert_eq!(lines[0]["type"], "connected");
        assert_eq!(lines[0]["status"], status);
        for (n, line) in lines[1..4].iter().enumerate() {
            assert_eq!(line["type"], "message", "{line}");
            assert_eq!(line["event"], "message", "{line}");
            assert_eq!(line["version"], "0.9", "{line}");
            assert_eq!(line["pod"], "p-1", "{line}");
            assert_eq!(line["seq"], n as u64 + 1, "{line}");
            assert!(line.get("data").is_none(), "{line}");
        }
        assert!(lines[1]["gap_ms"].is_null());
        let gap = lines[3]["gap_ms"].as_f64().unwrap();
        assert!((500.0..2500.0).contains(&gap), "{gap}");
        let summary = &lines[4]["summary"];
        for (field, value) in [
            ("messages", 3),
            ("connections", 1),
            ("reconnections", 0),
            ("clean_closes", 0),
            ("abnormal_ends", 0),
            ("failed_connects", 0),
            ("seq_gaps", 0),
            ("missed", 0),
        ] {
            assert_eq!(summary[field], value, "{field}: {summary}");
        }
        assert!(summary["longest_gap_ms"].as_f64().unwrap() >= gap);
        assert_eq!(summary["versions"]["0.9"]["answers"], 3, "{summary}");
    }
    let out = text.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("  101  connected\n"), "{stdout}");
    assert!(stdout.contains("── new version 0.9\n"), "{stdout}");
    let message = stdout.lines().find(|l| l.contains("#2")).unwrap();
    assert!(message.contains("  msg  0.9      p-1 "), "{stdout}");
    assert!(message.ends_with("ms"), "the gap: {stdout}");
    assert!(
        stdout.contains("── summary: messages 3, connections 1, reconnections 0, clean closes 0, abnormal ends 0, failed connects 0\n"),
        "{stdout}"
    );
    assert!(stdout.contains("── sequence gaps 0 (0 missed)"), "{stdout}");
}

#[test]
fn a_drain_is_a_clean_close_and_the_watch_reconnects_to_the_restarted_server() {
    let mut old = Server::start(&[("VERSION", "1"), ("DRAIN", "1s")]);
    let addr = old.addr.to_string();
    let mut watches: Vec<Watch> = both(&old)
        .iter()
        .map(|url| Watch::start(&[args(url), vec!["--interval", "200ms"]].concat()))
        .collect();
    for watch in &mut watches {
        watch.wait_for(Duration::from_secs(5), "a second message", |l| {
            l["seq"] == 2
        });
    }
    old.signal(Signal::SIGTERM);
    let status = old.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", old.stderr());
    // testpage counts a WebSocket clean when its client answers the close.
    assert!(old.stderr().contains("streams_cut=0"), "{}", old.stderr());
    let mut ends = Vec::new();
    for watch in &mut watches {
        ends.push(watch.wait_for(Duration::from_secs(1), "the end", is("ended")));
    }
    // The same port, a new version: a rolling update's new pod behind the same Service.
    let _new = Server::start_with(&[("VERSION", "2")], &["--listen", &addr], |_| {});
    for watch in &mut watches {
        watch.wait_for(Duration::from_secs(10), "a message from 2", |l| {
            l["version"] == "2"
        });
    }
    let [ws, sse] = <[Watch; 2]>::try_from(watches).ok().unwrap();
    assert_eq!(ends[0]["clean"], true, "{}", ends[0]);
    assert_eq!(ends[0]["detail"], "close 1001 going away", "{}", ends[0]);
    assert_eq!(ends[0]["retry_ms"], 200, "--interval");
    assert_eq!(ends[1]["clean"], true, "{}", ends[1]);
    assert_eq!(ends[1]["detail"], "bye, then the end of the stream");
    assert_eq!(
        ends[1]["retry_ms"], 1000,
        "the stream's retry: replaces --interval"
    );
    for (watch, name) in [(ws, "ws"), (sse, "sse")] {
        let (summary, lines) = watch.stop();
        eprintln!("{name}: {summary}");
        assert!(
            summary["clean_closes"].as_u64() >= Some(1),
            "{name}: {summary}"
        );
        assert_eq!(summary["abnormal_ends"], 0, "{name}: {lines:#?}");
        assert!(
            summary["reconnections"].as_u64() >= Some(1),
            "{name}: {summary}"
        );
        assert_eq!(
            summary["connections"].as_u64().unwrap(),
            summary["reconnections"].as_u64().unwrap() + 1
        );
        assert_eq!(summary["seq_gaps"], 0, "{name}: {summary}");
        assert!(summary["versions"]["1"]["answers"].as_u64() >= Some(2));
        assert!(summary["versions"]["2"]["answers"].as_u64() >= Some(1));
        // The summary's longest gap is the longest seen between two message lines.
        let longest = lines
            .iter()
            .filter_map(|l| l["gap_ms"].as_f64())
            .fold(0.0, f64::max);
        assert_eq!(summary["longest_gap_ms"].as_f64(), Some(longest));
    }
}

#[test]
fn a_killed_server_is_an_abnormal_end() {
    let mut server = Server::start(&[("VERSION", "1")]);
    let mut watches: Vec<Watch> = both(&server)
        .iter()
        .map(|url| Watch::start(&args(url)))
        .collect();
    for watch in &mut watches {
        watch.wait_for(Duration::from_secs(5), "a message", is("message"));
    }
    server.child.kill().unwrap();
    for watch in watches {
        let mut watch = watch;
        let end = watch.wait_for(Duration::from_secs(5), "the end", is("ended"));
        assert_eq!(end["clean"], false, "{end}");
        let (summary, _) = watch.stop();
        assert_eq!(summary["abnormal_ends"], 1, "{summary}");
        assert_eq!(summary["clean_closes"], 0, "{summary}");
        assert_eq!(summary["connections"], 1, "{summary}");
        assert_eq!(summary["failures"][0]["error"], end["detail"], "{summary}");
    }
}

/// A server on 127.0.0.1:0 that reads each request's head and hands the connection to
/// `answer`, on a thread of its own.
fn serve(answer: impl Fn(&str, &mut TcpStream) + Send + Sync + 'static) -> String {
    common::serve_each(move |mut stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        while reader.read_line(&mut head).is_ok_and(|n| n > 0) && !head.ends_with("\r\n\r\n") {}
        answer(&head, &mut stream);
    })
    .to_string()
}

/// A server that completes every WebSocket handshake, then hands the socket to `then`.
fn websocket_server(then: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> String {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let addr = serve(move |head, stream| {
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap();
        let accept = base64::engine::general_purpose::STANDARD.encode(
            Sha1::new()
                .chain_update(key)
                .chain_update("258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                .finalize(),
        );
        let _ = write!(
            stream,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        then(stream);
    });
    format!("ws://{addr}/")
}

/// Writes `chunk` again and again until the client leaves, or 10 s.
fn without_end(stream: &mut TcpStream, chunk: &[u8]) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) && stream.write_all(chunk).is_ok() {}
}

/// An event stream's head, the body delimited by the end of the connection.
const EVENT_STREAM: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";

#[test]
fn a_silent_server_is_a_failed_connect_or_an_idle_end() {
    let (addr, accepted) = common::silent_listener();
    let addr = addr.to_string();
    for url in [
        vec![format!("ws://{addr}/")],
        vec!["--sse".into(), format!("http://{addr}/")],
    ] {
        let mut watch = Watch::start(&[args(&url), vec!["--timeout", "300ms"]].concat());
        for _ in 0..2 {
            let failed = watch.wait_for(Duration::from_secs(5), "a failure", is("failed"));
            assert_eq!(failed["error"], "timed out after 300ms", "{failed}");
        }
        let (summary, _) = watch.stop();
        assert!(summary["failed_connects"].as_u64() >= Some(2), "{summary}");
        assert_eq!(summary["connections"], 0);
    }
    // Ctrl-C during a handshake ends the watch at once (`stop` allows 3 s; the wait is 60 s).
    while accepted.try_recv().is_ok() {}
    let watch = Watch::start(&[&format!("ws://{addr}/"), "--timeout", "60s"]);
    accepted.recv_timeout(Duration::from_secs(5)).unwrap();
    let (summary, _) = watch.stop();
    assert_eq!(summary["failed_connects"], 0, "{summary}");

    // A WebSocket that opens and then says nothing, and an event stream the same.
    let quiet_ws = websocket_server(|_| std::thread::sleep(Duration::from_secs(10)));
    let quiet_sse = serve(|_, stream| {
        let _ = stream.write_all(EVENT_STREAM);
        std::thread::sleep(Duration::from_secs(10));
    });
    for url in [
        vec![quiet_ws],
        vec!["--sse".into(), format!("http://{quiet_sse}/")],
    ] {
        let mut watch = Watch::start(&[args(&url), vec!["--idle-timeout", "300ms"]].concat());
        watch.wait_for(Duration::from_secs(5), "a connection", is("connected"));
        let end = watch.wait_for(Duration::from_secs(5), "the end", is("ended"));
        assert_eq!(end["clean"], false);
        assert_eq!(end["detail"], "nothing received for 300ms");
        let (summary, _) = watch.stop();
        assert!(summary["abnormal_ends"].as_u64() >= Some(1), "{summary}");
    }
}

#[test]
fn answers_that_are_not_the_stream_are_failed_connects() {
    let server = Server::start(&[("VERSION", "1")]);
    let unavailable = serve(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let cases = [
        // testpage's page answered to a WebSocket upgrade: a 200, not a 101.
        (
            vec![format!("ws://{}/", server.addr)],
            "status 200, not 101 Switching Protocols: not a WebSocket",
        ),
        (
            vec![format!("ws://{unavailable}/ws")],
            "status 503, not 101 Switching Protocols: not a WebSocket",
        ),
        (
            vec!["--sse".into(), format!("http://{unavailable}/events")],
            "status 503",
        ),
        (
            vec!["--sse".into(), server.url("/")],
            "not an event stream: Content-Type \"text/plain; charset=utf-8\"",
        ),
    ];
    for (url, error) in cases {
        let mut watch = Watch::start(&[args(&url), vec!["--interval", "100ms"]].concat());
        for _ in 0..2 {
            let failed = watch.wait_for(Duration::from_secs(5), "a failure", is("failed"));
            assert_eq!(failed["error"], error, "{url:?}");
            assert_eq!(failed["retry_ms"], 100);
        }
        let (summary, _) = watch.stop();
        assert_eq!(summary["connections"], 0, "{url:?}: {summary}");
        assert_eq!(summary["failures"][0]["error"], error);
    }
}

#[test]
fn a_message_without_end_ends_the_connection_and_memory_stays_bounded() {
    let huge_frame = websocket_server(|stream| {
        // A text frame that says it is 1 GiB long.
        let mut head = vec![0x81, 127];
        head.extend((1u64 << 30).to_be_bytes());
        let _ = stream.write_all(&head);
        without_end(stream, &[b'x'; 16 * 1024]);
    });
    let endless_fragments = websocket_server(|stream| {
        // A text message begun, then continued 16 KiB at a time, never finished.
        let fragment = |opcode: u8| {
            let mut frame = vec![opcode, 126, 0x40, 0x00];
            frame.extend([b'x'; 16 * 1024]);
            frame
        };
        let _ = stream.write_all(&fragment(0x01));
        without_end(stream, &fragment(0x00));
    });
    let endless_line = serve(|_, stream| {
        let _ = stream.write_all(EVENT_STREAM);
        let _ = stream.write_all(b"data: ");
        without_end(stream, &[b'y'; 16 * 1024]);
    });
    let endless_data = serve(|_, stream| {
        let _ = stream.write_all(EVENT_STREAM);
        let line = format!("data: {}\n", "z".repeat(1000));
        without_end(stream, line.as_bytes());
    });
    for (url, detail) in [
        (vec![huge_frame], "a message over 64 KiB"),
        (vec![endless_fragments], "a message over 64 KiB"),
        (
            vec!["--sse".into(), format!("http://{endless_line}/")],
            "an event-stream line over 64 KiB",
        ),
        (
            vec!["--sse".into(), format!("http://{endless_data}/")],
            "an event's data over 64 KiB",
        ),
    ] {
        let mut watch = Watch::start(&[args(&url), vec!["--interval", "100ms"]].concat());
        for _ in 0..3 {
            let end = watch.wait_for(Duration::from_secs(5), "the end", is("ended"));
            assert_eq!(end["detail"], detail, "{url:?}");
        }
        let peak = watch.peak_kib();
        eprintln!("{url:?}: peak RSS {peak} KiB");
        assert!(peak < MAX_PEAK_KIB, "{url:?}: {peak} KiB");
        let (summary, _) = watch.stop();
        assert!(summary["abnormal_ends"].as_u64() >= Some(3), "{summary}");
        assert_eq!(summary["messages"], 0, "{summary}");
    }
}

#[test]
fn other_messages_are_shown_with_their_data() {
    let url = websocket_server(|stream| {
        // "hi", a binary message, a message in two fragments, a ping, then close 1011.
        let _ = stream.write_all(&[0x81, 2, b'h', b'i']);
        let _ = stream.write_all(&[0x82, 3, 1, 2, 3]);
        let _ = stream.write_all(&[0x01, 3, b'a', b'b', b'c']);
        let _ = stream.write_all(&[0x89, 0]);
        let _ = stream.write_all(&[0x80, 3, b'd', b'e', b'f']);
        let _ = stream.write_all(&[0x88, 2, 0x03, 0xf3]);
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut watch = Watch::start(&[&url]);
    let end = watch.wait_for(Duration::from_secs(5), "the end", is("ended"));
    assert_eq!(end["clean"], false);
    assert_eq!(end["detail"], "close 1011");
    let (summary, lines) = watch.stop();
    let messages: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "message")
        .take(3)
        .map(|l| (l["event"].as_str().unwrap(), l["data"].as_str().unwrap()))
        .collect();
    assert_eq!(
        messages,
        [
            ("message", "hi"),
            ("binary", "\u{fffd}\u{fffd}\u{fffd}"),
            ("message", "abcdef")
        ]
    );
    assert!(summary["versions"].as_object().unwrap().is_empty());
}

#[test]
fn bad_stream_arguments_are_usage_errors() {
    for (args, names) in [
        (&["watch", "wss://127.0.0.1:1/ws"][..], "wss://"),
        (&["watch", "ws://127.0.0.1:0/ws"], "port"),
        (
            &["watch", "ws://127.0.0.1:1/", "--idle-timeout", "0"],
            "--idle-timeout",
        ),
        (
            &["watch", "ws://127.0.0.1:1/", "--idle-timeout=-1"],
            "--idle-timeout",
        ),
        (
            &["watch", "ws://127.0.0.1:1/", "--idle-timeout", "x"],
            "--idle-timeout",
        ),
        (
            &["watch", "ws://127.0.0.1:1/", "--interval", "0"],
            "--interval",
        ),
        (
            &["watch", "ws://127.0.0.1:1/", "--timeout", "0s"],
            "--timeout",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_probe"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(names), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: probe"), "{args:?}: {stderr}");
    }
}
