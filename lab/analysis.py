"""Proves the analysis queries of k8s/argo-rollouts and k8s/flagger on a real Prometheus.

Pods of our images run as containers on a private Docker network: the stable version as the
manifests write it, and three new versions (canaries): healthy, ERROR_RATE=0.3, LATENCY=400ms.
`probe load` sends each of them traffic. A real Prometheus (Debian's package, its own config and
data in a temporary folder, scrape interval 1 s) scrapes them with the scrape job of
prometheus-scrape.yaml: its relabel_configs as written, service discovery replaced by static
targets that carry the `__meta_kubernetes_*` labels Kubernetes would give each pod (namespace,
name, the template's labels and annotations, the port's name, and the hash Argo Rollouts puts
on a ReplicaSet's pods). Then, for each canary, every query as the manifests write it:

- Argo Rollouts: each AnalysisTemplate metric a Rollout runs, its args resolved as the Rollout
  passes them (fieldRef on the Rollout, podTemplateHashValue Latest = the canary's hash),
  checked against the metric's successCondition; one namespace, the stable pods and the three
  canaries side by side (the hash tells them apart);
- Flagger: each MetricTemplate a Canary uses, with {{ namespace }}, {{ target }} and
  {{ interval }} filled in as Flagger does, checked against the metric's thresholdRange; a
  namespace per canary (the Canary applied three times), each with its primary pod
  <target>-primary-<hash>-<id> beside the canary pod <target>-<hash>-<id>.

An empty result, or NaN, fails: an empty vector must never read as "no errors".

    python -m lab.analysis [--duration 15] [--out target/lab/analysis.json]

Writes a list of {manifest, metric, query, canary, value, condition, verdict}.
"""

import argparse
import functools
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Self

import testlib
import yaml

from lab import kube
from lab.common import ROOT, end_on_signals, k8s_validator, shielded
from lab.common import log as common_log

ARGO = ROOT / "k8s" / "argo-rollouts"
FLAGGER = ROOT / "k8s" / "flagger"
OUT = ROOT / "target" / "lab" / "analysis.json"
# The new version each canary runs: the walkthroughs' upgrade, with or without a fault.
CANARY_IMAGE = "testpage:0.9"
CANARIES: dict[str, dict[str, str]] = {
    "healthy": {},
    "errors": {"ERROR_RATE": "0.3"},
    "latency": {"LATENCY": "400ms"},
}
PORT_NAME = "http"
# On every container and network of a run, with its run id.
LABEL = "testpage-lab-analysis"
# A canary no pod stands for (and the namespace of its Canary).
ABSENT = "absent"


def log(message: str) -> None:
    common_log(message, "lab-analysis")


# ------------------------------------------------------------------ conditions

