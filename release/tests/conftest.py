"""A CNCF distribution registry (Debian's docker-registry) started for the tests, on loopback,
storing into a temporary folder; and the tools the release needs, or a skip saying why (a
failure under REQUIRE_DOCKER=1)."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGISTRY_BINARY = "docker-registry"


def problem_or_skip(problem: str | None) -> None:
    if not problem:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"{problem}; REQUIRE_DOCKER=1 allows no skip", pytrace=False)
    pytest.skip(problem)


def kernel_port() -> int:
    """A port the kernel just handed out: the registry takes only a number in its config. The
    port is free again between this and the registry's bind; if another process takes it in
    that window, the registry's bind fails and the fixture says so (never a stranger's port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT

    def prefix(self, name: str) -> str:
        """A REGISTRY value, `host:port/name/`."""
        return f"{self.host}/{name}/"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    problem_or_skip(
        None
        if shutil.which(REGISTRY_BINARY)
        else f"{REGISTRY_BINARY} not found (Debian: apt-get install docker-registry)"
    )
    folder = tmp_path_factory.mktemp("registry")
    port = kernel_port()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (folder / "registry.log").open("w")
    proc = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"registry exited: {(folder / 'registry.log').read_text()[-800:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail("registry did not answer /v2/ within 20 s")
                time.sleep(0.05)
        yield LocalRegistry(f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker not found"
    info = subprocess.run(
        ["docker", "info"], capture_output=True, check=False, timeout=30
    )
    return None if info.returncode == 0 else "no Docker engine (`docker info` failed)"


def binaries_problem() -> str | None:
    missing = [
        f"target/dist/{arch}/{name}"
        for arch in ("x86_64", "aarch64")
        for name in ("testpage", "probe")
        if not (ROOT / "target" / "dist" / arch / name).exists()
    ]
    return (
        f"missing {', '.join(missing)}: run `make build` and `make build ARCH=aarch64`"
        if missing
        else None
    )


@pytest.fixture(scope="session")
def release_tools() -> None:
    """Docker, both architectures' binaries and qemu-aarch64-static, or a skip saying why."""
    problems = [docker_problem(), binaries_problem()]
    if shutil.which("qemu-aarch64-static") is None:
        problems.append(
            "qemu-aarch64-static not found (Debian: apt-get install qemu-user-static)"
        )
    problem_or_skip("; ".join(p for p in problems if p) or None)
