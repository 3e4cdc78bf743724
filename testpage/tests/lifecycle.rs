//! Ready file, signals and the graceful drain, against the real binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Conn, Server, Signal};

const DRAIN_1S: [(&str, &str); 3] = [("VERSION", "1"), ("POD_IP", "10.0.0.1"), ("DRAIN", "1s")];

#[test]
fn stale_ready_file_is_replaced_and_holds_pid_and_addr() {
    let server = Server::start_with(&DRAIN_1S, &[], |dir| {
        std::fs::write(dir.join("ready"), "pid=0\naddr=127.0.0.1:1\n").unwrap();
    });
    let text = std::fs::read_to_string(&server.ready_file).unwrap();
    assert_eq!(
        text,
        format!("pid={}\naddr={}\n", server.child.id(), server.addr)
    );
}

#[test]
fn deleting_the_ready_file_makes_the_pod_unready() {
    let server = Server::start(&DRAIN_1S);
    assert_eq!(server.get("/readyz").status, 200);
    std::fs::remove_file(&server.ready_file).unwrap();
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get("/healthy.html").status, 503);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn sigterm_drains_then_exits_zero() {
    let mut server = Server::start(&DRAIN_1S);
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);

    // Readiness goes at once.
    assert!(eventually(Duration::from_secs(2), || !server
        .ready_file
        .exists()));
    assert_eq!(server.get("/readyz").status, 503);

    // Still serving every route during the drain, asking clients to reconnect elsewhere.
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("connection"), Some("close"));
    let mut keep_alive = Conn::open(server.addr);
    let r = keep_alive.get("/healthz").unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(keep_alive.closed_within(Duration::from_secs(1)));
    let info: testpage::pod_info::Info = serde_json::from_slice(&server.get("/info").body).unwrap();
    assert_eq!(info.state, "draining");

    let status = server.wait_exit(Duration::from_secs(2)).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "refused after exit"
    );
    assert!(!server.ready_file.exists());
}

#[test]
fn accept_stops_after_the_drain_while_requests_finish() {
    let mut server = Server::start(&[
        ("VERSION", "1"),
        ("DRAIN", "500ms"),
        ("SHUTDOWN_TIMEOUT", "10s"),
    ]);
    let addr = server.addr;
    // A slow request that starts during the drain and outlives it.
    server.signal(Signal::SIGTERM);
    assert!(eventually(Duration::from_secs(2), || !server
        .ready_file
        .exists()));
    let slow = std::thread::spawn(move || Conn::open(addr).get("/delay/2s"));
    // After the drain the listener is closed: new connections are refused, while the slow one
    // is still being served.
    assert!(eventually(Duration::from_secs(3), || {
        std::net::TcpStream::connect(addr).is_err()
    }));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "waits for in-flight"
    );
    let r = slow.join().unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        server.wait_exit(Duration::from_secs(5)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn idle_keep_alive_connection_does_not_delay_exit() {
    let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "200ms")]);
    let mut idle = Conn::open(server.addr);
    assert_eq!(idle.get("/").unwrap().status, 200);
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)).unwrap().code(),
        Some(0)
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    assert!(idle.closed_within(Duration::from_secs(1)));
}

#[test]
fn shutdown_timeout_expiry_exits_3() {
    let mut server = Server::start(&[
        ("VERSION", "1"),
        ("DRAIN", "1s"),
        ("SHUTDOWN_TIMEOUT", "300ms"),
    ]);
    server.signal(Signal::SIGTERM);
    assert!(eventually(Duration::from_secs(2), || !server
        .ready_file
        .exists()));
    // Accepted during the drain, still running when the drain ends and the timeout starts.
    let mut stuck = Conn::open(server.addr);
    stuck
        .write(b"GET /delay/30s HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let status = server.wait_exit(Duration::from_secs(4)).expect("exit");
    assert_eq!(status.code(), Some(3));
    assert!(
        server.stderr().contains("in_flight=1"),
        "{}",
        server.stderr()
    );
}

#[test]
fn second_signal_exits_at_once_with_128_plus_n() {
    for (signal, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
        let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "30s")]);
        server.signal(signal);
        assert!(eventually(Duration::from_secs(1), || !server
            .ready_file
            .exists()));
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(2))
            .expect("exit at once");
        assert_eq!(status.code(), Some(code));
    }
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "300ms")]);
    server.signal(Signal::SIGINT);
    assert!(eventually(Duration::from_secs(2), || !server
        .ready_file
        .exists()));
    assert_eq!(server.get("/").status, 200);
    assert_eq!(
        server.wait_exit(Duration::from_secs(2)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn removed_ready_file_skips_the_drain() {
    // A preStop hook drained the pod for longer than DRAIN: SIGTERM then needs no second wait.
    let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "1s")]);
    std::fs::remove_file(&server.ready_file).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("exits without a drain");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_millis(800),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        server.stderr().contains("skipped=true"),
        "{}",
        server.stderr()
    );
}

