"""The chart on real helm: `helm lint --strict` and every render (the defaults and each ci/
value set) validated by k8s/validate.py against Kubernetes 1.30-1.37 and the reduced CRD
schemas; the ci/ sets together switch on every template; bad values, a broken template and a
grace period below the shutdown each fail; the analysis templates are k8s/'s own files."""

import json
import os
import pathlib
import re
import subprocess

import pytest
import validate
import yaml
from conftest import CHART, ROOT, VALUE_SETS, RenderError, value_args

K8S_VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]
# The chart names Gateways (parentRefs, gatewayRefs) that the cluster already has.
EXTERNAL = frozenset({"Gateway"})
TEMPLATES = sorted(
    str(p.relative_to(CHART)) for p in (CHART / "templates").rglob("*.yaml")
)


def lint(helm, *args, chart=CHART):
    return subprocess.run(
        [helm, "lint", "--strict", str(chart), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def sources(helm, *args, chart=CHART):
    """The template files that rendered at least one object."""
    done = subprocess.run(
        [helm, "template", "t", str(chart), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(re.findall(r"^# Source: testpage/(\S+)", done.stdout, re.MULTILINE))


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm, value_set):
    done = lint(helm, *value_args(value_set))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_render_validates(render, value_set):
    objects = render(*value_args(value_set))
    assert objects
    problems = validate.objects_problems(
        objects, value_set, EXTERNAL, versions=K8S_VERSIONS
    )
    assert problems == []


def test_value_sets_switch_on_every_template(helm):
    rendered = set()
    for value_set in VALUE_SETS:
        rendered |= sources(helm, *value_args(value_set))
    assert sorted(set(TEMPLATES) - rendered) == []


def test_defaults_are_secure(render):
    objects = render()
    assert sorted(o["kind"] for o in objects) == [
        "Deployment",
        "Pod",
        "Service",
        "ServiceAccount",
    ]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"requests", "limits"} <= set(container["resources"])
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["image"] == "testpage:0.9"
    env = {e["name"]: e for e in container["env"]}
    assert env["VERSION"]["value"] == "0.9"
    for name, path in (
        ("POD_IP", "status.podIP"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("NODE_NAME", "spec.nodeName"),
    ):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == path
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # 5 s of drain + 10 s for in-flight requests + 5 s of margin.
    assert pod["terminationGracePeriodSeconds"] == 20
    # The selector never carries the version: an upgrade keeps the Deployment's pods.
    assert (
        "app.kubernetes.io/version" not in deployment["spec"]["selector"]["matchLabels"]
    )
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False


def test_every_setting_of_the_binary_is_reachable(render):
    """Every variable testpage reads (its config's `env =`, and RUST_LOG) is set by some value."""
    objects = render(
        *value_args("operations-values.yaml"),
        "--set",
        "faults.crashOnStart=true,faults.hangOnStart=true",
    )
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert sorted(validate.testpage_env() - names) == []


def test_a_decimal_error_rate_from_set(render):
    objects = render("--set", "faults.errorRate=0.3")
    env = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"][
        "spec"
    ]["containers"][0]["env"]
    assert {"name": "ERROR_RATE", "value": "0.3"} in env


def test_image_digest_wins_and_version_follows_the_tag(render):
    digest = "sha256:" + "ab" * 32
    objects = render("--set", f"image.tag=0.8,image.digest={digest}")
    container = next(o for o in objects if o["kind"] == "Deployment")["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert container["image"] == f"testpage@{digest}"
    assert {"name": "VERSION", "value": "0.8"} in container["env"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=abc"], "at '/replicaCount': got string, want integer"),
        (
            ["--set", "ingres.enabled=true"],
            "additional properties 'ingres' not allowed",
        ),
        (["--set", "service.prot=80"], "additional properties 'prot' not allowed"),
        (["--set", "probes.readiness.type=tcp"], "value must be one of"),
        (["--set", "faults.errorRate=2"], "maximum: got 2, want 1"),
        # --set leaves a decimal a string: the schema takes it, within 0-1.
        (["--set", "faults.errorRate=1.5"], "does not match pattern"),
        (["--set", "drain=5 seconds"], "does not match pattern"),
        (["--set-string", "port=8080"], "at '/port': got string, want integer"),
    ],
)
def test_bad_values_fail_with_helms_message(render, args, message):
    with pytest.raises(RenderError) as error:
        render(*args)
    assert message in str(error.value)


def test_grace_period_below_the_shutdown_fails_naming_both(render):
    with pytest.raises(RenderError) as error:
        render("--set", "terminationGracePeriodSeconds=14")
    line = str(error.value)
    assert "terminationGracePeriodSeconds 14 is below" in line
    assert "= 15s" in line
    # With a preStop sleep, the sum grows by it.
    with pytest.raises(RenderError) as error:
        render(
            "--set",
            "preStop.type=sleep,preStop.seconds=5,terminationGracePeriodSeconds=19",
        )
    assert "terminationGracePeriodSeconds 19 is below" in str(error.value)
    assert "= 20s" in str(error.value)
    # At the sum it renders.
    objects = render("--set", "terminationGracePeriodSeconds=15")
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 15


def test_grace_period_derived_from_the_shutdown(render):
    objects = render("--set", "drain=1m30s,shutdownTimeout=500ms,preStop.type=drain")
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]
    # 5 s preStop + 90 s + 0.5 s, rounded up, + 5 s.
    assert pod["spec"]["terminationGracePeriodSeconds"] == 101
    assert pod["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == [
        "/probe",
        "drain",
        "--sleep",
        "5s",
    ]


def test_a_template_typo_fails_lint(helm, broken):
    chart = broken("templates/service.yaml", "nindent 4", "nident 4")
    done = lint(helm, chart=chart)
    assert done.returncode != 0
    assert 'function "nident" not defined' in done.stdout + done.stderr


def test_a_field_typo_fails_validation(render, broken):
    chart = broken(
        "templates/_helpers.tpl", "enableServiceLinks:", "enableServiceLink:"
    )
    objects = render(chart=chart)
    problems = validate.objects_problems(objects, "broken", EXTERNAL, K8S_VERSIONS)
    assert any("'enableServiceLink' was unexpected" in p for p in problems), problems


def test_a_crd_field_typo_fails_validation(render, broken):
    chart = broken(
        "templates/podmonitor.yaml", "podMetricsEndpoints:", "podMetricEndpoints:"
    )
    objects = render(*value_args("operations-values.yaml"), chart=chart)
    problems = validate.objects_problems(objects, "broken", EXTERNAL, K8S_VERSIONS)
    assert any("podMetricEndpoints" in p for p in problems), problems


def test_a_grace_period_the_template_lets_through_fails_validation(render, broken):
    """validate.py's own rule catches a grace period below the sum if the template did not."""
    chart = broken(
        "templates/_helpers.tpl",
        "{{- addf (ceil $needed) 5 | int }}",
        "{{- 3 }}",
    )
    objects = render(chart=chart)
    problems = validate.objects_problems(objects, "broken", EXTERNAL, K8S_VERSIONS)
    assert any("terminationGracePeriodSeconds 3 < preStop" in p for p in problems)


def test_schema_types_every_value():
    """Every key of values.yaml is typed by values.schema.json, and every object the schema
    describes there rejects unknown keys, except where Kubernetes objects pass through."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    untyped = []

    def walk(value, node, path):
        if not isinstance(value, dict) or "properties" not in node:
            if "type" not in node:
                untyped.append(path)
            return
        assert node.get("additionalProperties") is False, f"{path or '(top)'}: open"
        for key, sub in value.items():
            if key not in node["properties"]:
                untyped.append(f"{path}.{key}".lstrip("."))
            else:
                walk(sub, node["properties"][key], f"{path}.{key}".lstrip("."))

    walk(values, schema, "")
    assert untyped == []


def test_analysis_queries_have_one_source(render):
    """The chart reads the AnalysisTemplate and MetricTemplates of k8s/ through symbolic links:
    the queries that `make lab-analysis` proves are the ones the chart installs."""
    for link, target in (
        ("argo-analysistemplate.yaml", "k8s/argo-rollouts/analysistemplate.yaml"),
        ("flagger-metrictemplates.yaml", "k8s/flagger/metrictemplates.yaml"),
        ("flagger-canary.yaml", "k8s/flagger/canary.yaml"),
    ):
        path = CHART / "files" / link
        assert path.is_symlink()
        assert path.resolve() == ROOT / target
    argo = yaml.safe_load(
        (ROOT / "k8s/argo-rollouts/analysistemplate.yaml").read_text()
    )
    objects = render(*value_args("rollout-values.yaml"))
    template = next(o for o in objects if o["kind"] == "AnalysisTemplate")
    for ours, theirs in zip(
        template["spec"]["metrics"], argo["spec"]["metrics"], strict=True
    ):
        assert (
            ours["provider"]["prometheus"]["query"]
            == theirs["provider"]["prometheus"]["query"]
        )
        assert ours["successCondition"] == theirs["successCondition"]
        assert ours["provider"]["prometheus"]["address"] == (
            "http://prometheus-operated.monitoring.svc:9090"
        )
    flagger = [
        d
        for d in yaml.safe_load_all(
            (ROOT / "k8s/flagger/metrictemplates.yaml").read_text()
        )
        if d
    ]
    objects = render(*value_args("canary-values.yaml"))
    ours = [o for o in objects if o["kind"] == "MetricTemplate"]
    assert [o["spec"]["query"] for o in ours] == [d["spec"]["query"] for d in flagger]
    canary = next(o for o in objects if o["kind"] == "Canary")
    assert [
        m["templateRef"]["name"] for m in canary["spec"]["analysis"]["metrics"]
    ] == [o["metadata"]["name"] for o in ours]


def test_monitors_relabel_as_the_project_scrape_job(render):
    """ServiceMonitor and PodMonitor give the labels of prometheus-scrape.yaml."""
    job = yaml.safe_load(
        (ROOT / "k8s/argo-rollouts/prometheus-scrape.yaml").read_text()
    )["scrape_configs"][0]
    wanted = [
        (r["source_labels"], r["target_label"])
        for r in job["relabel_configs"]
        if "target_label" in r
    ]
    objects = render(*value_args("operations-values.yaml"))
    service_monitor = next(o for o in objects if o["kind"] == "ServiceMonitor")
    pod_monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    for endpoint in (
        service_monitor["spec"]["endpoints"][0],
        pod_monitor["spec"]["podMetricsEndpoints"][0],
    ):
        got = [(r["sourceLabels"], r["targetLabel"]) for r in endpoint["relabelings"]]
        assert got == wanted


def test_helm_test_pod_probes_the_service(render):
    objects = render(*value_args("exposure-values.yaml"))
    pod = next(o for o in objects if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    commands = [c["command"] for c in pod["spec"]["containers"]]
    assert commands[0][:3] == ["/probe", "http", "http://t-testpage.demo.svc:80/"]
    assert commands[1][:3] == ["/probe", "grpc", "t-testpage.demo.svc:9090"]


def test_dashboard_configmap_carries_the_dashboard(render):
    objects = render("--set", "dashboard.enabled=true")
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config_map["data"]["testpage-rollout.json"])
    assert shipped == json.loads((CHART / "files/dashboard.json").read_text())


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
def test_readme_lists_every_value_with_its_default(readme):
    """The value table of the chart's README names every leaf of values.yaml with its default
    (lists and maps as written in values.yaml, inline), and nothing else."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = {}

    def walk(value, path):
        if isinstance(value, dict) and value and path not in FREE_FORM:
            for key, sub in value.items():
                walk(sub, f"{path}.{key}".lstrip("."))
        else:
            leaves[path] = value

    walk(values, "")
    table = {}
    for line in (CHART / readme).read_text().splitlines():
        match = re.match(r"^\| `([A-Za-z0-9_.]+)` \| `(.*?)` \|", line)
        if match:
            table[match.group(1)] = yaml.safe_load(match.group(2).replace("\\|", "|"))
    assert sorted(set(leaves) - set(table)) == [], "values missing from the table"
    assert sorted(set(table) - set(leaves)) == [], "table rows that are not values"
    wrong = {k: (table[k], v) for k, v in leaves.items() if table[k] != v}
    assert wrong == {}


# Values that are Kubernetes objects passed through as written: one row each.
FREE_FORM = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "strategy",
    "dashboard.labels",
}


