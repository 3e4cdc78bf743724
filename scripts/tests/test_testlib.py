"""The helpers every harness shares: skips that say why (failures under REQUIRE_DOCKER=1),
processes that are always reaped, ports the kernel chose."""

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import testlib

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def no_tools(tmp_path, monkeypatch):
    """A PATH on which no tool is found."""
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.mark.usefixtures("no_tools")
def test_a_missing_tool_is_a_skip_that_says_why(monkeypatch):
    monkeypatch.delenv("REQUIRE_DOCKER", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"wrk not found \(Debian: apt-get install wrk\)"
    ):
        testlib.skip_or_fail(testlib.tool_problem("wrk"))


@pytest.mark.usefixtures("no_tools")
def test_a_missing_tool_fails_under_require_docker(monkeypatch):
    monkeypatch.setenv("REQUIRE_DOCKER", "1")
    with pytest.raises(
        pytest.fail.Exception, match="haproxy not found.*REQUIRE_DOCKER=1"
    ):
        testlib.skip_or_fail(testlib.tool_problem("haproxy"))


@pytest.mark.usefixtures("no_tools")
def test_every_problem_is_named(monkeypatch):
    monkeypatch.delenv("REQUIRE_DOCKER", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match="haproxy not found.*; docker not found"
    ):
        testlib.skip_or_fail(
            testlib.tool_problem("haproxy"), None, testlib.docker_problem()
        )


@pytest.mark.usefixtures("no_tools")
def test_no_docker_binary_is_a_problem():
    assert testlib.docker_problem() == "docker not found"


def test_nothing_missing_is_no_problem(tmp_path, monkeypatch):
    (tmp_path / "wrk").write_text("#!/bin/sh\n")
    (tmp_path / "wrk").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("REQUIRE_DOCKER", "1")
    assert testlib.tool_problem("wrk") is None
    testlib.skip_or_fail(None)  # neither skips nor fails


def test_missing_binaries_name_the_build():
    problem = testlib.binaries_problem("no-such-binary", arch="aarch64")
    assert "no-such-binary missing" in problem
    assert "make build ARCH=aarch64" in problem


def test_a_process_is_ended_and_reaped_when_the_block_raises():
    with pytest.raises(RuntimeError, match="boom"), testlib.Process(SLEEPER) as proc:
        raise RuntimeError("boom")
    # returncode is set only by a wait: the child is reaped, not a zombie.
    assert proc.popen.returncode == -signal.SIGTERM


def test_a_process_that_ignores_its_stop_signal_is_killed_after_the_grace():
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    started = time.monotonic()
    with testlib.Process(
        [sys.executable, "-c", ignore], grace=0.2, stdout=subprocess.PIPE
    ) as proc:
        proc.stdout.readline()  # the handler is in place
    assert proc.popen.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_stop_returns_the_exit_status():
    with testlib.Process([sys.executable, "-c", "import sys; sys.exit(3)"]) as proc:
        proc.wait(10)
        assert proc.stop() == 3


def test_listening_socket_is_on_a_port_the_kernel_chose():
    with testlib.listening_socket() as listener:
        host, port = listener.getsockname()
        assert (host, port != 0) == ("127.0.0.1", True)
        with socket.create_connection((host, port), timeout=5):
            pass


def test_kernel_port_can_be_bound_at_once():
    port = testlib.kernel_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_ready_addr_reads_the_addr_line(tmp_path):
    ready = tmp_path / "ready"
    threading.Timer(
        0.1, lambda: ready.write_text("pid=1\naddr=127.0.0.1:43210\n")
    ).start()
    assert testlib.ready_addr(ready, timeout=5) == "127.0.0.1:43210"


def test_ready_addr_fails_fast_when_the_process_exits(tmp_path):
    with testlib.Process([sys.executable, "-c", "pass"]) as proc:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited with status 0"):
            testlib.ready_addr(tmp_path / "ready", proc, timeout=30)
        assert time.monotonic() - started < 10


def test_wait_until_names_what_it_waited_for():
    with pytest.raises(TimeoutError, match="no answer within 0.1s"):
        testlib.wait_until(lambda: None, 0.1, "answer")