#[test]
fn readiness_withdrawn_just_before_sigterm_still_drains() {
    // Whoever withdraws readiness (the admin route, a preStop hook, `kubectl exec rm`), the
    // endpoints need DRAIN from that moment to notice: the pod keeps serving until then.
    for withdraw in ["admin", "rm"] {
        let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "2s")]);
        if withdraw == "admin" {
            let r = server
                .request("POST /readyz/disable HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            assert_eq!(r.status, 200);
        } else {
            std::fs::remove_file(&server.ready_file).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        assert!(eventually(Duration::from_secs(1), || server
            .stderr()
            .contains("draining")));
        // Still answering a second after the signal: the drain goes on.
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(server.get("/").status, 200, "{withdraw}");
        let status = server.wait_exit(Duration::from_secs(3)).expect("exit");
        assert_eq!(status.code(), Some(0));
        let took = signalled.elapsed();
        assert!(
            took >= Duration::from_millis(1300) && took < Duration::from_millis(2500),
            "{withdraw}: the drain ends 2 s after the withdrawal, not the signal: {took:?}"
        );
    }
}

#[test]
fn sigterm_before_ever_ready_does_not_drain() {
    // Nothing routes to a pod that never became ready, with or without a ready file.
    for ready_file in ["file", ""] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = common::command(
            dir.path(),
            &[("DRAIN", "30s"), ("STARTUP_DELAY", "30s")],
            &[],
        );
        if ready_file.is_empty() {
            cmd.env("READY_FILE", "");
        }
        cmd.stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let log = dir.path().join("stderr");
        assert!(eventually(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("started")
        }));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap();
        let status = common::wait_exit(&mut child, Duration::from_secs(3));
        let _ = child.kill();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "READY_FILE={ready_file:?}: {}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
}

#[test]
fn enable_after_sigterm_cannot_make_a_draining_pod_ready() {
    let mut server = Server::start(&[("VERSION", "1"), ("DRAIN", "1s")]);
    server.signal(Signal::SIGTERM);
    assert!(eventually(Duration::from_secs(1), || !server
        .ready_file
        .exists()));
    let r = server.request("POST /readyz/enable HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(!server.ready_file.exists());
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn json_logs_one_event_per_step() {
    let mut server = Server::start(&[("VERSION", "7"), ("DRAIN", "0"), ("LOG_FORMAT", "json")]);
    server.signal(Signal::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)).unwrap().code(),
        Some(0)
    );
    let messages: Vec<serde_json::Value> = server
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["message"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "started",
            "ready",
            "signal",
            "draining",
            "closing",
            "shutdown summary",
            "exited"
        ]
    );
    assert_eq!(messages[0]["version"], "7");
    assert_eq!(messages[4]["in_flight"], 0);
    assert_eq!(messages[6]["code"], 0);
    assert_eq!(messages[5]["drain_requests"], 0);
}

#[test]
fn exits_zero_on_sigterm_as_pid_1() {
    // In a fresh PID namespace the binary is PID 1, where a signal without a handler is ignored.
    let permitted = std::process::Command::new("unshare")
        .args(["--fork", "--pid", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !permitted {
        return common::skip("`unshare --fork --pid` (root)");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--fork", "--pid", env!("CARGO_BIN_EXE_testpage")])
        .args(["--listen", "127.0.0.1:0", "--drain", "200ms"])
        .env_clear()
        .env("READY_FILE", dir.path().join("ready"))
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    let mut unshare = cmd.spawn().unwrap();
    common::wait_ready(&mut unshare, &dir.path().join("ready"), dir.path());
    let text = std::fs::read_to_string(dir.path().join("ready")).unwrap();
    assert!(text.starts_with("pid=1\n"), "{text}");
    // Signal testpage itself (its PID as seen from here); unshare exits with its status.
    let children = format!("/proc/{0}/task/{0}/children", unshare.id());
    let pid: i32 = std::fs::read_to_string(children)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = common::wait_exit(&mut unshare, Duration::from_secs(3));
    let _ = unshare.kill();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn once_readiness_is_withdrawn_keep_alive_clients_are_asked_to_reconnect() {
    // A preStop hook removes the ready file long before SIGTERM; a Service keeps kept-alive
    // connections on the pod meanwhile, so its answers must send them elsewhere.
    let server = Server::start(&[("VERSION", "1")]);
    let mut conn = common::Conn::open(server.addr);
    let before = conn.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(before.header("connection"), None);
    std::fs::remove_file(&server.ready_file).unwrap();
    // Noticed within the serving loop's look at the file (4 times a second).
    std::thread::sleep(Duration::from_millis(600));
    let after = conn.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(after.status, 200);
    assert_eq!(after.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(2)));
}
