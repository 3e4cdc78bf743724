//! Bad clients must not stop good ones: garbage bytes, oversized headers, slow senders.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{h2_client, runtime, Conn, Server};

#[test]
fn garbage_bytes_get_400_and_others_are_served() {
    let server = Server::start(&[("VERSION", "1")]);
    let mut garbage = Conn::open(server.addr);
    garbage
        .write(b"\x00\x01\xff\xfe NOT HTTP AT ALL\r\n\r\n")
        .unwrap();
    assert_eq!(garbage.read_response(false).unwrap().status, 400);
    assert!(garbage.closed_within(Duration::from_secs(5)));
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn one_mebibyte_header_is_refused_with_431() {
    let server = Server::start(&[("VERSION", "1")]);
    let mut big = Conn::open(server.addr);
    let header = "a".repeat(1024 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {header}\r\n\r\n");
    // The server may close before reading all of it; that is fine.
    let _ = big.write(request.as_bytes());
    match big.read_response(false) {
        Ok(r) => assert_eq!(r.status, 431),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "{e}"
        ),
    }
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn heads_over_the_limit_are_refused_however_they_arrive() {
    let server = Server::start(&[("VERSION", "1")]);
    let head = |size: usize| {
        let start = "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ";
        let filler = "a".repeat(size - start.len() - 4);
        format!("{start}{filler}\r\n\r\n")
    };
    let limit = testpage::connections::MAX_HEADER_BYTES;
    for (size, status) in [
        (limit - 100, 200),
        (limit, 200),
        (limit + 1, 431),
        (limit + 1_200, 431),
        (2 * limit, 431),
        (7 * limit, 431),
    ] {
        let request = head(size);
        assert_eq!(request.len(), size);
        // In one write, and in pieces of 16 KiB.
        for pieces in [size, 16 * 1024] {
            let mut conn = Conn::open(server.addr);
            for piece in request.as_bytes().chunks(pieces) {
                // The server may close before reading all of a refused head.
                let _ = conn.write(piece);
            }
            match conn.read_response(false) {
                Ok(r) => assert_eq!(r.status, status, "{size} bytes in pieces of {pieces}"),
                Err(e) => assert!(
                    status == 431
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                        ),
                    "{size} bytes in pieces of {pieces}: {e}"
                ),
            }
        }
    }
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn slow_client_is_cut_off_and_does_not_block_others() {
    let server = Server::start(&[("VERSION", "1"), ("HEADER_TIMEOUT", "1s")]);
    let mut slow = Conn::open(server.addr);
    slow.write(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Others are served while the slow client holds its connection.
    for _ in 0..20 {
        assert_eq!(server.get("/").status, 200);
    }
    // The slow client never finishes its headers: the header-read timeout closes it.
    let limit = Duration::from_secs(1 + 5);
    slow.set_read_timeout(limit);
    match slow.read_response(false) {
        Ok(r) => assert_eq!(r.status, 408),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "not closed within {limit:?}: {e}"
        ),
    }
}

#[test]
fn many_connections_at_once() {
    let server = Server::start(&[("VERSION", "1")]);
    let conns: Vec<_> = (0..200).map(|_| Conn::open(server.addr)).collect();
    for mut conn in conns {
        conn.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(conn.read_response(false).unwrap().status, 200);
    }
}

#[test]
fn h2c_prior_knowledge_and_goaway_on_shutdown() {
    let mut server = Server::start(&[("VERSION", "3"), ("DRAIN", "100ms")]);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Client preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let frames = read_frames(&mut stream, |types| types.contains(&4));
    assert_eq!(
        frames.first(),
        Some(&4),
        "server SETTINGS first: {frames:?}"
    );
    // GET / on stream 1: HPACK static-table entries :method GET, :scheme http, :path /.
    stream
        .write_all(&[0, 0, 3, 1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84])
        .unwrap();
    let frames = read_frames(&mut stream, |types| types.contains(&0));
    assert!(frames.contains(&1), "response HEADERS: {frames:?}");
    server.signal(common::Signal::SIGTERM);
    // Read until the server closes the connection, answering its PING as a client would.
    let frames = read_frames(&mut stream, |_| false);
    assert!(frames.contains(&7), "GOAWAY expected: {frames:?}");
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)).unwrap().code(),
        Some(0)
    );
}

