//! Bad clients must not stop good ones: garbage bytes, oversized headers, slow senders.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Conn, Server};

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
fn slow_client_is_cut_off_and_does_not_block_others() {
    let server = Server::start(&[("VERSION", "1")]);
    let mut slow = Conn::open(server.addr);
    slow.write(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Others are served while the slow client holds its connection.
    for _ in 0..20 {
        assert_eq!(server.get("/").status, 200);
    }
    // The slow client never finishes its headers: the header-read timeout closes it.
    let limit = testpage::server::HEADER_READ_TIMEOUT + Duration::from_secs(5);
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
