//! Test harness: spawns the real `testpage` binary on 127.0.0.1:0, waits on its ready file, and
//! talks plain HTTP/1.1 to it over std sockets so that every byte on the wire is visible.
//!
//! probe's tests use it too (`#[path]`), to run probe against a real testpage.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// A running testpage and its scratch directory.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub ready_file: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The testpage binary. Cargo names it for testpage's own tests; other packages' tests find it
/// beside their own binaries (`target/<profile>/`), where `cargo test --workspace` builds it.
pub fn testpage_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_testpage") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary> -> target/<profile>/testpage
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("testpage");
    assert!(
        bin.exists(),
        "{} missing: run the workspace's tests",
        bin.display()
    );
    bin
}

/// Builds the command with a clean environment, so nothing from the caller's shell leaks in.
pub fn command(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(testpage_bin());
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.env_clear()
        .env("READY_FILE", dir.join("ready"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    cmd
}

impl Server {
    /// Starts testpage with `env` and waits until it is ready.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_with(env, &[], |_| {})
    }

    /// Starts testpage; `prepare` may put files in the scratch directory first.
    pub fn start_with(env: &[(&str, &str)], args: &[&str], prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let ready_file = dir.path().join("ready");
        let mut child = command(dir.path(), env, args).spawn().unwrap();
        let addr = wait_ready(&mut child, &ready_file, dir.path());
        Server {
            child,
            addr,
            ready_file,
            dir,
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    pub fn request(&self, raw: &str) -> Response {
        Conn::open(self.addr).send(raw).unwrap()
    }

    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, limit)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the ready file (what an exec readiness probe would test) and reads the bound address
/// from it. Fails fast if the process exits instead.
pub fn wait_ready(child: &mut Child, ready_file: &Path, dir: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The file must be this process's (a stale one may still be there at first); in a PID
        // namespace of its own (the PID-1 test) the process calls itself 1.
        let ours = |text: &str| {
            let pid = text.lines().next().and_then(|l| l.strip_prefix("pid="));
            pid == Some(&child.id().to_string()) || pid == Some("1")
        };
        if let Ok(text) = std::fs::read_to_string(ready_file).and_then(|t| {
            if ours(&t) {
                Ok(t)
            } else {
                Err(std::io::ErrorKind::NotFound.into())
            }
        }) {
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("addr=")) {
                return addr.parse().unwrap();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            panic!("testpage exited before ready ({status}): {stderr}");
        }
        assert!(Instant::now() < deadline, "testpage did not become ready");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// One HTTP/1.1 connection, kept open between requests.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream),
        }
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    pub fn send(&mut self, raw: &str) -> std::io::Result<Response> {
        self.write(raw.as_bytes())?;
        self.read_response(raw.starts_with("HEAD "))
    }

    pub fn read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        if !head_only {
            response.body = vec![0; length];
            self.reader.read_exact(&mut response.body)?;
        }
        Ok(response)
    }

    pub fn set_read_timeout(&mut self, limit: Duration) {
        self.reader.get_ref().set_read_timeout(Some(limit)).unwrap();
    }

    /// True when the server closes the connection (EOF or reset) within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.set_read_timeout(limit);
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// Skips a test whose tool or permission is missing, saying why; under `REQUIRE_DOCKER=1` (CI)
/// fails instead, so that a skip never hides a check that should have run.
pub fn skip(reason: &str) {
    assert!(
        std::env::var("REQUIRE_DOCKER").as_deref() != Ok("1"),
        "required under REQUIRE_DOCKER=1: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// A listener on loopback that accepts connections and never answers: its address, and a
/// channel told of each connection accepted (held open for as long as the test runs).
pub fn silent_listener() -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

/// A server on loopback that runs `handle` for each connection, each on a thread of its own.
pub fn serve_each(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handle = std::sync::Arc::clone(&handle);
            std::thread::spawn(move || handle(stream));
        }
    });
    addr
}

/// A single-threaded Tokio runtime for the asynchronous part of a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/2 client (h2c, prior knowledge) on `addr`, with `window` as its stream and
/// connection flow-control windows (`None`: hyper's). The task driving the connection ends when
/// the server closes it.
pub async fn h2_client<B>(
    addr: SocketAddr,
    window: Option<u32>,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut builder =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Some(window) = window {
        builder
            .initial_stream_window_size(window)
            .initial_connection_window_size(window);
    }
    let (sender, conn) = builder
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}
