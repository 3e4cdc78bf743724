#!/usr/bin/env python3
"""`make bench`: testpage against what users would otherwise run, in one run on one machine.

Peers, each small and built here: the tutorial's server in Python 3 `http.server` (bench/python),
a Go net/http server like seed 001's (bench/go), and nginx answering `return 200`. Each server is
pinned to core 0 and the load generator to core 1 (`taskset`). Figures: requests/s (closed
loop, keep-alive, wrk with 8 and 64 connections, and probe load), latency p50/p99 at the
tutorial's 500 qps with 8 connections, RSS idle and under 64 connections, time from exec to the
first 200, binary and image size, and testpage under `docker run --cpus 0.01 --memory 20m`.
Also testpage against the commit before its rollout-test knobs, and probe load against wrk and hey.

    python bench/run.py [--quick] [--out bench/RESULTS.md]

--quick runs a second or so per figure, skips Docker and the older build, and writes under
target/bench/: it proves the harness works and asserts nothing about the numbers.

A missing tool of the mode (TOOLS; Docker too for the full run) fails the run under
REQUIRE_DOCKER=1 (CI). Otherwise what needs it is skipped, saying why: a server or a figure, or
the whole run without wrk, which then exits 0. In --quick, go and hey are optional peers: they
are skipped, saying so, even in CI. Every server binds a port the kernel chose (see
`nginx_server` for the one that is given a number).
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import testlib

BENCH = ROOT / "bench"
ARCH = testlib.MACHINE
DIST = testlib.DIST
WORK = ROOT / "target" / "bench"
BEFORE_KNOBS = (
    "f4638a6"  # the last commit before STARTUP_DELAY, ERROR_RATE, LATENCY, metrics
)
SERVER_CPU, LOAD_CPU = "0", "1"
# The tools each mode needs, as the Makefile's deps.sh lines list them (`make bench-quick`,
# `make bench`).
TOOLS = {
    "quick": ("wrk", "taskset", "nginx", "valgrind", "strace"),
    "full": ("wrk", "taskset", "nginx", "valgrind", "strace", "go", "hey"),
}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def check_tools(tools, docker=False):
    """Whether the run can go on. Under REQUIRE_DOCKER=1 any missing tool ends it with exit 1;
    otherwise each is logged with what it skips, and only a missing wrk skips the whole run."""
    problems = [problem for problem in map(testlib.tool_problem, tools) if problem]
    if docker and testlib.docker_problem():
        problems.append(testlib.docker_problem())
    if problems and testlib.require_docker():
        raise SystemExit(
            f"bench: REQUIRE_DOCKER=1 allows no skip: {'; '.join(problems)}"
        )
    for problem in problems:
        log(f"{problem}: what needs it is skipped")
    if testlib.tool_problem("wrk"):
        log("skipped: every figure is measured with wrk")
        return False
    return True


def pinned(cpu, args):
    return (
        ["taskset", "-c", cpu, *map(str, args)]
        if shutil.which("taskset")
        else list(map(str, args))
    )


def get_ok(url, timeout=0.5):
    return testlib.http_status(url, timeout) == 200


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid):
    """RSS of a process and its children (nginx's worker)."""
    total = rss_kib(pid)
    children = pathlib.Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += tree_rss_kib(int(child))
    return total


class Server:
    """A server under test: how to start it on loopback, and where it listens."""

    def __init__(self, name, build, start, size_bytes=None):
        self.name, self.build, self.start_args = name, build, start
        self.size_bytes = size_bytes
        self.proc, self.url = None, None

    def start(self, wrap=(), env=None):
        """Starts the server pinned to SERVER_CPU, under `wrap` (a tool and its flags, e.g.
        valgrind) with `env` added, and waits for its first 200."""
        self.tmp = tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-"))
        args, own_env, find_url = self.start_args(tmp)
        env = {**own_env, **(env or {})}
        with (tmp / "stderr").open("w") as stderr:
            self.proc = testlib.Process(
                pinned(SERVER_CPU, [*wrap, *args]),
                stop_signal=signal.SIGINT,
                grace=10,
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        try:
            self.url = find_url(self.proc)
            testlib.wait_until(
                self.answers, 20, f"200 from {self.name}", interval=0.0005
            )
        except (OSError, RuntimeError) as error:
            said = (tmp / "stderr").read_text(errors="replace").strip()[-500:]
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start: {error}; it said: {said or 'nothing'}"
            ) from None
        except BaseException:
            self.stop()
            raise
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.poll()}")
        return get_ok(self.url)

    def stop(self):
        if self.proc:
            self.proc.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def first_line_url(proc):
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        raise RuntimeError(f"no address in {line!r}")
    return f"http://{match.group(1)}/"


