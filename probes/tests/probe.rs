//! `probe` against a real testpage, a plain server without headers, and listeners that never
//! answer.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(args)
        .env_remove("PORT")
        .env_remove("READY_FILE")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The testpage binary, built next to probe by `cargo test --workspace`.
fn testpage_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_probe")).with_file_name("testpage");
    assert!(
        bin.exists(),
        "{} missing: run the workspace's tests",
        bin.display()
    );
    bin
}

struct Testpage {
    child: Child,
    addr: SocketAddr,
    ready: PathBuf,
    _dir: tempfile::TempDir,
}

impl Testpage {
    fn start(version: &str, drain: &str) -> Testpage {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let mut child = Command::new(testpage_bin())
            .env_clear()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--app-version",
                version,
                "--drain",
                drain,
            ])
            .env("READY_FILE", &ready)
            .env("POD_IP", "10.9.8.7")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            if let Some(addr) = std::fs::read_to_string(&ready).ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("addr=")?.parse().ok())
            }) {
                break addr;
            }
            assert!(child.try_wait().unwrap().is_none(), "testpage exited");
            assert!(Instant::now() < deadline, "testpage not ready");
            std::thread::sleep(Duration::from_millis(5));
        };
        Testpage {
            child,
            addr,
            ready,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for Testpage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn http_probe_ok_fail_and_bare_path() {
    let server = Testpage::start("1", "0");
    assert_eq!(
        probe(&["http", &server.url("/readyz")]).status.code(),
        Some(0)
    );
    let fail = probe(&["http", &server.url("/missing")]);
    assert_eq!(fail.status.code(), Some(1));
    assert_eq!(text(&fail.stderr).lines().count(), 1);
    assert!(
        text(&fail.stderr).contains("status 404"),
        "{}",
        text(&fail.stderr)
    );
    assert_eq!(
        probe(&["http", &server.url("/missing"), "--status", "404"])
            .status
            .code(),
        Some(0)
    );
    // A bare path goes to 127.0.0.1:$PORT.
    let port = server.addr.port().to_string();
    let bare = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["http", "/healthz"])
        .env("PORT", &port)
        .status()
        .unwrap();
    assert_eq!(bare.code(), Some(0));
}

