//! The library's shutdown path, in process: `testpage::run` with a shutdown future the test
//! completes, and FAIL_AFTER ending `run` with an outcome instead of ending the process.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use testpage::config::{Args, Config};
use testpage::faults::FailAfter;
use testpage::server::Outcome;
use testpage::signals::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