def test_helm_script_is_idempotent(helm):
    again = subprocess.run(
        [ROOT / "scripts" / "helm.sh"], capture_output=True, text=True, check=True
    )
    assert again.stdout.strip() == helm
    assert "installed" not in again.stderr
    assert os.access(helm, os.X_OK)
    assert pathlib.Path(helm).is_relative_to(ROOT / "target")


@pytest.mark.parametrize(
    ("args", "workload", "grace"),
    [
        ([], "kubectl -n demo rollout status deployment/t-testpage", 20),
        (
            ["--set", "rollout.enabled=true"],
            "kubectl argo rollouts get rollout t-testpage",
            20,
        ),
        # A preStop drain of 5 s adds 5 s.
        (value_args("canary-values.yaml"), "get canary t-testpage", 25),
    ],
)
def test_notes_say_how_to_watch_the_release(helm, args, workload, grace):
    """NOTES.txt as `helm install` prints it (a client-side dry run, no cluster)."""
    done = subprocess.run(
        [helm, "install", "t", str(CHART), "-n", "demo", "--dry-run=client", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    notes = done.stdout.split("NOTES:", 1)[1]
    assert workload in notes
    for line in (
        "helm test t -n demo",
        "probe watch http://127.0.0.1:8080/",
        "http://127.0.0.1:8080/ui",
        "make client-watch URL=http://t-testpage.demo.svc:80/",
        "helm rollback t -n demo",
        f"terminationGracePeriodSeconds {grace}",
    ):
        assert line in notes
