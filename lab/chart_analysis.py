"""The Helm chart's PromQL on a real Prometheus: the dashboard, the labels its ServiceMonitor
and PodMonitor give, and the analysis templates it installs.

Two releases are rendered with real helm: one with `rollout.enabled` and `serviceMonitor.enabled`
(an Argo Rollouts Rollout, its AnalysisTemplate, a ServiceMonitor), one with `canary.enabled`
and `podMonitor.enabled` (a Flagger Canary, its MetricTemplates, a PodMonitor), each in a
namespace of its own. Pods of two versions run as containers of our images (lab/analysis.py's
`Pods`): the chart's 0.8 (stable, Flagger's primary) and 0.9 (the new version, the canary), each
under `probe load`. A real Prometheus (lab/analysis.py's `Prometheus`) scrapes them with the
jobs the Prometheus Operator generates from the two monitors: its own relabelings (keep the
selected Service or pods and the named port; namespace, service, pod, container, endpoint; job)
followed by the monitor's `relabelings` as the chart writes them. Service discovery is replaced
by static targets carrying the `__meta_kubernetes_*` labels Kubernetes would give (role
endpoints for the ServiceMonitor, pod for the PodMonitor).

Then:
- labels: every series of testpage_build_info carries namespace, pod, app and, in the Rollout's
  namespace, the rollouts_pod_template_hash of its pod;
- the AnalysisTemplate and MetricTemplates, filled in as Argo Rollouts and Flagger do, each
  return a value and pass for the healthy new version;
- every expression of the dashboard, its variables set to the release, returns series in both
  namespaces; split by version (legend {{version}}) it returns both versions, by pod every pod.

    python -m lab.chart_analysis [--duration 15] [--out target/lab/chart-analysis.json]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import testlib
import yaml

from lab import analysis, kube
from lab.common import ROOT, end_on_signals, shielded
from lab.common import log as common_log

CHART = ROOT / "charts" / "testpage"
OUT = ROOT / "target" / "lab" / "chart-analysis.json"
RELEASE = "t"
VERSIONS = {"stable": "0.8", "new": "0.9"}
ARGO_NS, FLAGGER_NS = "chart-argo", "chart-flagger"
# A namespace no pod is in: every dashboard expression must return nothing there.
ABSENT = "chart-absent"
RELEASES = {
    ARGO_NS: ["--set", "rollout.enabled=true,serviceMonitor.enabled=true"],
    FLAGGER_NS: [
        "--set",
        "canary.enabled=true,canary.provider=kubernetes,podMonitor.enabled=true",
    ],
}
# The dashboard's variables for one release; Grafana's $__rate_interval for a 1 s scrape.
RATE_INTERVAL = "1m"


def log(message: str) -> None:
    common_log(message, "chart-analysis")


def helm() -> str:
    done = subprocess.run(
        [ROOT / "scripts" / "helm.sh"], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"chart-analysis: helm: {done.stderr.strip()}")
    return done.stdout.split()[-1]


def render(namespace: str, tag: str, extra: list[str]) -> list[dict[str, Any]]:
    command: list[str | pathlib.Path] = [helm(), "template", RELEASE, CHART]
    command += ["--namespace", namespace, "--skip-tests"]
    command += ["--set", f"image.tag={tag},dashboard.enabled=true", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


# ------------------------------------------------------------------ the operator's jobs

CAMEL = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "regex": "regex",
    "replacement": "replacement",
    "action": "action",
    "separator": "separator",
    "modulus": "modulus",
}


def relabel_config(relabeling: Mapping[str, Any]) -> dict[str, Any]:
    """A monitor's relabeling as Prometheus spells it (the operator renames the fields)."""
    unknown = set(relabeling) - set(CAMEL)
    if unknown:
        raise ValueError(f"relabeling fields not played: {sorted(unknown)}")
    return {CAMEL[k]: v for k, v in relabeling.items()}


def keep(meta: str, value: object) -> dict[str, Any]:
    return {"source_labels": [meta], "regex": str(value), "action": "keep"}


def copy(meta: str, label: str) -> dict[str, Any]:
    return {"source_labels": [meta], "target_label": label}


