"""`/ws` against clients that break the rules or the limits: frames split across the event
tick, slow and fragmented messages, protocol errors, clients that never read or never speak,
and many of them at once. Each is answered with a close code or a bounded, counted end."""

import os
import pathlib
import signal
import socket
import struct
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]

import contextlib

import testlib

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode, payload, *, fin=True, mask=b"\x11\x22\x33\x44", masked=True):
    """One client frame, masked unless told otherwise."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if n <= 125:
        head += bytes([bit | n])
    elif n <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Socket:
    """A WebSocket by hand: the handshake, raw frames out, the server's frames in."""

    def __init__(self, addr, timeout=10.0):
        self.sock, upgraded = testlib.websocket_upgrade(addr, timeout)
        assert upgraded, "no answer 101 to the upgrade"
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next frame from the server: (opcode, payload)."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._take(8))[0]
        assert not b1 & 0x80, "server frames are never masked"
        return b0 & 0x0F, self._take(n)

    def recv_except_events(self):
        """The next frame that is not one of the event-a-second texts or a ping."""
        while True:
            opcode, payload = self.recv()
            if opcode == PING:
                continue
            if opcode == TEXT and payload.startswith(b'{"version"'):
                continue
            return opcode, payload

    def close_code(self):
        """The code of the server's close frame, skipping what comes before it."""
        while True:
            opcode, payload = self.recv()
            if opcode == CLOSE:
                return struct.unpack(">H", payload[:2])[0] if payload else None

    def close(self):
        self.sock.close()


def test_a_frame_split_across_the_event_tick_is_read_whole():
    """A binary frame whose payload is itself a text frame, its payload arriving after an event
    was sent: the echo is the binary frame, never the frame inside it."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = testlib.testpage_process({})
    with proc:
        ws = Socket(testlib.ready_addr(ready, proc))
        inner = frame(TEXT, b"smuggled" * 20)
        outer = frame(BINARY, inner)
        ws.send(outer[:12])
        time.sleep(1.3)  # at least one event goes out while the frame is half read
        ws.send(outer[12:])
        opcode, payload = ws.recv_except_events()
        assert (opcode, payload) == (BINARY, inner)
        ws.close()


def test_a_slow_valid_message_is_echoed_whole():
    """60 KB at about 40 KB/s: one message across several event ticks."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = testlib.testpage_process({})
    with proc:
        ws = Socket(testlib.ready_addr(ready, proc))
        data = os.urandom(60_000)
        whole = frame(BINARY, data)
        for at in range(0, len(whole), 4000):
            ws.send(whole[at : at + 4000])
            time.sleep(0.1)
        assert ws.recv_except_events() == (BINARY, data)
        ws.close()


def test_fragmented_messages_are_assembled_and_limited_as_a_whole():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = testlib.testpage_process({})
    with proc:
        addr = testlib.ready_addr(ready, proc)
        # "héllo" split inside the é, with a ping between the fragments.
        word = "héllo".encode()
        ws = Socket(addr)
        ws.send(frame(TEXT, word[:2], fin=False))
        ws.send(frame(PING, b"p"))
        ws.send(frame(0, word[2:]))
        assert ws.recv_except_events() == (PONG, b"p")
        assert ws.recv_except_events() == (TEXT, word)
        # Exactly 64 KiB in 16 fragments: within the limit.
        data = os.urandom(64 * 1024)
        parts = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        for i, part in enumerate(parts):
            ws.send(frame(BINARY if i == 0 else 0, part, fin=i == len(parts) - 1))
        assert ws.recv_except_events() == (BINARY, data)
        ws.close()
        # 1 MiB in 64 fragments: 1009 once the fragments pass 64 KiB, the rest unread.
        ws = Socket(addr)
        part = b"x" * (16 * 1024)
        try:
            for i in range(64):
                ws.send(frame(BINARY if i == 0 else 0, part, fin=i == 63))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert ws.close_code() == 1009
        ws.close()


def test_protocol_errors_get_their_close_codes():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = testlib.testpage_process({})
    cases = [
        ("unmasked frame", frame(TEXT, b"hi", masked=False), 1002),
        ("ping over 125 bytes", frame(PING, b"p" * 126), 1002),
        ("fragmented ping", frame(PING, b"p", fin=False), 1002),
        ("continuation first", frame(0, b"x"), 1002),
        ("reserved bit", bytes([0xC1]) + frame(TEXT, b"x")[1:], 1002),
        ("unknown opcode", frame(0x3, b"x"), 1002),
        ("text not UTF-8", frame(TEXT, b"\xc3\x28"), 1007),
        ("close code 1005", frame(CLOSE, struct.pack(">H", 1005)), 1002),
        ("message over 64 KiB", frame(BINARY, b"z" * (64 * 1024 + 1)), 1009),
    ]
    with proc:
        addr = testlib.ready_addr(ready, proc)
        for name, data, code in cases:
            ws = Socket(addr)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                ws.send(data)
            assert ws.close_code() == code, name
            ws.close()
        # A client's own close is answered with its code.
        ws = Socket(addr)
        ws.send(frame(CLOSE, struct.pack(">H", 1000) + b"bye"))
        assert ws.close_code() == 1000
        ws.close()
        assert testlib.http_get(f"http://{addr}/healthz")[0] == 200