CLAUSE = re.compile(
    r"\s*result\[(\d+)\]\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def argo_condition(condition: str, result: Sequence[float]) -> bool:
    """An Argo successCondition of the form `result[N] OP NUMBER [&& ...]` on a query result
    (a list of floats, as Argo's Prometheus provider hands it over). An index past the end is
    an error in Argo (the measurement errs, it never succeeds): False here, as NaN is."""
    verdict = True
    for clause in condition.split("&&"):
        match = CLAUSE.fullmatch(clause)
        if not match:
            raise ValueError(f"condition form not supported by the lab: {condition!r}")
        index, op, number = int(match.group(1)), match.group(2), float(match.group(3))
        if index >= len(result) or math.isnan(result[index]):
            return False
        verdict = verdict and COMPARE[op](result[index], number)
    return verdict


def flagger_condition(
    threshold_range: Mapping[str, float], result: Sequence[float]
) -> bool:
    """Flagger's thresholdRange on a query result: one value, within min and max; no value or
    NaN is 'no values found', a failed check."""
    if len(result) != 1 or math.isnan(result[0]):
        return False
    low, high = threshold_range.get("min"), threshold_range.get("max")
    return (low is None or result[0] >= low) and (high is None or result[0] <= high)


# ------------------------------------------------------------------ manifests

# A check's key: (manifest, metric, query, canary).
CheckKey = tuple[str, str, str, str]
# A check's verdict on a query's result (a list of floats).
Verdict = Callable[[list[float]], bool]
# {key: (condition as written, verdict)}.
Checks = dict[CheckKey, tuple[str, Verdict]]
# Where a template comes from: source(kind, name).
Source = Callable[[str, str], str]


def source_file(folder: pathlib.Path, kind: str, name: str) -> str:
    """The repository path of the file in `folder` that defines kind/name."""
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            # kustomization.yaml, lab.yaml and scrape configs have no kind of their own.
            if (
                isinstance(doc, dict)
                and doc.get("kind") == kind
                and doc["metadata"]["name"] == name
            ):
                return str(path.relative_to(ROOT))
    raise LookupError(f"no {kind} {name} in {folder}")


def field(obj: dict[str, Any], path: str) -> str:
    """A Rollout's field as Argo's fieldRef reads it: metadata.name, metadata.namespace,
    metadata.labels['key'], metadata.annotations['key']."""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return obj["metadata"].get(match.group(1), {})[match.group(2)]
    if path in ("metadata.name", "metadata.namespace"):
        return obj["metadata"][path.split(".")[1]]
    raise ValueError(f"fieldRef {path} not supported by the lab")


def argo_args(
    rollout: dict[str, Any],
    analysis: dict[str, Any],
    template: dict[str, Any],
    hashes: Mapping[str, str],
) -> dict[str, str]:
    """The template's args as the Rollout passes them: hashes maps Latest and Stable to the
    pod-template hashes of the canary and the stable pods."""
    values = {a["name"]: a.get("value") for a in template["spec"].get("args") or []}
    for arg in analysis.get("args") or []:
        if "value" in arg:
            values[arg["name"]] = arg["value"]
            continue
        source = arg["valueFrom"]
        if "podTemplateHashValue" in source:
            values[arg["name"]] = hashes[source["podTemplateHashValue"]]
        else:
            values[arg["name"]] = field(rollout, source["fieldRef"]["fieldPath"])
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:
        raise ValueError(f"args without a value: {missing}")
    return values


def fill(
    pattern: re.Pattern[str], query: str, values: Mapping[str, object], what: str
) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"{what}: no value for {match.group(0)}")
        return str(values[match.group(1)])

    return pattern.sub(one, query)


def argo_checks(
    objects: list[dict[str, Any]],
    hashes_of: Mapping[str, Mapping[str, str]],
    source: Source | None = None,
) -> Checks:
    """(manifest, metric, query, condition, check) for each AnalysisTemplate metric that a
    Rollout runs, per canary: {canary: [...]}. `source(kind, name)` names where a template
    comes from (the file under k8s/argo-rollouts/ when None)."""
    checks: Checks = {}
    for rollout in (o for o in objects if o["kind"] == "Rollout"):
        for _where, analysis in k8s_validator().rollout_analyses(rollout):
            for ref in analysis.get("templates") or []:
                template = k8s_validator().find(
                    objects,
                    "AnalysisTemplate",
                    rollout["metadata"]["namespace"],
                    ref["templateName"],
                )
                manifest = (source or functools.partial(source_file, ARGO))(
                    "AnalysisTemplate", ref["templateName"]
                )
                for canary, hashes in hashes_of.items():
                    args = argo_args(rollout, analysis, template, hashes)
                    for metric in template["spec"]["metrics"]:
                        raw = metric["provider"]["prometheus"]["query"]
                        query = fill(
                            k8s_validator().ARGO_ARG, raw, args, manifest
                        ).strip()
                        condition = metric["successCondition"]
                        checks.setdefault(
                            (manifest, metric["name"], query, canary),
                            (
                                condition,
                                functools.partial(argo_condition, condition),
                            ),
                        )
    return checks


