#!/usr/bin/env python3
"""Long-lived clients through a Service, and what each of them saw during a rollout.

    python lab/streams.py URL [--ws N] [--sse N] [--grpc N] [--final-wait S]

Opens N WebSockets (`GET /ws`), N streams of server-sent events (`GET /events`) and N gRPC
health `Watch` streams (h2c on the same port) to URL, each on its own connection, so that the
Service picks a pod for each. Every client reconnects when its stream ends: a WebSocket or a
`Watch` after RECONNECT_S, a stream of events after the `retry:` its server sent. It runs until
SIGTERM or SIGINT, then gives every client up to FINAL_WAIT_S (--final-wait) to have a message
on its current connection (a stream of events sends its first one a second after it opens),
closes them all and prints its report as JSON on stdout.

How a stream ends:

- clean: a WebSocket close 1000 or 1001 from the server; a stream of events that ended after
  its `bye` event; a `Watch` that reported NOT_SERVING and then ended with a status;
- cut: a WebSocket that ended without a close frame (1006) or with another code, a stream of
  events that ended without `bye` (EOF, reset), a `Watch` that ended while SERVING or through a
  transport error, a stream silent for SILENT_S;
- failed: a connection attempt that did not give a stream (refused, reset, EOF before the
  answer, an HTTP status other than 101 or 200).

Cut and failed are both abnormal. The gap of a client is the longest time between two of its
messages (a `bye` counts), or between its last message and the stop; `Watch` streams only send
changes, so they have no gap. Its time offline is the longest time from the end of one of its
streams to the start of the next (failed attempts in between), or to the stop.
"""

import argparse
import asyncio
import json
import signal
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import grpc

RECONNECT_S = 1.0
CONNECT_TIMEOUT_S = 5.0
SILENT_S = 10.0
FINAL_WAIT_S = 5.0
MAX_CLIENTS = 500  # per kind
MAX_RECORDED = 1000  # messages kept per client (all are counted)
MAX_HEAD = 16 * 1024  # an HTTP answer's head, a line of a stream of events
MAX_MESSAGE = 64 * 1024  # a WebSocket message
KINDS = ("ws", "sse", "grpc")

T = TypeVar("T")
# What sse_events yields: (event, data, None) per event, (None, None, retry ms) per `retry:`.
SseItem = tuple[str, str, None] | tuple[None, None, int]


