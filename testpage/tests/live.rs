//! `/events`: a stream of server-sent events that leaves cleanly during the drain.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, Signal};

/// One `/events` stream, read line by line: each event with the moment it arrived.
struct Stream {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Event {
    kind: String,
    id: u64,
    data: serde_json::Value,
    at: Instant,
}

impl Stream {
    fn open(server: &Server) -> Stream {
        let mut socket = TcpStream::connect(server.addr).unwrap();
        socket
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        while reader.read_line(&mut head).unwrap() > 2 && !head.ends_with("\r\n\r\n") {}
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        Stream { reader }
    }

    /// The next event, or `None` at the end of the stream.
    fn next(&mut self) -> Option<Event> {
        let (mut kind, mut id, mut data) = (None, 0, None);
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            // Chunk sizes of the chunked encoding, and the stream's end (`0`).
            if line.chars().all(|c| c.is_ascii_hexdigit()) && !line.is_empty() {
                if line == "0" {
                    return None;
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            } else if line.is_empty() {
                if let (Some(kind), Some(data)) = (kind.take(), data.take()) {
                    return Some(Event {
                        kind,
                        id,
                        data,
                        at: Instant::now(),
                    });
                }
            }
        }
    }
}

#[test]
fn an_event_every_second_with_version_pod_and_sequence() {
    let server = Server::start(&[("VERSION", "0.9"), ("POD_NAME", "p-1")]);
    let mut stream = Stream::open(&server);
    let first = stream.next().unwrap();
    let third = {
        stream.next().unwrap();
        stream.next().unwrap()
    };
    assert_eq!(first.kind, "message");
    assert_eq!(first.data["version"], "0.9");
    assert_eq!(first.data["pod"], "p-1");
    assert_eq!((first.id, third.id), (1, 3));
    let between = third.at - first.at;
    assert!(
        between > Duration::from_millis(1500) && between < Duration::from_millis(3000),
        "{between:?}"
    );
}

/// Reads `count` streams to their end on threads of their own, sends SIGTERM after `before`
/// (run first), and returns when each said goodbye after the signal, sorted. Every stream must
/// end with `bye`, right after it.
fn goodbyes_after_sigterm(server: &Server, count: usize, before: impl FnOnce()) -> Vec<Duration> {
    let readers: Vec<_> = (0..count)
        .map(|_| Stream::open(server))
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut last = None;
                while let Some(event) = s.next() {
                    last = Some(event);
                }
                (last, Instant::now())
            })
        })
        .collect();
    before();
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let mut byes = Vec::new();
    for reader in readers {
        let (last, ended) = reader.join().unwrap();
        let last = last.expect("events before the end");
        assert_eq!(last.kind, "bye", "{last:?}");
        byes.push(last.at - signalled);
        // The stream ends right after its goodbye.
        assert!(ended - last.at < Duration::from_millis(500));
    }
    byes.sort();
    byes
}

/// Exit 0 with every one of `count` streams counted as ended cleanly.
fn exits_0_with_clean_streams(server: &mut Server, count: usize) {
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let summary = format!("streams_ended_cleanly={count} streams_cut=0");
    assert!(server.stderr().contains(&summary), "{}", server.stderr());
}

#[test]
fn sigterm_sends_every_stream_its_goodbye_spread_over_the_drain_then_exits_0() {
    let mut server = Server::start(&[("VERSION", "0.9"), ("DRAIN", "2s")]);
    let byes = goodbyes_after_sigterm(&server, 12, || {
        std::thread::sleep(Duration::from_millis(1200));
    });
    // Within the second half of the drain (with margin for a loaded machine), not all at once.
    assert!(byes[0] >= Duration::from_millis(900), "{byes:?}");
    assert!(byes[11] <= Duration::from_millis(2800), "{byes:?}");
    assert!(byes[11] - byes[0] >= Duration::from_millis(100), "{byes:?}");
    exits_0_with_clean_streams(&mut server, 12);
}

#[test]
fn after_a_prestop_drain_goodbyes_are_spread_over_a_second() {
    let mut server = Server::start(&[("VERSION", "0.9"), ("DRAIN", "1s")]);
    let ready_file = server.ready_file.clone();
    let byes = goodbyes_after_sigterm(&server, 12, || {
        // What `probe drain` does in a preStop hook: remove the file, wait out DRAIN.
        std::fs::remove_file(&ready_file).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    });
    // No drain left; the endpoint is long gone: over the next second, not all at once.
    assert!(byes[11] <= Duration::from_millis(1800), "{byes:?}");
    assert!(byes[11] - byes[0] >= Duration::from_millis(100), "{byes:?}");
    exits_0_with_clean_streams(&mut server, 12);
}

#[test]
fn without_a_drain_streams_leave_at_once() {
    let mut server = Server::start(&[("VERSION", "0.9"), ("DRAIN", "0")]);
    let mut stream = Stream::open(&server);
    stream.next().unwrap();
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let mut last = None;
    while let Some(event) = stream.next() {
        last = Some(event);
    }
    let last = last.unwrap();
    assert_eq!(last.kind, "bye");
    assert!(last.at - signalled < Duration::from_millis(800));
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}

#[test]
fn a_stream_opened_late_in_the_drain_says_goodbye_before_it_ends() {
    let mut server = Server::start(&[("VERSION", "0.9"), ("DRAIN", "3s")]);
    let mut early = Stream::open(&server);
    early.next().unwrap();
    server.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(2500));
    let opened = Instant::now();
    let mut late = Stream::open(&server);
    let mut kinds = Vec::new();
    while let Some(event) = late.next() {
        kinds.push(event.kind);
    }
    assert_eq!(kinds.last().map(String::as_str), Some("bye"), "{kinds:?}");
    assert!(opened.elapsed() < Duration::from_millis(1500));
    let _ = server.wait_exit(Duration::from_secs(10));
}

#[test]
fn streams_share_the_slow_slots_so_probes_always_get_through() {
    // MAX_CONNECTIONS 8: 4 slow slots (four kept: room for an HTTP/2 probe and the next
    // connection); the fifth stream is refused, probes still answer, gRPC's too.
    let server = Server::start(&[("VERSION", "0.9"), ("MAX_CONNECTIONS", "8")]);
    let streams: Vec<Stream> = (0..4).map(|_| Stream::open(&server)).collect();
    let refused = server.get("/events");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(server.get("/healthz").status, 200);
    drop(streams);
    // HEAD: the headers alone, and no stream (a slot is free once the streams above are gone).
    assert!(common::eventually(Duration::from_secs(3), || {
        let head = server.request("HEAD /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        head.status == 200 && head.body.is_empty()
    }));
}
