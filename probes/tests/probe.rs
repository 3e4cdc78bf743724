//! `probe` against a real testpage, a plain server without headers, a server whose body never
//! ends, and listeners that never answer.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
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

#[path = "../../testpage/tests/common/mod.rs"]
mod common;

/// A ready testpage reporting `version`, with `DRAIN` set to `drain`.
fn testpage(version: &str, drain: &str) -> common::Server {
    common::Server::start(&[
        ("VERSION", version),
        ("DRAIN", drain),
        ("POD_IP", "10.9.8.7"),
    ])
}

#[test]
fn http_probe_ok_fail_and_bare_path() {
    let server = testpage("1", "0");
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
    // A copy of the file that no testpage holds is left alone, and said so.
    let copy = dir.path().join("copy");
    std::fs::copy(&file, &copy).unwrap();
    let out = probe(&[
        "drain",
        "--ready-file",
        copy.to_str().unwrap(),
        "--sleep",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not held by a running testpage"));
    assert!(copy.exists());
    // The file a running testpage writes is held with a lock, as here.
    let held = std::fs::File::open(&file).unwrap();
    held.try_lock().unwrap();
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
fn drain_removes_only_what_testpage_wrote_and_always_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("notes");
    std::fs::write(&stranger, "precious\n").unwrap();
    for path in [
        stranger.to_str().unwrap(),
        "/dev/null",
        dir.path().to_str().unwrap(),
    ] {
        let started = Instant::now();
        let out = probe(&["drain", "--ready-file", path, "--sleep", "200ms"]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        assert!(
            text(&out.stderr).contains("READY_FILE"),
            "{}",
            text(&out.stderr)
        );
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{path}: still sleeps"
        );
    }
    assert_eq!(std::fs::read_to_string(&stranger).unwrap(), "precious\n");
    assert!(std::fs::metadata("/dev/null")
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())));
    // READY_FILE="" is testpage's "no ready file": the preStop still waits.
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["drain", "--sleep", "200ms"])
        .env("READY_FILE", "")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn drain_makes_testpage_unready() {
    let server = testpage("1", "0");
    let out = probe(&[
        "drain",
        "--ready-file",
        server.ready_file.to_str().unwrap(),
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
    let server = testpage("0.9", "0");
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
    let server = testpage("2", "0");
    let (code, report) = load_json(&[&server.url("/"), "-n", "2000", "-c", "8", "--qps", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["requests"], 2000);
    assert_eq!(report["codes"]["200"], 2000);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["sockets"], 8);
    assert_eq!(report["versions"]["2"], 2000);
}

#[test]
fn load_takes_the_tutorials_fortio_command_literally() {
    // `fortio load -a -c 8 -qps 500 -t 60s URL`, shortened to 2 s: -a saves the JSON report in
    // the working directory, like fortio.
    let server = testpage("3", "0");
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args([
            "load",
            "-a",
            "-c",
            "8",
            "-qps",
            "500",
            "-t",
            "2s",
            &server.url("/"),
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("8 connections, target 500 qps"), "{stdout}");
    assert!(stdout.contains("Code 200 :"), "{stdout}");
    let saved: Vec<_> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let name = saved[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("probe-load-127.0.0.1-") && name.ends_with(".json"),
        "{name}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved[0]).unwrap()).unwrap();
    let answered = report["codes"]["200"].as_u64().unwrap();
    // 500 qps for 2 s, on a loaded machine: most of the 1000.
    assert!((500..=1000).contains(&answered), "{answered}");
    assert_eq!(report["errors"], 0);
    // `-qps=500` is Go's other spelling.
    let out = probe(&["load", "-n", "3", "-qps=100", &server.url("/")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn load_reports_connection_errors_as_minus_one() {
    let server = testpage("2", "0");
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
    let server = testpage("3", "5s");
    let url = server.url("/");
    let load =
        std::thread::spawn(move || load_json(&[&url, "-t", "1500ms", "-c", "8", "--qps", "400"]));
    std::thread::sleep(Duration::from_millis(300));
    server.signal(common::Signal::SIGTERM);
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

// ---- Bounded bodies (issue 12, item 8) --------------------------------------------------------

/// Peak RSS allowed to a probe against an endless body: generous, the fixed probe stays near 10 MiB.
const MAX_PEAK_KIB: u64 = 64 * 1024;

/// A finished probe: its output, how long it ran and its peak RSS.
struct Measured {
    out: Output,
    elapsed: Duration,
    peak_kib: u64,
}

/// The peak resident set of a running process (`VmHWM`), while it has one.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs probe, sampling its peak RSS until it exits (VmHWM only grows, so the last sample is
/// the peak up to a few milliseconds before the exit). Killed after 20 s.
fn probe_measured(args: &[&str]) -> Measured {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(args)
        .env_remove("PORT")
        .env_remove("READY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak_kib = 0;
    loop {
        if let Some(kib) = vm_hwm_kib(child.id()) {
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("probe {args:?} still running after 20 s (peak {peak_kib} KiB)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    eprintln!("probe {args:?}: {elapsed:?}, peak RSS {peak_kib} KiB");
    Measured {
        out,
        elapsed,
        peak_kib,
    }
}

/// Reads one request head; false at the end of the connection.
fn read_head(reader: &mut impl BufRead) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

/// A server on 127.0.0.1:0 that answers every request of every connection with `answer`, each
/// connection on its own thread, keeping connections open as long as `answer` succeeds.
fn serve(answer: impl Fn(&mut TcpStream) -> std::io::Result<()> + Send + Sync + 'static) -> String {
    let addr = common::serve_each(move |mut stream| {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        while read_head(&mut reader) && answer(&mut stream).is_ok() {}
    });
    format!("http://{addr}/")
}

/// A 200 whose chunked body never ends: 64 KiB chunks until the client goes away, or 5 s.
fn endless(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b'x', 64 * 1024));
    chunk.extend(b"\r\n");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        stream.write_all(&chunk)?;
    }
    Err(std::io::ErrorKind::TimedOut.into())
}

/// The tutorial's page followed by `padding` bytes of spaces, with a Content-Length.
fn page(padding: usize) -> impl Fn(&mut TcpStream) -> std::io::Result<()> {
    move |stream| {
        let body = format!(
            "I am: 10.1.2.3, the version is: 0.8\n{}",
            " ".repeat(padding)
        );
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

/// Every answer names a new version, 8 KiB long: what a report keeps must not grow with it.
fn unique_versions(stream: &mut TcpStream) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let version = format!("{n}-{}", "v".repeat(8 * 1024));
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nX-Version: {version}\r\nX-Pod: {version}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn reports_stay_bounded_when_every_answer_names_a_new_version() {
    let url = serve(unique_versions);
    let run = probe_measured(&["load", &url, "-t", "2s", "-c", "4", "--qps", "0", "--json"]);
    assert_eq!(run.out.status.code(), Some(0), "{}", text(&run.out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.out.stdout).unwrap();
    let versions = report["versions"].as_object().unwrap();
    assert!(versions.len() <= 65, "{} versions kept", versions.len());
    assert!(versions.contains_key("(others)"), "{versions:?}");
    assert!(versions.keys().all(|v| v.chars().count() <= 65));
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", run.peak_kib);
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);

    let run = probe_measured(&[
        "watch",
        &url,
        "--interval",
        "1ms",
        "--count",
        "100",
        "--json",
    ]);
    assert_eq!(run.out.status.code(), Some(0), "{}", text(&run.out.stderr));
    let summary = text(&run.out.stdout);
    let summary: serde_json::Value = serde_json::from_str(summary.lines().last().unwrap()).unwrap();
    assert!(summary["summary"]["versions"].as_object().unwrap().len() <= 65);
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", run.peak_kib);
}

#[test]
fn http_probe_against_an_endless_body_reads_only_the_status() {
    let url = serve(endless);
    let run = probe_measured(&["http", &url, "--timeout", "3s"]);
    assert_eq!(run.out.status.code(), Some(0), "{}", text(&run.out.stderr));
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", run.peak_kib);
}

#[test]
fn watch_against_an_endless_body_reads_a_bounded_prefix() {
    let url = serve(endless);
    let run = probe_measured(&[
        "watch",
        &url,
        "--count",
        "2",
        "--interval",
        "10ms",
        "--timeout",
        "3s",
        "--json",
    ]);
    assert_eq!(run.out.status.code(), Some(0), "{}", text(&run.out.stderr));
    let stdout = text(&run.out.stdout);
    assert_eq!(stdout.matches(r#""status":200"#).count(), 2, "{stdout}");
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", run.peak_kib);
}

#[test]
fn load_against_an_endless_body_reads_a_bounded_prefix_and_reconnects() {
    let url = serve(endless);
    let run = probe_measured(&[
        "load",
        &url,
        "-t",
        "1s",
        "-c",
        "2",
        "--qps",
        "0",
        "--timeout",
        "3s",
        "--json",
    ]);
    assert_eq!(run.out.status.code(), Some(0), "{}", text(&run.out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.out.stdout).unwrap();
    let answered = report["codes"]["200"].as_u64().unwrap_or(0);
    assert!(answered >= 2, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    // No connection carries a second request after a body that was not read to its end.
    assert!(report["sockets"].as_u64().unwrap() >= answered, "{report}");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak RSS {} KiB", run.peak_kib);
}

#[test]
fn load_keeps_connections_alive_for_a_page_longer_than_the_prefix() {
    // 16 KiB: more than the 4 KiB kept, well under the 1 MiB read through.
    let url = serve(page(16 * 1024));
    let (code, report) = load_json(&[&url, "-n", "200", "-c", "2", "--qps", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(report["codes"]["200"], 200, "{report}");
    assert_eq!(report["sockets"], 2, "{report}");
    assert_eq!(report["versions"]["0.8"], 200, "{report}");
}

// ---- Deadlines, Ctrl-C and ranges (issue 12, item 9) ------------------------------------------

/// Waits for `child` to exit within `limit`; kills it and fails otherwise.
fn wait_within(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A listener that accepts connections and never answers, as a URL.
fn hanging_listener() -> (String, mpsc::Receiver<()>) {
    let (addr, accepted) = common::silent_listener();
    (format!("http://{addr}/"), accepted)
}

fn sigint(child: &Child) {
    send(child, nix::sys::signal::Signal::SIGINT);
}

fn send(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
}

#[test]
fn load_ends_at_its_duration_whatever_the_rate() {
    let url = serve(page(0));
    for (args, requests) in [(&["-c", "8", "--qps", "1"][..], 2), (&["--qps", "0.05"], 1)] {
        let started = Instant::now();
        let (code, report) = load_json(&[&[url.as_str(), "-t", "2s"], args].concat());
        let elapsed = started.elapsed();
        eprintln!("load {args:?} -t 2s: {elapsed:?}");
        assert_eq!(code, Some(0));
        assert!(elapsed < Duration::from_secs(4), "{args:?}: {elapsed:?}");
        assert!(elapsed >= Duration::from_secs(2), "{args:?}: {elapsed:?}");
        // Slots at 0 s and 1 s (one at 0 s for the slower rate); none at the very end.
        assert_eq!(report["requests"], requests, "{args:?}: {report}");
        assert_eq!(report["unanswered"], 0, "{args:?}: {report}");
    }
}

#[test]
fn load_against_a_hanging_target_ends_at_its_duration_and_counts_the_unanswered() {
    // Connections complete in the kernel's backlog, but nothing ever answers: at -t the requests
    // in flight get a second's grace, then count as errors, so --max-errors fails the run.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = probe(&["load", &url, "-t", "1s", "-c", "8", "--max-errors", "0"]);
    let elapsed = started.elapsed();
    eprintln!("load against a hanging target, -t 1s: {elapsed:?}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("8 requests"), "{stdout}");
    assert!(stdout.contains("Code  -1 : 8 "), "{stdout}");
    assert!(stdout.contains("Errors: 8 of 8"), "{stdout}");
}

#[test]
fn ctrl_c_ends_a_load_on_time_with_a_report() {
    // SIGTERM (a script, `timeout`) is treated like Ctrl-C.
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let (url, accepted) = hanging_listener();
        let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
            .args([
                "load",
                &url,
                "-t",
                "60s",
                "-c",
                "4",
                "--json",
                "--max-errors",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A connection means the run has started, and signals are listened for before it starts.
        accepted.recv_timeout(Duration::from_secs(10)).unwrap();
        send(&child, signal);
        // The requests in flight get a second's grace, then count as errors.
        let (status, elapsed) = wait_within(&mut child, Duration::from_secs(3));
        eprintln!("load, {signal} during requests: ended {elapsed:?} after the signal");
        let out = child.wait_with_output().unwrap();
        // A target that never answered fails --max-errors however the run was ended.
        assert_eq!(status.code(), Some(1), "{signal}: {}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let unanswered = report["unanswered"].as_u64().unwrap();
        assert!(unanswered >= 1, "{report}");
        assert_eq!(report["errors"].as_u64(), Some(unanswered), "{report}");
    }
}

#[test]
fn ctrl_c_ends_a_watch_during_a_request_with_the_summary() {
    let (url, accepted) = hanging_listener();
    let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["watch", &url, "--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    accepted.recv_timeout(Duration::from_secs(10)).unwrap();
    sigint(&child);
    let (status, elapsed) = wait_within(&mut child, Duration::from_secs(2));
    eprintln!("watch, SIGINT during a request: ended {elapsed:?} after the signal");
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("── summary: 0 requests"), "{stdout}");
}

#[test]
fn out_of_range_values_are_usage_errors() {
    let url = "http://127.0.0.1:1/";
    for (args, names) in [
        (&["watch", url, "--interval", "0"][..], "--interval"),
        (&["watch", url, "--interval", "2h"], "--interval"),
        (&["watch", url, "--timeout", "0"], "--timeout"),
        (&["load", url, "--qps", "1e-30"], "--qps"),
        (&["load", url, "--qps", "1e-19"], "--qps"),
        (&["load", url, "--qps", "0.001"], "--qps"),
        (&["load", url, "--qps", "2e6"], "--qps"),
        (&["load", url, "--qps", "NaN"], "--qps"),
        (&["load", url, "--qps", "inf"], "--qps"),
        (&["load", url, "-t", "0"], "--duration"),
        (&["load", url, "--timeout", "0s"], "--timeout"),
        (&["http", url, "--timeout", "0"], "--timeout"),
        (&["tcp", "127.0.0.1:1", "--timeout", "0ms"], "--timeout"),
    ] {
        let out = probe(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(names), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage: probe"), "{args:?}: {stderr}");
    }
}

// ---- PORT (issue 12, item 10) -----------------------------------------------------------------

#[test]
fn a_bare_path_with_a_bad_port_is_a_usage_error_naming_port() {
    for port in ["abc", "0", "70000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_probe"))
            .args(["http", "/readyz"])
            .env("PORT", port)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "PORT={port}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(&format!("PORT={port:?}")), "{stderr}");
        assert!(stderr.contains("Usage: probe http"), "{stderr}");
    }
}

#[test]
fn a_closed_stdout_or_stderr_is_an_exit_code_not_a_crash() {
    // `probe load ... | head -3`: the report cannot be written, which is exit 1, not an abort.
    let url = serve(page(0));
    let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["load", &url, "-n", "1", "--qps", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let (status, _) = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{status:?}");

    // A usage error with nowhere to print is still exit 2.
    let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["watch", &url, "--interval", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let (status, _) = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{status:?}");
}

#[test]
fn name_lookups_count_against_the_timeout() {
    // In a network and mount namespace of its own, /etc/resolv.conf names a resolver on
    // 127.0.0.1:53 that never answers (the libc retries for 6 s): every command still ends at
    // its timeout.
    let permitted = Command::new("unshare")
        .args(["--net", "--mount", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !permitted || Command::new("python3").arg("-V").output().is_err() {
        assert!(
            std::env::var("REQUIRE_DOCKER").as_deref() != Ok("1"),
            "unshare --net --mount and python3 are required under REQUIRE_DOCKER=1"
        );
        eprintln!("skipped: unshare --net --mount (root) or python3 is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:3 attempts:2\n",
    )
    .unwrap();
    let probe = env!("CARGO_BIN_EXE_probe");
    let script = format!(
        r#"ip link set lo up || exit 97
mount --bind {resolv} /etc/resolv.conf || exit 98
python3 -c 'import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",53)); time.sleep(30)' &
resolver=$!
sleep 0.3
for args in "http --timeout 1s http://hang.test:8080/" "tcp --timeout 1s hang.test:8080" \
            "watch --count 1 --timeout 1s http://hang.test:8080/" \
            "load -c 1 -t 1s --timeout 1s http://hang.test:8080/"; do
  start=$(date +%s%N); {probe} $args >/dev/null 2>&1; end=$(date +%s%N)
  echo "$args $(( (end - start) / 1000000 ))"
done
kill $resolver"#,
        resolv = resolv.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 4, "{lines}");
    for line in lines.lines() {
        let (command, ms) = line.rsplit_once(' ').unwrap();
        let ms: u64 = ms.parse().unwrap();
        eprintln!("{command}: {ms} ms");
        assert!(ms < 3000, "{command}: {ms} ms against a 1 s timeout");
    }
}

/// A server that answers a minimal page and sends each request's head to `heads`.
fn recording_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (sender, heads) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let _ = sender.send(head);
                    let page = "HTTP/1.1 200 OK\r\nX-Version: 7\r\nContent-Length: 3\r\n\r\nok\n";
                    if stream.write_all(page.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, heads)
}

#[test]
fn watch_and_load_send_the_headers_they_are_given() {
    let (url, heads) = recording_server();
    let args = ["-H", "x-version: v2", "--header", "Host: app.example"];
    let watch = probe(&[&["watch", "--count", "1", &url][..], &args].concat());
    assert_eq!(watch.status.code(), Some(0), "{}", text(&watch.stderr));
    let load = probe(&[&["load", "-n", "2", "-c", "1", &url][..], &args].concat());
    assert_eq!(load.status.code(), Some(0), "{}", text(&load.stderr));
    let seen: Vec<String> = heads.try_iter().collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for head in &seen {
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-version: v2\r\n"), "{head}");
        // The Host header given replaces the URL's.
        assert!(lower.contains("host: app.example\r\n"), "{head}");
        assert_eq!(lower.matches("host:").count(), 1, "{head}");
    }
    let bad = probe(&["load", "-H", "no colon", &url]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn load_times_out_each_request_that_is_not_answered_in_time() {
    // /delay/2s answers after two seconds: each of three requests gives up at 300 ms.
    let server = testpage("2", "0");
    let started = Instant::now();
    let (code, report) = load_json(&[
        &server.url("/delay/2s"),
        "-n",
        "3",
        "-c",
        "1",
        "--qps",
        "0",
        "--timeout",
        "300ms",
    ]);
    let took = started.elapsed();
    assert!(code.is_some(), "{report}");
    assert_eq!(report["codes"]["-1"], 3, "{report}");
    for event in report["error_events"].as_array().unwrap() {
        assert_eq!(event["error"], "timed out after 300ms", "{report}");
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1900),
        "{took:?}"
    );
}
