"""`/ws` with a real WebSocket client (the `websockets` package): events every second, echo,
and close 1001 "going away" during the drain, counted as ended cleanly."""

import asyncio
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

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
        assert close is not None and close.code == 1001, close
        assert 0.9 <= after <= 2.8, after
        assert proc.wait(10) == 0
    text = (tmp / "log").read_text()
    assert "streams_ended_cleanly=1 streams_cut=0" in text, text
