"""Admission: what the lab plays of each kind, field by field, and the arithmetic the API
server and apimachinery apply to the values (quantities, percentages, template hashes). A field
outside `SUPPORTED` is refused with its path (ManifestError), never ignored."""

import hashlib
import json
import pathlib
import subprocess
from typing import Any

import yaml

# A Kubernetes object, or a part of one (a spec, a container, a probe), as parsed from YAML.
Manifest = dict[str, Any]


class ManifestError(Exception):
    """A manifest the lab cannot run as written."""


class StepError(Exception):
    """A step that failed as it would on a cluster (a rollout that never completes)."""


# The fields the lab plays, per kind: a dict is a nested object, a list of one dict a list of
# such objects, None any value. A field outside these is refused, with its path.
_PROBE = {
    "httpGet": {"path": None, "port": None, "scheme": None, "httpHeaders": [None]},
    "tcpSocket": {"port": None},
    "exec": {"command": None},
    "grpc": {"port": None, "service": None},
    "initialDelaySeconds": None,
    "periodSeconds": None,
    "timeoutSeconds": None,
    "successThreshold": None,
    "failureThreshold": None,
}
_CONTAINER = {
    "name": None,
    "image": None,
    "imagePullPolicy": None,
    "command": None,
    "args": None,
    "ports": [{"name": None, "containerPort": None, "protocol": None}],
    "env": [
        {
            "name": None,
            "value": None,
            "valueFrom": {"fieldRef": {"fieldPath": None, "apiVersion": None}},
        }
    ],
    "readinessProbe": _PROBE,
    "livenessProbe": _PROBE,
    "resources": {"requests": None, "limits": {"cpu": None, "memory": None}},
    "securityContext": {
        "allowPrivilegeEscalation": None,
        "readOnlyRootFilesystem": None,
        "runAsNonRoot": None,
        "runAsUser": None,
        "runAsGroup": None,
        "capabilities": {"drop": None, "add": None},
        "seccompProfile": None,
    },
    "volumeMounts": [{"name": None, "mountPath": None, "readOnly": None}],
    "lifecycle": {
        "preStop": {"exec": {"command": None}, "sleep": {"seconds": None}},
    },
}
_POD_SPEC = {
    "containers": [_CONTAINER],
    "terminationGracePeriodSeconds": None,
    "securityContext": {
        "runAsNonRoot": None,
        "runAsUser": None,
        "runAsGroup": None,
        "fsGroup": None,
        "seccompProfile": None,
        "sysctls": [{"name": None, "value": None}],
    },
    "volumes": [{"name": None, "emptyDir": {"medium": None, "sizeLimit": None}}],
    # One node: spreading has nothing to spread over.
    "topologySpreadConstraints": None,
    "enableServiceLinks": None,
    "automountServiceAccountToken": None,
    # No API server: the account's name changes nothing for a pod without a token.
    "serviceAccountName": None,
}
_META = {"name": None, "namespace": None, "labels": None, "annotations": None}
SUPPORTED = {
    "Namespace": {"apiVersion": None, "kind": None, "metadata": _META},
    "Deployment": {
        "apiVersion": None,
        "kind": None,
        "metadata": _META,
        "spec": {
            "replicas": None,
            "revisionHistoryLimit": None,
            "minReadySeconds": None,
            "paused": None,
            "progressDeadlineSeconds": None,
            "selector": {"matchLabels": None},
            "strategy": {
                "type": None,
                "rollingUpdate": {"maxSurge": None, "maxUnavailable": None},
            },
            "template": {
                "metadata": {"labels": None, "annotations": None},
                "spec": _POD_SPEC,
            },
        },
    },
    "Service": {
        "apiVersion": None,
        "kind": None,
        "metadata": _META,
        "spec": {
            "type": None,
            "selector": None,
            "ports": [
                {
                    "name": None,
                    "port": None,
                    "targetPort": None,
                    "nodePort": None,
                    "protocol": None,
                    # A hint for proxies and meshes; haproxy forwards TCP either way.
                    "appProtocol": None,
                }
            ],
        },
    },
}
# Kinds that stay validated offline but cannot run here, and why.
SKIPPED = {
    "PodDisruptionBudget": "only limits evictions, and nothing evicts pods here",
    "ServiceAccount": "no API server: the pods mount no token, so it changes nothing here",
    "Ingress": "no ingress controller on this machine",
    "Gateway": "no Gateway API implementation on this machine",
    "HTTPRoute": "no Gateway API implementation on this machine",
    "GatewayClass": "no Gateway API implementation on this machine",
    "VirtualService": "no Istio on this machine",
    "DestinationRule": "no Istio on this machine",
    "TraefikService": "no Traefik on this machine",
    "IngressRoute": "no Traefik on this machine",
    "Middleware": "no Traefik on this machine",
}