/// Reads HTTP/2 frames until `done` holds for the frame types seen or the peer closes,
/// acknowledging PINGs as a real client does (graceful shutdown waits for that ack).
fn read_frames(stream: &mut std::net::TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use std::io::Read;
    const PING: u8 = 6;
    let mut types = Vec::new();
    let mut head = [0u8; 9];
    while !done(&types) && stream.read_exact(&mut head).is_ok() {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).unwrap();
        if head[3] == PING && head[4] & 1 == 0 {
            let mut ack = vec![0, 0, 8, PING, 1, 0, 0, 0, 0];
            ack.extend_from_slice(&payload);
            stream.write_all(&ack).unwrap();
        }
        types.push(head[3]);
    }
    types
}

/// Opens an HTTP/2 connection with prior knowledge: the client preface and an empty SETTINGS.
fn h2_preface(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    stream
}

/// Reads whatever arrives, answering nothing, until the peer closes; `None` if it has not
/// closed within `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut sink) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn silent_connections_are_closed_within_the_header_timeout() {
    // Nothing at all, half an HTTP/1 head, and an HTTP/2 preface with no
    // request: each is closed once HEADER_TIMEOUT has passed, never held open.
    let server = Server::start(&[("VERSION", "1"), ("HEADER_TIMEOUT", "1s")]);
    let limit = Duration::from_secs(1 + 4);
    let addr = server.addr;
    let silent = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        closed_within(&mut s, limit)
    });
    let half = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HT").unwrap();
        closed_within(&mut s, limit)
    });
    let h2 = std::thread::spawn(move || closed_within(&mut h2_preface(addr), limit));
    for (name, handle) in [("silent", silent), ("half head", half), ("h2 preface", h2)] {
        let took = handle.join().unwrap();
        let took = took.unwrap_or_else(|| panic!("{name}: still open after {limit:?}"));
        assert!(
            took >= Duration::from_millis(900),
            "{name}: closed too early, {took:?}"
        );
    }
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn idle_h2_connection_is_closed_after_idle_timeout() {
    let server = Server::start(&[("VERSION", "1"), ("IDLE_TIMEOUT", "1s")]);
    let mut stream = h2_preface(server.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // GET / on stream 1, then silence: no PING answered, nothing sent.
    stream
        .write_all(&[0, 0, 3, 1, 0x5, 0, 0, 0, 1, 0x82, 0x86, 0x84])
        .unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(6)).expect("closed");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn half_sent_requests_and_silent_h2_peers_do_not_hold_the_shutdown() {
    let mut server = Server::start(&[
        ("VERSION", "1"),
        ("DRAIN", "0"),
        ("SHUTDOWN_TIMEOUT", "10s"),
    ]);
    let mut half = Conn::open(server.addr);
    half.write(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let mut h2 = h2_preface(server.addr);
    // Both are accepted and being served before the signal.
    assert!(common::eventually(Duration::from_secs(2), || {
        server
            .get("/metrics")
            .text()
            .contains("http_connections_open 3")
    }));
    let signalled = std::time::Instant::now();
    server.signal(common::Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        !server.stderr().contains("still running"),
        "{}",
        server.stderr()
    );
    assert!(closed_within(&mut h2, Duration::from_secs(1)).is_some());
}

#[test]
fn a_flood_of_silent_connections_delays_a_real_client_by_about_a_second() {
    let server = Server::start(&[("VERSION", "1"), ("MAX_CONNECTIONS", "20")]);
    let flood: Vec<_> = (0..60)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    served_within_5s(server.addr, "/");
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("testpage_connections_max 20"), "{metrics}");
    assert!(
        !metrics.contains("testpage_connection_limit_reached_total 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("testpage_connections_timed_out_total 0\n"),
        "{metrics}"
    );
    drop(flood);
}

#[test]
fn out_of_file_descriptors_it_keeps_serving_and_logs_sparingly() {
    // 64 descriptors and the default MAX_CONNECTIONS: the limit cannot protect it, so accept
    // fails with EMFILE; idle connections are shed and real clients still get through.
    if !std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return common::skip("prlimit (util-linux)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=64:64", env!("CARGO_BIN_EXE_testpage")])
        .args(["--listen", "127.0.0.1:0"])
        .env_clear()
        .env("READY_FILE", dir.path().join("ready"))
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let addr = common::wait_ready(&mut child, &dir.path().join("ready"), dir.path());
    let flood: Vec<_> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        served_within_5s(addr, "/healthz");
    }
    drop(flood);
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(stderr.contains("open-file limit"), "{stderr}");
    let accept_lines = stderr.matches("accept failed").count();
    assert!(
        (1..=4).contains(&accept_lines),
        "{accept_lines} lines: {stderr}"
    );
}

