"""The lab, short form: every experiment under k8s/ run from its own manifests and steps, each
outcome checked; manifests with the mistakes a cluster punishes produce the failure a cluster
shows; nothing is left behind."""

import argparse
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import kube
from lab import run as lab

# 5 s of load at least, 200 qps: the whole set in a few minutes on two cores.
SHORT = ["--duration", "5", "--qps", "200", "--cooldown", "1"]


def require():
    testlib.skip_or_fail(
        testlib.tool_problem("haproxy"),
        testlib.docker_problem(),
        testlib.binaries_problem("probe"),
        testlib.tool_problem("kubectl"),
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    require()
    out = tmp_path_factory.mktemp("lab")
    results = lab.main(SHORT + ["--out", str(out)])
    for r in results:
        svg = (out / r.experiment / "timeline.svg").read_text()
        assert svg.startswith("<svg"), r.experiment
    # As result.json holds them.
    return {r.experiment: r.to_json() for r in results}


@pytest.mark.parametrize("experiment", lab.experiments())
def test_the_experiment_shows_what_its_tutorial_says(results, experiment):
    r = results[experiment]
    failed = [c for c in r["checks"] if not c["ok"]]
    assert r["ok"], (r.get("error"), failed)
    assert r["checks"], "an experiment that checks nothing proves nothing"


def test_every_deployment_experiment_has_steps():
    """Each folder with a Deployment and a kustomization runs in the lab, unless it needs a
    router that cannot be installed here (Gateway API, Istio, Traefik)."""
    routers = set(kube.SKIPPED) - {"PodDisruptionBudget", "Ingress"}
    missing = []
    for kustomization in sorted((ROOT / "k8s").rglob("kustomization.yaml")):
        folder = kustomization.parent
        if folder.name in ("base", "tools") or (folder / "lab.yaml").exists():
            continue
        kinds = {o.get("kind") for o in kube.render(folder)}
        if "Deployment" in kinds and not kinds & routers:
            missing.append(str(folder.relative_to(ROOT)))
    assert not missing


def test_zero_downtime_losses_come_from_the_manifests(results):
    r = results["003-zero-downtime"]
    without, with_hook = r["services"]["myapp-without-hook"], r["services"]["myapp"]
    assert without["errors"] >= 1
    assert with_hook["errors"] == 0
    assert {e["code"] for e in without["error_events"]} <= {-1, 502, 503}


def test_long_lived_clients_reach_the_new_version_cleanly_only_with_the_drain(results):
    streams = results["long-lived"]["streams"]
    for kind, s in streams["drain"]["summary"].items():
        assert s["abnormal"] == 0, (kind, s)
        assert s["clean"] >= s["clients"], (kind, s)
        assert s["versions_at_end"] == {"0.9": s["clients"]}, (kind, s)
    no_drain = streams["no-drain"]["summary"]
    # DRAIN=0 still says goodbye to every stream, at SIGTERM: what fails is reconnecting to
    # the pod while the Service still routes to it.
    assert all(s["clean"] >= s["clients"] for s in no_drain.values()), no_drain
    assert sum(s["failed"] for s in no_drain.values()) >= 1, no_drain


@pytest.mark.usefixtures("results")
def test_nothing_is_left_behind():
    assert leftovers() == ([], [], [], [])


def test_sigterm_in_the_middle_of_a_run_leaves_nothing_behind(tmp_path):
    """`kill`, `timeout` or a cancelled CI job end a run as Ctrl-C does: the run's
    containers, volumes, network and haproxy processes go, and the exit code says SIGTERM
    (143). (A load, if one runs, is stopped by the same `finally`.)"""
    require()
    log = tmp_path / "log"
    with (
        log.open("w") as err,
        testlib.Process(
            [sys.executable, "-m", "lab", "000-rolling-update", *SHORT],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        ) as proc,
    ):
        # While the rollout waits for its pods: their sandboxes and containers are up, the
        # control loop and the kubelet's probers are at work.
        testlib.wait_until(
            lambda: len(leftovers()[0]) >= 4 or proc.poll() is not None,
            120,
            "the run's pods",
        )
        assert proc.poll() is None, log.read_text()
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 143, log.read_text()
    assert "SIGTERM" in log.read_text()
    assert leftovers() == ([], [], [], [])


# ------------------------------------------------------------ mistakes a cluster punishes


def broken(tmp_path, name, patch, steps, expect=()):
    """Runs `steps` against the canary's v1 Deployment with `patch` applied to its pod
    template, and returns the result (the run may fail, as a rollout on a cluster would)."""
    require()
    objects = kube.render(ROOT / "k8s/004-strategies/canary")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    patch(deployment["spec"]["template"]["spec"])
    service = next(o for o in objects if o["kind"] == "Service")
    service["spec"]["ports"][0].pop("nodePort", None)
    service["spec"]["type"] = "ClusterIP"
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all([deployment, service]))
    args = lab.parse_args(SHORT + ["--rollout-timeout", "20"])
    plan = {
        "title": name,
        "steps": [s.replace("MANIFEST", str(manifest)) for s in steps],
        "expect": list(expect),
    }
    run = lab.Run(name, plan, args)
    try:
        return run.run().to_json()
    except (kube.StepError, kube.ManifestError) as error:
        return run.result(error=str(error)).to_json()


