"""The images, in real containers on a private bridge network."""

import json
import pathlib
import re
import resource
import selectors
import socket
import subprocess
import threading
import time

import pytest
import testlib
from conftest import docker, get, image, ready, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUDGET_BYTES = 5_000_000  # testpage + probe, uncompressed


def variants():
    rows = []
    for line in (ROOT / "images" / "variants.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, tag, version, port, message, color, newline, ctype, _ = line.split(
                "\t"
            )
            ctype = "text/plain; charset=utf-8" if ctype == "-" else ctype
            rows.append(
                (
                    name,
                    tag,
                    version,
                    int(port),
                    message,
                    color,
                    newline == "true",
                    ctype,
                )
            )
    return rows


def expected_page(message, version, ip, color, newline=True):
    template = "I am: {ip}, the version is: {version}" if message == "-" else message
    color = "" if color == "-" else color
    return template.replace("{ip}", ip).replace("{version}", version).replace(
        "{color}", color
    ) + ("\n" if newline else "")


@pytest.mark.parametrize(
    ("name", "tag", "version", "port", "message", "color", "newline", "ctype"),
    variants(),
)
def test_variant_answers_its_page_on_its_port(
    containers, name, tag, version, port, message, color, newline, ctype
):
    c = containers.run(image(name, tag))
    ready(c, port)
    status, headers, body = get(c.url(port))
    assert status == 200
    assert body.decode() == expected_page(message, version, c.ip(), color, newline)
    assert headers["Content-Type"] == ctype
    assert headers["X-Version"] == version
    assert headers["X-Pod-IP"] == c.ip()


# The articles' own servers, byte for byte where a user can see it (the tutorials each k8s/ folder
# reproduces; their differences are listed in k8s/000-rolling-update/README.md and
# k8s/001-rolling-update-test/README.md): the Python testpage of tutorials 000 and 004 sends `I am: <ip>, the version is: <VERSION>\n` as text/html; the
# Go server of seed 001 sends `This is version 1.` with no newline, which Go's content sniffing
# serves as text/plain; charset=utf-8.
ARTICLES = {
    ("testpage", "0.5"): ("I am: {ip}, the version is: 0.5\n", "text/html"),
    ("testpage", "0.9"): ("I am: {ip}, the version is: 0.9\n", "text/html"),
    ("hello", "v1"): ("This is version 1.", "text/plain; charset=utf-8"),
    ("hello", "v2"): ("This is version 2.", "text/plain; charset=utf-8"),
}


@pytest.mark.parametrize(("name", "tag"), sorted(ARTICLES))
def test_variant_answers_the_articles_bytes(containers, name, tag):
    body, ctype = ARTICLES[(name, tag)]
    port = next(v[3] for v in variants() if v[:2] == (name, tag))
    c = containers.run(image(name, tag))
    ready(c, port)
    status, headers, got = get(c.url(port))
    assert status == 200
    assert got == body.replace("{ip}", c.ip()).encode()
    assert headers["Content-Type"] == ctype


def test_pod_ip_overrides_discovery(containers):
    c = containers.run(image("testpage", "0.9"), env={"POD_IP": "172.1.62.11"})
    ready(c, 8080)
    assert get(c.url(8080))[2] == b"I am: 172.1.62.11, the version is: 0.9\n"


def test_docker_stop_drains_and_exits_zero(containers):
    c = containers.run(image("testpage", "0.8"), env={"DRAIN": "1s"})
    ready(c, 8080)
    result = {}

    def slow_request():
        result["answer"] = get(c.url(8080, "/delay/1500ms"), timeout=10)

    request = threading.Thread(target=slow_request)
    request.start()
    # The slow request is in flight (the scrape itself counts as one) before the stop.
    wait_for(lambda: in_flight(c) >= 2, 10, "the slow request in flight")
    started = time.monotonic()
    docker("stop", "-t", "10", c.id, timeout=30)
    took = time.monotonic() - started
    request.join(10)
    print(f"docker stop took {took:.2f}s with DRAIN=1s")
    state = c.state()
    assert state["ExitCode"] == 0, c.logs()
    # About DRAIN, far from the 10 s SIGKILL an unhandled PID 1 gets.
    assert 0.9 <= took < 5, took
    assert result["answer"][0] == 200
    assert "exited code=0" in c.logs()


def in_flight(container):
    """http_requests_in_flight from testpage's /metrics."""
    text = get(container.url(8080, "/metrics"))[2].decode()
    return float(
        re.search(r"^http_requests_in_flight (\S+)$", text, re.MULTILINE).group(1)
    )