#[test]
fn a_hundred_header_lines_are_accepted_and_more_get_431() {
    let server = Server::start(&[("VERSION", "1")]);
    let head = |lines: usize| {
        let mut raw = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
        for i in 0..lines - 2 {
            raw.push_str(&format!("X-H{i}: v\r\n"));
        }
        raw + "\r\n"
    };
    assert_eq!(
        server
            .request(&head(testpage::connections::MAX_HEADERS))
            .status,
        200
    );
    assert_eq!(
        server
            .request(&head(testpage::connections::MAX_HEADERS + 1))
            .status,
        431
    );
}

/// A real client's request on a new connection is answered 200 within 5 s.
fn served_within_5s(addr: std::net::SocketAddr, path: &str) {
    let started = std::time::Instant::now();
    let mut conn = Conn::open(addr);
    conn.set_read_timeout(Duration::from_secs(8));
    let r = conn
        .send(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
        .unwrap();
    assert_eq!(r.status, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{path}: {took:?}");
}

#[test]
fn slow_requests_cannot_hold_every_connection() {
    // Every connection asks for long waits, pipelined, and never reads: part of MAX_CONNECTIONS
    // stays free of waiting requests, so the rest are answered at once, go idle, and make room
    // for the kubelet's probe within about a second.
    for (env, path) in [
        ([("MAX_CONNECTIONS", "16"), ("LATENCY", "0")], "/delay/20s"),
        ([("MAX_CONNECTIONS", "16"), ("LATENCY", "20s")], "/"),
    ] {
        let server = Server::start(&env);
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(3);
        let hogs: Vec<_> = (0..16)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(server.addr).unwrap();
                s.write_all(request.as_bytes()).unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        served_within_5s(server.addr, "/healthz");
        drop(hogs);
    }
}

#[test]
fn keep_alive_lasts_idle_timeout_not_the_head_timeout() {
    // Proxies keep upstream connections idle for up to 60 s: the pod must not close first, and
    // in particular not at the HEADER_TIMEOUT that a new connection gets for its first request.
    let server = Server::start(&[
        ("VERSION", "1"),
        ("IDLE_TIMEOUT", "30s"),
        ("HEADER_TIMEOUT", "1s"),
    ]);
    let mut conn = Conn::open(server.addr);
    assert_eq!(conn.get("/").unwrap().status, 200);
    let wait = Duration::from_secs(1 + 2);
    assert!(!conn.closed_within(wait), "closed within {wait:?}");
    conn.set_read_timeout(Duration::from_secs(5));
    assert_eq!(conn.get("/").unwrap().status, 200);
}

fn get(path: &str) -> hyper::Request<http_body_util::Empty<bytes::Bytes>> {
    hyper::Request::get(format!("http://t{path}"))
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[test]
fn http2_answers_a_client_never_reads_do_not_keep_the_connection_open() {
    let server = Server::start(&[("VERSION", "1"), ("IDLE_TIMEOUT", "1s")]);
    runtime().block_on(async {
        // A flow-control window of 0: the answers' bodies can never be sent.
        let (mut sender, driver) = h2_client(server.addr, Some(0)).await;
        let mut answers = Vec::new();
        for path in ["/", "/healthz", "/ui"] {
            sender.ready().await.unwrap();
            answers.push(sender.send_request(get(path)).await.unwrap());
        }
        // The answers are given: the connection is idle, and its idle timeout closes it.
        tokio::time::timeout(Duration::from_secs(6), driver)
            .await
            .expect("the connection is still open 6 s after an idle timeout of 1 s")
            .unwrap();
    });
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn an_http2_connection_takes_three_of_max_connections() {
    let server = Server::start(&[("VERSION", "1"), ("MAX_CONNECTIONS", "4")]);
    runtime().block_on(async {
        let (mut first, first_driver) = h2_client(server.addr, None).await;
        first.ready().await.unwrap();
        let answer = first.send_request(get("/healthz")).await.unwrap();
        assert_eq!(answer.status(), 200);
        drop(answer);
        // One slot is left: enough for an HTTP/1 connection, not for a second HTTP/2 one.
        assert_eq!(server.get("/healthz").status, 200);
        let (mut second, second_driver) = h2_client(server.addr, None).await;
        let refused = match second.ready().await {
            Err(_) => true,
            Ok(()) => second.send_request(get("/healthz")).await.is_err(),
        };
        assert!(refused, "a second HTTP/2 connection was served");
        let _ = tokio::time::timeout(Duration::from_secs(5), second_driver).await;
        // Once the first one is gone, its three slots are free again.
        drop(first);
        first_driver.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut third, _third_driver) = h2_client(server.addr, None).await;
        third.ready().await.unwrap();
        let answer = third.send_request(get("/healthz")).await;
        assert!(answer.is_ok(), "{}", server.stderr());
    });
}

/// A request body that never ends and never sends anything.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[test]
fn a_grpc_call_whose_request_never_ends_gets_deadline_exceeded() {
    let server = Server::start(&[("VERSION", "1")]);
    runtime().block_on(async {
        let (mut sender, _driver) = h2_client(server.addr, None).await;
        let request = hyper::Request::post("http://t/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Endless)
            .unwrap();
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
            .await
            .expect("no answer 20 s after a call whose request never ends")
            .unwrap();
        let took = started.elapsed();
        assert_eq!(answer.status(), 200);
        // DEADLINE_EXCEEDED, in the headers of a trailers-only answer.
        assert_eq!(answer.headers()["grpc-status"], "4");
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(15),
            "{took:?}"
        );
    });
}

#[test]
fn streams_whose_http2_client_never_reads_are_cut_at_their_goodbye_not_at_the_timeout() {
    let mut server = Server::start(&[
        ("VERSION", "1"),
        ("DRAIN", "2s"),
        ("SHUTDOWN_TIMEOUT", "6s"),
    ]);
    let rt = runtime();
    // Windows of 0: neither answer's body (an event, a health status) can ever be sent.
    let _kept = rt.block_on(async {
        let (mut events, events_driver) = h2_client(server.addr, Some(0)).await;
        events.ready().await.unwrap();
        let stream = events.send_request(get("/events")).await.unwrap();
        assert_eq!(stream.status(), 200);
        let (mut grpc, grpc_driver) = h2_client(server.addr, Some(0)).await;
        grpc.ready().await.unwrap();
        // A `Watch` of the server's health: a gRPC message of zero bytes (service "").
        let watch = hyper::Request::post("http://t/grpc.health.v1.Health/Watch")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                &[0; 5],
            )))
            .unwrap();
        let status = grpc.send_request(watch).await.unwrap();
        assert_eq!(status.status(), 200);
        (events, stream, events_driver, grpc, status, grpc_driver)
    });
    let started = std::time::Instant::now();
    server.signal(common::Signal::SIGTERM);
    let exit = server.wait_exit(Duration::from_secs(15)).expect("exits");
    let took = started.elapsed();
    // Each is cut a second after its goodbye, in the drain's second half: not held until the
    // shutdown timeout (8 s and exit 3 before).
    assert_eq!(exit.code(), Some(0), "{}", server.stderr());
    assert!(took < Duration::from_millis(4500), "{took:?}");
    assert!(
        server
            .stderr()
            .contains("streams_ended_cleanly=0 streams_cut=2"),
        "{}",
        server.stderr()
    );
}