def client_counts(words: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """The words of `lab streams` (lab.yaml's steps) and of a sweep's `load: streams`: the
    clients asked per kind (every kind, 0 where not given) and the other words, in order.
    ValueError names a word of the form KIND=N that is not ws, sse or grpc with N from 0 to
    MAX_CLIENTS."""
    counts = dict.fromkeys(KINDS, 0)
    others = []
    for word in words:
        kind, eq, n = word.partition("=")
        if not eq:
            others.append(word)
        elif (
            kind in counts
            and n.isascii()
            and n.isdigit()
            and len(n) <= 4
            and int(n) <= MAX_CLIENTS
        ):
            counts[kind] = int(n)
        else:
            shown = word if len(word) <= 24 else f"{word[:24]}..."
            raise ValueError(f"{shown}: ws=N, sse=N or grpc=N, N at most {MAX_CLIENTS}")
    return others, counts


def now_ms() -> float:
    """The wall clock in unix milliseconds, as lab.common's: this file also runs on its own,
    as a script against a real cluster, with nothing of the lab installed."""
    return time.time() * 1000


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`, or TimeoutError after `seconds`. With asyncio.timeout rather than
    wait_for, which in Python 3.11 can lose a cancellation that comes as the awaitable ends
    (the client would then never stop)."""
    async with asyncio.timeout(seconds):
        return await awaitable


class Client:
    """One long-lived client: its messages, connections and how each stream ended."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.n = kind, n
        self.messages: list[list[Any]] = []  # [unix ms, version, pod, seq]
        self.count = 0
        self.connections = 0
        # {unix_ms, outcome: clean|cut|failed, detail, pod}
        self.closes: list[dict[str, Any]] = []
        self.outcomes = {"clean": 0, "cut": 0, "failed": 0}
        self.last_ms: float | None = None
        self.max_gap_ms = 0.0
        self.versions: dict[str, int] = {}
        self.fresh = False  # a message arrived on the current connection
        self.pod: str | None = None  # of the current connection
        self.since_ms = now_ms()  # the current connection or attempt began
        # When its last stream ended, while it has none.
        self.offline_ms: float | None = None
        self.max_offline_ms = 0.0

    def attempt(self) -> None:
        self.since_ms = now_ms()

    def connected(self) -> None:
        if self.offline_ms is not None:
            self.max_offline_ms = max(self.max_offline_ms, now_ms() - self.offline_ms)
            self.offline_ms = None
        self.connections += 1
        self.fresh = False
        self.pod = None

    def message(self, version: str, pod: str, seq: int | str) -> None:
        t = now_ms()
        if self.last_ms is not None and self.kind != "grpc":
            self.max_gap_ms = max(self.max_gap_ms, t - self.last_ms)
        self.last_ms = t
        self.count += 1
        self.fresh = True
        self.pod = pod
        self.versions[version] = self.versions.get(version, 0) + 1
        if len(self.messages) < MAX_RECORDED:
            self.messages.append([round(t), version, pod, seq])

    def ended(self, outcome: str, detail: object) -> None:
        """A stream that ended, or an attempt that gave none (`failed`, no pod)."""
        self.outcomes[outcome] += 1
        if outcome != "failed":
            self.offline_ms = now_ms()
        if len(self.closes) < MAX_RECORDED:
            t = now_ms()
            self.closes.append(
                {
                    "unix_ms": round(t),
                    "outcome": outcome,
                    "detail": str(detail)[:200],
                    "pod": self.pod if outcome != "failed" else None,
                    # How long the stream, or the attempt that failed, lasted.
                    "lasted_ms": round(t - self.since_ms),
                }
            )
        self.fresh = False
        self.pod = None

    def stop(self, at_ms: float) -> None:
        if self.last_ms is not None and self.kind != "grpc":
            self.max_gap_ms = max(self.max_gap_ms, at_ms - self.last_ms)
        if self.offline_ms is not None:
            self.max_offline_ms = max(self.max_offline_ms, at_ms - self.offline_ms)

    def report(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "client": self.n,
            "messages": self.count,
            "connections": self.connections,
            "reconnections": max(self.connections - 1, 0),
            "outcomes": self.outcomes,
            "closes": self.closes,
            "max_gap_s": None
            if self.kind == "grpc"
            else round(self.max_gap_ms / 1000, 3),
            "max_offline_s": round(self.max_offline_ms / 1000, 3),
            "versions": self.versions,
            "version_at_end": self.messages[-1][1] if self.messages else None,
            "recorded": self.messages,
        }


def summary(clients: Iterable[Client]) -> dict[str, dict[str, Any]]:
    """Per kind: clients, messages, clean, cut, failed, abnormal (cut + failed), the clients
    that saw any abnormal one, reconnections, the longest gap and time offline, the versions
    seen (clients per version) and the clients per version at the end."""
    out = {}
    for kind in KINDS:
        mine = [c.report() for c in clients if c.kind == kind]
        if not mine:
            continue
        count = {
            o: sum(c["outcomes"][o] for c in mine) for o in ("clean", "cut", "failed")
        }
        at_end: dict[str, int] = {}
        seen: dict[str, int] = {}
        for c in mine:
            at_end[str(c["version_at_end"])] = (
                at_end.get(str(c["version_at_end"]), 0) + 1
            )
            for v in c["versions"]:
                seen[v] = seen.get(v, 0) + 1
        gaps = [c["max_gap_s"] for c in mine if c["max_gap_s"] is not None]
        out[kind] = {
            "clients": len(mine),
            "messages": sum(c["messages"] for c in mine),
            "clean": count["clean"],
            "cut": count["cut"],
            "failed": count["failed"],
            "abnormal": count["cut"] + count["failed"],
            "clients_abnormal": sum(
                c["outcomes"]["cut"] + c["outcomes"]["failed"] > 0 for c in mine
            ),
            "reconnections": sum(c["reconnections"] for c in mine),
            "max_gap_s": max(gaps) if gaps else None,
            "max_offline_s": max(c["max_offline_s"] for c in mine),
            "versions_seen": seen,
            "versions_at_end": at_end,
        }
    return out


# ------------------------------------------------------------------ WebSockets


async def websocket(client: Client, url: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    while True:
        client.attempt()
        try:
            ws = await connect(
                url,
                open_timeout=CONNECT_TIMEOUT_S,
                ping_interval=None,
                close_timeout=CONNECT_TIMEOUT_S,
                max_size=MAX_MESSAGE,
                max_queue=4,
                compression=None,
                proxy=None,
            )
        except (OSError, TimeoutError, WebSocketException) as error:
            client.ended("failed", f"{type(error).__name__}: {error}")
            await asyncio.sleep(RECONNECT_S)
            continue
        client.connected()
        try:
            while True:
                text = await within(ws.recv(), SILENT_S)
                try:
                    data = json.loads(text)
                    client.message(data["version"], data["pod"], data["seq"])
                except (ValueError, KeyError, TypeError):
                    pass  # an echo, or something that is not an event
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
            if rcvd is None:
                client.ended("cut", "1006: no close frame")
            elif rcvd.code in (1000, 1001):
                client.ended("clean", f"{rcvd.code} {rcvd.reason}".strip())
            else:
                client.ended("cut", f"{rcvd.code} {rcvd.reason}".strip())
        except TimeoutError:
            client.ended("cut", f"silent for {SILENT_S:g}s")
        finally:
            # Our side of the close; it waits CONNECT_TIMEOUT_S at most.
            await ws.close()
        await asyncio.sleep(RECONNECT_S)


# ------------------------------------------------------------------ server-sent events


class Cut(Exception):
    """A stream of events that cannot be read within the limits."""


async def events(client: Client, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    request = (
        f"GET /events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    retry: dict[str, float] = {"s": RECONNECT_S}  # what the last `retry:` field said
    while True:
        await one_stream(client, parts.hostname, parts.port or 80, request, retry)
        await asyncio.sleep(retry["s"])


async def one_stream(
    client: Client,
    host: str | None,
    port: int,
    request: bytes,
    retry: dict[str, float],
) -> None:
    """One connection: a failed attempt, or a stream of events to its end."""
    client.attempt()
    try:
        reader, writer = await within(
            asyncio.open_connection(host, port, limit=MAX_HEAD), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as error:
        client.ended("failed", describe(error, "before the answer"))
        return
    try:
        await read_stream(client, reader, writer, request, retry)
    finally:
        writer.close()


async def read_stream(
    client: Client,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    retry: dict[str, float],
) -> None:
    try:
        writer.write(request)
        await writer.drain()
        head = await within(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
        client.ended("failed", describe(error, "before the answer"))
        return
    except asyncio.LimitOverrunError:
        client.ended("failed", "an answer's head over the limit")
        return
    status, headers = parse_head(head)
    if status != 200:
        client.ended("failed", f"HTTP {status}")
        return
    client.connected()
    chunked = "chunked" in headers.get("transfer-encoding", "")
    said_bye = False
    try:
        async for event in sse_events(reader, chunked):
            if event[2] is not None:
                retry["s"] = event[2] / 1000
                continue
            kind, data, _ = event
            try:
                payload = json.loads(data)
                client.message(payload["version"], payload["pod"], payload["seq"])
            except (ValueError, KeyError, TypeError):
                continue
            if kind == "bye":
                said_bye = True
                # To the body's proper end: a goodbye cut short is still a cut.
                async for _ in body_lines(reader, chunked):
                    pass
                client.ended("clean", "bye, then the end of the stream")
                return
        client.ended("cut", "the end of the stream without bye")
    except (OSError, asyncio.IncompleteReadError) as error:
        when = "after bye, before the end" if said_bye else "without bye"
        client.ended("cut", describe(error, when))
    except TimeoutError:
        client.ended("cut", f"silent for {SILENT_S:g}s")
    except (Cut, asyncio.LimitOverrunError, ValueError) as error:
        client.ended("cut", f"unreadable: {error}")


def describe(error: BaseException, when: str) -> str:
    if isinstance(error, asyncio.IncompleteReadError):
        return f"EOF {when}"
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    return f"{type(error).__name__} {when}: {error}"


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    return status, headers


async def body_lines(
    reader: asyncio.StreamReader, chunked: bool
) -> AsyncIterator[bytes]:
    """The lines of an answer's body (without their ends), across chunks, until the body's
    proper end: the last chunk of a chunked body, else the end of the connection. A chunked
    body that breaks off raises IncompleteReadError."""
    pending = b""
    while True:
        if chunked:
            size_line = await within(reader.readuntil(b"\r\n"), SILENT_S)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await within(reader.readuntil(b"\r\n"), SILENT_S)
                if pending:
                    yield pending
                return
            if size > MAX_HEAD:
                raise Cut("a chunk over the limit")
            data = await within(reader.readexactly(size + 2), SILENT_S)
            data = data[:-2]
        else:
            data = await within(reader.read(MAX_HEAD), SILENT_S)
            if not data:
                if pending:
                    yield pending
                return
        pending += data
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_HEAD:
            raise Cut("a line over the limit")
        for line in lines:
            yield line.rstrip(b"\r")


async def sse_events(
    reader: asyncio.StreamReader, chunked: bool
) -> AsyncIterator[SseItem]:
    """(event, data, None) per event and (None, None, retry ms) per `retry:` field, until the
    body ends properly; raises what reading raises."""
    kind = "message"
    data: list[str] = []
    async for raw in body_lines(reader, chunked):
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                yield kind, "\n".join(data), None
            kind, data = "message", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "retry" and value.isdigit():
            yield None, None, int(value)


# ------------------------------------------------------------------ gRPC health Watch


async def watch(client: Client, url: str) -> None:
    import grpc

    target = urllib.parse.urlsplit(url).netloc
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        # A connection of its own, made anew for each call, so the Service picks a pod for it.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    while True:
        client.attempt()
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            await one_watch(client, channel)
        await asyncio.sleep(RECONNECT_S)


# What grpc-core reports when the connection, not the server, ended a call.
TRANSPORT = (
    "socket closed",
    "connection reset",
    "broken pipe",
    "failed to connect",
    "goaway",
)


async def one_watch(client: Client, channel: "grpc.aio.Channel") -> None:
    """One `Watch` call, to its end. Its first answer (the status now, sent at once) makes it
    a stream; an error before that is a failed attempt."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    names = health_pb2.HealthCheckResponse.ServingStatus.Name
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    answers = call.__aiter__()
    try:
        first = await within(anext(answers), CONNECT_TIMEOUT_S)
    except StopAsyncIteration:
        client.ended("failed", f"{(await call.code()).name} before any status")
        return
    except (TimeoutError, grpc.aio.AioRpcError) as error:
        call.cancel()
        client.ended("failed", grpc_detail(error))
        return
    # testpage's identity headers travel as the call's initial metadata.
    headers = {k.lower(): v for k, v in (await call.initial_metadata() or ())}
    version, pod = headers.get("x-version", "?"), headers.get("x-pod", "?")
    client.connected()
    last = names(first.status)
    client.message(version, pod, last)
    try:
        async for answer in answers:
            last = names(answer.status)
            client.message(version, pod, last)
        code = await call.code()
        outcome = "clean" if last == "NOT_SERVING" else "cut"
        client.ended(outcome, f"{code.name} after {last}")
    except grpc.aio.AioRpcError as error:
        details = (error.details() or "").lower()
        transport = not details or any(t in details for t in TRANSPORT)
        outcome = "clean" if last == "NOT_SERVING" and not transport else "cut"
        client.ended(outcome, f"{grpc_detail(error)} after {last}")


def grpc_detail(error: "TimeoutError | grpc.aio.AioRpcError") -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    return f"{error.code().name}: {error.details()}"


# ------------------------------------------------------------------ the run


async def run(
    url: str, counts: dict[str, int], final_wait: float = FINAL_WAIT_S
) -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(url)
    base = f"{parsed.scheme}://{parsed.netloc}"
    ws_url = f"ws://{parsed.netloc}/ws"
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = []
    for kind, n in counts.items():
        for i in range(n):
            client = Client(kind, i)
            clients.append(client)
            job: Coroutine[Any, Any, None]
            if kind == "ws":
                job = websocket(client, ws_url)
            elif kind == "sse":
                job = events(client, base)
            else:
                job = watch(client, base)
            tasks.append(asyncio.create_task(job))
    started = now_ms()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # The last reconnections: every client with a message on its current connection.
    deadline = time.monotonic() + final_wait
    while time.monotonic() < deadline and not all(c.fresh for c in clients):
        await asyncio.sleep(0.05)
    stopped = now_ms()
    for task in tasks:
        task.cancel()
    # A WebSocket's close takes at most CONNECT_TIMEOUT_S; nothing should be left after that.
    left = (await asyncio.wait(tasks, timeout=2 * CONNECT_TIMEOUT_S))[1]
    for client in clients:
        client.stop(stopped)
    return {
        "url": url,
        "started_unix_ms": round(started),
        "stopped_unix_ms": round(stopped),
        "reconnect_s": RECONNECT_S,
        "unsettled_at_stop": sum(not c.fresh for c in clients),
        "clients_not_stopped": len(left),
        "summary": summary(clients),
        "clients": [c.report() for c in clients],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the Service, http://HOST:PORT/")
    for kind, what in (
        ("ws", "WebSockets"),
        ("sse", "streams of events"),
        ("grpc", "gRPC Watch streams"),
    ):
        p.add_argument(f"--{kind}", type=int, default=0, help=f"{what} (0)")
    p.add_argument(
        "--final-wait",
        type=float,
        default=FINAL_WAIT_S,
        help=f"seconds the clients may take to reconnect at the end ({FINAL_WAIT_S:g})",
    )
    args = p.parse_args(argv)
    for kind in KINDS:
        n = getattr(args, kind)
        if not 0 <= n <= MAX_CLIENTS:
            p.error(f"--{kind} {n}: between 0 and {MAX_CLIENTS}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    counts = {k: getattr(args, k) for k in KINDS if getattr(args, k)}
    report = asyncio.run(run(args.url, counts, args.final_wait))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
