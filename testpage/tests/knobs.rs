//! Rollout-test knobs, admin routes and metrics, against the real binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{eventually, Conn, Server, Signal};

fn post(server: &Server, path: &str) -> common::Response {
    server.request(&format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
}

/// `name{labels} value` lines of the exposition, keyed by `name{labels}`.
fn metrics(server: &Server) -> HashMap<String, f64> {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Spawns without waiting for readiness; returns the child, its address (from the `started`
/// log line) and its directory.
fn spawn_unready(
    env: &[(&str, &str)],
) -> (std::process::Child, std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::command(dir.path(), env, &[]).spawn().unwrap();
    let stderr = dir.path().join("stderr");
    let mut addr = None;
    assert!(eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        addr = text
            .split("addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    }));
    assert!(child.try_wait().unwrap().is_none());
    (child, addr.unwrap(), dir)
}

fn get(addr: std::net::SocketAddr, path: &str) -> common::Response {
    Conn::open(addr)
        .send(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
        .unwrap()
}

#[test]
fn startup_delay_binds_at_once_but_stays_unready() {
    let started = Instant::now();
    let (mut child, addr, dir) = spawn_unready(&[("STARTUP_DELAY", "800ms")]);
    let ready_file = dir.path().join("ready");
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/").status, 200);
    assert!(!ready_file.exists());
    assert!(eventually(Duration::from_secs(10), || ready_file.exists()));
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(get(addr, "/readyz").status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn hang_on_start_never_becomes_ready_and_still_stops() {
    let (mut child, addr, dir) = spawn_unready(&[("HANG_ON_START", "true"), ("DRAIN", "10s")]);
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(!dir.path().join("ready").exists());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    // Never ready, so there is nothing to drain.
    let status = common::wait_exit(&mut child, Duration::from_secs(3)).expect("exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn crash_on_start_exits_1_without_a_ready_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::command(dir.path(), &[("CRASH_ON_START", "true")], &[])
        .spawn()
        .unwrap();
    let status = common::wait_exit(&mut child, Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!dir.path().join("ready").exists());
    assert!(std::fs::read_to_string(dir.path().join("stderr"))
        .unwrap()
        .contains("CRASH_ON_START"));
}

#[test]
fn error_rate_fails_that_share_of_the_page_only() {
    let server = Server::start(&[("ERROR_RATE", "0.3"), ("ERROR_CODE", "503")]);
    let mut conn = Conn::open(server.addr);
    let n = 2000;
    let mut failed = 0;
    for _ in 0..n {
        match conn.get("/").unwrap().status {
            200 => {}
            503 => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // Binomial(2000, 0.3): mean 600, standard deviation about 20.5; allow five of them.
    assert!((498..=702).contains(&failed), "{failed} of {n} failed");
    // Probes and metrics never fail.
    for path in ["/healthz", "/readyz", "/metrics", "/info"] {
        for _ in 0..100 {
            assert_eq!(conn.get(path).unwrap().status, 200, "{path}");
        }
    }
    let m = metrics(&server);
    assert_eq!(
        m[r#"http_requests_total{code="503",route="/"}"#],
        failed as f64
    );
    assert_eq!(
        m[r#"http_requests_total{code="200",route="/"}"#],
        (n - failed) as f64
    );
}

#[test]
fn latency_delays_the_page_not_the_probes() {
    let server = Server::start(&[("LATENCY", "1500ms")]);
    let started = Instant::now();
    assert_eq!(server.get("/").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let started = Instant::now();
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn fail_after_a_request_count_exits_1() {
    let mut server = Server::start(&[("FAIL_AFTER", "5")]);
    for _ in 0..4 {
        assert_eq!(server.get("/").status, 200);
    }
    assert_eq!(server.get("/healthz").status, 200, "probes do not count");
    let _ = Conn::open(server.addr).get("/");
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(1));
    assert!(
        !server.ready_file.exists(),
        "no ready file claims the dead pod"
    );
}

#[test]
fn fail_after_a_duration_exits_1() {
    let mut server = Server::start(&[("FAIL_AFTER", "300ms")]);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    assert_eq!(status.code(), Some(1));
    assert!(server.stderr().contains("FAIL_AFTER reached"));
}

#[test]
fn status_route_answers_the_code_asked_for() {
    let server = Server::start(&[]);
    for (path, status) in [
        ("/status/418", 418),
        ("/status/200", 200),
        ("/status/503", 503),
        ("/status/599", 599),
        ("/status/999", 400),
        ("/status/99", 400),
        ("/status/100", 400),
        ("/status/abc", 400),
    ] {
        assert_eq!(server.get(path).status, status, "{path}");
    }
}

#[test]
fn headers_route_echoes_the_request_headers() {
    let server = Server::start(&[]);
    let r = server.request(
        "GET /headers HTTP/1.1\r\nHost: t\r\nX-Canary: always\r\nX-Multi: a\r\nX-Multi: b\r\nConnection: close\r\n\r\n",
    );
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["x-canary"], "always");
    assert_eq!(json["x-multi"], serde_json::json!(["a", "b"]));
    assert_eq!(json["host"], "t");
}

#[test]
fn headers_route_stays_small_whatever_the_head() {
    let server = Server::start(&[]);
    let mut request = b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Bytes: ".to_vec();
    request.extend([0xff; 10]);
    request.extend(b"\r\nX-Big: ");
    request.extend(b"a".repeat(12 * 1024));
    request.extend(b"\r\nConnection: close\r\n\r\n");
    let mut conn = common::Conn::open(server.addr);
    conn.write(&request).unwrap();
    let r = conn.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    // Echoed values stop at 8 KiB, and say so; bytes that are not UTF-8 show as `?`.
    assert!(r.body.len() < 9 * 1024, "{}", r.body.len());
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["x-bytes"], "?".repeat(10));
    let big = json["x-big"].as_str().unwrap();
    assert!(big.ends_with('…') && big.len() < 8 * 1024, "{}", big.len());
    assert!(json["…"]
        .as_str()
        .unwrap()
        .contains("bytes of header values not shown"));
}

#[test]
fn admin_routes_toggle_readiness_liveness_and_faults() {
    let server = Server::start(&[]);
    assert_eq!(post(&server, "/readyz/disable").status, 200);
    assert!(!server.ready_file.exists());
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(post(&server, "/readyz/enable").status, 200);
    assert!(server.ready_file.exists());
    assert_eq!(server.get("/readyz").status, 200);

    assert_eq!(post(&server, "/healthz/disable").status, 200);
    assert_eq!(server.get("/healthz").status, 503);
    assert_eq!(post(&server, "/healthz/enable").status, 200);
    assert_eq!(server.get("/healthz").status, 200);

    let r = post(&server, "/fault?error_rate=1&latency=10ms");
    assert_eq!(r.status, 200);
    let settings: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(settings["error_rate"], 1.0);
    assert_eq!(settings["latency"], "10ms");
    assert_eq!(server.get("/").status, 500);
    assert_eq!(
        server.get("/readyz").status,
        200,
        "probes are never faulted"
    );
    assert_eq!(post(&server, "/fault?error_rate=0&latency=0").status, 200);
    assert_eq!(server.get("/").status, 200);
    for bad in [
        "/fault?error_rate=2",
        "/fault?latency=fast",
        "/fault?colour=red",
    ] {
        assert_eq!(post(&server, bad).status, 400, "{bad}");
    }
    assert_eq!(server.get("/fault").status, 200);
}

#[test]
fn admin_false_removes_the_admin_routes() {
    let server = Server::start(&[("ADMIN", "false")]);
    for path in ["/readyz/disable", "/healthz/disable", "/fault?error_rate=1"] {
        assert_eq!(post(&server, path).status, 404, "{path}");
    }
    assert_eq!(server.get("/fault").status, 404);
    assert!(server.ready_file.exists());
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn bad_knob_values_exit_2_naming_the_setting() {
    for (setting, value) in [
        ("ERROR_RATE", "2"),
        ("ERROR_CODE", "42"),
        ("LATENCY", "fast"),
        ("STARTUP_DELAY", "-1"),
        ("FAIL_AFTER", "never"),
        ("HANG_ON_START", "perhaps"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = common::command(dir.path(), &[(setting, value)], &[])
            .spawn()
            .unwrap();
        let status = common::wait_exit(&mut child, Duration::from_secs(5)).unwrap();
        let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        assert_eq!(status.code(), Some(2), "{setting}: {stderr}");
        assert!(
            stderr.contains(setting) && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

#[test]
fn metrics_count_what_was_sent_and_follow_the_lifecycle() {
    let mut server = Server::start(&[("VERSION", "0.9"), ("COLOR", "green"), ("DRAIN", "1s")]);
    let mut conn = Conn::open(server.addr);
    for _ in 0..25 {
        conn.get("/").unwrap();
    }
    for _ in 0..3 {
        conn.get("/healthz").unwrap();
    }
    for _ in 0..2 {
        conn.get("/nope").unwrap();
    }
    let m = metrics(&server);
    assert_eq!(m[r#"http_requests_total{code="200",route="/"}"#], 25.0);
    assert_eq!(
        m[r#"http_requests_total{code="200",route="/healthz"}"#],
        3.0
    );
    assert_eq!(m[r#"http_requests_total{code="404",route="other"}"#], 2.0);
    assert_eq!(m[r#"http_request_duration_seconds_count{route="/"}"#], 25.0);
    assert_eq!(
        m[r#"testpage_build_info{version="0.9",color="green"}"#],
        1.0
    );
    assert_eq!(m["testpage_ready"], 1.0);
    assert_eq!(m["testpage_draining"], 0.0);
    assert_eq!(m["http_requests_in_flight"], 1.0, "the scrape itself");
    assert!(m["http_connections_open"] >= 2.0);

    server.signal(Signal::SIGTERM);
    assert!(eventually(Duration::from_millis(200), || !server
        .ready_file
        .exists()));
    for _ in 0..4 {
        server.get("/");
    }
    let m = metrics(&server);
    assert_eq!(m["testpage_ready"], 0.0);
    assert_eq!(m["testpage_draining"], 1.0);
    assert!(m["testpage_seconds_since_sigterm"] > 0.0);
    assert_eq!(
        m["testpage_drain_requests_total"], 4.0,
        "four pages; the scrape counts after"
    );
    drop(conn);
    assert_eq!(
        server.wait_exit(Duration::from_secs(3)).unwrap().code(),
        Some(0)
    );
    assert!(
        server.stderr().contains("drain_requests=5"),
        "{}",
        server.stderr()
    );
}

fn post_from(server: &Server, path: &str, headers: &str) -> common::Response {
    let addr = server.addr;
    server.request(&format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
}

#[test]
fn admin_routes_refuse_requests_from_other_origins() {
    let server = Server::start(&[]);
    let addr = server.addr;
    // What a page on another site can make a student's browser send: a simple POST.
    for headers in [
        "Origin: http://evil.example\r\n".to_owned(),
        "Origin: null\r\n".to_owned(),
        format!("Origin: http://{addr}.evil.example\r\n"),
        "Sec-Fetch-Site: cross-site\r\n".to_owned(),
        format!(
            "Sec-Fetch-Site: same-site\r\nOrigin: http://{}:1\r\n",
            addr.ip()
        ),
        format!("Sec-Fetch-Site: cross-site\r\nOrigin: http://{addr}\r\n"),
    ] {
        for path in ["/healthz/disable", "/readyz/disable", "/fault?latency=10s"] {
            let r = post_from(&server, path, &headers);
            assert_eq!(r.status, 403, "{path} with {headers:?}");
        }
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    assert!(server.ready_file.exists());
    // The page itself (same origin), and clients that are not browsers, keep working.
    for headers in [
        format!("Origin: http://{addr}\r\nSec-Fetch-Site: same-origin\r\n"),
        "Sec-Fetch-Site: none\r\n".to_owned(),
        // Behind a proxy that rewrites Host, the browser's own verdict stands.
        "Sec-Fetch-Site: same-origin\r\nOrigin: http://public.example\r\n".to_owned(),
        String::new(),
    ] {
        assert_eq!(post_from(&server, "/healthz/disable", &headers).status, 200);
        assert_eq!(post_from(&server, "/healthz/enable", &headers).status, 200);
    }
}

#[test]
fn origin_without_the_default_port_matches_a_host_with_it() {
    let server = Server::start(&[]);
    let post = |host: &str, origin: &str| {
        server
            .request(&format!(
                "POST /healthz/enable HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
            ))
            .status
    };
    assert_eq!(post("pod.example:80", "http://pod.example"), 200);
    assert_eq!(post("pod.example:443", "https://pod.example"), 200);
    assert_eq!(post("pod.example:8080", "http://pod.example"), 403);
    assert_eq!(post("pod.example:443", "http://pod.example"), 403);
}

#[test]
fn fault_values_are_bounded_like_the_settings() {
    let server = Server::start(&[]);
    for bad in [
        "/fault?latency=1e12",
        "/fault?latency=1e19",
        "/fault?latency=61s",
        "/fault?latency=1s..2m",
        "/fault?latency=-1",
        "/fault?error_rate=NaN",
        "/fault?error_rate=-0.1",
    ] {
        let r = post(&server, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    let settings: serde_json::Value = serde_json::from_slice(&server.get("/fault").body).unwrap();
    assert_eq!(settings["latency"], "0s");
    assert_eq!(post(&server, "/fault?latency=60s").status, 200);
    assert_eq!(post(&server, "/fault?latency=0").status, 200);
}

#[test]
fn readiness_toggles_work_without_a_ready_file() {
    let (mut child, addr, _dir) = spawn_unready(&[("READY_FILE", "")]);
    let post = |path: &str| {
        Conn::open(addr)
            .send(&format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            ))
            .unwrap()
            .status
    };
    assert!(eventually(Duration::from_secs(5), || get(addr, "/readyz")
        .status
        == 200));
    assert_eq!(post("/readyz/disable"), 200);
    assert_eq!(get(addr, "/readyz").status, 503);
    assert_eq!(post("/readyz/enable"), 200);
    assert_eq!(get(addr, "/readyz").status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn enable_that_cannot_write_the_file_is_a_500_not_a_409() {
    let server = Server::start(&[]);
    assert_eq!(post(&server, "/readyz/disable").status, 200);
    // The ready file's directory is gone: writing it again fails with an I/O error.
    std::fs::remove_dir_all(server.dir.path()).unwrap();
    let r = post(&server, "/readyz/enable");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("READY_FILE"), "{}", r.text());
    assert_eq!(server.get("/readyz").status, 503);
}
