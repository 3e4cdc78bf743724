"""The bench's skips: without wrk it says so and exits 0; under REQUIRE_DOCKER=1 it fails."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

RUN = pathlib.Path(__file__).resolve().parents[1] / "run.py"


@pytest.fixture
def without_tools(tmp_path):
    """The environment with a PATH on which none of the bench's tools is found."""
    env = {key: value for key, value in os.environ.items() if key != "REQUIRE_DOCKER"}
    return {**env, "PATH": str(tmp_path)}


@pytest.mark.parametrize("mode", [["--quick"], []], ids=["quick", "full"])
def test_without_wrk_the_bench_skips_saying_why(without_tools, tmp_path, mode):
    out = tmp_path / "RESULTS.md"
    run = subprocess.run(
        [sys.executable, RUN, *mode, "--out", out],
        env=without_tools,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "wrk not found (Debian: apt-get install wrk)" in run.stderr
    assert "skipped" in run.stderr
    assert not out.exists()


def test_without_wrk_the_bench_fails_under_require_docker(without_tools, tmp_path):
    run = subprocess.run(
        [sys.executable, RUN, "--quick", "--out", tmp_path / "RESULTS.md"],
        env={**without_tools, "REQUIRE_DOCKER": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "REQUIRE_DOCKER=1 allows no skip" in run.stderr
    assert "wrk not found" in run.stderr
    assert "nginx not found" in run.stderr


# The figures `run.py --quick` must produce for testpage and nginx, and for the load clients.
SERVER_COSTS = (
    "instr_keepalive",
    "instr_new_conn",
    "syscalls_keepalive",
    "syscalls_new_conn",
    "kib_per_idle_conn",
    "rss_idle_conns_kib",
)


def test_the_quick_run_produces_every_cost_figure():
    """`make bench-quick`: the whole harness runs against the real binaries, nginx and the load
    clients, and writes every figure, testpage's beside nginx's, with their ratios. What the
    numbers are is not checked: only that they were measured."""
    sys.path.insert(0, str(RUN.parents[1] / "scripts"))
    import testlib

    tools = ("wrk", "taskset", "nginx", "valgrind", "strace")
    testlib.skip_or_fail(
        *map(testlib.tool_problem, tools),
        testlib.binaries_problem("testpage", "probe"),
    )
    run = subprocess.run(
        [sys.executable, RUN, "--quick"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = RUN.parents[1] / "target" / "bench" / "RESULTS-quick.md"
    results = json.loads(out.with_suffix(".json").read_text())
    costs = results["costs"]
    for server in ("testpage", "nginx"):
        assert results["rounds"][server]["rps_c8"] > 0, results["rounds"]
    for server in ("testpage", "nginx"):
        for figure in SERVER_COSTS:
            assert isinstance(costs[server].get(figure), (int, float)), (server, figure)
    assert costs["clients"]["wrk"] > 0
    assert costs["clients"]["probe load"] > 0
    report = out.read_text()
    assert "## Costs per request and per connection" in report
    assert "instructions per keep-alive `GET /`" in report
    assert "Load clients, instructions per request" in report
    # The quick run's numbers are not read: no verdict may end `make test`'s output.
    assert "**missed**" not in report
    assert "| met |" not in report
    assert "Not judged in a quick run" in report
    print(f"\nbench-quick: every figure measured, not judged; the report: {out}")
