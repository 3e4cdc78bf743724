"""The lab's short run: it proves testpage's drain and the preStop drain lose nothing during a
rolling update behind a real load balancer, and that it can tell when requests are lost."""

import pathlib
import subprocess
import sys
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "lab"), str(ROOT / "scripts")]

import testlib

import lab

SHORT = ["--duration", "12", "--warmup", "2", "--lag", "1", "--grace", "10"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    testlib.skip_or_fail(
        testlib.tool_problem("haproxy"),
        testlib.docker_problem(),
        testlib.binaries_problem("testpage", "probe"),
    )
    out = tmp_path_factory.mktemp("lab")
    results = lab.main(SHORT + ["--backend", "docker", "--out", str(out)])
    assert (out / "timeline.svg").read_text().startswith("<svg")
    return {r["scenario"]: r for r in results}


def leftovers():
    containers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={lab.LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    networks = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"label={lab.LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    haproxies = subprocess.run(
        ["pgrep", "-f", f"{lab.LABEL}-haproxy"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
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


@pytest.mark.usefixtures("results")
def test_nothing_is_left_behind():
    assert leftovers() == ([], [], [])


def test_nothing_is_left_behind_after_a_failure(tmp_path):
    testlib.skip_or_fail(testlib.docker_problem(), testlib.tool_problem("haproxy"))
    args = lab.parse_args(
        SHORT
        + [
            "--registry",
            f"no-such-registry-{uuid.uuid4().hex[:6]}/",
            "--out",
            str(tmp_path),
        ]
    )
    args.backend = "docker"
    with pytest.raises(subprocess.CalledProcessError):
        lab.run_scenario("drain", args, uuid.uuid4().hex[:8])
    assert leftovers() == ([], [], [])


def test_the_load_is_ended_when_the_rollout_fails(tmp_path, monkeypatch):
    """A rollout that raises must not leave `probe load` running for the rest of its -t."""
    testlib.skip_or_fail(
        testlib.tool_problem("haproxy"), testlib.binaries_problem("testpage", "probe")
    )
    loads, answers = [], []
    start_load = lab.start_load

    def recorded_load(url, args):
        loads.append(start_load(url, args))
        return loads[-1]

    def failing_rollout(rollout, _old):
        # The Service routes to the old pods through the port haproxy inherited.
        answers.append(testlib.http_status(rollout.service.url))
        raise RuntimeError("the rollout failed")

    monkeypatch.setattr(lab, "start_load", recorded_load)
    monkeypatch.setattr(lab.Rollout, "run", failing_rollout)
    args = lab.parse_args(
        SHORT
        + [
            "--duration",
            "60",
            "--warmup",
            "1",
            "--replicas",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    args.backend = (
        "process"  # no Docker needed: testpage processes on ports the kernel chose
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="the rollout failed"):
        lab.run_scenario("drain", args, uuid.uuid4().hex[:8])
    assert answers == [200]
    assert len(loads) == 1
    # Reaped (returncode is set only by a wait), and long before its 60 s were up.
    assert loads[0].popen.returncode is not None
    assert time.monotonic() - started < 20
