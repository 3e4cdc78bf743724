"""The template, copied: a service author takes testpage, replaces `routes.rs` with a router of
their own (here one route), and keeps the whole shutdown: readiness file, drain, requests in
flight finished, a panicking handler answered 500, exit 0. Built from a scratch copy with
cargo, as a copier would."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

# The whole of the copier's routes.rs: what `server.rs` asks of it is a `Routes(Arc<App>)` that
# is a `connections::Router`.
ONE_ROUTE = """//! One route of the copier's own.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::app::App;
use crate::connections::Router;
use crate::protocol::ConnectionHandle;

pub(crate) struct Routes(pub Arc<App>);

impl Router for Routes {
    type Body = Full<Bytes>;
    type Answer = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

    fn answer(&self, req: Request<Incoming>, _: &ConnectionHandle) -> Self::Answer {
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            match path.as_str() {
                "/slow" => tokio::time::sleep(Duration::from_secs(2)).await,
                "/bug" => panic!("a bug"),
                _ => {}
            }
            Response::new(Full::new(Bytes::from_static(b"one route\\n")))
        })
    }

    fn panicked(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(b"sorry\\n")));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    }
}
"""


def copy_of_the_project(dest):
    shutil.copy(ROOT / "Cargo.lock", dest / "Cargo.lock")
    # The service alone: the workspace without the toolkit.
    workspace = (ROOT / "Cargo.toml").read_text()
    members = 'members = ["testpage", "probes"]'
    assert members in workspace
    (dest / "Cargo.toml").write_text(
        workspace.replace(members, 'members = ["testpage"]')
    )
    shutil.copytree(
        ROOT / "testpage",
        dest / "testpage",
        ignore=shutil.ignore_patterns("tests", "examples", "target"),
    )
    # A package of its own name, so that its binary does not replace the project's.
    manifest = dest / "testpage" / "Cargo.toml"
    text = manifest.read_text().replace('name = "testpage"', 'name = "one-route"', 1)
    manifest.write_text(text + '\n[lib]\nname = "testpage"\npath = "src/lib.rs"\n')
    (dest / "testpage" / "src" / "routes.rs").write_text(ONE_ROUTE)


def request(addr, path):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")


def test_a_one_route_router_in_a_copy_keeps_the_whole_shutdown():
    if not shutil.which("cargo"):
        testlib.skip_or_fail("cargo is not on PATH")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="testpage-copy-"))
    copy_of_the_project(tmp)
    # The project's own target directory: the dependencies `make unit` compiled are reused
    # (a copier's first build compiles them once). The copy's package and binary have a name of
    # their own, so nothing the project's tests run is replaced.
    target = ROOT / "target"
    build = subprocess.run(
        ["cargo", "build", "--offline", "-p", "one-route"],
        cwd=tmp,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    binary = target / "debug" / "one-route"
    ready = tmp / "ready"
    log = tmp / "log"
    with testlib.Process(
        [binary, "--listen", "127.0.0.1:0"],
        env={"READY_FILE": str(ready), "DRAIN": "1s", "SHUTDOWN_TIMEOUT": "5s"},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    ) as proc:
        addr = testlib.ready_addr(ready, proc)
        assert request(addr, "/").endswith("one route\n")
        assert request(addr, "/anything").startswith("HTTP/1.1 200")
        assert request(addr, "/bug").startswith("HTTP/1.1 500")
        # A request in flight at SIGTERM: the drain (1 s), then it finishes, then exit 0.
        host, port = addr.rsplit(":", 1)
        slow = socket.create_connection((host, int(port)), timeout=10)
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)
        signalled = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert not ready.exists(), "readiness withdrawn at SIGTERM"
        answer = slow.recv(4096).decode()
        slow.close()
        code = proc.wait(15)
        took = time.monotonic() - signalled
    assert answer.startswith("HTTP/1.1 200")
    assert "connection: close" in answer.lower()
    assert code == 0, log.read_text()
    assert 1.0 <= took <= 5.0, took
    text = log.read_text()
    assert "a handler panicked" in text, text
    assert "draining" in text, text
    shutil.rmtree(tmp, ignore_errors=True)
