#!/usr/bin/env python3
"""Offline validation of every manifest under k8s/.

Each folder is rendered with `kubectl kustomize`, and every YAML file is also read on its own (the
alternative files, such as deployment-0.9.yaml, are applied by hand). Every object is validated
strictly against the Kubernetes schemas of several minor versions, or, for Gateway API, Istio,
Traefik, Argo Rollouts and Flagger kinds, against the structural reduction of their upstream CRD
schemas kept in k8s/schemas/ (made strict: unknown fields fail).
Then the project's rules: see RULES below.

    python k8s/validate.py [ROOT]      # exit 1 with one line per problem
"""

import functools
import json
import pathlib
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent
SCHEMAS = HERE / "schemas"
K8S_VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
CRD_GROUPS = {
    "gateway.networking.k8s.io",
    "networking.istio.io",
    "traefik.io",
    "argoproj.io",
    "flagger.app",
    "monitoring.coreos.com",
}
# Files in an experiment folder that are not Kubernetes objects: the lab's steps, and the
# Prometheus scrape job the analysis queries rely on.
NOT_MANIFESTS = {"kustomization.yaml", "lab.yaml", "prometheus-scrape.yaml"}
REMOVED_API_VERSIONS = {
    "extensions/v1beta1",
    "apps/v1beta1",
    "apps/v1beta2",
    "networking.k8s.io/v1beta1",
    "policy/v1beta1",
    "batch/v1beta1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "config.istio.io/v1alpha2",
    "traefik.containo.us/v1alpha1",
}
AS_WRITTEN = "testpage.dev/as-written"
DEFAULT_DRAIN, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_GRACE = 5.0, 10.0, 30.0

RULES = """
- no removed apiVersions
- a Deployment's selector matches its template's labels
- a Deployment updated in place (its name carries no -vN) does not select on `version`
- nodePort within 30000-32767
- every container has readiness and liveness probes, unless the Deployment is marked as-written
- terminationGracePeriodSeconds >= preStop sleep + DRAIN + SHUTDOWN_TIMEOUT
- images are ours, with a tag `make images` builds (images/variants.tsv)
- the container port is the port the image listens on (PORT, else the variant's default)
- every named port a Service or probe refers to exists on the container
- a Rollout (Argo) names Services and AnalysisTemplates that exist, passes every arg a
  template needs and none it does not declare; a query uses only the args it declares
- a Canary (Flagger) targets a Deployment, a Gateway and MetricTemplates that exist; a
  MetricTemplate's query uses only the variables Flagger fills in
- every env var set is one testpage reads
- an alternative file (applied on its own) lands in its folder's namespace
- across experiment folders (every kustomization that is not another's base): no object
  (kind, namespace, name) created twice, no nodePort used twice, no objects in a namespace that
  another experiment creates, no selector that picks another experiment's pods
"""


