"""The Service's balancer picks like kube-proxy: a node at random per connection, then one of
that node's endpoints uniformly at random, blind to load. Each share is tested against what a
uniform draw allows, with a fixed false-alarm rate (0.001 per test), never a hand-picked
tolerance; and the pieces of the lab that need no Docker (percentages, the lag, the fallback
to terminating endpoints, the crash-loop back-off, undo on a paused Deployment)."""

import collections
import math
import pathlib
import socket
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

import testlib

from lab import kube

ALPHA = 0.001
# Connections per test: with 3 equal pods, a pod 10 % off its third is caught most times.
CONNECTIONS = 6000


class Backend:
    """A TCP server that answers every connection with its name and closes it."""

    def __init__(self, name):
        self.name = name
        self.sock = testlib.listening_socket()
        self.ip, self.bound = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.name.encode())

    def port(self, _ref):
        return self.bound


def no_pod(_rs):
    pytest.fail("these checks create no pod")


@pytest.fixture
def service():
    testlib.skip_or_fail(testlib.tool_problem("haproxy"))
    obj = {
        "metadata": {"name": "fair"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    svc = kube.Service(kube.Records(), list, 3, obj)
    yield svc
    svc.close()


def spread(svc, connections):
    host, port = svc.url().removeprefix("http://").rstrip("/").split(":")
    seen = collections.Counter()
    for _ in range(connections):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            seen[s.recv(64).decode()] += 1
    return seen


def chi_square_p(counts, shares):
    """The p-value of Pearson's chi-square test of `counts` against `shares`: the upper
    tail of the chi-square distribution with len(counts) - 1 degrees of freedom (closed form
    for an even number of them, which the tests use)."""
    total = sum(counts)
    x = sum(
        (c - total * s) ** 2 / (total * s) for c, s in zip(counts, shares, strict=True)
    )
    df = len(counts) - 1
    assert df % 2 == 0, "closed form for even degrees of freedom only"
    half = x / 2
    return math.exp(-half) * sum(half**k / math.factorial(k) for k in range(df // 2))


def wilson(n, total, z):
    p = n / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = (
        z
        * math.sqrt(p * (1 - p) / total + z * z / (4 * total**2))
        / (1 + z * z / total)
    )
    return centre - half, centre + half


def test_equal_pods_get_equal_shares(service):
    pods = {name: Backend(name) for name in ("a", "b", "c")}
    endpoints = {name: (pod, True) for name, pod in pods.items()}
    for node in range(service.nodes):
        service.apply(node, endpoints)
    seen = spread(service, CONNECTIONS)
    counts = [seen[name] for name in pods]
    p = chi_square_p(counts, [1 / 3] * 3)
    assert p > ALPHA, (
        f"{seen}: chi-square p = {p:.2g} (uniform draws fail 1 time in 1000)"
    )


def test_a_canary_gets_its_share_of_the_replicas(service):
    """One canary pod beside four stable ones: 20 % of the connections, within the 99.9 %
    interval of a binomial share."""
    pods = {name: Backend(name) for name in ("v1-a", "v1-b", "v1-c", "v1-d", "v2-a")}
    endpoints = {name: (pod, True) for name, pod in pods.items()}
    for node in range(service.nodes):
        service.apply(node, endpoints)
    seen = spread(service, CONNECTIONS)
    canary = seen["v2-a"]
    low, high = wilson(canary, CONNECTIONS, z=3.2905)  # two-sided 0.001
    assert low <= 0.2 <= high, (
        f"canary {canary} of {CONNECTIONS} ({low:.3f}-{high:.3f})"
    )


def test_each_node_routes_to_its_own_endpoints(service):
    """A node that has not seen a removal yet still routes to the pod; the others do not:
    the share of connections that reach the removed pod is that node's share of a pick."""
    pods = {name: Backend(name) for name in ("a", "b")}
    both = {name: (pod, True) for name, pod in pods.items()}
    only_b = {"b": (pods["b"], True)}
    service.apply(0, both)
    service.apply(1, only_b)
    service.apply(2, only_b)
    seen = spread(service, 3000)
    # a: 1/3 (node 0) * 1/2 = 1/6 of the connections.
    low, high = wilson(seen["a"], 3000, z=3.2905)
    assert low <= 1 / 6 <= high, seen


# ------------------------------------------------------------------ no Docker needed


def test_percentages_are_scaled_in_integers_as_kubernetes_does():
    # GetScaledValueFromIntOrPercent: ceil/floor(v * total / 100).
    assert kube.resolve_surge("7%", 100, round_up=True) == 7
    assert kube.resolve_surge("7%", 100, round_up=False) == 7
    assert kube.resolve_surge("25%", 10, round_up=True) == 3
    assert kube.resolve_surge("25%", 10, round_up=False) == 2
    assert kube.resolve_surge("33%", 3, round_up=False) == 0
    with pytest.raises(kube.ManifestError, match="maxUnavailable"):
        kube.resolve_surge("7.5%", 100, False, "maxUnavailable")


def test_a_lag_is_a_value_or_a_range():
    import random

    assert str(kube.Lag.parse(1)) == "1 s"
    lag = kube.Lag.parse("0.5-3")
    assert (lag.low, lag.high, str(lag)) == (0.5, 3.0, "0.5-3 s")
    draws = [lag.draw(random.Random(i)) for i in range(200)]
    assert all(0.5 <= d <= 3 for d in draws)
    assert max(draws) - min(draws) > 2
    for bad in ("3-1", "x", "-1"):
        with pytest.raises(kube.ManifestError, match="lag"):
            kube.Lag.parse(bad)


def test_terminating_endpoints_serve_only_when_none_is_ready():
    ready, terminating = object(), object()
    both = {"r": (ready, True), "t": (terminating, False)}
    assert kube.Service.routed(both) == {"r": ready}
    assert kube.Service.routed({"t": (terminating, False)}) == {"t": terminating}
    assert kube.Service.routed({}) == {}


def test_undo_of_a_paused_deployment_is_refused():
    objects = kube.render(ROOT / "k8s/000-rolling-update")
    obj = next(o for o in objects if o["kind"] == "Deployment")
    obj["spec"]["paused"] = True
    dep = kube.Deployment(kube.Records(), no_pod, obj)
    with pytest.raises(kube.StepError, match="cannot rollback a paused deployment"):
        dep.undo()


def test_a_progress_deadline_not_above_min_ready_is_refused():
    objects = kube.render(ROOT / "k8s/000-rolling-update")
    obj = next(o for o in objects if o["kind"] == "Deployment")
    obj["spec"].update(minReadySeconds=30, progressDeadlineSeconds=30)
    with pytest.raises(kube.ManifestError, match="progressDeadlineSeconds"):
        kube.Deployment(kube.Records(), no_pod, obj)
