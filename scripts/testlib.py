"""What the Python harnesses share: the lab (lab/), the bench (bench/) and the tests of the
images, the lab and the bench.

- Missing tools: `tool_problem`, `docker_problem` and `binaries_problem` say what is missing
  and how to get it; `skip_or_fail` (tests) and the bench turn that into a skip that prints the
  reason, or into a failure under REQUIRE_DOCKER=1 (CI), where nothing may be skipped.
- Processes: `Process` ends and reaps its child however the `with` block ends.
- Ports: servers bind port 0 and report the port (`ready_addr` reads testpage's READY_FILE);
  `listening_socket` hands a bound socket to a server that can inherit one (haproxy's `fd@`);
  `kernel_port` is the last resort, for a server that only takes a number (nginx).
- HTTP: `http_get`, `http_status`; polling: `wait_until`.

Standard library only: bench/run.py runs on the system Python. The Makefile's venv installs
it (pyproject.toml, editable) beside the lab package, which imports it by name; a harness run
outside the venv puts this folder on sys.path first:

    sys.path.insert(0, str(ROOT / "scripts"))
    import testlib
"""

import base64
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MACHINE = os.uname().machine
# The static binaries `make build` writes, for the host's architecture.
DIST = ROOT / "target" / "dist" / MACHINE

# Debian packages for the tools the harnesses use (the same table as scripts/deps.sh).
PACKAGES = {
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "wrk": "wrk",
    "go": "golang-go",
    "hey": "hey",
    "taskset": "util-linux",
    "valgrind": "valgrind",
    "strace": "strace",
    "qemu-aarch64-static": "qemu-user-static",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "prometheus": "prometheus",
}


# ---------------------------------------------------------------- missing tools


def require_docker():
    """True under REQUIRE_DOCKER=1 (CI): a missing tool is then a failure, never a skip."""
    return os.environ.get("REQUIRE_DOCKER") == "1"


def tool_problem(tool):
    """None if `tool` is on PATH, else a sentence saying how to install it."""
    if shutil.which(tool) is not None:
        return None
    package = PACKAGES.get(tool)
    hint = f" (Debian: apt-get install {package})" if package else ""
    return f"{tool} not found{hint}"


def docker_problem():
    """None if a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "docker not found"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "no Docker engine: `docker info` did not answer within 20 s"
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine: {last}"
    return None


def binaries_problem(*names, arch=MACHINE):
    """None if target/dist/ARCH holds every binary named, else what to run."""
    dist = ROOT / "target" / "dist" / arch
    missing = [name for name in names if not (dist / name).exists()]
    if not missing:
        return None
    build = "make build" if arch == MACHINE else f"make build ARCH={arch}"
    return f"{', '.join(missing)} missing in {dist}: run `{build}`"


def skip_or_fail(*problems):
    """In a test: skip saying why, or fail under REQUIRE_DOCKER=1, naming every problem found.
    None means no problem, so `skip_or_fail(tool_problem("haproxy"), docker_problem())` reads
    as a precondition."""
    found = "; ".join(problem for problem in problems if problem)
    if not found:
        return
    import pytest  # only the tests have it; the bench runs without the venv

    if require_docker():
        pytest.fail(f"{found}; REQUIRE_DOCKER=1 allows no skip", pytrace=False)
    pytest.skip(found)


# ---------------------------------------------------------------- processes


class Process:
    """A child process that is always ended and reaped.

        with Process([binary, "--flag"], stdout=subprocess.PIPE) as proc:
            ...

    On the way out of the block, however it ends (an exception included), the child gets
    `stop_signal`, then SIGKILL if it is still running after `grace` seconds, and is waited
    for; its pipes are closed. `stop()` does the same earlier and returns the exit status
    (negative: the signal that ended it, as in subprocess).
    """

    def __init__(self, args, *, stop_signal=signal.SIGTERM, grace=5.0, **popen):
        self.stop_signal, self.grace = stop_signal, grace
        self.popen = subprocess.Popen([str(arg) for arg in args], **popen)

    @property
    def pid(self):
        return self.popen.pid

    @property
    def stdout(self):
        return self.popen.stdout

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def communicate(self, timeout=None):
        return self.popen.communicate(timeout=timeout)

    def send_signal(self, sig):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, grace=None):
        grace = self.grace if grace is None else grace
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def close(self):
        self.stop()
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- ports


def listening_socket(host="127.0.0.1"):
    """A TCP socket listening on a port the kernel chose, for a server that can inherit it:
    pass `sock.fileno()` in `pass_fds`, then close the parent's copy. No race: the port is
    never free between choosing it and serving on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(1024)
    return sock


def kernel_port(host="127.0.0.1"):
    """A port the kernel has just handed out on `host`, for a server that only takes a number.

    The race, precisely: the port is free again once this returns, and stays free until the
    server binds it. In that window another bind to port 0, or a connect() choosing its source
    port, may be given the same port (Linux picks them at random from ip_local_port_range, so
    this is rare on an idle machine, not impossible). Pass the port to the server at once;
    if the race is lost, the server's bind fails with "address already in use" rather than
    anything being served on a stranger's port. Prefer a server that binds port 0 itself and
    reports the port, or `listening_socket`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ready_addr(ready_file, proc=None, timeout=20.0, interval=0.005):
    """The `host:port` testpage bound (`--listen 127.0.0.1:0`), from the `addr=` line of its
    READY_FILE (written atomically); raises if `proc` exits first, or TimeoutError after
    `timeout` seconds."""
    ready_file = pathlib.Path(ready_file)

    def addr():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.poll()} before it was ready")
        try:
            match = re.search(r"^addr=(\S+)$", ready_file.read_text(), re.MULTILINE)
        except FileNotFoundError:
            return None
        return match and match.group(1)

    return wait_until(addr, timeout, f"addr= line in {ready_file}", interval)


# ---------------------------------------------------------------- HTTP and polling


def container_ip(cid):
    """The address of container `cid` on its (first) Docker network; "" if it has none."""
    return subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            cid,
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def http_get(url, timeout=5.0):
    """GET url; returns (status, headers, body). An HTTP error status is an answer; a
    connection error raises OSError (urllib.error.URLError is one)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def http_status(url, timeout=1.0):
    """The status `url` answers with, or None if it cannot be reached."""
    try:
        return http_get(url, timeout)[0]
    except OSError:
        return None


def wait_until(condition, timeout, what, interval=0.05):
    """Calls condition() until it returns something truthy, and returns that. Raises
    TimeoutError naming `what` and the last result (or OSError) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {what} within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


def websocket_upgrade(addr, timeout=10.0):
    """A socket to `/ws` at `addr` ((host, port) or "host:port"), upgraded by hand: the
    socket, and whether the answer was `101`. Nothing after the answer's head is read."""
    if isinstance(addr, str):
        host, port = addr.rsplit(":", 1)
        addr = (host, int(port))
    sock = socket.create_connection(addr, timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head.startswith(b"HTTP/1.1 101")


def testpage_process(env, prefix="testpage-"):
    """A testpage of version 0.9 started on loopback with `env`, its log in a scratch folder:
    the Process (use it in a `with`), the ready file, the log path."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    log = tmp / "log"
    proc = Process(
        [DIST / "testpage", "--listen", "127.0.0.1:0"],
        env={"VERSION": "0.9", "READY_FILE": str(tmp / "ready"), **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    return proc, tmp / "ready", log
