"""The tutorials' `memory: 20Mi` against the most hostile WebSockets the defaults admit: every
slow slot (448 of the default 512 connections) held by a socket that (a) sends most of a 64 KiB
frame and stops, or (b) sends four 64 KiB messages and never reads. Before the shared message
budget, about 200 sockets of either kind got the container OOM-killed."""

import contextlib
import pathlib
import resource
import socket
import time

import pytest
import testlib
from conftest import get, image, ready

# The default MAX_CONNECTIONS (512) less the eighth kept for quick requests.
SOCKETS = 448


def binary(payload):
    mask = b"\x01\x02\x03\x04"
    head = bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big") + mask
    return head + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


FRAME = binary(b"m" * 65536)


def memory_peak(cid):
    """The container's peak memory in bytes (cgroup v2 or v1), or None where it cannot be
    read."""
    for path in (
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak",
        f"/sys/fs/cgroup/docker/{cid}/memory.peak",
        f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes",
    ):
        try:
            return int(pathlib.Path(path).read_text())
        except OSError:
            continue
    return None


def allow_files(sockets):
    """Lifts this process's open-file limit to hold `sockets` and some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < sockets + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, sockets + 256), hard))


def assert_alive(c):
    """The container answers /healthz within 5 s, three times, and was never OOM-killed."""
    for _ in range(3):
        started = time.monotonic()
        status = get(c.url(8080, "/healthz"), timeout=10)[0]
        assert status == 200
        assert time.monotonic() - started < 5
    state = c.state()
    assert state["Running"], state
    assert not state["OOMKilled"], state


@pytest.mark.parametrize("pattern", ["partial-frames", "never-reads"])
def test_memory_20mi_survives_every_slow_slot_held_by_a_hostile_websocket(
    containers, pattern
):
    allow_files(SOCKETS)
    c = containers.run(
        image("testpage", "0.5"), opts=["--memory", "20m", "--cpus", "0.1"]
    )
    ready(c, 8080)
    addr = (c.ip(), 8080)
    socks, upgraded = [], 0
    try:
        for _ in range(SOCKETS):
            sock, ok = testlib.websocket_upgrade(addr)
            socks.append(sock)
            upgraded += ok
            sock.setblocking(False)
            data = FRAME[:60_000] if pattern == "partial-frames" else FRAME * 4
            with contextlib.suppress(BlockingIOError):
                sock.send(data)
        time.sleep(4)
        peak = memory_peak(c.id)
        print(
            f"{pattern}: {upgraded} of {SOCKETS} sockets upgraded; "
            f"container memory peak {peak and peak // 1024} KiB"
        )
        assert upgraded == SOCKETS
        assert_alive(c)
    finally:
        for sock in socks:
            sock.close()


def test_memory_20mi_survives_the_worst_mix_of_sockets_and_heads(containers):
    """Everything one client can make the pod hold at once: every slow slot a socket whose
    upgrade request arrived with most of a 64 KiB frame in the same packet (the bytes past the
    head wait in the connection's read buffer, up to 16 KiB), and the remaining connections
    holding request heads just under 16 KiB."""
    heads = 60
    allow_files(SOCKETS + heads)
    c = containers.run(
        image("testpage", "0.5"), opts=["--memory", "20m", "--cpus", "0.1"]
    )
    ready(c, 8080)
    addr = (c.ip(), 8080)
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * 16_000
    socks = []
    try:
        for _ in range(SOCKETS):
            sock = socket.create_connection(addr, timeout=10)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(upgrade + FRAME[:60_000])
            socks.append(sock)
        for _ in range(heads):
            sock = socket.create_connection(addr, timeout=10)
            sock.sendall(head)
            socks.append(sock)
        time.sleep(4)
        peak = memory_peak(c.id)
        print(
            f"mixed: {SOCKETS} sockets and {heads} heads; "
            f"container memory peak {peak and peak // 1024} KiB"
        )
        assert_alive(c)
    finally:
        for sock in socks:
            sock.close()
