"""Runs the experiments of k8s/ from their own manifests, on one machine.

Each experiment folder holds `lab.yaml`: the steps its README tells (the same `kubectl`
commands), the Services to load or to hold long-lived clients on while they run, and what the
run must show. The lab renders the manifests, plays the kubelet, the Deployment controller and
the Services (see lab/kube/), runs the steps under `probe load` or with the clients of
lab/streams.py connected, and checks the outcome.

    python -m lab [EXP ...] [--duration 60] [--qps 500] [-c 8] [--lag 1 | --lag 0.5-3]

EXP is a folder under k8s/ (`003-zero-downtime`, `004-strategies/canary`); none means every
folder that has a lab.yaml. Results: a table per experiment on stdout,
target/lab/<folder>/result.json and target/lab/<folder>/timeline.svg.
"""

import argparse
import contextlib
import functools
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import testlib
import yaml

from lab import streams
from lab.common import (
    DIST,
    K8S,
    OUT,
    ROOT,
    add_number,
    bounded,
    end_on_signals,
    log,
    now_ms,
    shielded,
)
from lab.kube import (
    Cluster,
    Deployment,
    Lag,
    ManifestError,
    Pod,
    Service,
    StepError,
    render,
)
from lab.results import Check, Event, Load, Result, Settings, Step

# Errors up to this long after an endpoint removal reached haproxy still belong to the
# termination that caused it (requests already sent to the pod).
SLACK_MS = 250


# An experiment's lab.yaml: title, lag, steps, expect, sweep.
Plan = dict[str, Any]

# Experiments whose steps live outside k8s/: the Helm chart, played from `helm template`.
OTHER_PLANS = {"chart": ROOT / "charts" / "testpage" / "lab.yaml"}


def experiments() -> list[str]:
    """Every folder under k8s/ with a lab.yaml, then the others, as `make lab` runs them."""
    folders = sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("lab.yaml"))
    return folders + sorted(OTHER_PLANS)


def load_plan(name: str) -> Plan:
    path = OTHER_PLANS.get(name) or K8S / name / "lab.yaml"
    if not path.exists():
        raise SystemExit(
            f"lab: k8s/{name} has no lab.yaml (experiments: {experiments()})"
        )
    plan = yaml.safe_load(path.read_text())
    unknown = set(plan) - {"title", "lag", "steps", "expect", "sweep"}
    if unknown:
        raise ManifestError(f"k8s/{name}/lab.yaml: unknown keys {sorted(unknown)}")
    Lag.parse(plan.get("lag", 1))  # refused here, before any run starts
    return plan


# ------------------------------------------------------------------ the steps


def take_namespace(words: list[str]) -> str:
    """The namespace `-n NS`, `--namespace NS` or `--namespace=NS` names (`default` without
    one), taken out of `words`."""
    namespace = "default"
    for flag in ("-n", "--namespace"):
        if flag in words:
            i = words.index(flag)
            namespace = words[i + 1]
            del words[i : i + 2]
    for i, word in enumerate(words):
        if word.startswith("--namespace="):
            namespace = word.split("=", 1)[1]
            del words[i]
            break
    return namespace