def test_tutorial_limits_cpu_10m_memory_20mi(containers):
    c = containers.run(
        image("testpage", "0.5"),
        opts=["--cpus", "0.01", "--memory", "20m", "--health-interval", "1s"],
    )
    took = ready(c, 8080, limit=60)
    print(f"time to ready under --cpus 0.01 --memory 20m: {took:.2f}s")
    assert get(c.url(8080))[0] == 200
    # The exec probe works under the limits too. Not through Docker's HEALTHCHECK here: each
    # `docker exec` starts runc inside the container's cgroup, and at 1 % of a CPU that start
    # alone takes 3-4 s, beyond the check's 2 s timeout whatever the probe does (the HEALTHCHECK
    # itself is tested without limits below).
    probe = subprocess.run(
        ["docker", "exec", c.id, "/probe", "http", "/readyz"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    state = c.state()
    assert state["Running"], state
    assert not state["OOMKilled"], state


IDLE_CONNECTIONS = 5000


def open_idle(
    addr, count, limit=30, request=b"GET / HTTP/1.1\r\nHost: testpage\r\n\r\n"
):
    """Opens `count` connections to `addr` at once, each sending `request` (one keep-alive
    `GET /`) as soon as it is established and then nothing: what a pool of idle clients (or a
    flood of them) looks like. Returns the sockets, and how many got as far as sending their
    request within `limit` seconds (the rest wait in the server's listen queue or its SYN
    backlog)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(addr)
        socks.append(sock)
        selector.register(sock, selectors.EVENT_WRITE)
    sent, deadline = 0, time.monotonic() + limit
    while sent < count and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            selector.unregister(key.fileobj)
            if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                key.fileobj.send(request)
                sent += 1
    selector.close()
    return socks, sent


def test_memory_20mi_survives_5000_idle_connections(containers):
    """The tutorials' `memory: 20Mi` against 5,000 idle keep-alive connections, with the
    default MAX_CONNECTIONS: at the limit, connections beyond it wait in the kernel's listen
    queue and idle ones are closed to make room, so the container is not OOM-killed and a
    normal request is still answered within a few seconds. (Without the limit, 5,000
    connections of about 13 KiB each do not fit in 20 MiB: see the README.)"""
    c = containers.run(image("testpage", "0.5"), opts=["--memory", "20m"])
    ready(c, 8080)
    socks, sent = open_idle((c.ip(), 8080), IDLE_CONNECTIONS)
    try:
        print(f"{sent} of {IDLE_CONNECTIONS} idle connections sent their request")
        assert sent > 0
        for _ in range(5):
            started = time.monotonic()
            status = get(c.url(8080), timeout=10)[0]
            took = time.monotonic() - started
            assert status == 200, (status, took)
            assert took < 5, (status, took)
        metrics = get(c.url(8080, "/metrics"), timeout=10)[2].decode()
        reached = re.search(
            r"^testpage_connection_limit_reached_total (\S+)$", metrics, re.MULTILINE
        )
        # The limit, not spare memory, is what kept the container alive.
        assert reached, metrics[-2000:]
        assert float(reached.group(1)) >= 1, metrics[-2000:]
        state = c.state()
        assert state["Running"], state
        assert not state["OOMKilled"], state
    finally:
        for sock in socks:
            sock.close()


def head(size, end=True):
    """A `GET /` head of exactly `size` bytes, one long header filling it; without its final
    empty line when not `end` (a head still arriving)."""
    start = b"GET / HTTP/1.1\r\nHost: testpage\r\nX-Big: "
    return start + b"a" * (size - len(start) - 4) + (b"\r\n\r\n" if end else b"\r\n")


def largest_head_accepted(addr):
    """The largest of 64, 32, 16 and 8 KiB that a request head may be, asked of the server."""
    for size in (64 * 1024, 32 * 1024, 16 * 1024, 8 * 1024):
        with socket.create_connection(addr, timeout=10) as sock:
            try:
                sock.sendall(head(size))
                answer = sock.recv(64)
            except OSError:  # refused before all of it was read: reset
                continue
            if answer.startswith(b"HTTP/1.1 200"):
                return size
    raise AssertionError("not even an 8 KiB head was accepted")


def test_memory_20mi_survives_every_connection_holding_the_largest_head(containers):
    """A connection keeps the buffer its largest request head needed: with every connection
    holding a head just under the limit (the most one client can make the pod hold), the
    tutorials' `memory: 20Mi` must still be enough. With a 64 KiB limit, 500 such connections
    took 38 MiB."""
    c = containers.run(image("testpage", "0.5"), opts=["--memory", "20m"])
    ready(c, 8080)
    addr = (c.ip(), 8080)
    size = largest_head_accepted(addr)
    socks, sent = open_idle(addr, 600, request=head(size - 64, end=False))
    try:
        print(
            f"heads up to {size} bytes; {sent} of 600 connections sent {size - 64} bytes"
        )
        assert sent >= 500
        time.sleep(1)
        for _ in range(5):
            started = time.monotonic()
            status = get(c.url(8080), timeout=10)[0]
            took = time.monotonic() - started
            assert status == 200, (status, took)
            assert took < 5, (status, took)
        state = c.state()
        assert state["Running"], state
        assert not state["OOMKilled"], state
    finally:
        for sock in socks:
            sock.close()


def test_read_only_root_with_tmpfs_runs_as_65532(containers):
    c = containers.run(
        image("testpage", "0.9"),
        opts=["--read-only", "--tmpfs", "/tmp:uid=65532,gid=65532"],
    )
    ready(c, 8080)
    pid = c.state()["Pid"]
    uid_line = next(
        line
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    assert uid_line.split()[1:] == ["65532"] * 4, uid_line


def test_read_only_root_without_tmpfs_fails_clearly(containers):
    c = containers.run(image("testpage", "0.9"), opts=["--read-only"])
    wait_for(lambda: not c.state()["Running"], 20, "exit")
    assert c.state()["ExitCode"] == 1
    assert "READY_FILE" in c.logs()


def test_healthcheck_follows_the_ready_file(containers):
    c = containers.run(
        image("zero-downtime", "blue"),
        opts=[
            "--health-interval",
            "500ms",
            "--health-retries",
            "1",
            "--health-start-period",
            "0s",
        ],
    )
    wait_for(lambda: c.state()["Health"]["Status"] == "healthy", 30, "healthy")
    docker("exec", c.id, "/probe", "drain", "--sleep", "0")
    wait_for(lambda: c.state()["Health"]["Status"] == "unhealthy", 30, "unhealthy")
    assert get(c.url(8080, "/readyz"))[0] == 503
    assert get(c.url(8080))[0] == 200


def test_probe_drain_is_a_prestop_without_a_shell(containers):
    c = containers.run(image("zero-downtime", "green"), env={"DRAIN": "1s"})
    ready(c, 8080)
    started = time.monotonic()
    docker("exec", c.id, "/probe", "drain", "--sleep", "1s")
    assert time.monotonic() - started >= 1.0
    assert (
        subprocess.run(
            ["docker", "exec", c.id, "/probe", "file", "/tmp/ready"], check=False
        ).returncode
        == 1
    )
    # testpage counts its drain from the file's removal: after a preStop that waited as long
    # as DRAIN, the stop is quick.
    started = time.monotonic()
    docker("stop", "-t", "10", c.id, timeout=30)
    assert time.monotonic() - started < 3
    assert c.state()["ExitCode"] == 0


def test_myapp_serves_port_80_as_non_root(containers):
    c = containers.run(image("myapp", "v2"))
    ready(c, 80)
    assert get(c.url(80))[2].decode().endswith("the version is: v2\n")


@pytest.mark.usefixtures("engine")
def test_image_metadata_and_size():
    ref = image("testpage", "0.9")
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", ref))
    size = int(docker("image", "inspect", "-f", "{{.Size}}", ref))
    print(
        f"image {ref}: {size} bytes (budget {BUDGET_BYTES}); python:2.7-alpine was about 70 MB"
    )
    assert size <= BUDGET_BYTES
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/testpage"]
    assert config["Healthcheck"]["Test"] == ["CMD", "/probe", "http", "/readyz"]
    assert "8080/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    for key in ("title", "version", "revision", "source"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["org.opencontainers.image.version"] == "0.9"
    assert "VERSION=0.9" in config["Env"]


def test_arm64_binaries_answer_the_page_under_qemu(tmp_path):
    qemu = "qemu-aarch64-static"
    dist = ROOT / "target" / "dist" / "aarch64"
    testlib.skip_or_fail(
        testlib.tool_problem(qemu),
        testlib.binaries_problem("testpage", "probe", arch="aarch64"),
    )
    binary = dist / "testpage"
    e_machine = int.from_bytes(binary.read_bytes()[18:20], "little")
    assert e_machine == 183, f"not an aarch64 ELF: e_machine {e_machine}"
    ready_file = tmp_path / "ready"
    with testlib.Process(
        [qemu, binary, "--listen", "127.0.0.1:0", "--app-version", "arm"],
        env={"READY_FILE": str(ready_file), "POD_IP": "10.0.0.64"},
    ) as proc:
        addr = testlib.ready_addr(ready_file, proc, timeout=30)
        assert get(f"http://{addr}/")[2] == b"I am: 10.0.0.64, the version is: arm\n"
        check = subprocess.run(
            [qemu, dist / "probe", "http", f"http://{addr}/readyz"], check=False
        )
        assert check.returncode == 0
        assert proc.stop(grace=10) == 0