NS = "-n strategy-canary"
# Roll the broken Deployment out; then scale it down, so that one pod is terminated.
ROLL_OUT = [
    f"kubectl apply -f MANIFEST {NS}",
    f"kubectl {NS} rollout status deployment my-app-v1",
]
SCALE_DOWN = ROLL_OUT + [
    f"kubectl {NS} scale deployment my-app-v1 --replicas=2",
    f"kubectl {NS} rollout status deployment my-app-v1",
]


def test_a_broken_probe_path_stalls_the_rollout(tmp_path):
    def patch(spec):
        spec["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/no-such-page"

    r = broken(
        tmp_path,
        "probe-path",
        patch,
        ROLL_OUT,
    )
    assert "not done within" in r["error"], r.get("error")
    assert "HTTP 404" in r["error"], r["error"]
    assert "/no-such-page" in r["error"], r["error"]
    assert leftovers() == ([], [], [], [])


def test_a_prestop_command_the_image_lacks_fails_the_hook(tmp_path):
    def patch(spec):
        spec["containers"][0]["lifecycle"] = {
            "preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}
        }

    r = broken(
        tmp_path,
        "prestop",
        patch,
        SCALE_DOWN,
    )
    assert r.get("error") is None, r.get("error")
    hooks = [e for e in r["events"] if e["event"].startswith("FailedPreStopHook")]
    assert hooks, [e["event"] for e in r["events"]]
    assert "/bin/sh" in hooks[0]["event"]


def test_a_grace_period_shorter_than_the_drain_ends_in_sigkill(tmp_path):
    def patch(spec):
        spec["terminationGracePeriodSeconds"] = 2
        spec["containers"][0].setdefault("env", []).append(
            {"name": "DRAIN", "value": "5s"}
        )

    r = broken(
        tmp_path,
        "grace",
        patch,
        SCALE_DOWN,
    )
    assert r.get("error") is None, r.get("error")
    events = [e["event"] for e in r["events"]]
    assert any(e.startswith("SIGKILL") for e in events), events
    assert "exited 137" in events, events


# ------------------------------------------------------------ the control plane's arithmetic


def test_surge_rounds_up_and_unavailable_rounds_down():
    assert kube.resolve_surge("25%", 3, True) == 1
    assert kube.resolve_surge("25%", 3, False) == 0
    assert kube.resolve_surge("50%", 5, True) == 3
    assert kube.resolve_surge(2, 3, False) == 2


def test_quantities():
    assert kube.cpus("100m") == 0.1
    assert kube.cpus("2") == 2.0
    assert kube.bytes_of("32Mi") == 32 * 2**20
    assert kube.bytes_of("1G") == 10**9


def test_a_field_the_lab_does_not_play_is_named():
    objects = kube.render(ROOT / "k8s/004-strategies/canary")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["hostNetwork"] = True
    with pytest.raises(kube.ManifestError, match=r"spec\.template\.spec\.hostNetwork"):
        kube.check_supported(deployment)
    volumes = deployment["spec"]["template"]["spec"]
    del volumes["hostNetwork"]
    volumes["volumes"] = [{"name": "data", "hostPath": {"path": "/"}}]
    with pytest.raises(kube.ManifestError, match=r"volumes\[0\]\.hostPath"):
        kube.check_supported(deployment)


def test_routers_are_skipped_and_said_so(results):
    skipped = results["001-rolling-update-test"]["skipped"]
    assert any(
        s.startswith("Ingress ") and "no ingress controller" in s for s in skipped
    ), skipped


def test_an_unknown_step_is_refused():
    args = argparse.Namespace(registry="")
    run = object.__new__(lab.Run)
    run.args = args
    with pytest.raises(kube.ManifestError, match="not played"):
        run.kubectl(["delete", "pod", "x"])


def leftovers():
    """The containers, networks and volumes (docker's ids) and the haproxy processes (pids)
    of any lab run on this machine."""
    label = f"label={kube.LABEL}"
    commands = (
        ["docker", "ps", "-aq", "--filter", label],
        ["docker", "network", "ls", "-q", "--filter", label],
        ["docker", "volume", "ls", "-q", "--filter", label],
        ["pgrep", "-f", f"{kube.LABEL}-haproxy"],
    )
    return tuple(
        subprocess.run(c, capture_output=True, text=True, check=False).stdout.split()
        for c in commands
    )


@pytest.mark.parametrize(
    "words",
    [
        ["--duration", "0"],
        ["--duration", "nan"],
        ["--duration", "1e12"],
        ["--cooldown", "-1"],
        ["--qps", "0"],
        ["--qps", "-1"],
        ["-c", "0"],
        ["-c", "1.5"],
        ["--lag", "-1"],
        ["--lag", "5-1"],
        ["--lag", "inf"],
        ["--lag", "true"],
        ["--nodes", "9" * 400],
        ["--duration", "1" * 5000],
        ["--nodes", "0"],
        ["--nodes", "17"],
        ["--rollout-timeout", "0"],
    ],
)
def test_a_number_out_of_its_range_is_a_usage_error(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        lab.parse_args(["000-rolling-update", *words])
    assert exit_.value.code == 2
    assert "argument" in capsys.readouterr().err


def test_numbers_in_range_are_taken():
    args = lab.parse_args(
        ["000-rolling-update", "--duration", "1", "--lag", "0.5-3", "-c", "1000"]
    )
    assert (args.duration, str(args.lag), args.connections) == (1, "0.5-3 s", 1000)


SHIELD = """
import os, signal, sys, time
from lab.common import end_on_signals, shielded
end_on_signals("test")
try:
    with shielded():
        os.kill(os.getpid(), signal.SIG{first})
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIG{second})
        time.sleep(0.2)
        print("removal done", flush=True)
finally:
    print("finally ran", flush=True)
print("not reached", flush=True)
"""


@pytest.mark.parametrize(
    # An uncaught KeyboardInterrupt ends Python by SIGINT itself (the shell shows 130).
    ("first", "second", "code"),
    [("TERM", "TERM", 143), ("TERM", "INT", -signal.SIGINT)],
)
def test_signals_during_a_removal_wait_for_its_end(first, second, code):
    """A removal (`shielded`) runs to its end whatever signals arrive meanwhile; the last one
    is acted on after it: SystemExit 143 for SIGTERM, KeyboardInterrupt for SIGINT."""
    script = SHIELD.format(first=first, second=second)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout.split("\n")[:2] == ["removal done", "finally ran"], done
    assert "not reached" not in done.stdout
    assert done.returncode == code, done
    assert "noted" in done.stderr, done.stderr


def test_the_namespace_is_taken_out_of_a_command_in_every_spelling():
    for words, left in [
        (["get", "po", "-n", "test"], ["get", "po"]),
        (["get", "po", "--namespace", "test"], ["get", "po"]),
        (["get", "po", "--namespace=test"], ["get", "po"]),
    ]:
        assert lab.take_namespace(words) == "test"
        assert words == left
    words = ["get", "po"]
    assert lab.take_namespace(words) == "default"
    assert words == ["get", "po"]


def test_a_pod_deleted_while_its_container_starts_leaves_nothing_running():
    """A pod deleted before its container ran (a scale-down right after a scale-up) takes its
    sandbox and container with it when it goes, not at the end of the run."""
    require()
    cluster = kube.Cluster(lag=0)
    try:
        objects = kube.render(ROOT / "k8s" / "000-rolling-update" / "deployment.yaml")
        cluster.apply(objects)
        cluster.sync_now()
        pods = cluster.all_pods()
        assert pods
        for pod in pods:
            pod.delete()
        testlib.wait_until(lambda: all(p.gone for p in pods), 60, "the pods gone")
        # Their replacements start meanwhile: only the deleted pods' own containers count.
        running = [
            name
            for pod in pods
            for name in kube.docker(
                "ps", "-a", "--format", "{{.Names}}",
                "--filter", f"name={cluster.network.name}-{pod.name}",
            ).stdout.split()
        ]  # fmt: skip
        assert running == [], running
    finally:
        cluster.close()


def test_closing_the_cluster_while_its_pods_start_leaves_nothing_behind():
    """The run may end while pods are still being created (a rollout cut short, a failed
    step): whatever their threads create after the close began is removed too, and the
    network goes."""
    require()
    cluster = kube.Cluster(lag=0)
    objects = kube.render(ROOT / "k8s" / "000-rolling-update" / "deployment.yaml")
    cluster.apply(objects)
    cluster.sync_now()
    assert cluster.all_pods()
    cluster.close()  # at once: the pods' `docker run` are under way
    time.sleep(2)  # anything a thread still created would be up by now
    label = f"label={cluster.network.label}"
    assert kube.docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert kube.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []
    networks = kube.docker("network", "ls", "-q", "--filter", label).stdout.split()
    assert networks == []
