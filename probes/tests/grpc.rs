//! gRPC health on a real testpage: `Check` and `Watch` with tonic's client over h2c, through
//! the drain, and `probe grpc`'s exit codes.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use probes::grpc;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

#[path = "../../testpage/tests/common/mod.rs"]
mod common;

use common::{runtime, Server, Signal};

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

fn status(code: i32) -> ServingStatus {
    ServingStatus::try_from(code).unwrap()
}

#[test]
fn check_and_watch_follow_readiness_through_the_drain() {
    let mut server = Server::start(&[("DRAIN", "1s")]);
    let addr = server.addr.to_string();
    let rt = runtime();
    rt.block_on(async {
        let mut checks = grpc::connect(&addr).await.unwrap();
        for service in ["", "testpage"] {
            let answer = checks.check(ask(service)).await.unwrap();
            assert_eq!(status(answer.get_ref().status), ServingStatus::Serving);
        }
        let unknown = checks.check(ask("nope")).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        // A request larger than a service name is refused before it is buffered.
        let huge = checks.check(ask(&"x".repeat(100_000))).await.unwrap_err();
        assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");

        let mut watcher = grpc::connect(&addr).await.unwrap();
        let mut watch = watcher.watch(ask("")).await.unwrap().into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(status(first.status), ServingStatus::Serving);

        // SIGTERM: Check answers NOT_SERVING at once (the instant is pinned in process, under
        // the paused clock; across processes, within a second).
        server.signal(Signal::SIGTERM);
        let signalled = Instant::now();
        let turned = loop {
            let answer = checks.check(ask("")).await.unwrap();
            if status(answer.get_ref().status) == ServingStatus::NotServing {
                break signalled.elapsed();
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(2),
                "still SERVING"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(
            turned < Duration::from_secs(1),
            "NOT_SERVING after {turned:?}"
        );

        // Watch reports it, then ends with UNAVAILABLE in the drain's second half.
        let next = watch.message().await.unwrap().unwrap();
        assert_eq!(status(next.status), ServingStatus::NotServing);
        let end = watch.message().await.unwrap_err();
        let ended = signalled.elapsed();
        assert_eq!(end.code(), Code::Unavailable, "{end:?}");
        assert!(
            ended >= Duration::from_millis(450) && ended < Duration::from_millis(1500),
            "the Watch ended {ended:?} after SIGTERM (DRAIN=1s)"
        );
    });
    drop(rt);
    let exit = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(exit.code(), Some(0), "{}", server.stderr());
    let log = server.stderr();
    assert!(log.contains("streams_ended_cleanly=1"), "{log}");
    assert!(log.contains("streams_cut=0"), "{log}");
}

#[test]
fn watch_of_an_unknown_service_stays_open_with_service_unknown() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    runtime().block_on(async {
        let mut client = grpc::connect(&addr).await.unwrap();
        let mut watch = client.watch(ask("nope")).await.unwrap().into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(status(first.status), ServingStatus::ServiceUnknown);
        // Nothing else comes while nothing changes.
        let more = tokio::time::timeout(Duration::from_millis(300), watch.message()).await;
        assert!(more.is_err(), "{more:?}");
    });
}

fn probe_grpc(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_probe"))
        .arg("grpc")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn probe_grpc_exit_codes() {
    let server = Server::start(&[("ADMIN", "1")]);
    let addr = server.addr.to_string();
    assert_eq!(probe_grpc(&[&addr]), (Some(0), String::new()));
    assert_eq!(probe_grpc(&[&addr, "--service", "testpage"]).0, Some(0));
    let (code, err) = probe_grpc(&[&addr, "--service", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NotFound"), "{err}");

    let disabled = server.request(
        "POST /readyz/disable HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    let (code, err) = probe_grpc(&[&addr]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is NOT_SERVING"), "{err}");

    // Nothing listening, a plain HTTP/1 listener, and usage errors.
    let (code, err) = probe_grpc(&["127.0.0.1:1"]);
    assert_eq!(code, Some(1), "{err}");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (code, err) = probe_grpc(&[&silent_addr, "--timeout", "300ms"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("grpc 127.0.0.1") && err.contains("timed out after 300ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    for bad in ["0", "-1s", "abc"] {
        assert_eq!(probe_grpc(&[&addr, "--timeout", bad]).0, Some(2), "{bad}");
    }
}

#[test]
fn http2_connections_get_their_goaway_spread_over_the_drains_second_half() {
    let mut server = Server::start(&[("DRAIN", "4s")]);
    let addr = server.addr.to_string();
    let rt = runtime();
    let (early, late) = rt.block_on(async {
        // Connected before SIGTERM (the server may not have read their preface yet: they still
        // count as HTTP/2 connections), and after it, while the drain runs.
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(grpc::connect(&addr).await.unwrap());
        }
        server.signal(Signal::SIGTERM);
        let signalled = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..4 {
            clients.push(grpc::connect(&addr).await.unwrap());
        }
        // Each connection answers until its GOAWAY; then calls on it fail, and a new
        // connection (through the Service, in a cluster) is needed.
        let mut ended = vec![None; clients.len()];
        while ended.iter().any(Option::is_none) && signalled.elapsed() < Duration::from_secs(6) {
            for (client, end) in clients.iter_mut().zip(&mut ended) {
                if end.is_none() && client.check(ask("")).await.is_err() {
                    *end = Some(signalled.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut ended: Vec<Duration> = ended.into_iter().map(Option::unwrap).collect();
        let mut late = ended.split_off(5);
        ended.sort();
        late.sort();
        (ended, late)
    });
    // In the drain's second half (2 s to 4 s), each at its own moment, not all at the end
    // (4 s); the same for the connections that came during the drain.
    for ended in [&early, &late] {
        assert!(
            ended[0] >= Duration::from_millis(1900),
            "{early:?} {late:?}"
        );
        assert!(ended[0] < Duration::from_millis(3800), "{early:?} {late:?}");
    }
    assert!(
        early[4] - early[0] >= Duration::from_millis(100),
        "{early:?}"
    );
    drop(rt);
    let exit = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert_eq!(exit.code(), Some(0), "{}", server.stderr());
}
