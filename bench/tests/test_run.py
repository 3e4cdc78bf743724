"""The bench's skips: without wrk it says so and exits 0; under REQUIRE_DOCKER=1 it fails."""

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
    assert "wrk not found" in run.stderr and "nginx not found" in run.stderr
