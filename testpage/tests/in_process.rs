//! The library's shutdown path, in process: `testpage::run` with a shutdown future the test
//! completes, FAIL_AFTER ending `run` with an outcome instead of ending the process, and the
//! shutdown sequence's instants under Tokio's paused clock.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use testpage::config::{Args, Config};
use testpage::faults::FailAfter;
use testpage::server::Outcome;
use testpage::signals::{Shutdown, SIGINT, SIGTERM};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn config(ready_file: &Path, extra: &[&str]) -> Config {
    let mut argv = vec![
        "testpage",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        ready_file.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    Config::from(Args::try_parse_from(argv).unwrap())
}

async fn wait_ready(ready_file: &Path) -> SocketAddr {
    for _ in 0..2000 {
        if let Ok(text) = std::fs::read_to_string(ready_file) {
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("addr=")) {
                return addr.parse().unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("not ready");
}

/// One request on its own connection; the status code.
async fn get(addr: SocketAddr, path: &str) -> u16 {
    let answer = get_text(addr, path).await;
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = config(&ready_file, &["--drain", "0", "--shutdown-timeout", "10s"]);
    let server = tokio::spawn(testpage::run(
        cfg,
        Shutdown::when(async {
            let _ = stopped.await;
        }),
    ));
    let addr = wait_ready(&ready_file).await;

    // A request that is still running when shutdown begins.
    let slow = tokio::spawn(get(addr, "/delay/1500ms"));
    while !get_text(addr, "/metrics")
        .await
        .contains("http_requests_in_flight 2")
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();

    // The server has not finished: it waits for the request, and readiness is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.is_finished(),
        "run() returned with a request in flight"
    );
    assert!(!ready_file.exists());

    // The request is answered, then run() returns Graceful.
    assert_eq!(slow.await.unwrap(), 200);
    let outcome = tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("run() returns once the request is done")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Graceful);
}

async fn get_text(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_after_ends_run_with_an_outcome_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready");
    let cfg = config(&ready_file, &["--fail-after", "2"]);
    let server = tokio::spawn(testpage::run(cfg, Shutdown::when(std::future::pending())));
    let addr = wait_ready(&ready_file).await;
    assert_eq!(get(addr, "/").await, 200);
    assert_eq!(
        get(addr, "/").await,
        200,
        "the request that reaches the count is answered"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("run() returns")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::FailAfter(FailAfter::Requests(2)));
    // This test process is still here to say so; the listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// The shutdown sequence under Tokio's paused clock: the drain, the goodbyes, the timeout and a
// second signal, each at an exact instant, without sleeping. The clock only moves when nothing
// is left to do, so every timing below is the sequence's own, not the machine's.

/// testpage running with `extra` settings; the sender of its signals and its address.
async fn start(
    dir: &Path,
    extra: &[&str],
) -> (
    mpsc::Sender<i32>,
    SocketAddr,
    tokio::task::JoinHandle<Result<Outcome, testpage::Error>>,
) {
    let ready_file = dir.join("ready");
    let (signals, received) = mpsc::channel(2);
    let server = tokio::spawn(testpage::run(
        config(&ready_file, extra),
        Shutdown::from_channel(received),
    ));
    // Each look lets the clock move by a millisecond at most.
    for _ in 0..10_000 {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("addr=")) {
                return (signals, addr.parse().unwrap(), server);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("not ready");
}

#[tokio::test(start_paused = true)]
async fn the_drain_lasts_drain_exactly_then_the_outcome_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let (signals, _, server) = start(dir.path(), &["--drain", "5s"]).await;
    let signalled = Instant::now();
    signals.send(SIGTERM).await.unwrap();
    // Readiness goes at once: within the first millisecond of the clock.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!dir.path().join("ready").exists());
    let outcome = server.await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Graceful);
    assert_eq!(signalled.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_ends_the_drain_at_that_instant() {
    let dir = tempfile::tempdir().unwrap();
    let (signals, _, server) = start(dir.path(), &["--drain", "5s"]).await;
    let signalled = Instant::now();
    signals.send(SIGTERM).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    signals.send(SIGINT).await.unwrap();
    let outcome = server.await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Interrupted(SIGINT));
    assert_eq!(signalled.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_request_running_past_the_timeout_ends_it_at_drain_plus_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (signals, addr, server) =
        start(dir.path(), &["--drain", "1s", "--shutdown-timeout", "3s"]).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /delay/30s HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // The request is read and waiting before the signal.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let signalled = Instant::now();
    signals.send(SIGTERM).await.unwrap();
    let outcome = server.await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::TimedOut { in_flight: 1 });
    assert_eq!(signalled.elapsed(), Duration::from_secs(1 + 3));
}

#[tokio::test(start_paused = true)]
async fn goodbyes_come_in_the_drains_second_half_and_the_pod_leaves_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (signals, addr, server) = start(dir.path(), &["--drain", "4s"]).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        streams.push(BufReader::new(stream));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let signalled = Instant::now();
    signals.send(SIGTERM).await.unwrap();
    let readers = streams.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut line = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await.unwrap() == 0 {
                    panic!("the stream ended without its goodbye");
                }
                if line.starts_with("event: bye") {
                    return signalled.elapsed();
                }
            }
        })
    });
    for reader in readers.collect::<Vec<_>>() {
        let at = reader.await.unwrap();
        assert!(
            at >= Duration::from_secs(2) && at <= Duration::from_secs(4),
            "goodbye at {at:?}"
        );
    }
    assert_eq!(server.await.unwrap().unwrap(), Outcome::Graceful);
    assert_eq!(signalled.elapsed(), Duration::from_secs(4));
}