# humantime's units (testpage/src/duration.rs parses with humantime), in seconds.
UNITS = {
    **dict.fromkeys(("nanos", "nsec", "ns"), 1e-9),
    **dict.fromkeys(("usec", "us", "µs"), 1e-6),
    **dict.fromkeys(("millis", "msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 1),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), 60),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600),
    **dict.fromkeys(("days", "day", "d"), 86400),
    **dict.fromkeys(("weeks", "week", "w"), 604800),
    **dict.fromkeys(("months", "month", "M"), 2630016),
    **dict.fromkeys(("years", "year", "y"), 31557600),
}
BARE_SECONDS = re.compile(r"[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
PART = re.compile(r"\s*(\d+)\s*([a-zA-Zµ]+)")


def duration(text):
    """Seconds, as testpage reads a duration: a bare non-negative number of seconds (`5`, `0.5`),
    or humantime's integer-and-unit parts (`500ms`, `10s`, `1m30s`, `1h 5m`)."""
    text = str(text).strip()
    if BARE_SECONDS.fullmatch(text):
        return float(text)
    total, pos = 0.0, 0
    while pos < len(text):
        match = PART.match(text, pos)
        if not match or match.group(2) not in UNITS:
            raise ValueError(f"bad duration {text!r}")
        total += int(match.group(1)) * UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("empty duration")
    return total


@functools.cache
def variants():
    """(name, tag) -> default port, from images/variants.tsv."""
    table = {}
    for line in (PROJECT / "images" / "variants.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            name, tag, _version, port, *_ = line.split("\t")
            table[(name, tag)] = int(port)
    return table


@functools.cache
def testpage_env():
    """The variables testpage reads: every `env = "..."` in its config, and RUST_LOG."""
    source = (PROJECT / "testpage" / "src" / "config.rs").read_text()
    return frozenset(re.findall(r'env = "([A-Z_]+)"', source)) | {"RUST_LOG"}


def strict(schema):
    """Copies a CRD schema so that unknown fields fail, as `kubectl apply --validate=strict` would."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas():
    """(apiVersion, kind) -> strict schema, from the reduced CRD schemas in k8s/schemas/
    (written by k8s/schemas/reduce.py from the upstream versions named in each file)."""
    schemas = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        for key, schema in json.loads(path.read_text())["schemas"].items():
            api, kind = key.split(" ")
            schemas[(api, kind)] = strict(schema)
    if not schemas:
        raise SystemExit(f"validate: no CRD schemas in {SCHEMAS}")
    return schemas


def schema_problems(obj, versions=None):
    """Problems of obj against its schema: each Kubernetes version of `versions` (K8S_VERSIONS
    when None), or its CRD's reduced schema."""
    return list(
        _schema_problems(
            yaml.safe_dump(obj, sort_keys=True), tuple(versions or K8S_VERSIONS)
        )
    )


@functools.cache
def _schema_problems(dumped, versions):
    obj = yaml.safe_load(dumped)
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    group = api.split("/")[0] if "/" in api else ""
    if group in CRD_GROUPS:
        schema = crd_schemas().get((api, kind))
        if schema is None:
            return (f"{api} {kind}: no CRD schema for this kind and version",)
        body = {
            k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")
        }
        envelope = ("apiVersion", "kind", "metadata")
        validator = jsonschema.Draft7Validator(
            {
                **schema,
                "properties": {
                    k: v
                    for k, v in schema.get("properties", {}).items()
                    if k not in envelope
                },
                "required": [
                    k for k in schema.get("required", []) if k not in envelope
                ],
            }
        )
        return tuple(
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(body)
        )
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{api} {kind}: unknown kind in Kubernetes {version}")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path)) or "(root)"
            problems.append(f"Kubernetes {version}: {path}: {error.message}")
    return tuple(sorted(set(problems)))


def pod_templates(obj):
    if obj.get("kind") in (
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "Rollout",
    ):
        if "template" in (obj.get("spec") or {}):
            yield obj["spec"]["template"]
    elif obj.get("kind") == "Pod":
        yield obj


def prestop_seconds(container):
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = (pre.get("exec") or {}).get("command") or []
    if command[:2] == ["/probe", "drain"]:
        sleep = command[command.index("--sleep") + 1] if "--sleep" in command else "5s"
        return duration(sleep)
    if command[:2] == ["/probe", "sleep"]:
        return duration(command[2])
    return 0.0


def rule_problems(obj, objects, external=frozenset()):
    """The project's rules for obj among objects; kinds in `external` are expected to exist
    outside them (a chart's Canary names a Gateway the cluster already has)."""
    problems = []
    kind, api = obj.get("kind"), obj.get("apiVersion")
    meta = obj.get("metadata") or {}
    if api in REMOVED_API_VERSIONS:
        problems.append(f"apiVersion {api} has been removed")
    if kind == "Service":
        for port in obj.get("spec", {}).get("ports", []):
            node_port = port.get("nodePort")
            if node_port is not None and not 30000 <= node_port <= 32767:
                problems.append(f"nodePort {node_port} outside 30000-32767")
            target = port.get("targetPort")
            if isinstance(target, str):
                problems += service_target_problems(obj, target, objects)
    if kind == "Deployment":
        selector = obj["spec"].get("selector", {}).get("matchLabels", {})
        labels = obj["spec"]["template"].get("metadata", {}).get("labels", {})
        for key, value in selector.items():
            if labels.get(key) != value:
                problems.append(
                    f"selector {key}={value} does not match the template labels"
                )
        if "version" in selector and not re.search(r"-v\d", meta.get("name", "")):
            problems.append(
                "selects on `version` but is updated in place: a new version would orphan its pods"
            )
    for template in pod_templates(obj):
        problems += pod_problems(obj, template)
    if kind == "Rollout":
        problems += rollout_problems(obj, objects)
    if kind == "AnalysisTemplate":
        problems += analysis_template_problems(obj)
    if kind == "Canary":
        problems += canary_problems(obj, objects, external)
    if kind == "MetricTemplate":
        problems += metric_template_problems(obj)
    return problems


def find(objects, kind, namespace, name):
    """The object of that kind and name in that namespace, or None. namespace None (a file
    read on its own, placed by its kustomization): in any namespace."""
    for other in objects:
        _, other_namespace, other_name = identity(other)
        if (
            other.get("kind") == kind
            and other_name == name
            and namespace in (None, other_namespace)
        ):
            return other
    return None


ARGO_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+?)\s*\}\}")
FLAGGER_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
# What Flagger fills in a MetricTemplate's query (variables.NAME from templateVariables).
FLAGGER_VARIABLES = {"namespace", "target", "service", "ingress", "interval"}


def rollout_analyses(rollout):
    """(where, analysis) for every analysis a Rollout runs: background, inline steps,
    blue-green pre- and post-promotion."""
    strategy = (rollout.get("spec") or {}).get("strategy") or {}
    canary, blue_green = strategy.get("canary") or {}, strategy.get("blueGreen") or {}
    if canary.get("analysis"):
        yield "strategy.canary.analysis", canary["analysis"]
    for i, step in enumerate(canary.get("steps") or []):
        if isinstance(step, dict) and step.get("analysis"):
            yield f"strategy.canary.steps.{i}.analysis", step["analysis"]
    for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
        if blue_green.get(key):
            yield f"strategy.blueGreen.{key}", blue_green[key]


def rollout_problems(rollout, objects):
    problems = []
    namespace = (rollout.get("metadata") or {}).get("namespace")
    strategy = (rollout.get("spec") or {}).get("strategy") or {}
    for kind_key, services in (
        ("canary", ("canaryService", "stableService")),
        ("blueGreen", ("activeService", "previewService")),
    ):
        for key in services:
            name = (strategy.get(kind_key) or {}).get(key)
            if name and find(objects, "Service", namespace, name) is None:
                problems.append(f"strategy.{kind_key}.{key}: no Service {name}")
    for where, analysis in rollout_analyses(rollout):
        passed = {a.get("name") for a in analysis.get("args") or []}
        for ref in analysis.get("templates") or []:
            name = ref.get("templateName")
            if ref.get("clusterScope"):
                continue
            template = find(objects, "AnalysisTemplate", namespace, name)
            if template is None:
                problems.append(f"{where}: no AnalysisTemplate {name}")
                continue
            declared = {a.get("name"): a for a in template["spec"].get("args") or []}
            for arg in sorted(passed - set(declared)):
                problems.append(f"{where}: arg {arg} is not one {name} declares")
            for arg, spec in sorted(declared.items()):
                if (
                    arg not in passed
                    and "value" not in spec
                    and "valueFrom" not in spec
                ):
                    problems.append(f"{where}: {name} needs arg {arg}, not passed")
    return problems


def analysis_template_problems(template):
    problems = []
    declared = {a.get("name") for a in template["spec"].get("args") or []}
    for metric in template["spec"].get("metrics") or []:
        query = ((metric.get("provider") or {}).get("prometheus") or {}).get("query")
        for arg in sorted(set(ARGO_ARG.findall(query or "")) - declared):
            problems.append(
                f"metric {metric.get('name')}: query uses {{{{args.{arg}}}}}, not a declared arg"
            )
    return problems


def canary_problems(canary, objects, external=frozenset()):
    problems = []
    namespace = (canary.get("metadata") or {}).get("namespace")
    spec = canary.get("spec") or {}
    target = spec.get("targetRef") or {}
    if find(objects, target.get("kind"), namespace, target.get("name")) is None:
        problems.append(f"targetRef: no {target.get('kind')} {target.get('name')}")
    for ref in (spec.get("service") or {}).get("gatewayRefs") or []:
        if "Gateway" in external:
            continue
        ref_namespace = ref.get("namespace") or namespace
        if find(objects, "Gateway", ref_namespace, ref.get("name")) is None:
            problems.append(f"service.gatewayRefs: no Gateway {ref.get('name')}")
    for metric in (spec.get("analysis") or {}).get("metrics") or []:
        ref = metric.get("templateRef")
        if not ref:
            continue
        template = find(
            objects,
            "MetricTemplate",
            ref.get("namespace") or namespace,
            ref.get("name"),
        )
        if template is None:
            problems.append(
                f"analysis.metrics {metric.get('name')}: no MetricTemplate {ref.get('name')}"
            )
            continue
        given = set(metric.get("templateVariables") or {})
        used = {
            v.removeprefix("variables.")
            for v in FLAGGER_VARIABLE.findall(template["spec"].get("query", ""))
            if v.startswith("variables.")
        }
        for variable in sorted(used - given):
            problems.append(
                f"analysis.metrics {metric.get('name')}: {ref.get('name')} uses "
                f"variables.{variable}, not in templateVariables"
            )
    return problems


def metric_template_problems(template):
    problems = []
    for variable in FLAGGER_VARIABLE.findall(template["spec"].get("query", "")):
        if variable not in FLAGGER_VARIABLES and not variable.startswith("variables."):
            problems.append(
                f"query uses {{{{ {variable} }}}}, not a variable Flagger fills in"
            )
    return problems


def service_target_problems(service, target, objects):
    selector = service["spec"].get("selector") or {}
    namespace = (service.get("metadata") or {}).get("namespace")
    problems = []
    for other in objects:
        if (other.get("metadata") or {}).get("namespace") != namespace:
            continue
        for template in pod_templates(other):
            labels = (template.get("metadata") or {}).get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                names = {
                    p.get("name")
                    for c in template["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                if target not in names:
                    problems.append(
                        f"targetPort {target!r} is not a port of {other['metadata']['name']}"
                    )
    return problems


def pod_problems(owner, template):
    problems = []
    spec = template["spec"]
    annotations = (owner.get("metadata") or {}).get("annotations") or {}
    # A Helm hook pod (`helm test`) runs once and exits: it serves nothing to probe.
    marked = AS_WRITTEN in annotations or "helm.sh/hook" in annotations
    grace = float(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
    for container in spec.get("containers", []):
        name = container.get("name")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for var in env:
            if var not in testpage_env():
                problems.append(
                    f"container {name}: env {var} is not a setting testpage reads"
                )
        if not marked:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(
                        f"container {name}: no {probe} (mark as-written variants with {AS_WRITTEN})"
                    )
        port_names = {p.get("name") for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for handler in ("httpGet", "tcpSocket"):
                port = ((container.get(probe) or {}).get(handler) or {}).get("port")
                if isinstance(port, str) and port not in port_names:
                    problems.append(
                        f"container {name}: {probe} port {port!r} is not a container port"
                    )
        image = container.get("image", "")
        repo, _, tag = image.rpartition(":")
        if (repo, tag) not in variants():
            problems.append(
                f"container {name}: image {image} is not one `make images` builds"
            )
        else:
            listens = int(env.get("PORT") or variants()[(repo, tag)])
            # A port without containerPort is the schema's problem, reported there.
            ports = [
                p["containerPort"]
                for p in container.get("ports", [])
                if "containerPort" in p
            ]
            if ports and listens not in ports:
                problems.append(
                    f"container {name}: listens on {listens}, declares {ports}"
                )
        try:
            needed = (
                prestop_seconds(container)
                + duration(env.get("DRAIN") or DEFAULT_DRAIN)
                + duration(env.get("SHUTDOWN_TIMEOUT") or DEFAULT_SHUTDOWN_TIMEOUT)
            )
        except ValueError as error:
            problems.append(f"container {name}: {error}")
            continue
        if grace < needed:
            problems.append(
                f"container {name}: terminationGracePeriodSeconds {grace:g} < preStop + DRAIN + "
                f"SHUTDOWN_TIMEOUT = {needed:g}"
            )
    return problems


def load(text, origin):
    return [(doc, origin) for doc in yaml.safe_load_all(text) if doc]


# Kinds without a namespace; every other kind lands in `default` when none is given.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "GatewayClass",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}


def kustomization(folder):
    return (
        yaml.safe_load((pathlib.Path(folder) / "kustomization.yaml").read_text()) or {}
    )


def base_folders(folder):
    """The folders a kustomization uses as bases (resources that are directories)."""
    for entry in kustomization(folder).get("resources") or []:
        path = (pathlib.Path(folder) / entry).resolve()
        if path.is_dir():
            yield path


def identity(obj):
    """(kind, namespace, name) as the API server keys the object once applied."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind")
    namespace = None if kind in CLUSTER_SCOPED else meta.get("namespace") or "default"
    return kind, namespace, meta.get("name")


def alternative_problems(own, rendered):
    """An alternative file replaces one of the folder's objects: applied with `kubectl apply -f`,
    it must land in the same namespace, or it creates a stray copy beside the original."""
    problems = []
    placed = {
        (k, n): ns for k, ns, n in (identity(d) for d, _ in rendered) if ns is not None
    }
    for doc, origin in own:
        kind, namespace, name = identity(doc)
        if namespace is not None and placed.get((kind, name), namespace) != namespace:
            problems.append(
                f"{origin}: {kind} {name}: in namespace {namespace}, the folder's copy is in "
                f"{placed[(kind, name)]} (set metadata.namespace)"
            )
    return problems


WORKLOADS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Rollout")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selectors(obj):
    """The label selectors an object applies to pods in its namespace."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Service":
        yield spec.get("selector") or {}
    elif obj.get("kind") in WORKLOADS + ("PodDisruptionBudget",):
        yield (spec.get("selector") or {}).get("matchLabels") or {}


def collision_problems(experiments):
    """Experiments run one after another, or side by side, on one cluster: none may create an
    object another one creates, use another's nodePort, put objects in a namespace another one
    owns (deleting that experiment deletes them), or select another's pods."""
    problems = []
    names = sorted(experiments)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            problems += pair_problems(a, experiments[a], b, experiments[b])
    return problems


def pair_problems(a, objs_a, b, objs_b):
    problems = []
    ids_a = {identity(d) for d in objs_a}
    ids_b = {identity(d) for d in objs_b}
    for kind, namespace, name in sorted(ids_a & ids_b, key=str):
        where = f"{namespace}/{name}" if namespace else name
        problems.append(f"collision: {a} and {b} both create {kind} {where}")
    ports_a, ports_b = node_ports(objs_a), node_ports(objs_b)
    for port in sorted(set(ports_a) & set(ports_b)):
        problems.append(
            f"collision: {a} and {b} both use nodePort {port} "
            f"({ports_a[port]}, {ports_b[port]})"
        )
    for x, objs_x, y, objs_y in ((a, objs_a, b, objs_b), (b, objs_b, a, objs_a)):
        owned = {n for k, _, n in map(identity, objs_x) if k == "Namespace"}
        used = {ns for _, ns, _ in map(identity, objs_y) if ns}
        for namespace in sorted(owned & used):
            problems.append(
                f"collision: {y} puts objects in namespace {namespace}, which {x} creates "
                f"(and deletes with its clean-up)"
            )
        for obj in objs_x:
            _, namespace, name = identity(obj)
            for selector in selectors(obj):
                for other in objs_y:
                    for template in pod_templates(other):
                        labels = (template.get("metadata") or {}).get("labels") or {}
                        if identity(other)[1] == namespace and selects(
                            selector, labels
                        ):
                            problems.append(
                                f"collision: {x}'s {obj['kind']} {namespace}/{name} selects "
                                f"the pods of {y}'s {other['kind']} {identity(other)[2]}"
                            )
    return problems


def node_ports(objects):
    """nodePort -> the Service that holds it (nodePorts are cluster-wide)."""
    ports = {}
    for obj in objects:
        if obj.get("kind") == "Service":
            for port in obj.get("spec", {}).get("ports", []):
                if port.get("nodePort") is not None:
                    ports[port["nodePort"]] = "/".join(map(str, identity(obj)[1:]))
    return ports


def validate_tree(root):
    """Returns one line per problem found under root."""
    root = pathlib.Path(root)
    sources = []
    folders = sorted(p.parent for p in root.rglob("kustomization.yaml"))
    if not folders:
        return [f"{root}: no kustomization.yaml found"]
    problems = []
    per_folder = {}
    for folder in folders:
        render = subprocess.run(
            ["kubectl", "kustomize", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if render.returncode:
            problems.append(
                f"{folder.relative_to(root)}: kubectl kustomize: {render.stderr.strip()}"
            )
            continue
        rendered = load(render.stdout, f"{folder.relative_to(root)} (kustomize)")
        sources.append(rendered)
        resources = set(kustomization(folder).get("resources") or [])
        alternatives = []
        for path in sorted(folder.glob("*.yaml")):
            if path.name not in NOT_MANIFESTS:
                # Alternative files are applied on their own, next to the folder's objects.
                own = load(path.read_text(), str(path.relative_to(root)))
                sources.append(own + [(d, o) for d, o in rendered])
                if path.name not in resources:
                    alternatives += own
                    problems += alternative_problems(own, rendered)
        per_folder[folder.resolve().relative_to(root.resolve())] = [
            d for d, _ in rendered + alternatives
        ]
    seen = set()
    for group in sources:
        objects = [doc for doc, _ in group]
        for doc, origin in group:
            key = (origin, yaml.safe_dump(doc))
            if key in seen:
                continue
            seen.add(key)
            where = (
                f"{origin}: {doc.get('kind')} {(doc.get('metadata') or {}).get('name')}"
            )
            for problem in schema_problems(doc) + rule_problems(doc, objects):
                problems.append(f"{where}: {problem}")
    bases = {
        b.relative_to(root.resolve())
        for f in folders
        for b in base_folders(f)
        if b.is_relative_to(root.resolve())
    }
    experiments = {f: objs for f, objs in per_folder.items() if f not in bases}
    problems += collision_problems(experiments)
    return sorted(set(problems))


def objects_problems(objects, origin, external=frozenset(), versions=None):
    """One line per problem of a rendered set of objects applied together (a Helm release):
    the schemas (Kubernetes `versions`, K8S_VERSIONS when None) and the rules, as for a folder."""
    problems = []
    for doc in objects:
        where = f"{origin}: {doc.get('kind')} {(doc.get('metadata') or {}).get('name')}"
        for problem in schema_problems(doc, versions) + rule_problems(
            doc, objects, external
        ):
            problems.append(f"{where}: {problem}")
    return sorted(set(problems))


def main(argv):
    root = pathlib.Path(argv[1]) if len(argv) > 1 else HERE
    problems = validate_tree(root)
    for problem in problems:
        print(problem)
    count = sum(1 for _ in root.rglob("*.yaml"))
    print(
        f"validate: {count} files under {root}, Kubernetes {', '.join(K8S_VERSIONS)}: "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
