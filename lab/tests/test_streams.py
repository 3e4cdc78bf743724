"""lab/streams.py, the lab's long-lived clients: how they read a stream of events, and what
they record against a real testpage that drains and exits (clean closes, then failed attempts
to reconnect to a server that is gone)."""

import asyncio
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import kube, streams
from lab import run as lab


def read(body, chunked):
    """Every (event, data, retry) that sse_events finds in `body`."""

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(body)
        reader.feed_eof()
        return [e async for e in streams.sse_events(reader, chunked)]

    return asyncio.run(go())


def chunks(*parts):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_events_across_chunks_and_the_retry_field():
    body = chunks(
        b"retry: 1000\n\n",
        b'id: 1\nevent: message\ndata: {"seq":1}\n',
        b'\nid: 2\nevent: bye\ndata: {"seq":2}\n\n',
    )
    assert read(body, chunked=True) == [
        (None, None, 1000),
        ("message", '{"seq":1}', None),
        ("bye", '{"seq":2}', None),
    ]


def test_a_chunked_body_cut_short_raises():
    body = b"d\r\nretry: 1000\n\n\r\n1f\r\nid: 1\nevent: message\n"
    with pytest.raises(asyncio.IncompleteReadError):
        read(body, chunked=True)


def test_a_body_without_chunks_ends_with_the_connection():
    assert read(b'data: {"seq":1}\r\n\r\n', chunked=False) == [
        ("message", '{"seq":1}', None)
    ]


def test_the_summary_counts_per_kind():
    a, b = streams.Client("ws", 0), streams.Client("ws", 1)
    for client in (a, b):
        client.connected()
        client.message("0.8", "p1", 1)
    a.ended("clean", "1001 going away")
    b.ended("failed", "refused")
    s = streams.summary([a, b])["ws"]
    assert (s["clients"], s["clean"], s["failed"], s["abnormal"]) == (2, 1, 1, 1)
    assert s["clients_abnormal"] == 1
    assert s["versions_at_end"] == {"0.8": 2}


def test_client_counts_are_shared_by_the_step_and_the_sweep():
    names, counts = streams.client_counts(["a", "ws=20", "b", "grpc=3"])
    assert names == ["a", "b"]
    assert counts == {"ws": 20, "sse": 0, "grpc": 3}
    top = streams.MAX_CLIENTS
    assert streams.client_counts([f"sse={top}"])[1]["sse"] == top
    for word in (
        f"ws={top + 1}",
        "ws=-1",
        "ws=",
        "tcp=3",
        "ws=2.5",
        "ws=\u00b2",
        "ws=" + "9" * 5000,
    ):
        with pytest.raises(ValueError, match="ws=N"):
            streams.client_counts([word])


def test_the_step_refuses_what_it_does_not_know():
    run = object.__new__(lab.Run)
    for words in (["streams", "svc", "ws=many"], ["streams", "svc"], ["streams"]):
        with pytest.raises(kube.ManifestError, match="lab streams"):
            run.lab(words)
    for words in (
        ["sleep", "-1"],
        ["sleep", "nan"],
        ["sleep", "1e9"],
        ["sleep"],
        ["sleep", "1", "2"],
    ):
        with pytest.raises(kube.ManifestError, match="lab sleep"):
            run.lab(words)


def run_clients(env, end):
    """lab/streams.py with 3 clients of each kind on a testpage started with `env`; `end(server)`
    ends the server once every stream has had a message; returns the clients' report and the
    server's log."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="testpage-streams-"))
    ready = tmp / "ready"
    with (
        (tmp / "log").open("w") as log,
        testlib.Process(
            [testlib.DIST / "testpage", "--listen", "127.0.0.1:0"],
            env={"VERSION": "0.9", "READY_FILE": str(ready), **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        ) as server,
    ):
        addr = testlib.ready_addr(ready, server)
        with testlib.Process(
            [sys.executable, ROOT / "lab" / "streams.py", f"http://{addr}/"]
            + ["--ws", "3", "--sse", "3", "--grpc", "3", "--final-wait", "0"],
            stdout=subprocess.PIPE,
            text=True,
        ) as clients:
            # Every stream of events has sent its first event a second after it opened.
            time.sleep(1.5)
            end(server)
            time.sleep(1.5)  # at least one failed attempt each
            clients.send_signal(signal.SIGTERM)
            report = json.loads(clients.communicate(timeout=20)[0])
    return report, (tmp / "log").read_text()


def test_clean_closes_in_the_drain_then_failed_attempts_once_the_server_is_gone():
    def drain(server):
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0

    report, log = run_clients({"DRAIN": "2s"}, drain)
    summary = report["summary"]
    assert set(summary) == {"ws", "sse", "grpc"}
    for kind, s in summary.items():
        assert s["clean"] == s["clients"], (kind, s)
        assert s["cut"] == 0, (kind, s)
        assert s["failed"] >= s["clients"], (kind, s)
        assert s["versions_at_end"] == {"0.9": s["clients"]}, (kind, s)
    for c in report["clients"]:
        first = c["closes"][0]
        assert first["outcome"] == "clean", c
        assert first["pod"], c
        assert {e["outcome"] for e in c["closes"][1:]} == {"failed"}, c
        if c["kind"] == "ws":
            assert first["detail"].startswith("1001"), first
        if c["kind"] == "grpc":
            assert "UNAVAILABLE" in first["detail"], first
            assert [m[3] for m in c["recorded"]] == ["SERVING", "NOT_SERVING"], c
            assert c["max_gap_s"] is None
    assert "streams_cut=0" in log


def test_a_killed_server_cuts_every_stream():
    def kill(server):
        server.send_signal(signal.SIGKILL)
        server.wait(10)

    report, _ = run_clients({}, kill)
    for kind, s in report["summary"].items():
        assert s["cut"] == s["clients"], (kind, s)
        assert s["clean"] == 0, (kind, s)
    details = {c["kind"]: c["closes"][0]["detail"] for c in report["clients"]}
    assert details["ws"].startswith("1006"), details
    assert "without bye" in details["sse"], details
    assert "after SERVING" in details["grpc"], details