def flagger_checks(
    objects: list[dict[str, Any]],
    namespace_of: Mapping[str, str],
    source: Source | None = None,
) -> Checks:
    """The same for each MetricTemplate a Canary uses; namespace_of maps each canary to the
    namespace its Canary is applied in."""
    checks: Checks = {}
    for canary_obj in (o for o in objects if o["kind"] == "Canary"):
        spec = canary_obj["spec"]
        for metric in spec["analysis"]["metrics"]:
            ref = metric.get("templateRef")
            if not ref:
                continue
            template = k8s_validator().find(
                objects,
                "MetricTemplate",
                ref.get("namespace") or canary_obj["metadata"]["namespace"],
                ref["name"],
            )
            manifest = (source or functools.partial(source_file, FLAGGER))(
                "MetricTemplate", ref["name"]
            )
            threshold = metric["thresholdRange"]
            condition = "thresholdRange " + json.dumps(threshold, sort_keys=True)
            for canary, namespace in namespace_of.items():
                target = spec["targetRef"]["name"]
                values = {
                    "namespace": namespace,
                    "target": target,
                    "service": (spec.get("service") or {}).get("name") or target,
                    "interval": metric.get("interval") or spec["analysis"]["interval"],
                    **{
                        f"variables.{k}": v
                        for k, v in (metric.get("templateVariables") or {}).items()
                    },
                }
                query = fill(
                    k8s_validator().FLAGGER_VARIABLE,
                    template["spec"]["query"],
                    values,
                    manifest,
                ).strip()
                checks[(manifest, metric["name"], query, canary)] = (
                    condition,
                    functools.partial(flagger_condition, threshold),
                )
    return checks


# ------------------------------------------------------------------ pods and targets


def sd_name(text: str) -> str:
    """A label or annotation key as Kubernetes service discovery spells it in a meta label."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def sd_labels(
    namespace: str,
    name: str,
    template: dict[str, Any],
    extra_labels: Mapping[str, str],
    ip: str,
) -> tuple[str, dict[str, str]]:
    """The meta labels Prometheus's Kubernetes service discovery (role: pod) gives the target
    of a pod made from `template`, for its container port named http."""
    meta = template.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), **extra_labels}
    container = template["spec"]["containers"][0]
    port = next(p for p in container["ports"] if p.get("name") == PORT_NAME)
    out = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": container["name"],
        "__meta_kubernetes_pod_container_port_name": port["name"],
        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
        "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
    }
    for key, value in labels.items():
        out[f"__meta_kubernetes_pod_label_{sd_name(key)}"] = str(value)
        out[f"__meta_kubernetes_pod_labelpresent_{sd_name(key)}"] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        out[f"__meta_kubernetes_pod_annotation_{sd_name(key)}"] = str(value)
        out[f"__meta_kubernetes_pod_annotationpresent_{sd_name(key)}"] = "true"
    return f"{ip}:{port['containerPort']}", out


def changed(template: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The pod template of the new version: the canary image, with the fault's env."""
    new = json.loads(json.dumps(template))
    container = new["spec"]["containers"][0]
    container["image"] = CANARY_IMAGE
    container["env"] = list(container.get("env") or []) + [
        {"name": k, "value": v} for k, v in env.items()
    ]
    return new


def pod_suffix(seed: str) -> str:
    return kube.pod_template_hash({"pod": seed})[:5]


