"""The lab's short run: it proves testpage's drain and the preStop drain lose nothing during a
rolling update behind a real load balancer, and that it can tell when requests are lost."""

import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest

LAB = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))

import lab  # noqa: E402

SHORT = ["--duration", "12", "--warmup", "2", "--lag", "1", "--grace", "10"]


def require(tool, check):
    if not check():
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"{tool} is required (REQUIRE_DOCKER=1)")
        pytest.skip(f"{tool} not available")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    require("haproxy", lambda: shutil.which("haproxy"))
    require("docker", lambda: shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0)
    require("target/dist binaries (make build)", lambda: (lab.BIN / "probe").exists())
    out = tmp_path_factory.mktemp("lab")
    results = lab.main(SHORT + ["--backend", "docker", "--out", str(out)])
    assert (out / "timeline.svg").read_text().startswith("<svg")
    return {r["scenario"]: r for r in results}


def leftovers():
    containers = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={lab.LABEL}"],
                                capture_output=True, text=True).stdout.split()
    networks = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label={lab.LABEL}"],
                              capture_output=True, text=True).stdout.split()
    haproxies = subprocess.run(["pgrep", "-f", f"{lab.LABEL}-haproxy"], capture_output=True, text=True).stdout.split()
    return containers, networks, haproxies


@pytest.mark.parametrize("scenario", ["drain", "prestop"])
def test_draining_loses_nothing(results, scenario):
    r = results[scenario]
    assert r["requests"] > 4000
    assert r["errors"] == 0, r["errors_by_code"]
    assert r["versions"].get("blue") and r["versions"].get("green")
    for t in r["terminations"]:
        assert t["exit_code"] == 0, t
        assert t["exited_after_s"] < r["settings"]["grace"], t


def test_quitting_on_sigterm_loses_requests_in_the_race_window(results):
    r = results["no-drain"]
    assert r["errors"] >= 1, "the experiment must be able to fail"
    # Every lost request was sent between a SIGTERM and its endpoint's removal (+250 ms).
    assert r["errors_outside_termination_windows"] == 0, r["load"]["error_events"][:5]


def test_nothing_is_left_behind(results):
    assert leftovers() == ([], [], [])


def test_nothing_is_left_behind_after_a_failure(tmp_path):
    require("docker", lambda: shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0)
    require("haproxy", lambda: shutil.which("haproxy"))
    args = lab.parse_args(SHORT + ["--registry", f"no-such-registry-{uuid.uuid4().hex[:6]}/", "--out", str(tmp_path)])
    args.backend = "docker"
    with pytest.raises(subprocess.CalledProcessError):
        lab.run_scenario("drain", args, uuid.uuid4().hex[:8])
    assert leftovers() == ([], [], [])
