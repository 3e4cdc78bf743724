"""Services: the endpoint propagation lag, and one haproxy per Service standing in for kube-proxy
on several nodes."""

import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import testlib

from lab.kube.admission import Manifest, ManifestError
from lab.kube.kubelet import LABEL, Pod
from lab.kube.records import Records

# A Service's endpoints as the control plane publishes them: pod name -> (pod, ready).
Endpoints = dict[str, "tuple[Pod, bool]"]


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
        if isinstance(text, bool):  # YAML's true and false are no lag
            raise ManifestError(f"lag {text!r}: seconds, or a range like 0.5-3")
        raw = str(text).strip().removesuffix("s").strip()
        shown = raw if len(raw) <= 24 else f"{raw[:24]}..."
        try:
            one = float(raw)  # a single value, exponents included (1e-3)
            lag = cls(one + 0, one + 0)  # -0.0 is 0
        except ValueError:
            low, _, high = raw.partition("-")
            try:
                lag = cls(float(low), float(high))
            except ValueError:
                raise ManifestError(
                    f"lag {shown!r}: seconds, or a range like 0.5-3"
                ) from None
        if not 0 <= lag.low <= lag.high <= 600:
            raise ManifestError(f"lag {shown!r}: 0 to 600 s, low before high")
        return lag

    def draw(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low:g} s"
        return f"{self.low:g}-{self.high:g} s"


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

    def __init__(
        self,
        records: Records,
        pods: Callable[[], list[Pod]],
        nodes: int,
        obj: Manifest,
    ) -> None:
        """`pods`: every pod there is now, for the selector; `nodes`: how many proxies."""
        self.records = records
        self.pods = pods
        self.nodes = nodes
        self.name: str = obj["metadata"]["name"]
        self.namespace: str = obj["metadata"].get("namespace", "default")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{LABEL}-haproxy-"))
        self.socket = self.dir / "admin.sock"
        self.proc: testlib.Process | None = None
        self.update(obj)
        self.listeners: list[socket.socket] = []
        # Per port, by its name or else its index: the URL it is served on.
        self.urls: dict[str | int, str] = {}
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
        except BaseException:
            self.close()  # a signal while haproxy starts: nothing is left running
            raise
        # Per node: slot per (port index, pod name), and the endpoints it routes to now.
        self.slots: list[dict[tuple[int, str], int]] = [{} for _ in range(self.nodes)]
        self.applied: list[set[str]] = [set() for _ in range(self.nodes)]

    def update(self, obj: Manifest) -> None:
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
        self.selector: dict[str, str] = spec.get("selector", {})
        self.ports: list[Manifest] = spec.get("ports", [])

    def _answers(self) -> bool | str:
        assert self.proc is not None  # waited for only once haproxy runs
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with status {self.proc.poll()}")
        return self.socket.exists() and self.command("show info")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def selects(self, pod: "Pod") -> bool:
        return pod.namespace == self.namespace and all(
            pod.labels.get(k) == v for k, v in self.selector.items()
        )

    def wanted(self) -> Endpoints:
        """The endpoints the control plane publishes now, name -> (pod, ready): selected pods
        that are ready and not terminating (ready), and terminating ones whose readiness
        probe still passes (serving, not ready), as the EndpointSlice controller writes them
        (`staging/src/k8s.io/endpointslice/utils.go` `podToEndpoint`)."""
        return {
            p.name: (p, p.ready and not p.terminating)
            for p in self.pods()
            if self.selects(p) and p.ready and not p.gone
        }

    @staticmethod
    def routed(endpoints: Endpoints) -> "dict[str, Pod]":
        """What a node's proxy routes to: the ready endpoints, or when there is none the
        serving terminating ones (`pkg/proxy/topology.go` `CategorizeEndpoints`)."""
        ready = {n: pod for n, (pod, is_ready) in endpoints.items() if is_ready}
        return ready or {n: pod for n, (pod, _) in endpoints.items()}

    def apply(self, node: int, endpoints: Endpoints) -> None:
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
                ref = port["targetPort"] if "targetPort" in port else port["port"]
                target = pod.port(ref)
                backend = f"b{i}n{node}/s{slot}"
                self.command(f"set server {backend} addr {pod.ip} port {target}")
                self.command(f"set server {backend} state ready")
            self.records.note(f"endpoint added to {self.name}", pod.name, pod.ip, node)
        for name in sorted(applied - set(pods)):
            for i in range(len(self.ports)):
                freed = slots.pop((i, name), None)
                if freed is not None:
                    self.command(f"set server b{i}n{node}/s{freed} state maint")
            self.records.note(f"endpoint removed from {self.name}", name, node=node)
        self.applied[node] = set(pods)

    def url(self, port: str | int | None = None) -> str:
        return self.urls[port] if port is not None else next(iter(self.urls.values()))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
        shutil.rmtree(self.dir, ignore_errors=True)