class Pods:
    """Containers of our images on a network of their own (the lab's `kube.Network`), under
    this scenario's label, not the lab's: a lab run beside this one never takes these for its
    leftovers. `cleanup` removes every one of them and the network."""

    def __init__(self, run_id: str) -> None:
        self.network = kube.Network(run_id, prefix=LABEL)

    def start(self, name: str, image: str, env: Mapping[str, str]) -> str:
        """Starts a pod; returns its IP address."""
        ip = self.network.allocate()
        args = [
            "run",
            "-d",
            "--label",
            self.network.label,
            "--network",
            self.network.name,
        ]
        args += ["--ip", ip, "--name", f"{self.network.name}-{name}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        kube.docker(*args, os.environ.get("REGISTRY", "") + image)
        return ip

    def cleanup(self) -> None:
        self.network.cleanup()


def leftovers() -> list[list[str]]:
    """Containers and networks of any run of this scenario still there."""
    return [
        kube.docker(*what, "--filter", f"label={LABEL}", check=False).stdout.split()
        for what in (("ps", "-aq"), ("network", "ls", "-q"))
    ]


def image_of(template: dict[str, Any]) -> str:
    return template["spec"]["containers"][0]["image"]


# ------------------------------------------------------------------ Prometheus


class Prometheus:
    """Debian's prometheus with its own config and data folder, on a port the kernel chose
    (read from its log), stopped and reaped on the way out."""

    addr: str  # host:port, once entered

    def __init__(
        self, folder: str | os.PathLike[str], scrape_configs: list[dict[str, Any]]
    ) -> None:
        self.folder = pathlib.Path(folder)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs,
        }
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = self.folder / "prometheus.log"
        self.log_file = self.log_path.open("w")
        self.proc = testlib.Process(
            [
                "prometheus",
                f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--log.level=info",
            ],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Self:
        try:
            self.addr = testlib.wait_until(self._listening, 30, "Prometheus listening")
            testlib.wait_until(
                lambda: testlib.http_status(f"http://{self.addr}/-/ready") == 200,
                30,
                "Prometheus ready",
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def _listening(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"prometheus exited: {self.log_path.read_text()[-2000:]}"
            )
        match = re.search(
            r'msg="Listening on" address=(127\.0\.0\.1:\d+)', self.log_path.read_text()
        )
        return match and match.group(1)

    def __exit__(self, *exc: object) -> Literal[False]:
        self.proc.close()
        self.log_file.close()
        return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://{self.addr}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, _, body = testlib.http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {status} {body[:500]!r}")
        return answer["data"]

    def query(self, query: str) -> list[float]:
        """The result as a list of floats: each sample of a vector, or the scalar."""
        data = self.api("query", query=query)
        if data["resultType"] == "vector":
            return [float(sample["value"][1]) for sample in data["result"]]
        if data["resultType"] == "scalar":
            return [float(data["result"][1])]
        raise RuntimeError(f"unexpected result type {data['resultType']} for {query}")

    def targets_up(self) -> list[dict[str, Any]]:
        data = self.api("targets", state="active")
        return [t for t in data["activeTargets"] if t["health"] == "up"]


def scrape_job(
    path: pathlib.Path, targets: Iterable[tuple[str, dict[str, str]]]
) -> dict[str, Any]:
    """The folder's scrape job, its relabel_configs as written, its service discovery replaced
    by static targets with the meta labels Kubernetes would give."""
    jobs = yaml.safe_load(path.read_text())["scrape_configs"]
    if len(jobs) != 1 or "kubernetes_sd_configs" not in jobs[0]:
        raise ValueError(f"{path}: expected one job with kubernetes_sd_configs")
    job = {k: v for k, v in jobs[0].items() if k != "kubernetes_sd_configs"}
    job["static_configs"] = [
        {"targets": [address], "labels": labels} for address, labels in targets
    ]
    return job


# ------------------------------------------------------------------ the run


def scenario() -> dict[str, Any]:
    """What the run stands for, from the manifests: the Rollouts and the Canary, the stable
    template, each canary's template and hash, and the namespace each Canary is applied in."""
    argo_objects, flagger_objects = kube.render(ARGO), kube.render(FLAGGER)
    rollout = next(
        o
        for o in argo_objects
        if o["kind"] == "Rollout" and "canary" in o["spec"]["strategy"]
    )
    canary = next(o for o in flagger_objects if o["kind"] == "Canary")
    deployment = k8s_validator().find(
        flagger_objects,
        "Deployment",
        canary["metadata"]["namespace"],
        canary["spec"]["targetRef"]["name"],
    )
    stable = rollout["spec"]["template"]
    return {
        "argo_objects": argo_objects,
        "flagger_objects": flagger_objects,
        "rollout": rollout,
        "deployment": deployment,
        "stable": stable,
        "stable_hash": kube.pod_template_hash(stable),
        "hashes": {
            c: kube.pod_template_hash(changed(stable, env))
            for c, env in CANARIES.items()
        },
        "flagger_namespaces": {
            c: f"{canary['metadata']['namespace']}-{c}" for c in CANARIES
        },
    }


def targets(
    s: dict[str, Any], ips: Mapping[str, str]
) -> list[tuple[str, dict[str, str]]]:
    """(address, meta labels) of every pod the containers stand for. Argo Rollouts: the stable
    pod and each canary's in the Rollout's namespace, told apart by the hash. Flagger: per
    canary, a namespace with the primary pod (the stable container; app: <name>-primary, as
    Flagger labels it) and the canary pod."""
    rollout, name = s["rollout"], s["rollout"]["metadata"]["name"]
    namespace = rollout["metadata"]["namespace"]
    stable_hash = s["stable_hash"]
    out = [
        sd_labels(
            namespace,
            f"{name}-{stable_hash}-{pod_suffix('stable')}",
            s["stable"],
            {"rollouts-pod-template-hash": stable_hash},
            ips["stable"],
        )
    ]
    template = s["deployment"]["spec"]["template"]
    target = s["deployment"]["metadata"]["name"]
    labels = template["metadata"].get("labels") or {}
    primary = {
        **template,
        "metadata": {
            **template["metadata"],
            "labels": {
                k: f"{v}-primary" if k == "app" else v for k, v in labels.items()
            },
        },
    }
    primary_hash = kube.pod_template_hash(primary)
    for c, env in CANARIES.items():
        out.append(
            sd_labels(
                namespace,
                f"{name}-{s['hashes'][c]}-{pod_suffix(c)}",
                changed(s["stable"], env),
                {"rollouts-pod-template-hash": s["hashes"][c]},
                ips[c],
            )
        )
        canary_hash = kube.pod_template_hash(changed(template, env))
        for pod, pod_template, pod_hash, ip in (
            (f"{target}-primary", primary, primary_hash, ips["stable"]),
            (target, changed(template, env), canary_hash, ips[c]),
        ):
            out.append(
                sd_labels(
                    s["flagger_namespaces"][c],
                    f"{pod}-{pod_hash}-{pod_suffix(pod + c)}",
                    pod_template,
                    {"pod-template-hash": pod_hash},
                    ip,
                )
            )
    return out


BY_VERSION = (
    'sum by (version) (rate(http_requests_total{route="/"}[1m])'
    " * on (namespace, pod) group_left (version) testpage_build_info)"
)


def start_loads(
    ips: Iterable[str], connections: str, qps: str, duration: float
) -> list[testlib.Process]:
    """`probe load` against port 8080 of each pod in `ips`, each its JSON report on stdout."""
    probe = testlib.DIST / "probe"
    return [
        testlib.Process(
            [probe, "load", f"http://{ip}:8080/", "-c", connections]
            + ["--qps", qps, "-t", f"{duration}s", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for ip in ips
    ]


def run(duration: float, qps: str, connections: str) -> dict[str, Any]:
    """Returns {rows, absent: the rows of a canary without pods, loads: probe load's report
    per container, by_version: requests per second by version, through the join on
    testpage_build_info}."""
    s = scenario()
    pods: Pods | None = None
    loads: list[testlib.Process] = []
    try:
        with shielded():  # made and bound as one, so that the `finally` finds it
            pods = Pods(uuid.uuid4().hex[:8])
        # One container per version; each is scraped as every pod it stands for.
        ips = {"stable": pods.start("stable", image_of(s["stable"]), {})}
        for c, env in CANARIES.items():
            ips[c] = pods.start(c, CANARY_IMAGE, env)
        pod_targets = targets(s, ips)
        # The same job in both folders (a test keeps them equal): taken once.
        job = scrape_job(ARGO / "prometheus-scrape.yaml", pod_targets)
        for name, ip in ips.items():
            testlib.wait_until(
                lambda ip=ip: testlib.http_status(f"http://{ip}:8080/readyz") == 200,
                20,
                f"{name} pod ready",
            )
        with (
            tempfile.TemporaryDirectory(prefix="lab-analysis-") as folder,
            Prometheus(folder, [job]) as prometheus,
        ):
            log(f"Prometheus on {prometheus.addr}, {len(pod_targets)} targets")
            testlib.wait_until(
                lambda: len(prometheus.targets_up()) == len(pod_targets),
                30,
                f"all {len(pod_targets)} targets up",
            )
            loads += start_loads(ips.values(), connections, qps, duration)
            reports = {
                name: json.loads(proc.communicate(timeout=duration + 30)[0])
                for name, proc in zip(ips, loads, strict=False)
            }
            # The last samples of the load: two scrapes more.
            time.sleep(2.5)
            checks = argo_checks(
                s["argo_objects"],
                {
                    c: {"Latest": s["hashes"][c], "Stable": s["stable_hash"]}
                    for c in CANARIES
                },
            )
            checks.update(flagger_checks(s["flagger_objects"], s["flagger_namespaces"]))
            rows = [
                evaluate(prometheus, key, condition, ok)
                for key, (condition, ok) in checks.items()
            ]
            # The same queries for a canary no pod stands for: no series at all.
            absent = argo_checks(
                s["argo_objects"], {ABSENT: {"Latest": "0000000000", "Stable": "0"}}
            )
            absent.update(flagger_checks(s["flagger_objects"], {ABSENT: ABSENT}))
            absent_rows = [
                evaluate(prometheus, key, condition, ok)
                for key, (condition, ok) in absent.items()
            ]
            by_version = {
                sample["metric"].get("version"): float(sample["value"][1])
                for sample in prometheus.api("query", query=BY_VERSION)["result"]
            }
            return {
                "rows": rows,
                "absent": absent_rows,
                "loads": reports,
                "by_version": by_version,
            }
    finally:
        with shielded():
            for proc in loads:
                proc.close()
            if pods is not None:
                pods.cleanup()


def evaluate(
    prometheus: Prometheus, key: CheckKey, condition: str, ok: Verdict
) -> dict[str, Any]:
    manifest, metric, query, canary = key
    result = prometheus.query(query)
    value: float | list[float] | str | None = (
        result[0] if len(result) == 1 else (result or None)
    )
    if isinstance(value, float) and math.isnan(value):
        value = "NaN"
    return {
        "manifest": manifest,
        "metric": metric,
        "query": query,
        "canary": canary,
        "value": value,
        "condition": condition,
        "verdict": "pass" if ok(result) else "fail",
    }


# Which metric each faulty canary must fail (and pass every other).
MUST_FAIL: dict[str, set[str]] = {
    "healthy": set(),
    "errors": {"success-rate"},
    "latency": {"latency-p99"},
}


def problems(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Where the verdicts are not what the canaries are: the healthy one passes every check,
    each faulty one fails the metric its fault moves and passes the others."""
    found = []
    for row in rows:
        expected = "fail" if row["metric"] in MUST_FAIL[row["canary"]] else "pass"
        if row["verdict"] != expected:
            found.append(
                f"{row['manifest']} {row['metric']} on the {row['canary']} canary: "
                f"{row['verdict']} (value {row['value']}, {row['condition']}), "
                f"expected {expected}"
            )
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m lab.analysis", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=15, help="seconds of load")
    parser.add_argument("--qps", default="40", help="per pod")
    parser.add_argument("-c", dest="connections", default="4", help="per pod")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.monotonic()
    outcome = run(args.duration, args.qps, args.connections)
    rows = outcome["rows"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        value = row["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(
            f"{row['verdict']:4}  {row['canary']:8} {row['metric']:13} {shown:>9}  "
            f"{row['condition']}  ({row['manifest']})"
        )
    outcome["seconds"] = time.monotonic() - started
    log(f"{len(rows)} checks in {outcome['seconds']:.1f}s -> {args.out}")
    return outcome


if __name__ == "__main__":
    end_on_signals("lab-analysis")
    wrong = problems(main()["rows"])
    for line in wrong:
        log(line)
    sys.exit(1 if wrong else 0)