def metric(addr, name):
    text = testlib.http_get(f"http://{addr}/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_websockets_are_connections_with_idle_and_message_deadlines():
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    import websockets.sync.client

    proc, ready, _ = testlib.testpage_process({"IDLE_TIMEOUT": "2s"})
    with proc:
        addr = testlib.ready_addr(ready, proc)
        before = metric(addr, "http_connections_open")
        silent = Socket(addr)  # never answers a ping
        slow = Socket(addr)  # begins a message and stops
        slow.send(frame(BINARY, b"y" * 1000)[:100])
        # A real client answers the pings by itself: it stays.
        with websockets.sync.client.connect(f"ws://{addr}/ws") as client:
            time.sleep(0.3)
            assert metric(addr, "http_connections_open") >= before + 3
            started = time.monotonic()
            assert silent.close_code() == 1001
            idle_after = time.monotonic() - started
            client.recv(timeout=3)
            client.ping()
            time.sleep(3)
            client.recv(timeout=3)  # still open after the idle timeout
        # The half-sent message ran out of time (10 s from its first byte).
        assert slow.close_code() == 1008
        assert idle_after < 4, idle_after
        silent.close()
        slow.close()
        assert testlib.wait_until(
            lambda: metric(addr, "http_connections_open") <= before,
            5,
            "sockets counted out",
        )


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hostile_sockets(addr, count, pattern):
    """`count` sockets that each (a) send most of a 64 KiB frame and stop, or (b) send four
    64 KiB messages and never read."""
    socks = []
    for _ in range(count):
        try:
            ws = Socket(addr, timeout=5)
        except (OSError, AssertionError):
            break
        ws.sock.setblocking(False)
        if pattern == "a":
            data = frame(BINARY, b"a" * 65536)[:60_000]
        else:
            data = frame(BINARY, b"b" * 65536) * 4
        with contextlib.suppress(BlockingIOError):
            ws.sock.send(data)
        socks.append(ws)
    return socks


def test_hostile_sockets_hold_bounded_memory():
    """200 sockets of each pattern of the 20Mi attack: testpage stays under 16 MiB on the host
    and answers /healthz (without the shared message budget, pattern (b) took 34 MB)."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    for pattern in "ab":
        proc, ready, _ = testlib.testpage_process({})
        with proc:
            addr = testlib.ready_addr(ready, proc)
            start_kib = rss_kib(proc.popen.pid)
            socks = hostile_sockets(addr, 200, pattern)
            try:
                time.sleep(2)
                peak = rss_kib(proc.popen.pid)
                print(
                    f"pattern {pattern}: {len(socks)} sockets, RSS {start_kib} -> {peak} KiB"
                )
                assert len(socks) == 200
                assert peak < 16 * 1024, (pattern, peak)
                assert testlib.http_get(f"http://{addr}/healthz")[0] == 200
            finally:
                for ws in socks:
                    ws.close()


def test_a_websocket_that_never_reads_does_not_hold_the_shutdown():
    """Its echoes and events fill the socket; at its goodbye the close cannot be written, and
    the socket is cut at once instead of at the shutdown timeout (exit 0, counted as cut)."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, log = testlib.testpage_process(
        {"DRAIN": "2s", "SHUTDOWN_TIMEOUT": "8s"}
    )
    with proc:
        addr = testlib.ready_addr(ready, proc)
        ws = Socket(addr)
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws.sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                ws.sock.send(frame(BINARY, b"c" * 65536))
                sent += 1
            except BlockingIOError:
                break
        signalled = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - signalled
        ws.close()
    assert code == 0, code
    assert took < 4.5, took
    text = log.read_text()
    assert "streams_cut=1" in text, text


def test_the_first_event_comes_at_once():
    """A client that reconnects in the drain sees its new pod at once, not a second later."""
    testlib.skip_or_fail(testlib.binaries_problem("testpage"))
    proc, ready, _ = testlib.testpage_process({})
    with proc:
        started = time.monotonic()
        ws = Socket(testlib.ready_addr(ready, proc))
        opcode, payload = ws.recv()
        took = time.monotonic() - started
        ws.close()
    assert opcode == TEXT, (opcode, payload)
    assert payload.startswith(b'{"version"'), (opcode, payload)
    assert took < 0.5, took