def monitor_job(monitor: dict[str, Any]) -> dict[str, Any]:
    """The scrape job the Prometheus Operator writes for a ServiceMonitor (role endpoints) or
    a PodMonitor (role pod), without its service discovery: its keep rules, its target
    labels, then the monitor's relabelings."""
    namespace, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    if monitor["kind"] == "ServiceMonitor":
        endpoint = monitor["spec"]["endpoints"][0]
        rules = [
            keep(f"__meta_kubernetes_service_label_{analysis.sd_name(k)}", v)
            for k, v in selector.items()
        ]
        rules.append(keep("__meta_kubernetes_endpoint_port_name", endpoint["port"]))
        rules += [
            copy("__meta_kubernetes_namespace", "namespace"),
            copy("__meta_kubernetes_service_name", "service"),
            copy("__meta_kubernetes_pod_name", "pod"),
            copy("__meta_kubernetes_pod_container_name", "container"),
            copy("__meta_kubernetes_service_name", "job"),
        ]
        job_name = f"serviceMonitor/{namespace}/{name}/0"
    else:
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        rules = [
            keep(f"__meta_kubernetes_pod_label_{analysis.sd_name(k)}", v)
            for k, v in selector.items()
        ]
        rules.append(
            keep("__meta_kubernetes_pod_container_port_name", endpoint["port"])
        )
        rules += [
            copy("__meta_kubernetes_namespace", "namespace"),
            copy("__meta_kubernetes_pod_container_name", "container"),
            copy("__meta_kubernetes_pod_name", "pod"),
            {"target_label": "job", "replacement": f"{namespace}/{name}"},
        ]
        job_name = f"podMonitor/{namespace}/{name}/0"
    rules.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    rules += [relabel_config(r) for r in endpoint.get("relabelings") or []]
    return {
        "job_name": job_name,
        "metrics_path": endpoint.get("path", "/metrics"),
        "relabel_configs": rules,
    }


def service_meta(service: dict[str, Any]) -> dict[str, str]:
    """The meta labels role endpoints adds for a pod behind `service`, port http."""
    out = {
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        "__meta_kubernetes_endpoint_port_name": "http",
        "__meta_kubernetes_endpoint_ready": "true",
    }
    for key, value in service["metadata"]["labels"].items():
        out[f"__meta_kubernetes_service_label_{analysis.sd_name(key)}"] = str(value)
    return out


# ------------------------------------------------------------------ the scenario


def scenario() -> dict[str, Any]:
    """Renders both releases at both versions; returns what the run needs."""
    # renders: {(namespace, role): objects}; pods: {(namespace, role): (name, template,
    # extra labels)}; hashes: {role: the Rollout's pod-template hash}.
    s: dict[str, Any] = {"renders": {}, "pods": {}, "hashes": {}}
    for namespace, extra in RELEASES.items():
        for role, tag in VERSIONS.items():
            s["renders"][(namespace, role)] = render(namespace, tag, extra)
    # Argo Rollouts: the Rollout's pods, named and labelled by their template's hash.
    for role in VERSIONS:
        objects = s["renders"][(ARGO_NS, role)]
        template = one(objects, "Rollout")["spec"]["template"]
        pod_hash = kube.pod_template_hash(template)
        s["hashes"][role] = pod_hash
        s["pods"][(ARGO_NS, role)] = (
            f"{RELEASE}-testpage-{pod_hash}-{analysis.pod_suffix(role)}",
            template,
            {"rollouts-pod-template-hash": pod_hash},
        )
    # Flagger: the primary runs the stable template (selector label renamed -primary), the
    # canary the new one under the Deployment's own name.
    for role in VERSIONS:
        objects = s["renders"][(FLAGGER_NS, role)]
        template = json.loads(
            json.dumps(one(objects, "Deployment")["spec"]["template"])
        )
        name = f"{RELEASE}-testpage"
        if role == "stable":
            labels = template["metadata"]["labels"]
            labels["app.kubernetes.io/name"] += "-primary"
            name += "-primary"
        pod_hash = kube.pod_template_hash(template)
        s["pods"][(FLAGGER_NS, role)] = (
            f"{name}-{pod_hash}-{analysis.pod_suffix(name)}",
            template,
            {"pod-template-hash": pod_hash},
        )
    return s


def targets(s: dict[str, Any], ips: Mapping[str, str]) -> list[dict[str, Any]]:
    """(job, [(address, meta labels)]) for both monitors."""
    argo = s["renders"][(ARGO_NS, "new")]
    service = next(
        o
        for o in argo
        if o["kind"] == "Service"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "server"
    )
    jobs = []
    for namespace, kind in ((ARGO_NS, "ServiceMonitor"), (FLAGGER_NS, "PodMonitor")):
        monitor = one(s["renders"][(namespace, "new")], kind)
        found = []
        for role in VERSIONS:
            name, template, extra = s["pods"][(namespace, role)]
            address, meta = analysis.sd_labels(
                namespace, name, template, extra, ips[role]
            )
            if kind == "ServiceMonitor":
                meta.update(service_meta(service))
            found.append((address, meta))
        job = monitor_job(monitor)
        job["static_configs"] = [
            {"targets": [address], "labels": meta} for address, meta in found
        ]
        jobs.append(job)
    return jobs


