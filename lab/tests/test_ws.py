"""`/ws` with a real WebSocket client (the `websockets` package): events every second, echo,
and close 1001 "going away" during the drain, counted as ended cleanly."""

import asyncio
import base64
import itertools
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib


def test_events_echo_and_a_clean_close_in_the_drain():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    import websockets

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="testpage-ws-"))
    ready = tmp / "ready"
    log = (tmp / "log").open("w")
    with testlib.Process(
        [testlib.DIST / "testpage", "--listen", "127.0.0.1:0"],
        env={"VERSION": "0.9", "READY_FILE": str(ready), "DRAIN": "2s"},
        stdout=subprocess.DEVNULL,
        stderr=log,
    ) as proc:
        addr = testlib.ready_addr(ready, proc)

        async def client():
            async with websockets.connect(f"ws://{addr}/ws") as ws:
                await ws.send("hello")
                seen = [await ws.recv() for _ in range(3)]
                proc.popen.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                try:
                    while True:
                        await ws.recv()
                except websockets.ConnectionClosed as closed:
                    return seen, closed.rcvd, time.monotonic() - signalled

        seen, close, after = asyncio.run(client())
        assert "hello" in seen, seen
        assert any('"version":"0.9"' in m for m in seen), seen
        assert close is not None, close
        assert close.code == 1001, close
        assert 0.9 <= after <= 2.8, after
        assert proc.wait(10) == 0
    text = (tmp / "log").read_text()
    assert "streams_ended_cleanly=1 streams_cut=0" in text, text


def start(env):
    """A testpage on loopback with `env`; returns (Process, ready file, log path)."""
    return testlib.testpage_process(env, prefix="testpage-ws-")


def test_every_socket_gets_an_event_a_second_and_1001_within_the_drain():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    import websockets

    clients = 5
    proc, ready, log = start({"DRAIN": "2s"})
    with proc:
        addr = testlib.ready_addr(ready, proc)

        async def client(opened):
            async with websockets.connect(f"ws://{addr}/ws") as ws:
                arrivals = []
                opened.release()
                try:
                    while True:
                        await ws.recv()
                        arrivals.append(time.monotonic())
                except websockets.ConnectionClosed as closed:
                    return arrivals, closed.rcvd, time.monotonic()

        async def run():
            opened = asyncio.Semaphore(0)
            tasks = [asyncio.create_task(client(opened)) for _ in range(clients)]
            for _ in range(clients):
                await opened.acquire()
            await asyncio.sleep(3.2)
            proc.popen.send_signal(signal.SIGTERM)
            return time.monotonic(), await asyncio.gather(*tasks)

        signalled, results = asyncio.run(run())
        for arrivals, close, closed_at in results:
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert len(arrivals) >= 3, gaps
            assert all(0.5 <= g <= 1.5 for g in gaps), gaps
            assert close is not None, close
            assert close.code == 1001, close
            # The drain's second half (1 s to 2 s after SIGTERM), with room for a busy machine.
            assert 0.9 <= closed_at - signalled <= 2.8, closed_at - signalled
        assert proc.wait(10) == 0
    text = log.read_text()
    assert f"streams_ended_cleanly={clients} streams_cut=0" in text, text


def test_a_client_that_ignores_the_close_is_cut_without_holding_the_shutdown():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, log = start({"DRAIN": "1s", "SHUTDOWN_TIMEOUT": "2s"})
    with proc:
        host, port = testlib.ready_addr(ready, proc).rsplit(":", 1)
        # A handshake by hand, then silence: the close frame is never answered.
        sock, upgraded = testlib.websocket_upgrade((host, int(port)))
        assert upgraded, "no upgrade"
        signalled = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - signalled
        sock.close()
    # Cut a second after its close went unanswered (CLOSE_TIMEOUT), within the drain's end
    # and not at SHUTDOWN_TIMEOUT: exit 0, counted as cut.
    assert code == 0, code
    assert 0.9 <= took <= 2.5, took
    text = log.read_text()
    assert "streams_ended_cleanly=0 streams_cut=1" in text, text


def test_a_frame_over_64_kib_ends_the_socket_without_buffering_it():
    """A frame announcing 50 MB: the socket ends once the header is read, and the server's
    memory does not grow with what follows (fastwebsockets alone would buffer up to 64 MiB)."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = start({})
    with proc:
        host, port = testlib.ready_addr(ready, proc).rsplit(":", 1)
        key = base64.b64encode(os.urandom(16)).decode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (
                    f"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
            # FIN + binary, masked, 64-bit length of 50,000,000, a mask, then up to 24 MB of it.
            header = bytes([0x82, 0x80 | 127]) + (50_000_000).to_bytes(8, "big")
            sock.sendall(header + b"\x00\x00\x00\x00")
            sent, ended = 0, False
            try:
                for _ in range(384):
                    sock.sendall(b"\x00" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                ended = True
            rss_kib = int(
                next(
                    line.split()[1]
                    for line in pathlib.Path(f"/proc/{proc.popen.pid}/status")
                    .read_text()
                    .splitlines()
                    if line.startswith("VmRSS")
                )
            )
            if not ended:
                # Ended: a close frame or the end of the stream, not silence.
                sock.settimeout(5)
                try:
                    sock.recv(65536)
                    ended = True
                except ConnectionResetError:
                    ended = True
                except TimeoutError:
                    ended = False
        assert ended, f"the socket still took data after {sent} bytes"
        assert rss_kib < 16 * 1024, (rss_kib, sent)
        assert testlib.http_get(f"http://{host}:{port}/healthz")[0] == 200
