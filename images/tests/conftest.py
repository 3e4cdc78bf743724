"""Fixtures for tests that run the images in real containers.

Every container and network a test creates carries the label `testpage-test=<run id>` and is
removed when the test ends, pass or fail. Without a Docker engine the tests skip, saying why;
under REQUIRE_DOCKER=1 (CI) they fail instead.
"""

import json
import os
import subprocess
import time
import uuid

import pytest
import testlib

RUN_ID = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
LABEL = f"testpage-test={RUN_ID}"
REGISTRY = os.environ.get("REGISTRY", "")


def docker(*args, check=True, timeout=60):
    """Runs `docker ARGS` and returns its stdout, stripped."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def engine():
    """A Docker engine: every test that runs `docker` takes this fixture, directly or through
    `containers`, so that without one it skips saying why (fails under REQUIRE_DOCKER=1)."""
    testlib.skip_or_fail(testlib.docker_problem())
    yield
    # Belt and braces: anything a crashed test left behind.
    for kind, ls in (
        ("container", ["ps", "-aq"]),
        ("network", ["network", "ls", "-q"]),
    ):
        ids = docker(*ls, "--filter", f"label={LABEL}", check=False).split()
        if ids:
            rm = ["rm", "-f"] if kind == "container" else ["network", "rm"]
            docker(*rm, *ids, check=False)


def image(name, tag):
    """The reference `make images` built, failing clearly when it is missing."""
    ref = f"{REGISTRY}{name}:{tag}"
    if subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, check=False
    ).returncode:
        pytest.fail(f"image {ref} not built: run `make images`")
    return ref


class Containers:
    """Starts labelled containers on a private bridge network and removes them afterwards."""

    def __init__(self, network):
        self.network = network
        self.ids = []

    def run(self, ref, *args, env=None, opts=()):
        cmd = ["run", "-d", "--label", LABEL, "--network", self.network, *opts]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        cid = docker(*cmd, ref, *args)
        self.ids.append(cid)
        return Container(cid)

    def cleanup(self):
        if self.ids:
            docker("rm", "-f", *self.ids, check=False)


class Container:
    def __init__(self, cid):
        self.id = cid

    def inspect(self):
        return json.loads(docker("inspect", self.id))[0]

    def ip(self):
        networks = self.inspect()["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def url(self, port, path="/"):
        return f"http://{self.ip()}:{port}{path}"

    def state(self):
        return self.inspect()["State"]

    def logs(self):
        proc = subprocess.run(
            ["docker", "logs", self.id], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr


@pytest.fixture
def containers(engine):  # noqa: ARG001 (the images are built before any container runs)
    name = f"testpage-test-{RUN_ID}-{uuid.uuid4().hex[:4]}"
    docker("network", "create", "--label", LABEL, name)
    pool = Containers(name)
    yield pool
    pool.cleanup()
    docker("network", "rm", name, check=False)


get = testlib.http_get


def wait_for(condition, limit, what):
    """Polls condition() until it is truthy and returns that; fails the test after `limit`
    seconds, naming `what`."""
    try:
        return testlib.wait_until(condition, limit, what)
    except TimeoutError as error:
        pytest.fail(str(error))


def ready(container, port, limit=20):
    """Waits until /readyz answers 200; returns the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: get(container.url(port, "/readyz"))[0] == 200, limit, "ready")
    return time.monotonic() - started