def literal_env(template: dict[str, Any]) -> dict[str, str]:
    """The env a container of the template gets, without the Downward API (Docker has none;
    POD_IP falls back to the container's address)."""
    container = template["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# ------------------------------------------------------------------ the checks


def label_rows(
    prometheus: analysis.Prometheus, s: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for namespace in RELEASES:
        series = prometheus.api(
            "query", query=f'testpage_build_info{{namespace="{namespace}"}}'
        )["result"]
        got = {sample["metric"].get("pod"): sample["metric"] for sample in series}
        for role, version in VERSIONS.items():
            name, template, extra = s["pods"][(namespace, role)]
            labels = got.get(name, {})
            wanted = {
                "namespace": namespace,
                "pod": name,
                "app": template["metadata"]["labels"]["app"],
                "version": version,
            }
            if namespace == ARGO_NS:
                wanted["rollouts_pod_template_hash"] = extra[
                    "rollouts-pod-template-hash"
                ]
                wanted["service"] = f"{RELEASE}-testpage"
            wrong = {k: labels.get(k) for k, v in wanted.items() if labels.get(k) != v}
            rows.append(
                {
                    "what": "labels",
                    "namespace": namespace,
                    "pod": name,
                    "labels": labels,
                    "verdict": "pass" if labels and not wrong else "fail",
                    "detail": wrong or "as the queries need",
                }
            )
    return rows


def analysis_rows(
    prometheus: analysis.Prometheus, s: dict[str, Any]
) -> list[dict[str, Any]]:
    argo = s["renders"][(ARGO_NS, "new")]
    flagger = s["renders"][(FLAGGER_NS, "new")]
    checks = analysis.argo_checks(
        argo,
        {"new": {"Latest": s["hashes"]["new"], "Stable": s["hashes"]["stable"]}},
        source=lambda kind, name: f"charts/testpage {kind} {name} (rollout.enabled)",
    )
    checks.update(
        analysis.flagger_checks(
            flagger,
            {"new": FLAGGER_NS},
            source=lambda kind, name: f"charts/testpage {kind} {name} (canary.enabled)",
        )
    )
    rows = []
    for key, (condition, ok) in checks.items():
        row = analysis.evaluate(prometheus, key, condition, ok)
        rows.append({"what": "analysis", **row})
    return rows


def dashboard_expressions() -> Iterator[tuple[str, str, str]]:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            yield panel["title"], target["expr"], target["legendFormat"]


def dashboard_rows(
    prometheus: analysis.Prometheus,
    s: dict[str, Any],
    namespaces: Iterable[str] = RELEASES,
) -> list[dict[str, Any]]:
    """Each expression of the dashboard per namespace; a namespace no pod is in (not in
    RELEASES) must give no series, so each of its rows fails."""
    rows = []
    for namespace in namespaces:
        known = namespace in RELEASES
        release = namespace if known else ARGO_NS
        app = s["pods"][(release, "new")][1]["metadata"]["labels"]["app"]
        pods = {s["pods"][(release, role)][0] for role in VERSIONS} if known else set()
        for title, expr, legend in dashboard_expressions():
            query = (
                expr.replace("$namespace", namespace)
                .replace("$app", app)
                .replace("$__rate_interval", RATE_INTERVAL)
            )
            result = prometheus.api("query", query=query)["result"]
            split = "version" if "{{version}}" in legend else "pod"
            seen = sorted({sample["metric"].get(split) for sample in result})
            if known:
                wanted = (
                    sorted(VERSIONS.values()) if split == "version" else sorted(pods)
                )
            else:
                wanted = ["(no series)"]
            rows.append(
                {
                    "what": "dashboard",
                    "namespace": namespace,
                    "panel": title,
                    "query": query,
                    "series": len(result),
                    "split": split,
                    "seen": seen,
                    "values": [sample["value"][1] for sample in result],
                    "verdict": "pass" if result and seen == wanted else "fail",
                }
            )
    return rows


def drain_rows(
    prometheus: analysis.Prometheus, s: dict[str, Any]
) -> list[dict[str, Any]]:
    """In the stable pod's drain: the shutdown panels show it, the new pod's show nothing."""
    rows = []
    for namespace in RELEASES:
        stable = s["pods"][(namespace, "stable")][0]
        new = s["pods"][(namespace, "new")][0]
        for metric, low in (
            ("testpage_draining", 1),
            ("testpage_seconds_since_sigterm", 1),
        ):
            values = {
                sample["metric"]["pod"]: float(sample["value"][1])
                for sample in prometheus.api(
                    "query", query=f'{metric}{{namespace="{namespace}"}}'
                )["result"]
            }
            ok = values.get(stable, 0) >= low and values.get(new) == 0
            rows.append(
                {
                    "what": "drain",
                    "namespace": namespace,
                    "metric": metric,
                    "values": values,
                    "verdict": "pass" if ok else "fail",
                }
            )
    return rows


# ------------------------------------------------------------------ the run


def run(
    duration: float, qps: str, connections: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    s = scenario()
    pods: analysis.Pods | None = None
    loads: list[testlib.Process] = []
    try:
        with shielded():  # made and bound as one, so that the `finally` finds it
            pods = analysis.Pods(uuid.uuid4().hex[:8])
        ips: dict[str, str] = {}
        for role, tag in VERSIONS.items():
            template = s["pods"][(ARGO_NS, role)][1]
            ips[role] = pods.start(role, f"testpage:{tag}", literal_env(template))
        for role, ip in ips.items():
            testlib.wait_until(
                lambda ip=ip: testlib.http_status(f"http://{ip}:8080/readyz") == 200,
                20,
                f"{role} pod ready",
            )
        jobs = targets(s, ips)
        with (
            tempfile.TemporaryDirectory(prefix="chart-analysis-") as folder,
            analysis.Prometheus(folder, jobs) as prometheus,
        ):
            log(
                f"Prometheus on {prometheus.addr}, jobs {[j['job_name'] for j in jobs]}"
            )
            testlib.wait_until(
                lambda: len(prometheus.targets_up()) == 4, 30, "all 4 targets up"
            )
            loads += analysis.start_loads(ips.values(), connections, qps, duration)
            for proc in loads:
                proc.communicate(timeout=duration + 30)
            # The last samples of the load: two scrapes more.
            time.sleep(2.5)
            rows = label_rows(prometheus, s) + analysis_rows(prometheus, s)
            # SIGTERM to the stable pod: it drains (5 s) and its metrics say so; the
            # dashboard is read in the drain.
            kube.docker("kill", "--signal", "TERM", f"{pods.network.name}-stable")
            time.sleep(3)
            rows += dashboard_rows(prometheus, s) + drain_rows(prometheus, s)
            return rows, dashboard_rows(prometheus, s, [ABSENT])
    finally:
        with shielded():
            for proc in loads:
                proc.close()
            if pods is not None:
                pods.cleanup()


def show(row: dict[str, Any]) -> str:
    if row["what"] == "labels":
        return f"labels     {row['namespace']:13} {row['pod']}: {row['detail']}"
    if row["what"] == "drain":
        return f"drain      {row['namespace']:13} {row['metric']}: {row['values']}"
    if row["what"] == "analysis":
        value = row["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"analysis   {row['metric']:13} {shown:>9}  {row['condition']}  ({row['manifest']})"
    return (
        f"dashboard  {row['namespace']:13} {row['panel']}: {row['series']} series, "
        f"{row['split']} {row['seen']}"
    )


def main(
    argv: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(
        prog="python -m lab.chart_analysis", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=float, default=15, help="seconds of load")
    parser.add_argument("--qps", default="40", help="per pod")
    parser.add_argument("-c", dest="connections", default="4", help="per pod")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows, absent = run(args.duration, args.qps, args.connections)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        print(f"{row['verdict']:4}  {show(row)}")
    log(f"{len(rows)} checks in {time.monotonic() - started:.1f}s -> {args.out}")
    return rows, absent


def problems(
    rows: Iterable[dict[str, Any]], absent: Iterable[dict[str, Any]]
) -> list[str]:
    """Every check passes, and no dashboard expression finds series where no pod is."""
    found = [f"{show(r)}: {r['verdict']}" for r in rows if r["verdict"] != "pass"]
    found += [f"{show(r)}: series where no pod is" for r in absent if r["series"]]
    return found


if __name__ == "__main__":
    end_on_signals("chart-analysis")
    wrong = problems(*main())
    for line in wrong:
        log(line)
    sys.exit(1 if wrong else 0)