class Run:
    """One experiment: its cluster, its loads, and what happened."""

    def __init__(self, name: str, plan: Plan, args: argparse.Namespace) -> None:
        self.name, self.plan, self.args = name, plan, args
        # --lag if given, else the experiment's own (lab.yaml `lag:`), else 1 s; a value or
        # a range each node draws from per change.
        self.lag = args.lag if args.lag is not None else Lag.parse(plan.get("lag", 1))
        self.cluster = Cluster(
            lag=self.lag,
            registry=args.registry,
            nodes=getattr(args, "nodes", 3),
            seed=getattr(args, "seed", None),
        )
        # Per Service: its `probe load` (the process, started unix ms), and its report.
        self.loads: dict[str, tuple[testlib.Process, float]] = {}
        self.loaded_services: list[tuple[str, str]] = []  # (namespace, name)
        self.reports: dict[str, dict[str, Any]] = {}
        # Per Service: lab/streams.py's clients (the process, started unix ms), their report.
        self.streams: dict[str, tuple[testlib.Process, float]] = {}
        self.stream_reports: dict[str, dict[str, Any]] = {}
        self.steps: list[Step] = []
        self.skipped: list[str] = []
        self.checks: list[Check] = []

    # --- kubectl, as far as the experiments use it

    def kubectl(self, words: list[str]) -> None:
        namespace = take_namespace(words)
        # `--replicas N` as `--replicas=N`.
        if "--replicas" in words:
            i = words.index("--replicas")
            words[i : i + 2] = [f"--replicas={words[i + 1]}"]
        # `deployment NAME` and `deployment/NAME` alike.
        for i, word in enumerate(words[:-1]):
            if word in ("deployment", "deploy", "service", "svc") and not words[
                i + 1
            ].startswith("-"):
                words[i : i + 2] = [f"{word}/{words[i + 1]}"]
                break
        verb = words[0]
        if verb == "apply":
            flag, target = words[1], ROOT / words[2]
            if flag not in ("-k", "-f"):
                raise ManifestError(f"kubectl apply {flag}: only -k and -f are played")
            objects = render(target)
            for obj in objects:
                obj.setdefault("metadata", {}).setdefault("namespace", namespace)
            self.skipped += self.cluster.apply(objects)
            return
        if verb == "set" and words[1] == "image":
            dep = self._deployment(words[2], namespace)
            for assignment in words[3:]:
                container, image = assignment.split("=", 1)
                matched = [
                    c
                    for c in dep.template["spec"]["containers"]
                    if c["name"] == container
                ]
                if not matched:
                    raise StepError(
                        f"deployment {dep.name} has no container {container}"
                    )
                obj = json.loads(json.dumps(dep.obj))
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    if c["name"] == container:
                        c["image"] = self.args.registry + image
                self.cluster.update_deployment(dep, obj)
            return
        if verb == "rollout":
            action, dep = words[1], self._deployment(words[2], namespace)
            if action == "status":
                # kubectl gives up when the Deployment reports ProgressDeadlineExceeded:
                # progressDeadlineSeconds without progress (`polymorphichelpers/rollout_status.go`
                # `DeploymentStatusViewer.Status`); --rollout-timeout caps the whole wait.
                try:
                    self.cluster.wait(
                        lambda: dep.complete() or dep.timed_out,
                        self.args.rollout_timeout,
                        f"rollout of deployment/{dep.name}",
                    )
                except StepError as error:
                    describe = self.cluster.rollout_status(dep)[2]
                    raise StepError(f"{error} ({describe})") from None
                complete, timed_out, describe = self.cluster.rollout_status(dep)
                if timed_out and not complete:
                    raise StepError(
                        f'deployment "{dep.name}" exceeded its progress deadline '
                        f"({describe})"
                    )
            elif action in ("pause", "resume"):
                obj = json.loads(json.dumps(dep.obj))
                obj["spec"]["paused"] = action == "pause"
                self.cluster.update_deployment(dep, obj)
            elif action == "undo":
                to = next(
                    (
                        int(w.split("=", 1)[1])
                        for w in words
                        if w.startswith("--to-revision=")
                    ),
                    None,
                )
                self.cluster.undo(dep, to)
            else:
                raise ManifestError(f"kubectl rollout {action} is not played")
            return
        if verb == "scale":
            dep = self._deployment(words[1], namespace)
            replicas = next(
                w.split("=", 1)[1] for w in words if w.startswith("--replicas=")
            )
            obj = json.loads(json.dumps(dep.obj))
            obj["spec"]["replicas"] = int(replicas)
            self.cluster.update_deployment(dep, obj)
            return
        if verb == "patch" and words[1].startswith(("deployment/", "deploy/")):
            dep = self._deployment(words[1], namespace)
            obj = merge(
                json.loads(json.dumps(dep.obj)),
                json.loads(words[words.index("-p") + 1]),
            )
            self.cluster.update_deployment(dep, obj)
            return
        if verb == "patch" and words[1].startswith(("service/", "svc/")):
            service = self.cluster.service(namespace, words[1].split("/", 1)[1])
            patch = json.loads(words[words.index("-p") + 1])
            unknown = set(patch.get("spec", {})) - {"selector"}
            if set(patch) - {"spec"} or unknown:
                raise ManifestError(
                    "kubectl patch service: only spec.selector is played"
                )
            self.cluster.select(service, patch["spec"]["selector"])
            return
        raise ManifestError(f"kubectl {' '.join(words)}: not played by the lab")

    # --- helm, as far as installing and upgrading a chart goes

    def helm(self, words: list[str]) -> None:
        """`helm upgrade --install RELEASE CHART [-n NS] [--set ...] [-f FILE]` (or `helm
        install`): the release as real helm renders it (`helm template`, without the test
        hooks, which only `helm test` runs), applied like `kubectl apply`."""
        namespace = take_namespace(words)
        if words[:2] == ["upgrade", "--install"]:
            words = words[2:]
        elif words[:1] == ["install"]:
            words = words[1:]
        else:
            raise ManifestError(
                f"helm {' '.join(words)}: only `upgrade --install` and `install` are played"
            )
        release, chart, *rest = words
        done = subprocess.run(
            [ROOT / "scripts" / "helm.sh"], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise StepError(f"helm: {done.stderr.strip()}")
        render = subprocess.run(
            [done.stdout.split()[-1], "template", release, str(ROOT / chart)]
            + ["--namespace", namespace, "--skip-tests", *rest],
            capture_output=True,
            text=True,
            check=False,
        )
        if render.returncode:
            raise ManifestError(f"helm template {release} {chart}: {render.stderr}")
        objects = [doc for doc in yaml.safe_load_all(render.stdout) if doc]
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("namespace", namespace)
        self.skipped += self.cluster.apply(objects)

    def _deployment(self, ref: str, namespace: str) -> Deployment:
        kind, _, name = ref.partition("/")
        if kind not in ("deployment", "deploy", "deployments") or not name:
            raise ManifestError(f"{ref}: only deployment/NAME is played")
        return self.cluster.deployment(namespace, name)

    # --- the lab's own steps

    def lab(self, words: list[str]) -> None:
        namespace = "default"
        if "-n" in words:
            i = words.index("-n")
            namespace = words[i + 1]
            del words[i : i + 2]
        verb = words[0]
        if verb == "load":
            # `--new-connections`: each request on a new connection, as a `curl` loop or
            # `probe watch` sends them (a kept-alive connection stays on its pod).
            fresh = "--new-connections" in words
            names = [w for w in words[1:] if w != "--new-connections"]
            for service in self.settled_services(namespace, names):
                self.start_load(service, fresh)
                self.loaded_services.append((namespace, service.name))
        elif verb == "streams":
            try:
                names, counts = streams.client_counts(words[1:])
            except ValueError as error:
                raise ManifestError(f"lab streams {error}") from None
            if not names or not any(counts.values()):
                raise ManifestError(
                    "lab streams SERVICE... ws=N sse=N grpc=N: a Service and a client"
                )
            for service in self.settled_services(namespace, names):
                self.start_streams(service, counts)
                # Their reconnections, like a load's requests, go on until every node has
                # the last endpoint change.
                self.loaded_services.append((namespace, service.name))
        elif verb == "sleep":
            if len(words) != 2:
                raise ManifestError(f"lab {shlex.join(words)}: lab sleep SECONDS")
            try:
                seconds = bounded(0, 600)(words[1])
            except argparse.ArgumentTypeError as error:
                raise ManifestError(f"lab sleep: {error}") from None
            time.sleep(seconds)
        else:
            raise ManifestError(f"lab {verb}: unknown (load, streams, sleep)")

    def settled_services(self, namespace: str, names: list[str]) -> Iterator[Service]:
        """The Services named, each once it answers (its endpoints reached haproxy), as a user
        would start a client."""
        for name in names:
            service = self.cluster.service(namespace, name)
            self.cluster.wait(
                functools.partial(self.cluster.settled, service),
                30,
                f"endpoints of {name}",
            )
            yield service

    def expect_now(self, spec: dict[str, Any]) -> None:
        """A check of the state right now: which versions answer, how many pods are ready."""
        namespace = spec.get("namespace", "default")
        if "deployment" in spec:
            dep = self.cluster.deployment(namespace, spec["deployment"])
            ready = self.cluster.available_pods(dep)
            if "ready" in spec:
                self.check(
                    f"deployment {dep.name}: {spec['ready']} ready",
                    len(ready) == spec["ready"],
                    f"{len(ready)} ready",
                )
            if "serves" in spec:
                versions = sorted({version_of(p) or "no answer" for p in ready})
                self.check(
                    f"deployment {dep.name} serves {spec['serves']}",
                    versions == sorted(spec["serves"]),
                    f"ready pods answer {versions}",
                )
        elif "service" in spec:
            service = self.cluster.service(namespace, spec["service"])
            seen: dict[str | None, int] = {}
            for _ in range(spec.get("requests", 20)):
                version = fetch_version(service.url())
                seen[version] = seen.get(version, 0) + 1
            self.check(
                f"service {service.name} serves {spec['serves']}",
                sorted(v for v in seen if v) == sorted(spec["serves"]),
                f"answers {seen}",
            )
        else:
            raise ManifestError(f"expect {spec}: needs deployment or service")

    def check(self, what: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(what, bool(ok), detail))
        log(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")

    # --- load

    def start_load(self, service: Service, fresh: bool = False) -> None:
        if service.name in self.loads:
            return
        command = [DIST / "probe", "load", service.url(), "-c", self.args.connections]
        command += ["--qps", self.args.qps, "-t", "3600s", "--json"]
        if fresh:
            command.append("--keepalive=false")
        proc = testlib.Process(command, stdout=subprocess.PIPE, text=True)
        self.loads[service.name] = (proc, now_ms())
        self.cluster.records.note(f"load on {service.name}")

    def start_streams(self, service: Service, counts: dict[str, int]) -> None:
        """lab/streams.py's clients on `service`: they connect now and reconnect until the
        end of the run."""
        if service.name in self.streams:
            return
        command = [sys.executable, ROOT / "lab" / "streams.py", service.url()]
        for kind, n in counts.items():
            command += [f"--{kind}", n]
        proc = testlib.Process(command, stdout=subprocess.PIPE, text=True)
        self.streams[service.name] = (proc, now_ms())
        self.cluster.records.note(f"streams on {service.name}")

    def stop_loads(self) -> None:
        running = {**self.loads, **{f"streams {n}": p for n, p in self.streams.items()}}
        for proc, started in running.values():
            left = self.args.duration - (now_ms() - started) / 1000
            if left > 0:
                time.sleep(left)
            proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in self.loads.items():
            out = proc.communicate(timeout=30)[0]
            self.reports[name] = json.loads(out)
            proc.close()
        for name, (proc, _) in self.streams.items():
            # The clients wait up to streams.FINAL_WAIT_S for their last reconnections.
            try:
                out = proc.communicate(timeout=30)[0]
            except subprocess.TimeoutExpired:
                proc.close()
                raise StepError(
                    f"the clients on {name} did not stop within 30 s"
                ) from None
            self.stream_reports[name] = json.loads(out)
            proc.close()

    # --- the run

    def run(self) -> Result:
        try:
            for step in self.plan["steps"]:
                self.step(step)
            # Pods still terminating are still answering: the load covers them to the end.
            self.cluster.wait(self.cluster.terminations_done, 120, "terminating pods")
            # ... and until every node has dropped them: a node that has not yet may still
            # send a connection to a pod that is gone.
            loaded = [self.cluster.service(ns, n) for ns, n in self.loaded_services]
            self.cluster.wait(
                lambda: all(self.cluster.converged(s) for s in loaded),
                120 + self.lag.high,
                "endpoint changes on every node",
            )
            time.sleep(self.args.cooldown)
            self.stop_loads()
            self.final_checks()
        finally:
            with shielded():
                self.close()
        return self.result()

    def close(self) -> None:
        """Stops the loads and clients and removes the cluster; again is harmless."""
        for proc, _ in [*self.loads.values(), *self.streams.values()]:
            proc.close()
        self.cluster.close()

    def step(self, step: str | dict[str, Any]) -> None:
        record = Step(step, now_ms())
        self.steps.append(record)
        self.cluster.records.note(
            f"step: {step if isinstance(step, str) else 'expect'}"
        )
        log(f"{self.name}: {step}")
        try:
            if isinstance(step, dict) and "expect" in step:
                self.expect_now(step["expect"])
            elif isinstance(step, str) and step.startswith("kubectl "):
                for command in step.split(" && "):
                    words = shlex.split(command)
                    if words[0] != "kubectl":
                        raise ManifestError(f"{command}: not a kubectl command")
                    self.kubectl(words[1:])
                    # The controllers watch the API: they act on a change at once.
                    self.cluster.sync_now()
            elif isinstance(step, str) and step.startswith("helm "):
                self.helm(shlex.split(step)[1:])
                self.cluster.sync_now()
            elif isinstance(step, str) and step.startswith("lab "):
                self.lab(shlex.split(step)[1:])
            else:
                raise ManifestError(
                    f"step {step!r}: a kubectl or helm command, lab ..., or expect"
                )
            error = self.cluster.records.first_error()
            if error is not None:
                raise StepError(error)
            record.ok = True
        except (StepError, ManifestError) as error:
            record.error = str(error)
            raise
        finally:
            record.ended_unix_ms = now_ms()

    # --- what the run showed

    def terminations(self, service: str) -> list[tuple[float, float]]:
        """Per pod of `service` that was deleted: from its deletion to its endpoint removal
        (+ SLACK_MS), the window in which a request routed to it can fail."""
        by_pod: dict[str | None, list[Event]] = {}
        for e in self.cluster.records.events():
            if e.event in ("deleted", "SIGTERM") or e.event == (
                f"endpoint removed from {service}"
            ):
                by_pod.setdefault(e.pod, []).append(e)
        windows = []
        for events in by_pod.values():
            deleted = next((e for e in events if e.event == "deleted"), None)
            removed = [e for e in events if e.event.startswith("endpoint removed")]
            if deleted and removed:
                windows.append((deleted.unix_ms, removed[-1].unix_ms + SLACK_MS))
        return windows

    def final_checks(self) -> None:
        for spec in self.plan.get("expect", []):
            if "service" in spec:
                name = spec["service"]
                windows = self.terminations(name)
                report = self.reports.get(name)
                if report is None:
                    self.check(f"service {name}", False, "was not under load")
                    continue
                errors = report["errors"]
                at = f"at lag {self.lag}"
                if "errors" in spec:
                    self.check(
                        f"service {name}: {spec['errors']} failed requests",
                        errors == spec["errors"],
                        f"{errors} of {report['requests']} ({report['codes']}) {at}",
                    )
                if "errors_min" in spec:
                    self.check(
                        f"service {name}: at least {spec['errors_min']} failed requests",
                        errors >= spec["errors_min"],
                        f"{errors} of {report['requests']} ({report['codes']}) {at}",
                    )
                if spec.get("errors_in_termination_windows"):
                    outside = [
                        e
                        for e in report["error_events"]
                        if not any(lo <= e["unix_ms"] <= hi for lo, hi in windows)
                    ]
                    self.check(
                        f"service {name}: every failure between a pod's deletion and its "
                        "endpoint removal",
                        not outside,
                        f"{len(outside)} outside {len(windows)} windows",
                    )
                if "versions" in spec:
                    seen = sorted(report["versions"])
                    self.check(
                        f"service {name}: versions {spec['versions']} answered",
                        seen == sorted(spec["versions"]),
                        f"{report['versions']}",
                    )
                if "versions_at_once_max" in spec:
                    most = max(
                        (len(s["versions"]) for s in report["timeline"]), default=0
                    )
                    self.check(
                        f"service {name}: at most {spec['versions_at_once_max']} version(s) "
                        "in any second",
                        most <= spec["versions_at_once_max"],
                        f"at most {most}",
                    )
                if "share" in spec:
                    version, lo, hi = (
                        spec["share"]["version"],
                        spec["share"]["min"],
                        spec["share"]["max"],
                    )
                    answered = sum(report["versions"].values())
                    n = report["versions"].get(version, 0)
                    share = n / answered if answered else 0
                    low, high = wilson(n, answered)
                    self.check(
                        f"service {name}: {version} gets {lo:.0%}-{hi:.0%} of the answers",
                        lo <= share <= hi,
                        f"{share:.1%} ({n} of {answered}; 95% interval {low:.1%}-{high:.1%}) "
                        + at,
                    )
            elif "streams" in spec:
                self.stream_checks(spec)
            elif "deployment" in spec:
                name = spec["deployment"]
                # From the moment the load or the long-lived clients start.
                running = [*self.loads.values(), *self.streams.values()]
                start = min((t for _, t in running), default=0)
                samples = [
                    s[name]
                    for t, s in self.cluster.records.samples()
                    if t >= start and name in s
                ]
                if "available_min" in spec:
                    low = min((a for a, _ in samples), default=0)
                    self.check(
                        f"deployment {name}: never fewer than {spec['available_min']} available",
                        low >= spec["available_min"],
                        f"at least {low} available over {len(samples)} samples",
                    )
                if "pods_max" in spec:
                    high = max((n for _, n in samples), default=0)
                    self.check(
                        f"deployment {name}: at most {spec['pods_max']} pods (not terminating)",
                        high <= spec["pods_max"],
                        f"at most {high}",
                    )
            else:
                raise ManifestError(
                    f"expect {spec}: needs service, streams or deployment"
                )

    def stream_checks(self, spec: dict[str, Any]) -> None:
        """What the long-lived clients on a Service saw: how their streams ended, the
        versions they ended on, the longest time without a message or without a stream."""
        name = spec["streams"]
        report = self.stream_reports.get(name)
        if report is None:
            self.check(f"streams on {name}", False, "no clients were connected")
            return
        kinds = report["summary"]
        per_kind = ", ".join(
            f"{k} {s['clean']} clean {s['cut']} cut {s['failed']} failed"
            for k, s in kinds.items()
        )
        abnormal = sum(s["abnormal"] for s in kinds.values())
        if "abnormal" in spec:
            self.check(
                f"streams on {name}: {spec['abnormal']} abnormal closes or failed connections",
                abnormal == spec["abnormal"],
                per_kind,
            )
        if "abnormal_min" in spec:
            self.check(
                f"streams on {name}: at least {spec['abnormal_min']} abnormal closes or "
                "failed connections",
                abnormal >= spec["abnormal_min"],
                per_kind,
            )
        if "ends_on" in spec:
            wanted = {str(v) for v in spec["ends_on"]}
            elsewhere = [
                f"{c['kind']} {c['client']}: {c['version_at_end']}"
                for c in report["clients"]
                if str(c["version_at_end"]) not in wanted
            ]
            at_end = "; ".join(f"{k} {s['versions_at_end']}" for k, s in kinds.items())
            self.check(
                f"streams on {name}: every client ends on {sorted(wanted)}",
                not elsewhere,
                at_end + (f" (not: {', '.join(elsewhere[:5])})" if elsewhere else ""),
            )
        if "max_gap_s" in spec:
            gaps = {
                k: s["max_gap_s"]
                for k, s in kinds.items()
                if s["max_gap_s"] is not None
            }
            self.check(
                f"streams on {name}: no gap between messages over {spec['max_gap_s']:g}s",
                all(g <= spec["max_gap_s"] for g in gaps.values()),
                ", ".join(f"{k} {g:.2f}s" for k, g in gaps.items()),
            )
        if "max_offline_s" in spec:
            offline = {k: s["max_offline_s"] for k, s in kinds.items()}
            self.check(
                f"streams on {name}: no client without a stream for over "
                f"{spec['max_offline_s']:g}s",
                all(t <= spec["max_offline_s"] for t in offline.values()),
                ", ".join(f"{k} {t:.2f}s" for k, t in offline.items()),
            )

    def result(self, error: str | None = None) -> Result:
        """What the run recorded so far; `error`: why it stopped short."""
        return Result(
            experiment=self.name,
            title=self.plan.get("title", ""),
            settings=Settings(
                lag=str(self.lag),
                lag_s=(self.lag.low, self.lag.high),
                nodes=self.cluster.nodes,
                connections=self.args.connections,
                qps=self.args.qps,
                duration_s=self.args.duration,
            ),
            steps=self.steps,
            services={
                name: Load.from_report(report, self.args.qps)
                for name, report in self.reports.items()
            },
            streams=self.stream_reports,
            checks=self.checks,
            skipped=self.skipped,
            events=self.cluster.records.events(),
            error=error,
        )


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (maps merge, everything else replaces)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


def version_of(pod: Pod) -> str | None:
    port = pod.container.get("ports", [{}])[0].get("containerPort", 8080)
    return fetch_version(f"http://{pod.ip}:{port}/")


def fetch_version(url: str) -> str | None:
    """The X-Version of one answer on a new connection, or None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.headers.get("X-Version")
    except OSError:
        return None


def wilson(n: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson interval of a share n/total."""
    if total == 0:
        return 0.0, 1.0
    p = n / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = (
        z
        * ((p * (1 - p) / total + z * z / (4 * total * total)) ** 0.5)
        / (1 + z * z / total)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------ output


def table(result: Result) -> str:
    settings = result.settings
    lines = [
        f"\n{result.experiment}: {result.title}",
        f"  measured at propagation lag {settings.lag} on {settings.nodes} nodes",
    ]
    if result.services:
        lines.append(
            f"  {'Service':<22} {'requests':>9} {'errors':>7} {'qps asked/reached':>17}"
            "  versions"
        )
    for name, s in result.services.items():
        versions = "  ".join(f"{v} {n}" for v, n in s.versions.items())
        rate = f"{s.qps_asked:g}/{s.qps_reached or 0:.0f}"
        lines.append(
            f"  {name:<22} {s.requests:>9} {s.errors:>7} {rate:>17}  {versions}"
        )
    if result.streams:
        lines.append(
            f"  {'Streams':<22} {'clients':>7} {'messages':>8} {'clean':>5} {'cut':>4} "
            f"{'failed':>6} {'reconn.':>7} {'max gap':>7} {'offline':>7}  at the end"
        )
    for name, report in result.streams.items():
        for kind, k in report["summary"].items():
            gap = "-" if k["max_gap_s"] is None else f"{k['max_gap_s']:.2f}s"
            at_end = "  ".join(f"{v} {n}" for v, n in k["versions_at_end"].items())
            lines.append(
                f"  {name + ' ' + kind:<22} {k['clients']:>7} {k['messages']:>8} "
                f"{k['clean']:>5} {k['cut']:>4} {k['failed']:>6} {k['reconnections']:>7} "
                f"{gap:>7} {k['max_offline_s']:>6.2f}s  {at_end}"
            )
    for c in result.checks:
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.check}: {c.detail}")
    for step in result.steps:
        if not step.ok:
            lines.append(f"  FAIL step {step.step}: {step.error}")
    for skipped in result.skipped:
        lines.append(f"  skipped {skipped}")
    return "\n".join(lines)


def svg(result: Result) -> str:
    """Answers per 100 ms by version, each failed request, each step, SIGTERM and endpoint
    removal; the axis spans the steps after the load began, so a rollout of a few seconds
    fills the picture and one failed request shows as a red mark."""
    from lab.timeline import draw

    return draw(result.to_json())


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lab", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("experiment", nargs="*", help="folders under k8s/ (default: all)")
    number = functools.partial(add_number, p)
    number("--duration", low=1, high=3600, default=60, text="seconds of load at least")
    number(
        "--cooldown",
        low=0,
        high=60,
        default=2,
        text="seconds of load after the last step",
    )
    p.add_argument(
        "--lag",
        type=lag_argument,
        default=None,
        help="endpoint propagation lag per node, s: a value (1) or a range each node draws "
        "from per change (0.5-3), 0 to 600; default: the experiment's lag:, else 1",
    )
    number(
        "--nodes",
        low=1,
        high=16,
        default=3,
        kind=int,
        text="nodes per Service, each with its own lag",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the lag draws")
    number(
        "-c",
        "--connections",
        low=1,
        high=1000,
        default=8,
        kind=int,
        text="the load's connections",
    )
    number("--qps", low=1, high=100_000, default=500, text="the load's rate")
    number(
        "--rollout-timeout",
        low=1,
        high=3600,
        default=120,
        text="seconds `rollout status` waits",
    )
    p.add_argument("--registry", default=os.environ.get("REGISTRY", ""))
    p.add_argument("--out", type=pathlib.Path, default=OUT)
    args = p.parse_args(argv)
    args.experiment = args.experiment or experiments()
    return args


@contextlib.contextmanager
def started(name: str, plan: Plan, args: argparse.Namespace) -> Iterator[Run]:
    """A Run whose cluster goes however the block ends: an error, Ctrl-C or SIGTERM included,
    even one that arrives while the cluster is being created."""
    run: Run | None = None
    try:
        with shielded():
            run = Run(name, plan, args)
        yield run
    finally:
        if run is not None:
            with shielded():
                run.close()


def lag_argument(text: str) -> Lag:
    try:
        return Lag.parse(text)
    except ManifestError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    for problem in (
        testlib.tool_problem("haproxy"),
        testlib.docker_problem(),
        testlib.binaries_problem("probe"),
    ):
        if problem:
            raise SystemExit(f"lab: {problem}")
    # Every experiment named known and sound before the first one runs.
    plans = {}
    for name in args.experiment:
        try:
            plans[name] = load_plan(name)
        except ManifestError as error:
            raise SystemExit(f"lab: {name}: {error}") from None
    results = []
    for name, plan in plans.items():
        log(f"{name}: {plan.get('title', '')}")
        with started(name, plan, args) as run:
            try:
                result = run.run()
            except (StepError, ManifestError) as error:
                result = run.result(error=str(error))
                log(f"{name}: {error}")
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result.to_json(), indent=2))
        (out / "timeline.svg").write_text(svg(result))
        print(table(result), flush=True)
        results.append(result)
    for result in results:
        print(f"results: {args.out / result.experiment}/result.json and timeline.svg")
    return results


if __name__ == "__main__":
    end_on_signals()
    sys.exit(0 if all(r.ok for r in main()) else 1)