def testpage_server(name, binary):
    def start(tmp):
        ready = tmp / "ready"
        # DRAIN=0: a benchmark has no endpoints to leave, and each stop would wait 5 s.
        env = {
            "VERSION": "0.5",
            "POD_IP": "10.0.0.1",
            "READY_FILE": str(ready),
            "RUST_LOG": "warn",
            "DRAIN": "0",
        }

        def find(proc):
            return f"http://{testlib.ready_addr(ready, proc, interval=0.0005)}/"

        return [binary, "--listen", "127.0.0.1:0"], env, find

    return Server(
        name, None, start, size_bytes=binary.stat().st_size if binary.exists() else None
    )


def python_server():
    def start(_tmp):
        return (
            [sys.executable, BENCH / "python" / "server.py"],
            {"PORT": "0", "VERSION": "0.5", "POD_IP": "10.0.0.1"},
            first_line_url,
        )

    return Server("python http.server", None, start)


def go_server():
    binary = WORK / "hello-go"

    def build():
        if shutil.which("go") is None:
            return "go not found (Debian: golang-go)"
        subprocess.run(
            ["go", "build", "-o", binary, "."],
            cwd=BENCH / "go",
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"},
        )
        return None

    def start(_tmp):
        return [binary], {"ADDR": "127.0.0.1:0"}, first_line_url

    server = Server("go net/http", build, start)
    server.binary = binary
    return server


def nginx_server():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    def start(tmp):
        # nginx needs a port number (it refuses `listen 127.0.0.1:0`, and inheriting a socket
        # through its NGINX variable is internal to its binary upgrade): the kernel picks one
        # and nginx is given it at once. If another process takes it in between (see
        # testlib.kernel_port), nginx exits "address already in use" and Server.start says so.
        port = testlib.kernel_port()
        conf = (
            (BENCH / "nginx" / "nginx.conf.in")
            .read_text()
            .replace("@DIR@", str(tmp))
            .replace("@ADDR@", f"127.0.0.1:{port}")
        )
        (tmp / "nginx.conf").write_text(conf)
        return (
            [nginx, "-c", tmp / "nginx.conf", "-e", tmp / "error.log"],
            {},
            lambda _proc: f"http://127.0.0.1:{port}/",
        )

    server = Server(
        "nginx",
        (lambda: None if os.path.exists(nginx) else "nginx not found"),
        start,
        size_bytes=os.path.getsize(nginx) if os.path.exists(nginx) else None,
    )
    return server


# ---------------------------------------------------------------- measurements