#[test]
fn smallest_max_connections_serves_http2() {
    // Fewer than 4 slots could never hold an HTTP/2 connection: refused, naming the setting.
    for too_few in ["1", "3"] {
        let dir = tempfile::tempdir().unwrap();
        let status = common::command(dir.path(), &[("MAX_CONNECTIONS", too_few)], &[])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2));
        let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        assert!(stderr.contains("MAX_CONNECTIONS"), "{stderr}");
    }
    let server = Server::start(&[("VERSION", "1"), ("MAX_CONNECTIONS", "4")]);
    runtime().block_on(async {
        let (mut sender, _driver) =
            h2_client::<http_body_util::Empty<bytes::Bytes>>(server.addr, None).await;
        sender.ready().await.unwrap();
        let answer = sender.send_request(get("/readyz")).await.unwrap();
        assert_eq!(answer.status(), 200);
    });
}

#[test]
fn only_an_http_1_1_get_upgrades_to_a_websocket() {
    let server = Server::start(&[("VERSION", "1")]);
    let upgrade = |start: &str| {
        server.request(&format!(
            "{start}\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ))
    };
    assert_eq!(upgrade("GET /ws HTTP/1.1").status, 101);
    assert_eq!(upgrade("GET /ws HTTP/1.0").status, 426);
    // A body would be frames or not depending on how it arrives: refused.
    let with_body = server.request(
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Content-Length: 6\r\n\r\nhello!",
    );
    assert_eq!(with_body.status, 426);
    // HEAD is the GET without a body: no upgrade either, but never a 404.
    assert_eq!(
        server
            .request("HEAD /ws HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .status,
        426
    );
    runtime().block_on(async {
        let (mut sender, _driver) =
            h2_client::<http_body_util::Empty<bytes::Bytes>>(server.addr, None).await;
        sender.ready().await.unwrap();
        let head = hyper::Request::head("http://t/events")
            .body(http_body_util::Empty::new())
            .unwrap();
        let answer = sender.send_request(head).await.unwrap();
        assert_eq!(answer.status(), 200);
        // An endless stream claims no length.
        assert_eq!(answer.headers().get("content-length"), None);
    });
}
