"""A one-node stand-in for Kubernetes that runs an experiment's own manifests.

It plays the parts that decide a rollout's outcome, from the objects as written:

- the kubelet: pods as containers of our images on a private Docker network (one IP each), with
  env (the Downward API too), command/args, ports, securityContext, emptyDir, resource limits;
  readiness and liveness probes (httpGet, tcpSocket, grpc, exec) with their timings; termination as
  the kubelet does it: preStop (exec or sleep), SIGTERM, SIGKILL when the grace period, counted
  from the start of preStop, runs out; restarts after a failed liveness probe or an exit;
- the Deployment controller: ReplicaSets per pod template, RollingUpdate (maxSurge rounded up,
  maxUnavailable rounded down, numbers or percentages), Recreate, minReadySeconds, paused,
  revision history for undo, scaling;
- the Service: selector -> endpoints (ready; serving terminating ones when no pod is ready) ->
  one haproxy per Service standing in for kube-proxy on several nodes: a connection reaches one
  node at random, and each node's server set changes through haproxy's runtime API after its
  own propagation lag, drawn per node and per change (`Lag`); a uniform pick among the node's
  endpoints per connection (no retries); targetPort by number or name; a NodePort as a haproxy
  frontend on 127.0.0.1:nodePort.

What it does not simulate is refused with the field's name (ManifestError), never ignored.
It is not a cluster: no scheduler, no kube-proxy iptables, no API server; the nodes exist only
as the Services' server sets (every pod runs on this machine).
"""

import copy
import hashlib
import ipaddress
import json
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import testlib

LABEL = "testpage-lab"
NODE = "lab-node"
TICK = 0.1


class ManifestError(Exception):
    """A manifest the lab cannot run as written."""


class StepError(Exception):
    """A step that failed as it would on a cluster (a rollout that never completes)."""


def now_ms():
    return time.time() * 1000


# ------------------------------------------------------------------ what the lab simulates

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


def check_supported(obj):
    """Raises ManifestError naming the first field the lab does not play."""
    kind = obj.get("kind")
    where = f"{kind} {obj.get('metadata', {}).get('name', '?')}"
    if kind not in SUPPORTED:
        raise ManifestError(f"{where}: kind {kind} is not simulated by the lab")

    def walk(value, schema, path):
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


def render(path):
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


def cpus(quantity):
    """`100m` -> 0.1, `1` -> 1.0."""
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def bytes_of(quantity):
    """`32Mi` -> 33554432, `64M` -> 64000000."""
    text = str(quantity)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def resolve_surge(value, replicas, round_up, field="maxSurge"):
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


@dataclass(frozen=True)
class Lag:
    """The endpoint propagation lag: how long a change of a Service's endpoints takes to reach
    one node's proxy. A fixed value (`1`), or a range (`0.5-3`) from which each node draws its
    own delay for each change, uniformly. On a cluster the delay is the EndpointSlice update,
    then each node's kube-proxy on its own sync (at least `minSyncPeriod`, 1 s by default,
    apart: `pkg/proxy/runner.go` `BoundedFrequencyRunner`), then any ingress or cloud load
    balancer, far longer."""

    low: float
    high: float

    @classmethod
    def parse(cls, text: object) -> "Lag":
        """`1`, `1.5`, `0.5-3` (seconds; a trailing `s` is allowed)."""
        raw = str(text).strip().removesuffix("s").strip()
        low, sep, high = raw.partition("-")
        try:
            lag = cls(float(low), float(high) if sep else float(low))
        except ValueError:
            raise ManifestError(
                f"lag {text!r}: seconds, or a range like 0.5-3"
            ) from None
        if not 0 <= lag.low <= lag.high <= 600:
            raise ManifestError(f"lag {text!r}: 0 to 600 s, low before high")
        return lag

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low:g} s"
        return f"{self.low:g}-{self.high:g} s"


def pod_template_hash(template):
    text = json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------------ docker