#[test]
fn http_probe_times_out_on_a_silent_listener() {
    // Connections complete in the kernel's backlog, but nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = probe(&["http", &url, "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn tcp_and_file_probes() {
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap().to_string();
    assert_eq!(probe(&["tcp", &open_addr]).status.code(), Some(0));
    let closed_addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = probe(&["tcp", &closed_addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refused"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready");
    assert_eq!(
        probe(&["file", file.to_str().unwrap()]).status.code(),
        Some(1)
    );
    std::fs::write(&file, "x").unwrap();
    assert_eq!(
        probe(&["file", file.to_str().unwrap()]).status.code(),
        Some(0)
    );
}

#[test]
fn drain_removes_the_ready_file_then_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready");
    std::fs::write(&file, "pid=1\n").unwrap();
    let started = Instant::now();
    let out = probe(&[
        "drain",
        "--ready-file",
        file.to_str().unwrap(),
        "--sleep",
        "400ms",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(!file.exists());
    // READY_FILE from the environment, and a file already gone is fine.
    let status = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["drain", "--sleep", "0"])
        .env("READY_FILE", &file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let started = Instant::now();
    assert_eq!(probe(&["sleep", "200ms"]).status.code(), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn drain_makes_testpage_unready() {
    let server = Testpage::start("1", "0");
    let out = probe(&[
        "drain",
        "--ready-file",
        server.ready.to_str().unwrap(),
        "--sleep",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = probe(&["http", &server.url("/readyz")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("503"));
}

#[test]
fn watch_json_reports_each_answer() {
    let server = Testpage::start("0.9", "0");
    let out = probe(&[
        "watch",
        &server.url("/"),
        "--count",
        "5",
        "--interval",
        "50ms",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "5 answers and a summary");
    for answer in &lines[..5] {
        assert_eq!(answer["status"], 200);
        assert_eq!(answer["version"], "0.9");
        assert_eq!(answer["pod_ip"], "10.9.8.7");
    }
    let summary = &lines[5]["summary"];
    assert_eq!(summary["requests"], 5);
    assert_eq!(summary["versions"]["0.9"]["answers"], 5);
}

#[test]
fn watch_reads_pages_without_headers() {
    // The tutorial's original app: the page and nothing else.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in plain.incoming().take(3) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = "I am: 172.1.14.7, the version is: 0.8\n";
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = probe(&[
        "watch",
        &format!("http://{addr}/"),
        "--count",
        "3",
        "--interval",
        "20ms",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("  200  0.8").count(), 3, "{stdout}");
    assert!(stdout.contains("172.1.14.7"), "{stdout}");
    assert!(stdout.contains("── new version 0.8"), "{stdout}");
    assert!(stdout.contains("3 requests, 3 ok, 0 failed"), "{stdout}");
}

fn load_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = probe(&[&["load", "--json"], args].concat());
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), report)
}

#[test]
fn load_counts_every_answer() {
    let server = Testpage::start("2", "0");
    let (code, report) = load_json(&[&server.url("/"), "-n", "2000", "-c", "8", "--qps", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["requests"], 2000);
    assert_eq!(report["codes"]["200"], 2000);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["sockets"], 8);
    assert_eq!(report["versions"]["2"], 2000);
}

#[test]
fn load_reports_connection_errors_as_minus_one() {
    let server = Testpage::start("2", "0");
    let url = server.url("/");
    let load = std::thread::spawn(move || {
        load_json(&[
            &url,
            "-t",
            "1500ms",
            "-c",
            "4",
            "--qps",
            "400",
            "--max-errors",
            "0",
        ])
    });
    // Kill the server abruptly while the load runs.
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    let (code, report) = load.join().unwrap();
    assert_eq!(code, Some(1), "--max-errors 0 exceeded");
    assert!(report["codes"]["-1"].as_u64().unwrap() > 0, "{report}");
    assert!(report["codes"]["200"].as_u64().unwrap() > 0, "{report}");
    let first = &report["error_events"][0];
    assert_eq!(first["code"], -1);
}

#[test]
fn load_through_a_drain_reconnects_without_errors() {
    let server = Testpage::start("3", "5s");
    let url = server.url("/");
    let load =
        std::thread::spawn(move || load_json(&[&url, "-t", "1500ms", "-c", "8", "--qps", "400"]));
    std::thread::sleep(Duration::from_millis(300));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, report) = load.join().unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["sockets"].as_u64().unwrap() > 8,
        "{}",
        report["sockets"]
    );
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["load"][..],
        &["load", "http://x", "-c", "0"],
        &["load", "http://x", "--qps", "-5"],
        &["http", "/", "--status", "abc"],
        &["http", "https://secure.example/"],
        &["sleep", "soon"],
        &["nonsense"],
    ] {
        let out = probe(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("Usage"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn watch_marks_a_version_change() {
    // A plain server that answers 0.8 to its first 25 requests and 0.9 afterwards, as a Service
    // does when a rolling update completes.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for (n, stream) in plain.incoming().take(60).enumerate() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let (version, ip) = if n < 25 {
                ("0.8", "10.0.0.8")
            } else {
                ("0.9", "10.0.0.9")
            };
            let body = format!("I am: {ip}, the version is: {version}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = probe(&[
        "watch",
        &format!("http://{addr}/"),
        "--count",
        "50",
        "--interval",
        "5ms",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let marker = |m: &str| {
        stdout
            .lines()
            .position(|l| l == m)
            .unwrap_or_else(|| panic!("no {m:?} in {stdout}"))
    };
    let new = marker("── new version 0.9");
    let gone = marker("── version 0.8 gone: not in the last 20 answers");
    assert!(new < gone);
    assert!(stdout.contains("── new pod 10.0.0.9 (0.9)"));
    assert!(stdout.contains("50 requests, 50 ok, 0 failed"), "{stdout}");
}
