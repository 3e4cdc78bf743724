"""The cluster: the objects applied so far, the control loop that reconciles them, and each
Service's endpoints on their way to every node."""

import copy
import random
import threading
import time
import uuid

from lab.common import TICK, now_ms
from lab.kube.admission import SKIPPED, ManifestError, StepError, check_supported
from lab.kube.deployments import Deployment
from lab.kube.kubelet import Network, Pod
from lab.kube.services import Lag, Service


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