def docker(*args, check=True, timeout=60):
    return subprocess.run(
        ["docker", *map(str, args)],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


class Network:
    """A bridge network with a subnet no other network uses, so that each pod's IP is known
    before it starts (the Downward API's status.podIP)."""

    def __init__(self, run_id, prefix=LABEL):
        """`prefix` names the label that marks everything on it, for `cleanup` and leftovers."""
        self.label = f"{prefix}={run_id}"
        self.name = f"{prefix}-{run_id}"
        used = []
        for nid in docker("network", "ls", "-q").stdout.split():
            for cfg in (
                json.loads(
                    docker(
                        "network", "inspect", "-f", "{{json .IPAM.Config}}", nid
                    ).stdout
                    or "[]"
                )
                or []
            ):
                if cfg.get("Subnet"):
                    used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
        for third in range(64, 250):
            subnet = ipaddress.ip_network(f"10.{200 + third % 50}.{third}.0/24")
            if not any(subnet.overlaps(u) for u in used):
                break
        else:
            raise RuntimeError("no free /24 for the lab's network")
        self.subnet = subnet
        self.next_host = 10
        docker(
            "network", "create", "--label", self.label, "--subnet", subnet, self.name
        )

    def allocate(self):
        self.next_host += 1
        if self.next_host > 250:
            raise RuntimeError("the lab's network has no address left")
        return str(self.subnet.network_address + self.next_host)

    def cleanup(self):
        ids = docker("ps", "-aq", "--filter", f"label={self.label}", check=False).stdout
        if ids.split():
            docker("rm", "-f", *ids.split(), check=False)
        volumes = docker(
            "volume", "ls", "-q", "--filter", f"label={self.label}", check=False
        ).stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        docker("network", "rm", self.name, check=False)


# ------------------------------------------------------------------ pods and the kubelet


def http_probe(pod, get, timeout):
    """An httpGet probe as the kubelet's prober sends it (`pkg/probe/http/http.go`
    `DoHTTPProbe`, `pkg/probe/http/request.go` `NewProbeRequest`): `User-Agent: kube-probe/`,
    `Accept: */*`, no proxy whatever the environment says (its transport sets `Proxy` to
    none), redirects followed on the same host only, at most 10 (`RedirectChecker` with
    followNonLocalRedirects false); a redirect to another host ends the probe with the 3xx
    itself, a success with a warning, as any status from 200 to 399 is."""
    url = f"http://{pod.ip}:{pod.port(get['port'])}{get.get('path', '/')}"
    request = urllib.request.Request(
        url, headers={"User-Agent": "kube-probe/1.35", "Accept": "*/*"}
    )
    for header in get.get("httpHeaders", []):
        request.add_header(header["name"], header["value"])
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _SameHostRedirects()
    )
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read(10 * 1024)
            return 200 <= answer.status < 400, f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        code = error.code
        if 300 <= code < 400:
            return True, f"HTTP {code} (redirect to another host, not followed)"
        return 200 <= code < 400, f"HTTP {code} on {url}"


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 10

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        original = urllib.parse.urlsplit(req.full_url).hostname
        if urllib.parse.urlsplit(newurl).hostname != original:
            return None  # the 3xx is the answer (urllib raises it as an HTTPError)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Pod:
    """One pod: a container, and the kubelet's threads that probe and terminate it."""

    def __init__(self, cluster, rs, spec, labels, name):
        self.cluster = cluster
        self.rs = rs
        self.spec = spec
        self.labels = labels
        self.name = name
        self.namespace = rs.namespace
        self.container = spec["containers"][0]
        self.ip = cluster.network.allocate()
        self.cid = None
        self.sandbox = []  # the pause container's id, once it runs
        self.volumes = []  # the emptyDir volumes' names
        self.backoff = (
            None  # (crash-loop back-off s, last update), as the kubelet keeps
        )
        self.ready = False
        self.ready_since = None
        self.terminating = False
        self.gone = False
        self.restarts = 0
        self.exit_code = None
        # The last readiness probe that failed, for the rollout's error message.
        self.last_failure = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if len(spec["containers"]) > 1:
            raise ManifestError(f"pod {name}: one container per pod is simulated")

    # --- what others read

    def available(self, min_ready):
        return (
            not self.terminating
            and self.ready
            and self.ready_since is not None
            and time.monotonic() - self.ready_since >= min_ready
        )

    def port(self, ref):
        """A port by number or by the container's port name."""
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        for p in self.container.get("ports", []):
            if p.get("name") == ref:
                return p["containerPort"]
        raise ManifestError(f"pod {self.name}: no container port named {ref!r}")

    # --- the container

    def _docker_run(self):
        """The pod's sandbox, then its container. The sandbox (a `pause` container: the
        image's own `/probe sleep`) holds the pod's IP, its network sysctls and its emptyDir
        volumes for the pod's whole life, as the kubelet's pod sandbox does: a container that
        exits or restarts keeps its IP (connections are refused at once, not left to time out)
        and its emptyDir contents (`pkg/kubelet/kuberuntime/kuberuntime_sandbox.go`
        `createPodSandbox`; emptyDir lives as long as the pod)."""
        c, spec = self.container, self.spec
        pod_sc = spec.get("securityContext", {})
        sc = c.get("securityContext", {})
        label = self.cluster.network.label
        base = f"{self.cluster.network.name}-{self.name}"
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if user is None and group is not None:
            raise ManifestError(
                f"pod {self.name}: runAsGroup without runAsUser is not simulated"
            )
        # emptyDir: a tmpfs volume of the pod's own, owned by fsGroup (or the pod's user).
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        gid = pod_sc.get("fsGroup", group if group is not None else user)
        mounts = []
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                raise ManifestError(f"pod {self.name}: no volume named {m['name']!r}")
            mounts.append(m)
        sandbox = ["run", "-d", "--label", label, "--no-healthcheck"]
        sandbox += ["--network", self.cluster.network.name, "--ip", self.ip]
        sandbox += ["--name", f"{base}-pause", "--hostname", self.name]
        for sysctl in pod_sc.get("sysctls", []):
            sandbox += ["--sysctl", f"{sysctl['name']}={sysctl['value']}"]
        volume_names = {}
        for name, volume in volumes.items():
            options = ["mode=1777"]
            if user:
                options += [f"uid={user}", f"gid={gid}"]
            size = volume["emptyDir"].get("sizeLimit")
            if size:
                options.append(f"size={bytes_of(size)}")
            vname = f"{base}-{name}"
            docker(
                "volume", "create", "--label", label, "--driver", "local",
                "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                "--opt", f"o={','.join(options)}", vname,
            )  # fmt: skip
            volume_names[name] = vname
            self.volumes.append(vname)
            sandbox += ["-v", f"{vname}:/volumes/{name}"]
        sandbox += ["--entrypoint", "/probe", c["image"], "sleep", "87600h"]
        result = docker(*sandbox, check=False)
        if result.returncode != 0:
            raise ManifestError(
                f"pod {self.name}: the sandbox did not start: {result.stderr.strip()}"
            )
        self.sandbox = [result.stdout.strip()]
        args = ["run", "-d", "--label", label, "--name", base]
        # The kubelet ignores the image's HEALTHCHECK; Docker would run it inside the pod's
        # CPU limit every 5 s.
        args += ["--no-healthcheck", "--network", f"container:{self.sandbox[0]}"]
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else user}"]
        elif sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            # The kubelet refuses to start a container that would run as root.
            image_user = docker(
                "image", "inspect", "-f", "{{.Config.User}}", c["image"]
            ).stdout.strip()
            if image_user in ("", "0", "root"):
                raise ManifestError(
                    f"pod {self.name}: runAsNonRoot, but image {c['image']} runs as root"
                )
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        caps = sc.get("capabilities", {})
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        limits = c.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            args += ["--cpus", f"{cpus(limits['cpu']):g}"]
        if "memory" in limits:
            args += ["--memory", str(max(bytes_of(limits["memory"]), 6 * 2**20))]
        for m in mounts:
            mode = "ro" if m.get("readOnly") else "rw"
            args += ["-v", f"{volume_names[m['name']]}:{m['mountPath']}:{mode}"]
        for env in c.get("env", []):
            args += ["-e", f"{env['name']}={self._env_value(env)}"]
        command = c.get("command")
        if command:
            args += ["--entrypoint", command[0]]
        args.append(c["image"])
        if command:
            args += command[1:]
        args += c.get("args", [])
        result = docker(*args, check=False)
        if result.returncode != 0:
            raise ManifestError(
                f"pod {self.name}: docker run failed: {result.stderr.strip()}"
            )
        self.cid = result.stdout.strip()

    def _env_value(self, env):
        if "value" in env:
            return env["value"]
        path = env["valueFrom"]["fieldRef"]["fieldPath"]
        return {
            "status.podIP": self.ip,
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "spec.nodeName": NODE,
        }[path]

    # --- probes

    def _probe(self, probe):
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                return http_probe(self, probe["httpGet"], timeout)
            if "tcpSocket" in probe:
                port = self.port(probe["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True, "connected"
            if "grpc" in probe:
                # The kubelet's own gRPC health client, played by probe's (same question:
                # grpc.health.v1 Check over h2c). Kubernetes takes only a port number here.
                grpc = probe["grpc"]
                if not isinstance(grpc.get("port"), int):
                    raise ManifestError(
                        f"pod {self.name}: grpc.port must be a number (got {grpc.get('port')!r})"
                    )
                result = subprocess.run(
                    [
                        testlib.DIST / "probe",
                        "grpc",
                        f"{self.ip}:{grpc['port']}",
                        "--service",
                        grpc.get("service", ""),
                        "--timeout",
                        f"{timeout}s",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=timeout + 5,
                )
                return result.returncode == 0, (result.stdout + result.stderr).strip()[
                    :200
                ]
            if "exec" in probe:
                # Held to timeoutSeconds, as the kubelet has done since 1.20
                # (`pkg/kubelet/prober/prober.go` `runProbe`: the exec's timeout is the
                # probe's; `pkg/probe/exec/exec.go` `Probe`: a timeout is a failure). The
                # docker CLI's own start-up counts against it, a few tens of ms.
                try:
                    result = docker(
                        "exec",
                        self.cid,
                        *probe["exec"]["command"],
                        check=False,
                        timeout=timeout,
                    )
                except subprocess.TimeoutExpired:
                    return False, f"command timed out after {timeout}s"
                return result.returncode == 0, (result.stdout + result.stderr).strip()[
                    :200
                ]
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, str(error)
        raise ManifestError(
            f"pod {self.name}: a probe needs httpGet, tcpSocket, grpc or exec"
        )

    def _run(self):
        """Starts the container, then probes it until it is gone. Once the pod is deleted only
        readiness is probed, until the container exits: the kubelet stops liveness (and
        startup) probes on a terminating pod and keeps readiness, which kube-proxy needs for
        its fallback to serving terminating endpoints (`pkg/kubelet/prober/worker.go`
        `doProbe`, the DeletionTimestamp check)."""
        try:
            self._docker_run()
        except ManifestError as error:
            self.cluster.fail(error)
            return
        self.cluster.event("started", self)
        started = time.monotonic()
        readiness = self.container.get("readinessProbe")
        liveness = self.container.get("livenessProbe")
        if readiness is None:
            self._set_ready(True, "no readiness probe")
        due = {}
        for kind, probe in (("readiness", readiness), ("liveness", liveness)):
            if probe is not None:
                due[kind] = started + probe.get("initialDelaySeconds", 0)
        streak = {"readiness": [0, 0], "liveness": [0, 0]}  # successes, failures
        while not self.stop.is_set():
            now = time.monotonic()
            for kind, probe in (("readiness", readiness), ("liveness", liveness)):
                if probe is None or now < due[kind]:
                    continue
                if kind == "liveness" and self.terminating:
                    continue
                due[kind] = now + probe.get("periodSeconds", 10)
                ok, detail = self._probe(probe)
                if self.stop.is_set():
                    return
                counts = streak[kind]
                counts[0], counts[1] = (counts[0] + 1, 0) if ok else (0, counts[1] + 1)
                if not ok:
                    self.last_failure = f"{kind} probe failed: {detail}"
                if kind == "readiness":
                    if ok and counts[0] >= probe.get("successThreshold", 1):
                        self._set_ready(True, detail)
                    elif not ok and counts[1] >= probe.get("failureThreshold", 3):
                        self._set_ready(False, detail)
                elif not ok and counts[1] >= probe.get("failureThreshold", 3):
                    # The kubelet kills the container (preStop, SIGTERM, the grace period)
                    # and restarts it under the crash-loop back-off; the pod stays Ready
                    # until the container has exited.
                    self.cluster.event(f"liveness failed ({detail}); restarting", self)
                    code = self._kill_gracefully(reason="liveness")
                    if self.stop.is_set() or self.terminating:
                        return
                    self._set_ready(False, f"container exited {code}")
                    if not self._restart(code):
                        return
                    streak = {"readiness": [0, 0], "liveness": [0, 0]}
                    started = time.monotonic()
                    for k, p in (("readiness", readiness), ("liveness", liveness)):
                        if p is not None:
                            due[k] = started + p.get("initialDelaySeconds", 0)
            if not self.stop.is_set() and not self.terminating and self._exited():
                code = docker(
                    "inspect", "-f", "{{.State.ExitCode}}", self.cid, check=False
                ).stdout.strip()
                self._set_ready(False, "exited")
                if not self._restart(code):
                    return
            self.stop.wait(TICK)

    def _exited(self):
        state = docker("inspect", "-f", "{{.State.Running}}", self.cid, check=False)
        return state.returncode != 0 or state.stdout.strip() == "false"

    # The kubelet's crash-loop back-off: `pkg/kubelet/kubelet.go` builds it with
    # `flowcontrol.NewBackOff(10 s, 300 s)`; `pkg/kubelet/kuberuntime/kuberuntime_manager.go`
    # `doBackOff` restarts at once when the container has no back-off entry, else only once
    # the back-off has passed since the container finished, then doubles it; the entry is
    # forgotten when nothing happened for twice the maximum (`flowcontrol.Backoff.Next`,
    # `hasExpired`).
    BACKOFF_INITIAL, BACKOFF_MAX = 10.0, 300.0

    def _restart(self, code):
        """Restarts the exited container under the back-off; False when the pod went away
        meanwhile."""
        finished = time.monotonic()
        entry = self.backoff
        if entry is not None and finished - entry[1] > 2 * self.BACKOFF_MAX:
            entry = None
        wait = 0.0 if entry is None else entry[0]
        self.backoff = (
            self.BACKOFF_INITIAL
            if entry is None
            else min(2 * entry[0], self.BACKOFF_MAX),
            finished,
        )
        self.cluster.event(
            f"exited {code}; restart in {wait:g}s"
            + (" (CrashLoopBackOff)" if wait else ""),
            self,
        )
        if self.stop.wait(wait) or self.terminating:
            return False
        docker("start", self.cid, check=False)
        self.restarts += 1
        return True

    def _set_ready(self, ready, detail):
        with self.lock:
            if ready == self.ready:
                return
            self.ready = ready
            self.ready_since = time.monotonic() if ready else None
        self.cluster.event("ready" if ready else f"unready ({detail})", self)

    # --- termination

    def _kill_gracefully(self, reason):
        """preStop, then SIGTERM, then SIGKILL once the grace period (from the start of
        preStop) is over. Returns the exit code."""
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        start = time.monotonic()
        prestop = self.container.get("lifecycle", {}).get("preStop")
        if prestop:
            self.cluster.event("preStop", self)
            if "exec" in prestop:
                try:
                    result = docker(
                        "exec",
                        self.cid,
                        *prestop["exec"]["command"],
                        check=False,
                        timeout=grace,
                    )
                    if result.returncode != 0:
                        self.cluster.event(
                            "FailedPreStopHook: "
                            + (result.stdout + result.stderr).strip()[:200],
                            self,
                        )
                except subprocess.TimeoutExpired:
                    self.cluster.event(
                        "preStop still running at the grace period", self
                    )
            else:
                time.sleep(min(prestop["sleep"]["seconds"], grace))
        left = grace - (time.monotonic() - start)
        # The kubelet grants 2 s more when preStop used the whole grace period.
        left = max(left, 2.0)
        self.cluster.event("SIGTERM", self)
        docker("kill", "-s", "TERM", self.cid, check=False)
        deadline = time.monotonic() + left
        while time.monotonic() < deadline and not self._exited():
            time.sleep(0.05)
        if not self._exited():
            self.cluster.event(f"SIGKILL ({reason}: grace period over)", self)
            docker("kill", "-s", "KILL", self.cid, check=False)
        code = docker("wait", self.cid, check=False).stdout.strip()
        return int(code) if code.lstrip("-").isdigit() else None

    def delete(self):
        """As `kubectl delete pod`: terminating at once (out of the ready endpoints, after
        each node's lag), readiness still probed, preStop, SIGTERM, SIGKILL; the sandbox (and
        with it the pod's IP) goes once the container has exited."""
        with self.lock:
            if self.terminating:
                return
            self.terminating = True
        self.cluster.event("deleted", self)

        def terminate():
            if self.cid is None:
                self.stop.set()
                self.thread.join()
                self.gone = True
                return
            self.exit_code = self._kill_gracefully(reason="deleted")
            self.stop.set()
            self.thread.join()
            self._set_ready(False, "container exited")
            self.cluster.event(f"exited {self.exit_code}", self)
            docker("rm", "-f", self.cid, *self.sandbox, check=False)
            if self.volumes:
                docker("volume", "rm", *self.volumes, check=False)
            self.gone = True

        threading.Thread(target=terminate, daemon=True).start()


# ------------------------------------------------------------------ the Deployment controller


class ReplicaSet:
    def __init__(self, deployment, template, revision):
        self.deployment = deployment
        self.namespace = deployment.namespace
        self.template = copy.deepcopy(template)
        self.hash = pod_template_hash(template)
        self.revision = revision
        self.replicas = 0
        self.pods = []

    def active(self):
        return [p for p in self.pods if not p.terminating]

    def available(self):
        return sum(p.available(self.deployment.min_ready) for p in self.active())


class Deployment:
    def __init__(self, cluster, obj):
        self.cluster = cluster
        self.name = obj["metadata"]["name"]
        self.namespace = obj["metadata"].get("namespace", "default")
        self.replica_sets = []
        # The Progressing condition: when the rollout last made progress, and whether it
        # ran out of its deadline (`pkg/controller/deployment/progress.go`).
        self.last_progress = time.monotonic()
        self.progress_mark = None
        self.timed_out = False
        self.update(obj)

    def update(self, obj):
        spec = obj["spec"]
        self.obj = copy.deepcopy(obj)
        self.replicas = spec.get("replicas", 1)
        self.min_ready = spec.get("minReadySeconds", 0)
        self.paused = spec.get("paused", False)
        self.strategy = spec.get("strategy", {}).get("type", "RollingUpdate")
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        # `pkg/controller/deployment/util/deployment_util.go` `ResolveFenceposts`: surge
        # rounded up, unavailable down, and both 0 means unavailable 1.
        self.max_surge = resolve_surge(
            rolling.get("maxSurge", "25%"), self.replicas, True, "maxSurge"
        )
        self.max_unavailable = resolve_surge(
            rolling.get("maxUnavailable", "25%"), self.replicas, False, "maxUnavailable"
        )
        if self.max_surge == 0 and self.max_unavailable == 0:
            self.max_unavailable = 1
        # 10 by default, as the API server's defaulting sets it.
        self.history_limit = spec.get("revisionHistoryLimit", 10)
        self.progress_deadline = spec.get("progressDeadlineSeconds", 600)
        if not isinstance(self.history_limit, int) or self.history_limit < 0:
            raise ManifestError(
                f"Deployment {self.name}: spec.revisionHistoryLimit {self.history_limit!r}"
            )
        if not isinstance(self.progress_deadline, int) or self.progress_deadline <= 0:
            raise ManifestError(
                f"Deployment {self.name}: spec.progressDeadlineSeconds "
                f"{self.progress_deadline!r}"
            )
        if self.min_ready >= self.progress_deadline:
            raise ManifestError(
                f"Deployment {self.name}: spec.progressDeadlineSeconds must be greater "
                "than minReadySeconds"
            )
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            raise ManifestError(
                f"Deployment {self.name}: selector does not match the template's labels"
            )
        self.template = spec["template"]

    @property
    def new_rs(self):
        wanted = pod_template_hash(self.template)
        return next((rs for rs in self.replica_sets if rs.hash == wanted), None)

    def pods(self):
        return [p for rs in self.replica_sets for p in rs.pods]

    def sync(self):
        """One pass of the controller, as level-triggered as the real one."""
        new = self.new_rs
        latest = max((rs.revision for rs in self.replica_sets), default=0)
        if new is not None and new.revision < latest and not self.paused:
            # An old template back (apply or undo): its ReplicaSet becomes the newest revision.
            new.revision = latest + 1
        if new is None and not self.paused:
            revision = latest + 1
            new = ReplicaSet(self, self.template, revision)
            self.replica_sets.append(new)
            self.cluster.event(f"ReplicaSet revision {revision} ({new.hash})", None)
        if new is None or self.paused:
            # Paused: no rollout step, whatever the template says; scaling still applies.
            self._scale_paused()
        elif self.strategy == "Recreate":
            self._recreate(new)
        else:
            self._rolling(new)
        for rs in self.replica_sets:
            self._sync_rs(rs)
        self._progress(new)
        if new is not None and (self.paused or self.complete()):
            self._cleanup()

    def _progress(self, new):
        """progressDeadlineSeconds is time without progress, not a cap on the rollout:
        `pkg/controller/deployment/progress.go` `syncRolloutStatus` refreshes the Progressing
        condition whenever `util.DeploymentProgressing` sees the new ReplicaSet grow, more
        updated, ready or available replicas, or fewer old ones, and
        `util.DeploymentTimedOut` reports ProgressDeadlineExceeded once the deadline passes
        after the last refresh. A paused Deployment does not time out; a complete one is
        done."""
        now = time.monotonic()
        old = [rs for rs in self.replica_sets if rs is not new]
        mark = (
            None if new is None else new.hash,
            0 if new is None else new.replicas,
            0 if new is None else len(new.active()),
            0 if new is None else sum(p.ready for p in new.active()),
            0 if new is None else new.available(),
            -sum(rs.replicas + len(rs.active()) for rs in old),
        )
        previous, self.progress_mark = self.progress_mark, mark
        if (
            previous is None
            or mark[0] != previous[0]
            or any(a > b for a, b in zip(mark[1:], previous[1:], strict=True))
            or self.paused
            or self.complete()
        ):
            self.last_progress = now
            self.timed_out = False
        elif not self.timed_out and now - self.last_progress > self.progress_deadline:
            self.timed_out = True
            self.cluster.event(
                f"deployment {self.name}: ProgressDeadlineExceeded "
                f"(no progress for {self.progress_deadline}s)",
                None,
            )

    def _cleanup(self):
        """Old ReplicaSets beyond revisionHistoryLimit, oldest first, once they have no
        pods: `pkg/controller/deployment/sync.go` `cleanupDeployment`, run when a rollout is
        complete or the Deployment is paused."""
        old = sorted(
            (
                rs
                for rs in self.replica_sets
                if rs is not self.new_rs and rs.replicas == 0 and not rs.pods
            ),
            key=lambda rs: rs.revision,
        )
        for rs in old[: max(0, len(old) - self.history_limit)]:
            self.replica_sets.remove(rs)
            self.cluster.event(
                f"ReplicaSet revision {rs.revision} ({rs.hash}) deleted: "
                f"revisionHistoryLimit {self.history_limit}",
                None,
            )

    def _scale_paused(self):
        """Paused: no rollout step, only scaling. One active ReplicaSet takes `replicas`;
        several (paused mid-rollout) may hold `replicas + maxSurge` between them, as the
        controller allows, and a difference goes to the largest (added) or comes from the
        oldest (removed): the controller's proportional scaling, rounded to whole pods."""
        live = sorted(
            (rs for rs in self.replica_sets if rs.replicas > 0),
            key=lambda rs: rs.revision,
        )
        if not live:
            return
        if len(live) == 1:
            live[0].replicas = self.replicas
            return
        surge = self.max_surge if self.strategy == "RollingUpdate" else 0
        diff = self.replicas + surge - sum(rs.replicas for rs in live)
        if diff > 0:
            max(live, key=lambda rs: rs.replicas).replicas += diff
        for rs in live:
            if diff >= 0:
                break
            down = min(rs.replicas, -diff)
            rs.replicas -= down
            diff += down

    def _recreate(self, new):
        old = [rs for rs in self.replica_sets if rs is not new]
        for rs in old:
            rs.replicas = 0
        if any(not p.gone for rs in old for p in rs.pods):
            return
        new.replicas = self.replicas

    def _rolling(self, new):
        old = sorted(
            (rs for rs in self.replica_sets if rs is not new),
            key=lambda rs: rs.revision,
        )
        total = sum(rs.replicas for rs in self.replica_sets)
        if new.replicas < self.replicas:
            up = min(
                self.replicas + self.max_surge - total, self.replicas - new.replicas
            )
            new.replicas += max(0, up)
        elif new.replicas > self.replicas:
            new.replicas = self.replicas
        old_count = sum(rs.replicas for rs in old)
        if old_count == 0:
            return
        all_count = sum(rs.replicas for rs in self.replica_sets)
        min_available = self.replicas - self.max_unavailable
        new_unavailable = new.replicas - new.available()
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return
        cleaned = 0
        for rs in old:
            unhealthy = rs.replicas - rs.available()
            if cleaned >= max_down or unhealthy <= 0:
                continue
            down = min(max_down - cleaned, unhealthy)
            rs.replicas -= down
            cleaned += down
        available = sum(rs.available() for rs in self.replica_sets)
        budget = available - min_available
        for rs in old:
            if budget <= 0:
                break
            down = min(rs.replicas, budget)
            rs.replicas -= down
            budget -= down

    def _sync_rs(self, rs):
        active = rs.active()
        for _ in range(rs.replicas - len(active)):
            self.cluster.create_pod(rs)
        if len(active) > rs.replicas:
            # Not ready first, then the most recently ready, as the ReplicaSet controller picks.
            victims = sorted(
                active,
                key=lambda p: (p.ready, p.ready_since or 0),
            )
            order = [p for p in victims if not p.ready] + sorted(
                (p for p in victims if p.ready),
                key=lambda p: -(p.ready_since or 0),
            )
            for pod in order[: len(active) - rs.replicas]:
                pod.delete()
        rs.pods = [p for p in rs.pods if not p.gone]

    def describe(self):
        """Why the rollout has not completed: the pods that are not available yet."""
        waiting = [
            f"{p.name}: {p.last_failure or 'not ready yet'}"
            for p in self.pods()
            if not p.terminating and not p.available(self.min_ready)
        ]
        return "; ".join(waiting) or "old pods still running"

    def complete(self):
        new = self.new_rs
        if new is None:
            return False
        old_active = [
            p for rs in self.replica_sets if rs is not new for p in rs.active()
        ]
        return (
            new.replicas == self.replicas
            and len(new.active()) == self.replicas
            and new.available() == self.replicas
            and not old_active
        )

    def undo(self, to_revision=None):
        """`kubectl rollout undo [--to-revision=N]`: the template of that revision (by default
        the one before the current)."""
        if self.paused:
            # kubectl's `DeploymentRollbacker.Rollback` (`polymorphichelpers/rollback.go`).
            raise StepError(
                f"deployment {self.name}: you cannot rollback a paused deployment; resume "
                f"it first with 'kubectl rollout resume deployment/{self.name}' and try again"
            )
        current = self.new_rs
        previous = sorted(
            (rs for rs in self.replica_sets if rs is not current),
            key=lambda rs: rs.revision,
        )
        if to_revision is not None:
            previous = [rs for rs in previous if rs.revision == to_revision]
        if not previous:
            raise StepError(
                f"deployment {self.name}: unable to find specified revision"
                + (f" {to_revision} in history" if to_revision is not None else "")
            )
        target = previous[-1]
        target.revision = max(rs.revision for rs in self.replica_sets) + 1
        self.template = copy.deepcopy(target.template)
        self.obj["spec"]["template"] = copy.deepcopy(target.template)


# ------------------------------------------------------------------ Services


class Service:
    """One haproxy per Service standing in for kube-proxy on `nodes` nodes, with no retries
    and no health checks of its own: a node's endpoints change only through the runtime API,
    as kube-proxy's rules change only when the control plane says.

    A new connection reaches one node at random (a client pod on that node, or a load
    balancer spreading over the nodes: `use_backend` with `rand()`), and there one endpoint,
    uniformly at random and blind to load, as kube-proxy's rules pick one: iptables
    `-m statistic --mode random --probability 1/n, 1/(n-1), ...`
    (`pkg/proxy/iptables/proxier.go` `writeServiceToEndpointRules`), nftables `numgen random
    mod n` (`pkg/proxy/nftables/proxier.go`). haproxy's own `balance random` is not that: it
    draws two servers and keeps the less loaded one, and even `random(1)` looks its random
    key up on a consistent-hash ring, where equal servers get unequal shares (about 0.87 to
    1.08 of a third each with three servers here). `balance hash rand()` with
    `hash-type map-based` takes a random key modulo the live servers: uniform, as
    lab/tests/test_balancer.py checks. Requests on a kept-alive connection stay on its pod,
    even after the selector moves elsewhere; an established connection may stay idle (an
    hour here)."""

    SLOTS = 32

    def __init__(self, cluster, obj):
        self.cluster = cluster
        self.nodes = cluster.nodes
        self.name = obj["metadata"]["name"]
        self.namespace = obj["metadata"].get("namespace", "default")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{LABEL}-haproxy-"))
        self.socket = self.dir / "admin.sock"
        self.proc = None
        self.update(obj)
        self.listeners = []
        self.urls = {}
        frontends = []
        for i, port in enumerate(self.ports):
            if port.get("nodePort"):
                bind = f"127.0.0.1:{port['nodePort']}"
                self.urls[port.get("name") or i] = f"http://{bind}/"
            else:
                listener = testlib.listening_socket()
                self.listeners.append(listener)
                bind = f"fd@{listener.fileno()}"
                self.urls[port.get("name") or i] = (
                    f"http://127.0.0.1:{listener.getsockname()[1]}/"
                )
            servers = "\n".join(
                f"    server s{n} 127.0.0.1:1 disabled" for n in range(self.SLOTS)
            )
            frontends.append(
                f"frontend f{i}\n    bind {bind}\n"
                f"    use_backend b{i}n%[rand({self.nodes})]\n"
            )
            for k in range(self.nodes):
                frontends.append(
                    f"backend b{i}n{k}\n    balance hash rand()\n"
                    f"    hash-type map-based\n{servers}\n"
                )
        config = self.dir / "haproxy.cfg"
        config.write_text(
            f"""global
    stats socket {self.socket} level admin
    maxconn 4096
defaults
    mode tcp
    retries 0
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # kube-proxy closes no idle connection: a gRPC Watch sends nothing while its status holds.
    timeout tunnel 1h
    timeout http-keep-alive 30s
"""
            + "".join(frontends)
        )
        self.log = self.dir / "haproxy.log"
        with self.log.open("wb") as log_file:
            self.proc = testlib.Process(
                ["haproxy", "-db", "-f", config],
                pass_fds=[s.fileno() for s in self.listeners],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        for s in self.listeners:
            s.close()
        try:
            testlib.wait_until(
                self._answers, 5, "haproxy's admin socket", interval=0.02
            )
        except (TimeoutError, RuntimeError) as error:
            tail = self.log.read_text(errors="replace")[-400:]
            self.close()
            raise RuntimeError(
                f"Service {self.name}: haproxy did not start ({error}): {tail}"
            ) from error
        # Per node: slot per (port index, pod name), and the endpoints it routes to now.
        self.slots = [{} for _ in range(self.nodes)]
        self.applied = [set() for _ in range(self.nodes)]

    def update(self, obj):
        spec = obj["spec"]
        if getattr(self, "proc", None) is not None:
            new_ports = [
                (p.get("port"), p.get("nodePort")) for p in spec.get("ports", [])
            ]
            old_ports = [(p.get("port"), p.get("nodePort")) for p in self.ports]
            if new_ports != old_ports:
                raise ManifestError(
                    f"Service {self.name}: changing ports is not simulated"
                )
        self.selector = spec.get("selector", {})
        self.ports = spec.get("ports", [])

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with status {self.proc.poll()}")
        return self.socket.exists() and self.command("show info")

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def selects(self, pod):
        return pod.namespace == self.namespace and all(
            pod.labels.get(k) == v for k, v in self.selector.items()
        )

    def wanted(self):
        """The endpoints the control plane publishes now, name -> (pod, ready): selected pods
        that are ready and not terminating (ready), and terminating ones whose readiness
        probe still passes (serving, not ready), as the EndpointSlice controller writes them
        (`staging/src/k8s.io/endpointslice/utils.go` `podToEndpoint`)."""
        return {
            p.name: (p, p.ready and not p.terminating)
            for p in self.cluster.all_pods()
            if self.selects(p) and p.ready and not p.gone
        }

    @staticmethod
    def routed(endpoints):
        """What a node's proxy routes to: the ready endpoints, or when there is none the
        serving terminating ones (`pkg/proxy/topology.go` `CategorizeEndpoints`)."""
        ready = {n: pod for n, (pod, is_ready) in endpoints.items() if is_ready}
        return ready or {n: pod for n, (pod, _) in endpoints.items()}

    def apply(self, node, endpoints):
        """Sets node `node`'s servers to what it routes to out of `endpoints`: the new ones
        first, so that a switch from one set to another (blue/green) never leaves none, as
        kube-proxy replaces its rules in one go."""
        pods = self.routed(endpoints)
        slots, applied = self.slots[node], self.applied[node]
        for name in sorted(set(pods) - applied):
            pod = pods[name]
            for i, port in enumerate(self.ports):
                used = {s for (j, _), s in slots.items() if j == i}
                slot = next(n for n in range(self.SLOTS) if n not in used)
                slots[(i, name)] = slot
                target = pod.port(port.get("targetPort", port["port"]))
                backend = f"b{i}n{node}/s{slot}"
                self.command(f"set server {backend} addr {pod.ip} port {target}")
                self.command(f"set server {backend} state ready")
            self.cluster.event(f"endpoint added to {self.name}", pod, node=node)
        for name in sorted(applied - set(pods)):
            for i in range(len(self.ports)):
                slot = slots.pop((i, name), None)
                if slot is not None:
                    self.command(f"set server b{i}n{node}/s{slot} state maint")
            self.cluster.event(f"endpoint removed from {self.name}", name, node=node)
        self.applied[node] = set(pods)

    def url(self, port=None):
        return self.urls[port] if port is not None else next(iter(self.urls.values()))

    def close(self):
        if self.proc is not None:
            self.proc.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ the cluster


class Cluster:
    """The objects applied so far, and the control loop that reconciles them."""

    def __init__(self, lag=None, registry="", nodes=3, seed=None):
        self.run_id = uuid.uuid4().hex[:8]
        self.lag = lag if isinstance(lag, Lag) else Lag.parse(1 if lag is None else lag)
        if not 1 <= nodes <= 16:
            raise ManifestError(f"nodes {nodes}: 1 to 16")
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.registry = registry
        self.network = Network(self.run_id)
        self.deployments = {}
        self.services = {}
        self.events = []
        self.errors = []
        self.samples = []  # (unix ms, {deployment: (available, active pods)})
        # Changes on their way, per (Service, node): [(due monotonic, endpoints)], in order.
        self.pending = {}
        # What the control plane published last, per Service: {name: (pod, ready)}.
        self.published = {}
        self.lock = threading.RLock()
        self.counter = 0
        self.stopped = threading.Event()
        self.loop = threading.Thread(target=self._control_loop, daemon=True)
        self.loop.start()

    # --- records

    def event(self, what, pod, node=None):
        name = pod.name if isinstance(pod, Pod) else pod
        ip = pod.ip if isinstance(pod, Pod) else None
        record = {"unix_ms": now_ms(), "event": what, "pod": name, "ip": ip}
        if node is not None:
            record["node"] = node
        self.events.append(record)

    def fail(self, error):
        self.errors.append(str(error))
        self.event(f"error: {error}", None)

    # --- objects

    def apply(self, objects):
        """`kubectl apply` of already rendered objects; returns what was skipped and why."""
        skipped = []
        for obj in objects:
            kind = obj.get("kind")
            if kind in SKIPPED:
                skipped.append(f"{kind} {obj['metadata']['name']}: {SKIPPED[kind]}")
                continue
            check_supported(obj)
            if kind == "Namespace":
                continue
            key = (obj["metadata"].get("namespace", "default"), obj["metadata"]["name"])
            obj = copy.deepcopy(obj)
            if kind == "Deployment":
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    c["image"] = self.registry + c["image"]
            with self.lock:
                if kind == "Deployment":
                    if key in self.deployments:
                        old = self.deployments[key]
                        # As apply's three-way merge: `paused`, set by `rollout pause` and
                        # absent from the file, stays.
                        if "paused" not in obj["spec"] and old.paused:
                            obj["spec"]["paused"] = True
                        old.update(obj)
                    else:
                        self.deployments[key] = Deployment(self, obj)
                elif kind == "Service":
                    if key in self.services:
                        self.services[key].update(obj)
                    else:
                        self.services[key] = Service(self, obj)
        return skipped

    def deployment(self, namespace, name):
        try:
            return self.deployments[(namespace, name)]
        except KeyError:
            raise StepError(
                f"deployment {name} not found in namespace {namespace}"
            ) from None

    def service(self, namespace, name):
        try:
            return self.services[(namespace, name)]
        except KeyError:
            raise StepError(
                f"service {name} not found in namespace {namespace}"
            ) from None

    def all_pods(self):
        return [p for d in list(self.deployments.values()) for p in d.pods()]

    def create_pod(self, rs):
        self.counter += 1
        suffix = uuid.uuid4().hex[:5]
        name = f"{rs.deployment.name}-{rs.hash[:8]}-{suffix}"
        labels = dict(rs.template["metadata"].get("labels", {}))
        labels["pod-template-hash"] = rs.hash
        pod = Pod(self, rs, rs.template["spec"], labels, name)
        rs.pods.append(pod)
        pod.thread.start()

    # --- the control loop

    def sync_now(self):
        """One pass of the controllers, now (they react to every change, as watches do)."""
        with self.lock:
            for d in list(self.deployments.values()):
                d.sync()

    def _control_loop(self):
        while not self.stopped.wait(TICK):
            with self.lock:
                try:
                    for d in list(self.deployments.values()):
                        d.sync()
                    self._endpoints()
                    self.samples.append(
                        (
                            now_ms(),
                            {
                                d.name: (
                                    sum(p.available(d.min_ready) for p in d.pods()),
                                    sum(not p.terminating for p in d.pods()),
                                )
                                for d in self.deployments.values()
                            },
                        )
                    )
                except ManifestError as error:
                    self.fail(error)
                except Exception as error:  # noqa: BLE001 (reported, never silent)
                    self.fail(f"control loop: {error!r}")

    def _endpoints(self):
        """What each Service should route to reaches each node after that node's own lag,
        drawn for every change; a node applies its changes in order (a later one is never
        overtaken by an earlier one drawn longer), as kube-proxy syncs its rules to the
        latest state it has seen."""
        now = time.monotonic()
        for service in self.services.values():
            wanted = service.wanted()
            flags = {n: ready for n, (_, ready) in wanted.items()}
            last = self.published.get(service)
            if last is None or flags != {n: r for n, (_, r) in last.items()}:
                self.published[service] = wanted
                for node in range(service.nodes):
                    queue = self.pending.setdefault((service, node), [])
                    due = now + self.lag.draw(self.rng)
                    if queue:
                        due = max(due, queue[-1][0])
                    queue.append((due, wanted))
        for (service, node), queue in self.pending.items():
            while queue and queue[0][0] <= now:
                _, endpoints = queue.pop(0)
                service.apply(node, endpoints)

    def converged(self, service):
        """Every node routes to what the control plane publishes now, no change on its way."""
        routed = set(service.routed(service.wanted()))
        return not any(
            self.pending.get((service, n)) for n in range(service.nodes)
        ) and all(applied == routed for applied in service.applied)

    def settled(self, service):
        """The Service has endpoints, and they are on every node."""
        return bool(service.routed(service.wanted())) and self.converged(service)

    def terminations_done(self):
        return all(p.gone or not p.terminating for p in self.all_pods())

    def wait(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.errors:
                raise StepError(self.errors[0])
            with self.lock:
                if condition():
                    return
            time.sleep(TICK)
        raise StepError(f"{what}: not done within {timeout:g}s")

    def close(self):
        self.stopped.set()
        self.loop.join()
        for service in self.services.values():
            service.close()
        pods = self.all_pods()
        for pod in pods:
            pod.stop.set()
        self.network.cleanup()