def wrk(url, connections, seconds):
    out = subprocess.run(
        pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def probe_load(url, connections, qps, seconds):
    out = subprocess.run(
        pinned(
            LOAD_CPU,
            [
                DIST / "probe",
                "load",
                url,
                "-c",
                connections,
                "--qps",
                qps,
                "-t",
                f"{seconds}s",
                "--json",
            ],
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(out.stdout)


def hey(url, connections, seconds):
    problem = testlib.tool_problem("hey")
    if problem:
        log(f"{problem}: its figure is n/a")
        return None
    out = subprocess.run(
        pinned(LOAD_CPU, ["hey", "-c", str(connections), "-z", f"{seconds}s", url]),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def exec_to_first_200(server, runs):
    """Median seconds from exec to the first 200 answer."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        server.start()
        times.append(time.perf_counter() - started)
        server.stop()
    return statistics.median(times)


def measure(server, seconds, quick):
    row = {"server": server.name}
    row["exec_to_200_ms"] = exec_to_first_200(server, 3 if quick else 15) * 1000
    server.start()
    try:
        time.sleep(0.2)
        row["rss_idle_kib"] = tree_rss_kib(server.proc.pid)
        row["rps_c8"] = wrk(server.url, 8, seconds)
        wrk_c64 = pinned(LOAD_CPU, ["wrk", "-t1", "-c64", f"-d{seconds}s", server.url])
        with testlib.Process(wrk_c64, stdout=subprocess.PIPE, text=True) as sampler:
            time.sleep(seconds / 2)
            row["rss_load_kib"] = tree_rss_kib(server.proc.pid)
            out = sampler.communicate()[0]
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        row["rps_c64"] = float(match.group(1)) if match else None
        report = probe_load(server.url, 8, 500, seconds)
        row["p50_ms"], row["p99_ms"] = (
            report["latency_ms"]["p50"],
            report["latency_ms"]["p99"],
        )
    finally:
        server.stop()
    row["size_bytes"] = server.size_bytes
    return row


def docker_limits(seconds):
    """testpage under the tutorial's limits: time to ready and requests/s."""
    problem = testlib.docker_problem()
    if problem:
        return {"note": problem}
    ref = f"{os.environ.get('REGISTRY', '')}testpage:0.5"
    if subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, check=False
    ).returncode:
        return {"note": f"{ref} not built (make images)"}
    cid = subprocess.run(
        ["docker", "run", "-d", "--rm", "--cpus", "0.01", "--memory", "20m", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # From the moment the container runs (docker's own set-up is not the app's start-up).
    started = time.monotonic()
    try:
        ip = testlib.container_ip(cid)
        url = f"http://{ip}:8080/"
        while not get_ok(url + "readyz", timeout=2):
            if time.monotonic() - started > 60:
                return {"note": "not ready within 60 s"}
            time.sleep(0.02)
        ready_s = time.monotonic() - started
        rps = wrk(url, 8, seconds)
        return {"ready_s": ready_s, "rps_c8": rps}
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


def image_size():
    if testlib.docker_problem():
        return None
    ref = f"{os.environ.get('REGISTRY', '')}testpage:0.5"
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(out.stdout) if out.returncode == 0 else None


def build_before_knobs():
    """testpage at BEFORE_KNOBS, built with the release flags it shipped with."""
    binary = WORK / "before-knobs" / "testpage"
    if binary.exists():
        return binary
    tree = WORK / "before-knobs-src"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", tree, BEFORE_KNOBS],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        target = f"{ARCH}-unknown-linux-musl"
        subprocess.run(
            [
                "cargo",
                "build",
                "--release",
                "--locked",
                "--target",
                target,
                "-p",
                "testpage",
            ],
            cwd=tree,
            check=True,
            env={
                **os.environ,
                "RUSTFLAGS": "-C relocation-model=static",
                "CARGO_TARGET_DIR": str(WORK / "before-target"),
            },
        )
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WORK / "before-target" / target / "release" / "testpage", binary)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", tree],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
    return binary


def knobs_ratio(seconds, rounds):
    """Requests/s of today's testpage over the one before the knobs, alternating runs."""
    now = testpage_server("testpage", DIST / "testpage")
    before = testpage_server("testpage before knobs", build_before_knobs())
    results = {"now": [], "before": []}
    for _ in range(rounds):
        for key, server in (("now", now), ("before", before)):
            server.start()
            try:
                results[key].append(wrk(server.url, 8, seconds))
            finally:
                server.stop()
    now_rps, before_rps = (
        statistics.median(results["now"]),
        statistics.median(results["before"]),
    )
    return {
        "now": now_rps,
        "before": before_rps,
        "ratio": now_rps / before_rps,
        "runs": results,
    }


def load_generators(seconds):
    server = testpage_server("testpage", DIST / "testpage").start()
    try:
        out = {
            "wrk": wrk(server.url, 8, seconds),
            "probe load": probe_load(server.url, 8, 0, seconds)["achieved_qps"],
            "hey": hey(server.url, 8, seconds),
        }
    finally:
        server.stop()
    return out


def rps_rounds(seconds, rounds):
    """Requests/s of testpage and nginx at 8 and 64 connections, in alternating rounds (testpage,
    nginx, testpage, ...), the best of each: a neighbour's load on a shared machine lowers one
    round, not all of them."""
    servers = [testpage_server("testpage", DIST / "testpage"), nginx_server()]
    servers = [s for s in servers if not (s.build and s.build())]
    best = {s.name: {"rps_c8": 0.0, "rps_c64": 0.0} for s in servers}
    for _ in range(rounds):
        for server in servers:
            server.start()
            try:
                for connections in (8, 64):
                    rps = wrk(server.url, connections, seconds) or 0.0
                    key = f"rps_c{connections}"
                    best[server.name][key] = max(best[server.name][key], rps)
            finally:
                server.stop()
    return best


def probe_startup(runs):
    """Median seconds of `probe http` against a ready testpage, exec to exit."""
    server = testpage_server("testpage", DIST / "testpage").start()
    try:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([DIST / "probe", "http", server.url + "readyz"], check=True)
            times.append(time.perf_counter() - started)
    finally:
        server.stop()
    return statistics.median(times)


# ---------------------------------------------------------------- costs per request and connection

# What curl sends: the tutorials' loops and most probes arrive like this.
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
# Requests made in every run of a cost figure, on top of which one kind is added.
BASE_REQUESTS = 20


def exchange(sock, request=REQUEST):
    """Sends one request on `sock` and reads its whole answer (a Content-Length body)."""
    sock.sendall(request)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the answer ended: {data[:80]!r}")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            continue
        if not head.startswith(b"HTTP/1.1 200 "):
            raise ConnectionError(f"not a 200: {head[:80]!r}")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            return


def connect(addr):
    sock = socket.create_connection(addr, timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def keep_alive(addr, n):
    """`n` requests one after another on one connection."""
    with connect(addr) as sock:
        for _ in range(n):
            exchange(sock)


def new_connections(addr, n):
    """`n` requests, each on a new connection the client closes after the answer, as curl does."""
    for _ in range(n):
        with connect(addr) as sock:
            exchange(sock)


def address(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


def callgrind_total(directory):
    """Instructions executed by every process callgrind wrote a file for in `directory`."""
    total = 0
    for path in directory.glob("callgrind.*"):
        found = re.search(r"^totals:\s+(\d+)", path.read_text(), re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


def strace_total(directory):
    """System calls counted by `strace -c` (every thread and child) in `directory`."""
    text = (directory / "strace").read_text()
    found = re.search(
        r"^\s*100\.00\s+\S+\s+(?:\S+\s+)?(\d+)\s+(?:\d+\s+)?total$", text, re.MULTILINE
    )
    if not found:
        raise RuntimeError(f"no total in strace's summary: {text[-300:]!r}")
    return int(found.group(1))


TOOLS_OF_COSTS = {
    "callgrind": (
        lambda out: [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/callgrind.%p",
        ],
        callgrind_total,
    ),
    "strace": (lambda out: ["strace", "-f", "-c", "-o", f"{out}/strace"], strace_total),
}


def server_pid(proc, tool):
    """The server's own pid: valgrind runs the program in its process, strace forks it."""
    if tool != "strace":
        return proc.pid
    children = pathlib.Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else proc.pid


def counted_run(server, tool, keep, new):
    """What `tool` counts over a whole server run that answers `keep` requests on one
    connection and `new` requests on connections of their own (plus the harness's check that
    the server answers)."""
    wrap, total = TOOLS_OF_COSTS[tool]
    out = pathlib.Path(tempfile.mkdtemp(prefix=f"bench-{tool}-"))
    # nginx started as root runs its worker as another user, which writes its own file here.
    out.chmod(0o777)
    try:
        server.start(wrap=wrap(out))
        try:
            addr = address(server.url)
            keep_alive(addr, keep)
            new_connections(addr, new)
            # Stop the server itself, so the tool sees it exit and writes its counts.
            os.kill(server_pid(server.proc, tool), signal.SIGINT)
            server.proc.wait(60)
        finally:
            server.stop()
        return total(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def per_request(server, tool, n):
    """`tool`'s count per keep-alive request and per request on a new connection, each the
    difference between a run with `n` more of that kind and a base run, over `n`: start-up,
    shutdown and the base requests cancel out."""
    base = counted_run(server, tool, BASE_REQUESTS, BASE_REQUESTS)
    keep = counted_run(server, tool, BASE_REQUESTS + n, BASE_REQUESTS)
    new = counted_run(server, tool, BASE_REQUESTS, BASE_REQUESTS + n)
    return (keep - base) / n, (new - base) / n


def raise_fd_limit():
    """Lifts this process's (and so its children's) open-file limit to the hard one: holding
    thousands of idle connections needs a descriptor for each, on both sides."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def idle_memory(server, n):
    """RSS of the server (and its children) before and while it holds `n` idle keep-alive
    connections that have each sent one request; KiB."""
    server.start(env={"MAX_CONNECTIONS": str(n + 64)})
    held = []
    try:
        addr = address(server.url)
        keep_alive(addr, 1)
        time.sleep(0.2)
        before = tree_rss_kib(server.proc.pid)
        for _ in range(n):
            sock = connect(addr)
            held.append(sock)
            exchange(sock)
        time.sleep(0.2)
        during = tree_rss_kib(server.proc.pid)
        # Still answering with all of them open.
        keep_alive(addr, 1)
    finally:
        for sock in held:
            sock.close()
        server.stop()
    return before, during


def server_costs(server, quick):
    """Instructions and system calls per request, and memory per idle connection."""
    n = 200 if quick else 2000
    row = {}
    if not testlib.tool_problem("valgrind"):
        row["instr_keepalive"], row["instr_new_conn"] = per_request(
            server, "callgrind", n
        )
    if not testlib.tool_problem("strace"):
        row["syscalls_keepalive"], row["syscalls_new_conn"] = per_request(
            server, "strace", n
        )
    # A descriptor per connection in this process and in the server (which inherits the
    # limit), and some to spare: fewer connections where the open-file limit is low.
    idle = min(1000 if quick else 5000, raise_fd_limit() - 256)
    if idle < 100:
        log(f"{server.name}: the open-file limit is too low to hold idle connections")
    else:
        before, during = idle_memory(server, idle)
        row["idle_connections"] = idle
        row["rss_before_idle_kib"], row["rss_idle_conns_kib"] = before, during
        row["kib_per_idle_conn"] = (during - before) / idle
    return row


def client_instructions(url, quick):
    """Instructions per request of each load client at full speed against `url` (8
    connections), as a difference between two runs so that start-up cancels out."""
    if testlib.tool_problem("valgrind"):
        return {}
    seconds = (1, 2) if quick else (2, 6)
    counts = (2000, 6000) if quick else (10000, 40000)

    def run(args, requests_of):
        out = pathlib.Path(tempfile.mkdtemp(prefix="bench-client-"))
        try:
            done = subprocess.run(
                pinned(
                    LOAD_CPU,
                    [
                        "valgrind",
                        "--tool=callgrind",
                        f"--callgrind-out-file={out}/callgrind.%p",
                        *args,
                    ],
                ),
                capture_output=True,
                text=True,
                check=True,
            )
            return callgrind_total(out), requests_of(done.stdout)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def wrk_requests(stdout):
        return int(re.search(r"(\d+) requests in", stdout).group(1))

    def probe_requests(stdout):
        return json.loads(stdout)["requests"]

    results = {}
    for name, args, parse in (
        ("wrk", [["wrk", "-t1", "-c8", f"-d{s}s", url] for s in seconds], wrk_requests),
        (
            "probe load",
            [
                [
                    DIST / "probe",
                    "load",
                    url,
                    "-c",
                    "8",
                    "--qps",
                    "0",
                    "-n",
                    n,
                    "--json",
                ]
                for n in counts
            ],
            probe_requests,
        ),
    ):
        (i1, r1), (i2, r2) = run(args[0], parse), run(args[1], parse)
        results[name] = (i2 - i1) / (r2 - r1) if r2 > r1 else None
    return results


def costs(quick):
    """The cost figures for testpage and nginx, side by side, and the clients'."""
    figures = {}
    for server in (testpage_server("testpage", DIST / "testpage"), nginx_server()):
        problem = server.build() if server.build else None
        if problem:
            log(f"{server.name}: costs skipped: {problem}")
            continue
        log(f"costs of {server.name}")
        figures[server.name] = server_costs(server, quick)
    log("costs of the load clients")
    server = testpage_server("testpage", DIST / "testpage").start()
    try:
        figures["clients"] = client_instructions(server.url, quick)
    finally:
        server.stop()
    return figures


# ---------------------------------------------------------------- report


def fmt(value, unit="", digits=0):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def ratio(value, base):
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


COST_FIGURES = (
    ("instr_keepalive", "instructions per keep-alive `GET /`", 0),
    ("instr_new_conn", "instructions per `GET /` on a new connection", 0),
    ("syscalls_keepalive", "system calls per keep-alive `GET /`", 1),
    ("syscalls_new_conn", "system calls per `GET /` on a new connection", 1),
    ("kib_per_idle_conn", "KiB per idle keep-alive connection", 1),
    ("rss_idle_conns_kib", "RSS holding the idle connections, KiB", 0),
)


def costs_lines(figures):
    """The cost figures as a table, testpage beside nginx, then the load clients."""
    t, nginx = figures.get("testpage", {}), figures.get("nginx", {})
    idle = t.get("idle_connections") or nginx.get("idle_connections")
    lines = [
        "",
        "## Costs per request and per connection",
        "",
        "Instructions (callgrind) and system calls (`strace -c -f`, every thread and child) of the",
        "whole server process, as the difference between a run with more requests of one kind and",
        "a base run, divided by the difference: start-up and shutdown cancel out, and the counts do",
        "not depend on the machine's load. Requests are curl's (`Host`, `User-Agent`, `Accept`);",
        "on a new connection the client closes after the answer, as curl does. Idle connections:",
        f"RSS before and while holding {idle or 'n/a'} keep-alive connections that each sent one",
        "request.",
        "",
        "| figure | testpage | nginx | testpage / nginx |",
        "|---|---|---|---|",
    ]
    for key, label, digits in COST_FIGURES:
        if key not in t and key not in nginx:
            continue
        a, b = t.get(key), nginx.get(key)
        lines.append(
            f"| {label} | {fmt(a, digits=digits)} | {fmt(b, digits=digits)} "
            f"| {f'{a / b:.2f}' if a is not None and b else 'n/a'} |"
        )
    clients = figures.get("clients") or {}
    if clients:
        wrk_i, probe_i = clients.get("wrk"), clients.get("probe load")
        lines += [
            "",
            "Load clients, instructions per request at full speed (8 connections, against",
            f"testpage): wrk {fmt(wrk_i)}, probe load {fmt(probe_i)}"
            + (f" ({probe_i / wrk_i:.2f}× wrk)." if wrk_i and probe_i else "."),
        ]
    return lines


def targets(rows, numbers):
    """The issue's targets, each met or missed by how much."""
    t, nginx = rows[0], next((r for r in rows if r["server"] == "nginx"), None)
    checks = []
    best = numbers.get("rounds") or {}
    if "testpage" in best and best.get("nginx", {}).get("rps_c8"):
        for key, label in (("rps_c8", "c=8"), ("rps_c64", "c=64")):
            a, b = best["testpage"][key], best["nginx"][key]
            checks.append(
                (
                    f"requests/s ≥ nginx on one core ({label}, best of alternating rounds)",
                    a >= b,
                    f"{a / b:.2f}× nginx",
                )
            )
    if nginx:
        checks.append(
            (
                "p99 ≤ nginx's at 500 qps",
                t["p99_ms"] <= nginx["p99_ms"],
                f"{t['p99_ms']:.3f} vs {nginx['p99_ms']:.3f} ms",
            )
        )
    checks.append(
        (
            "RSS idle ≤ 2 MiB",
            t["rss_idle_kib"] <= 2048,
            f"{t['rss_idle_kib'] / 1024:.2f} MiB",
        )
    )
    checks.append(
        (
            "exec → first 200 ≤ 5 ms",
            t["exec_to_200_ms"] <= 5,
            f"{t['exec_to_200_ms']:.1f} ms",
        )
    )
    if numbers.get("image"):
        checks.append(
            (
                "image ≤ 4 MB",
                numbers["image"] <= 4_000_000,
                f"{numbers['image'] / 1e6:.2f} MB",
            )
        )
    if numbers.get("ready_10m") is not None:
        checks.append(
            (
                "ready in under 1 s at cpu 10m",
                numbers["ready_10m"] < 1,
                f"{numbers['ready_10m']:.2f} s",
            )
        )
    if numbers.get("probe_wrk"):
        checks.append(
            (
                "probe load ≥ 0.9 × wrk",
                numbers["probe_wrk"] >= 0.9,
                f"{numbers['probe_wrk']:.2f}",
            )
        )
    if numbers.get("probe_hey"):
        checks.append(
            (
                "probe load ≥ hey",
                numbers["probe_hey"] >= 1,
                f"{numbers['probe_hey']:.2f}×",
            )
        )
    if numbers.get("probe_ms"):
        checks.append(
            (
                "probe http exec to exit < 5 ms",
                numbers["probe_ms"] < 5,
                f"{numbers['probe_ms']:.2f} ms",
            )
        )
    if numbers.get("knobs"):
        checks.append(
            (
                "knobs off within 5 % of before the knobs",
                numbers["knobs"] >= 0.95,
                f"{numbers['knobs']:.3f}",
            )
        )
    costs = numbers.get("costs") or {}
    t_costs, n_costs = costs.get("testpage", {}), costs.get("nginx", {})
    for key, most, label in (
        ("instr_keepalive", 1.3, "instructions per keep-alive request ≤ 1.3 × nginx"),
        (
            "instr_new_conn",
            1.8,
            "instructions per new-connection request ≤ 1.8 × nginx",
        ),
    ):
        if t_costs.get(key) and n_costs.get(key):
            share = t_costs[key] / n_costs[key]
            checks.append((label, share <= most, f"{share:.2f}× nginx"))
    if t_costs.get("kib_per_idle_conn") is not None:
        checks.append(
            (
                "≤ 8 KiB per idle connection",
                t_costs["kib_per_idle_conn"] <= 8,
                f"{t_costs['kib_per_idle_conn']:.1f} KiB",
            )
        )
    clients = costs.get("clients") or {}
    if clients.get("wrk") and clients.get("probe load"):
        share = clients["probe load"] / clients["wrk"]
        checks.append(
            (
                "probe load's instructions per request ≤ 2 × wrk's",
                share <= 2,
                f"{share:.2f}× wrk",
            )
        )
    lines = ["", "## Targets", "", "| target | | measured |", "|---|---|---|"]
    lines += [
        f"| {name} | {'met' if ok else '**missed**'} | {value} |"
        for name, ok, value in checks
    ]
    return lines


def markdown(rows, extra, machine, quick, numbers):
    base = rows[0]
    lines = [
        "# Benchmarks",
        "",
        f"Run {datetime.date.today().isoformat()} on {machine}. "
        + ("Quick run: a second per figure; do not read the numbers." if quick else ""),
        "Servers pinned to CPU 0, load generators to CPU 1; loopback; keep-alive (the Python server, like",
        "the tutorial's original, speaks HTTP/1.0: a connection per request). Ratios are to testpage.",
        "Exec → first 200 includes `taskset` and the harness's polling (0.5 ms).",
        "",
        "| server | req/s c=8 (wrk) | req/s c=64 (wrk) | p50 / p99 ms at 500 qps, c=8 | RSS idle | RSS at c=64 | exec → first 200 | binary |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {fmt(r['rps_c8'])}{ratio(r['rps_c8'], base['rps_c8'])} "
            f"| {fmt(r['rps_c64'])}{ratio(r['rps_c64'], base['rps_c64'])} "
            f"| {fmt(r['p50_ms'], digits=3)} / {fmt(r['p99_ms'], digits=3)} "
            f"| {fmt(r['rss_idle_kib'] / 1024, ' MiB', 1)}{ratio(r['rss_idle_kib'], base['rss_idle_kib'])} "
            f"| {fmt(r['rss_load_kib'] / 1024, ' MiB', 1)}{ratio(r['rss_load_kib'], base['rss_load_kib'])} "
            f"| {fmt(r['exec_to_200_ms'], ' ms', 1)}{ratio(r['exec_to_200_ms'], base['exec_to_200_ms'])} "
            f"| {fmt(r['size_bytes'] / 1e6 if r['size_bytes'] else None, ' MB', 2)} |"
        )
    lines += ["", "## More figures", ""]
    for key, value in extra.items():
        lines.append(f"- **{key}**: {value}")
    if numbers.get("costs"):
        lines += costs_lines(numbers["costs"])
    if quick:
        # A second per figure says that each figure can be measured, not what it is: judging
        # the targets on it would print verdicts (met, missed) that mean nothing.
        lines += [
            "",
            "## Targets",
            "",
            "Not judged in a quick run: `make bench` judges them.",
        ]
    else:
        lines += targets(rows, numbers)
    notes = BENCH / "NOTES.md"
    if notes.exists() and not quick:
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def svg_chart(rows):
    """Requests/s (c=64) and RSS at c=64 per server, side by side."""
    width, bar_h, gap, left = 760, 22, 10, 170
    charts = [
        ("requests/s, wrk c=64", "rps_c64", 1),
        ("RSS at c=64, MiB", "rss_load_kib", 1 / 1024),
    ]
    height = 40 + len(charts) * (len(rows) * (bar_h + gap) + 40)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    y = 20
    for title, key, scale in charts:
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{title}</text>')
        y += 12
        peak = max([(r[key] or 0) * scale for r in rows] + [1])
        for r in rows:
            value = (r[key] or 0) * scale
            w = (width - left - 90) * value / peak
            colour = "#2563eb" if r is rows[0] else "#9ca3af"
            parts.append(
                f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{r["server"]}</text>'
            )
            parts.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{left + w + 6:.1f}" y="{y + 15}">{value:,.1f}</text>'
            )
            y += bar_h + gap
        y += 28
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description="testpage benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args(argv)
    if not check_tools(TOOLS["quick" if args.quick else "full"], docker=not args.quick):
        return 0
    problem = testlib.binaries_problem("testpage", "probe")
    if problem:
        raise SystemExit(f"bench: {problem}")
    WORK.mkdir(parents=True, exist_ok=True)
    seconds = 1 if args.quick else 5
    out = args.out or (
        WORK / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md"
    )

    servers = [
        testpage_server("testpage", DIST / "testpage"),
        nginx_server(),
        go_server(),
        python_server(),
    ]
    rows = []
    for server in servers:
        problem = server.build() if server.build else None
        if problem:
            log(f"{server.name}: skipped: {problem}")
            continue
        if getattr(server, "binary", None) is not None and server.binary.exists():
            server.size_bytes = server.binary.stat().st_size
        log(f"measuring {server.name}")
        rows.append(measure(server, seconds, args.quick))

    extra, numbers = {}, {}
    size = image_size()
    numbers["image"] = size
    probe_size = (DIST / "probe").stat().st_size
    extra["image size"] = (
        f"{size / 1e6:.2f} MB uncompressed (testpage {rows[0]['size_bytes'] / 1e6:.2f} MB + "
        f"probe {probe_size / 1e6:.2f} MB); the tutorial's python:2.7-alpine image was about 70 MB"
        if size
        else "n/a (no image built)"
    )
    numbers["probe_ms"] = probe_startup(5 if args.quick else 50) * 1000
    extra["probe http, exec to exit"] = f"{numbers['probe_ms']:.2f} ms (median)"
    rounds = 1 if args.quick else 5
    numbers["rounds"] = rounds_best = rps_rounds(seconds, rounds)
    extra[f"requests/s, best of {rounds} alternating rounds (wrk)"] = "; ".join(
        f"{name} {fmt(best['rps_c8'])} at c=8, {fmt(best['rps_c64'])} at c=64"
        for name, best in rounds_best.items()
    )
    generators = load_generators(seconds)
    extra["load generators against testpage, c=8, max rate"] = ", ".join(
        f"{name} {fmt(value)} req/s" for name, value in generators.items()
    )
    if generators["wrk"]:
        numbers["probe_wrk"] = generators["probe load"] / generators["wrk"]
        extra["probe load / wrk"] = f"{numbers['probe_wrk']:.2f}"
    if generators.get("hey"):
        numbers["probe_hey"] = generators["probe load"] / generators["hey"]
        extra["probe load / hey"] = f"{numbers['probe_hey']:.2f}"
    numbers["costs"] = costs(args.quick)
    if not args.quick:
        log("testpage under --cpus 0.01 --memory 20m")
        limits = docker_limits(seconds)
        numbers["ready_10m"] = limits.get("ready_s")
        extra["testpage under docker --cpus 0.01 --memory 20m"] = (
            f"ready {limits['ready_s']:.2f} s after the container starts, {limits['rps_c8']:,.0f} req/s (wrk c=8)"
            if "ready_s" in limits
            else limits["note"]
        )
        extra["python http.server under the same limits"] = (
            "not measured: no Python base image can be pulled on this machine"
        )
        log("testpage against the commit before the knobs")
        knobs = knobs_ratio(seconds, 3)
        numbers["knobs"] = knobs["ratio"]
        extra[f"knobs off vs commit {BEFORE_KNOBS} (before the knobs)"] = (
            f"{knobs['now']:,.0f} vs {knobs['before']:,.0f} req/s (wrk c=8, median of 3 alternating runs): "
            f"ratio {knobs['ratio']:.3f}"
        )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                line.split(":", 1)[1].strip()
                for line in cpuinfo
                if line.startswith("model name")
            )
        machine = f"{model}, " + machine
    except (OSError, StopIteration):
        pass
    out.write_text(markdown(rows, extra, machine, args.quick, numbers))
    chart = out.with_name("results.svg" if not args.quick else "results-quick.svg")
    chart.write_text(svg_chart(rows))
    (out.with_suffix(".json")).write_text(
        json.dumps(
            {
                "rows": rows,
                "extra": extra,
                "costs": numbers["costs"],
                "rounds": numbers["rounds"],
            },
            indent=2,
        )
    )
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
