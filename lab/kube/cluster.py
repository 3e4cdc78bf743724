"""The cluster: the objects applied so far, the control loop that reconciles them, and each
Service's endpoints on their way to every node.

Every change of the objects goes through the Cluster's methods, which take its lock; the
control loop holds it for each pass. What the pods' threads report (events, errors) goes to
`Records` (records.py), which has a lock of its own, so that a pod never waits for a pass of
the loop. The parts are given what they use (the records, the network, a way to create a pod or
to list the pods), not the cluster."""

import copy
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from lab.common import TICK, log, now_ms, shielded
from lab.kube.admission import SKIPPED, ManifestError, StepError, check_supported
from lab.kube.deployments import Deployment, ReplicaSet
from lab.kube.kubelet import Network, Pod
from lab.kube.records import Records
from lab.kube.services import Lag, Service

# What the control plane publishes for a Service: pod name -> (pod, ready).
Endpoints = dict[str, tuple[Pod, bool]]


# The longest `close` waits for the pods' threads (one may be in a liveness kill's grace
# period); past it, the removal goes on and the network's own retries catch the rest.
CLOSE_WAIT = 30.0


class Cluster:
    """The objects applied so far, and the control loop that reconciles them."""

    def __init__(
        self,
        lag: Lag | str | float | None = None,
        registry: str = "",
        nodes: int = 3,
        seed: int | None = None,
    ) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.lag = lag if isinstance(lag, Lag) else Lag.parse(1 if lag is None else lag)
        if not 1 <= nodes <= 16:
            raise ManifestError(f"nodes {nodes}: 1 to 16")
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.registry = registry
        self.network = Network(self.run_id)
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.records = Records()
        # Every pod ever created, gone or not, so that `close` waits for each one's thread.
        self._created: list[Pod] = []
        # Changes on their way, per (Service, node): [(due monotonic, endpoints)], in order.
        self.pending: dict[tuple[Service, int], list[tuple[float, Endpoints]]] = {}
        # What the control plane published last, per Service: {name: (pod, ready)}.
        self.published: dict[Service, Endpoints] = {}
        # Held by each pass of the control loop and by every change from outside.
        self._lock = threading.RLock()
        self.stopped = threading.Event()
        self.loop = threading.Thread(target=self._control_loop, daemon=True)
        self.loop.start()

    # --- objects

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
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
            with self._lock:
                if kind == "Deployment":
                    if key in self.deployments:
                        old = self.deployments[key]
                        # As apply's three-way merge: `paused`, set by `rollout pause` and
                        # absent from the file, stays.
                        if "paused" not in obj["spec"] and old.paused:
                            obj["spec"]["paused"] = True
                        old.update(obj)
                    else:
                        self.deployments[key] = Deployment(
                            self.records, self.create_pod, obj
                        )
                elif kind == "Service":
                    if key in self.services:
                        self.services[key].update(obj)
                    else:
                        # Started and recorded as one, so that `close` finds it.
                        with shielded():
                            self.services[key] = Service(
                                self.records, self.all_pods, self.nodes, obj
                            )
        return skipped

    def deployment(self, namespace: str, name: str) -> Deployment:
        try:
            return self.deployments[(namespace, name)]
        except KeyError:
            raise StepError(
                f"deployment {name} not found in namespace {namespace}"
            ) from None

    def service(self, namespace: str, name: str) -> Service:
        try:
            return self.services[(namespace, name)]
        except KeyError:
            raise StepError(
                f"service {name} not found in namespace {namespace}"
            ) from None

    def all_pods(self) -> list[Pod]:
        """Every pod of every Deployment; the caller holds the lock (the control loop, `wait`'s
        condition) or reads a list that may be a pass behind."""
        return [p for d in list(self.deployments.values()) for p in d.pods()]

    def available_pods(self, deployment: Deployment) -> list[Pod]:
        with self._lock:
            return [p for p in deployment.pods() if p.available(deployment.min_ready)]

    def rollout_status(self, deployment: Deployment) -> tuple[bool, bool, str]:
        """As `kubectl rollout status` reads it, in one pass: complete, timed out (no
        progress for progressDeadlineSeconds), and what it waits for."""
        with self._lock:
            return deployment.complete(), deployment.timed_out, deployment.describe()

    # --- changes, as kubectl makes them

    def update_deployment(self, deployment: Deployment, obj: dict[str, Any]) -> None:
        """The Deployment's new object (set image, pause, resume, scale, patch)."""
        with self._lock:
            deployment.update(obj)

    def undo(self, deployment: Deployment, to_revision: int | None) -> None:
        with self._lock:
            deployment.undo(to_revision)

    def select(self, service: Service, selector: dict[str, str]) -> None:
        """The Service's selector, merged with `selector` (`kubectl patch`)."""
        with self._lock:
            service.selector = {**service.selector, **selector}

    def create_pod(self, rs: ReplicaSet) -> None:
        suffix = uuid.uuid4().hex[:5]
        name = f"{rs.deployment.name}-{rs.hash[:8]}-{suffix}"
        labels = dict(rs.template["metadata"].get("labels", {}))
        labels["pod-template-hash"] = rs.hash
        pod = Pod(
            self.records, self.network, rs.namespace, rs.template["spec"], labels, name
        )
        rs.pods.append(pod)
        self._created.append(pod)
        pod.thread.start()

    # --- the control loop

    def sync_now(self) -> None:
        """One pass of the controllers, now (they react to every change, as watches do)."""
        with self._lock:
            for d in list(self.deployments.values()):
                d.sync()

    def _control_loop(self) -> None:
        while not self.stopped.wait(TICK):
            with self._lock:
                try:
                    for d in list(self.deployments.values()):
                        d.sync()
                    self._endpoints()
                    self.records.sample(
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
                    self.records.fail(error)
                except Exception as error:  # noqa: BLE001 (reported, never silent)
                    self.records.fail(f"control loop: {error!r}")

    def _endpoints(self) -> None:
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

    def converged(self, service: Service) -> bool:
        """Every node routes to what the control plane publishes now, no change on its way."""
        routed = set(service.routed(service.wanted()))
        return not any(
            self.pending.get((service, n)) for n in range(service.nodes)
        ) and all(applied == routed for applied in service.applied)

    def settled(self, service: Service) -> bool:
        """The Service has endpoints, and they are on every node."""
        return bool(service.routed(service.wanted())) and self.converged(service)

    def terminations_done(self) -> bool:
        return all(p.gone or not p.terminating for p in self.all_pods())

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `condition` holds (looked at under the lock, between passes of the loop);
        StepError when an error was recorded meanwhile or `timeout` s went by."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            error = self.records.first_error()
            if error is not None:
                raise StepError(error)
            with self._lock:
                if condition():
                    return
            time.sleep(TICK)
        raise StepError(f"{what}: not done within {timeout:g}s")

    def close(self) -> None:
        """Stops the loop, the Services and every pod, then removes what the run created. A
        pod's thread may be inside `docker run` at this moment: it is waited for (at most
        CLOSE_WAIT seconds in all), so that nothing is created after the removal."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.loop.join()
        for service in self.services.values():
            service.close()
        for pod in self._created:
            pod.stop.set()
        deadline = time.monotonic() + CLOSE_WAIT
        for pod in self._created:
            if pod.thread.is_alive():
                pod.thread.join(max(0.0, deadline - time.monotonic()))
        self.network.cleanup()
        late = [p.name for p in self._created if p.thread.is_alive()]
        if late:
            log(f"pods still starting or stopping after {CLOSE_WAIT:g}s: {late}")