def check_supported(obj: Manifest) -> None:
    """Raises ManifestError naming the first field the lab does not play."""
    kind = obj.get("kind")
    where = f"{kind} {obj.get('metadata', {}).get('name', '?')}"
    if kind not in SUPPORTED:
        raise ManifestError(f"{where}: kind {kind} is not simulated by the lab")

    def walk(value: object, schema: Any, path: str) -> None:
        if schema is None:
            return
        if isinstance(schema, list):
            if not isinstance(value, list):
                raise ManifestError(f"{where}: {path} should be a list")
            for i, item in enumerate(value):
                walk(item, schema[0], f"{path}[{i}]")
            return
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: {path} should be an object")
        for key, item in value.items():
            if key not in schema:
                raise ManifestError(
                    f"{where}: {path}.{key}: not simulated by the lab".replace(
                        ": .", ": "
                    )
                )
            walk(item, schema[key], f"{path}.{key}")

    walk(obj, SUPPORTED[kind], "")
    spec = obj.get("spec", {})
    if kind == "Deployment":
        for i, volume in enumerate(spec["template"]["spec"].get("volumes", [])):
            if "emptyDir" not in volume:
                raise ManifestError(
                    f"{where}: spec.template.spec.volumes[{i}]: only emptyDir is simulated"
                )
        for c in spec["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                path = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if path is not None and path not in FIELD_PATHS:
                    raise ManifestError(
                        f"{where}: env {env['name']}: fieldRef {path} is not simulated"
                    )
    if kind == "Deployment":
        for c in spec["template"]["spec"]["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                scheme = c.get(probe, {}).get("httpGet", {}).get("scheme", "HTTP")
                if scheme != "HTTP":
                    raise ManifestError(
                        f"{where}: {probe}.httpGet.scheme {scheme}: only HTTP"
                    )
    if kind == "Service" and not spec.get("selector"):
        raise ManifestError(f"{where}: a Service without a selector (manual endpoints)")
    if kind == "Service" and spec.get("type", "ClusterIP") not in (
        "ClusterIP",
        "NodePort",
    ):
        raise ManifestError(f"{where}: spec.type {spec['type']} is not simulated")


FIELD_PATHS = ("status.podIP", "metadata.name", "metadata.namespace", "spec.nodeName")


def render(path: str | pathlib.Path) -> list[Manifest]:
    """The objects of a kustomization folder (kubectl kustomize) or of one manifest file."""
    path = pathlib.Path(path)
    if path.is_dir():
        text = subprocess.run(
            ["kubectl", "kustomize", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    else:
        text = path.read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


# ------------------------------------------------------------------ quantities


def cpus(quantity: object) -> float:
    """`100m` -> 0.1, `1` -> 1.0."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def bytes_of(quantity: object) -> int:
    """`32Mi` -> 33554432, `64M` -> 64000000."""
    text = str(quantity)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def resolve_surge(
    value: object, replicas: int, round_up: bool, field: str = "maxSurge"
) -> int:
    """maxSurge/maxUnavailable: a number, or a whole percentage of replicas, `value * replicas
    / 100` rounded up (surge) or down (unavailable) as apimachinery's
    `intstr.GetScaledValueFromIntOrPercent` does. Integer arithmetic: 7 % of 100 is 7, where
    `0.07 * 100` in floating point rounds up to 8."""
    if isinstance(value, str):
        digits = value[:-1] if value.endswith("%") else ""
        if not digits.isdigit():
            raise ManifestError(
                f"{field} {value!r}: a whole number or a whole percentage like '25%'"
            )
        scaled = int(digits) * replicas
        return -(-scaled // 100) if round_up else scaled // 100
    if not isinstance(value, int) or value < 0:
        raise ManifestError(f"{field} {value!r}: a whole number or a percentage")
    return value


def pod_template_hash(template: Manifest) -> str:
    text = json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
