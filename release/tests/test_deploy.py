"""`make deploy EXP=... REGISTRY=ghcr.io/you/` applies the experiment with our images taken
from the registry, by a kustomize image override; without REGISTRY, the manifests as they are.
Rendered by the real kubectl's kustomize, through a `kubectl` on PATH that prints what
`kubectl apply -k DIR` would send instead of sending it (no cluster is needed)."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from release import variants

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.parent.name for p in (ROOT / "k8s").glob("*/kustomization.yaml"))
OURS = {name for name, _ in variants.rows()}


@pytest.fixture(scope="module")
def kubectl_printing(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    real = shutil.which("kubectl")
    if real is None:
        pytest.fail("kubectl is required (kustomize rendering), as for make validate")
    bin_dir = tmp_path_factory.mktemp("bin")
    fake = bin_dir / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        # A current context, for the targets that check one before they call kubectl.
        '[ "$1 $2" = "config current-context" ] && { echo rendering-only; exit 0; }\n'
        '[ "$1" = apply ] && [ "$2" = -k ] || { echo "unexpected: kubectl $*" >&2; exit 2; }\n'
        f'exec {real} kustomize "$3"\n'
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def deploy(env: dict[str, str], exp: str, registry: str | None) -> list[dict[str, Any]]:
    args = ["make", "--no-print-directory", "-s", "deploy", f"EXP={exp}"]
    env = {k: v for k, v in env.items() if k != "REGISTRY"}
    if registry is not None:
        args.append(f"REGISTRY={registry}")
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def images(objects: list[dict[str, Any]]) -> list[str]:
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(objects)
    return found


def without_images(objects: list[dict[str, Any]]) -> str:
    return re.sub(
        r"(\bimage: ).*", r"\1IMAGE", yaml.safe_dump_all(objects, sort_keys=True)
    )


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_deploy_with_registry_pulls_our_images_from_it(
    kubectl_printing: dict[str, str], exp: str
) -> None:
    local = deploy(kubectl_printing, exp, None)
    published = deploy(kubectl_printing, exp, "ghcr.io/you/")
    plain = subprocess.run(
        ["kubectl", "kustomize", f"k8s/{exp}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    # Without REGISTRY: exactly the experiment's own manifests.
    assert local == [doc for doc in yaml.safe_load_all(plain.stdout) if doc]
    # With it: the same objects; ours from the registry with the same tags, the others as they were.
    assert without_images(published) == without_images(local)
    before, after = images(local), images(published)
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        name = old.split(":")[0]
        assert new == (f"ghcr.io/you/{old}" if name in OURS else old), (old, new)


def test_deploy_refuses_a_registry_without_its_slash(
    kubectl_printing: dict[str, str],
) -> None:
    args = ["make", "-s", "deploy", "EXP=000-rolling-update", "REGISTRY=ghcr.io/you"]
    done = subprocess.run(
        args,
        cwd=ROOT,
        env=kubectl_printing,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "must end in /" in done.stderr


def test_some_experiment_uses_our_images() -> None:
    """The override is tested on something: the tutorials' images are among the rendered ones."""
    assert {"testpage", "my-app", "hello"} <= OURS
    assert "000-rolling-update" in EXPERIMENTS
    assert "argo-rollouts" in EXPERIMENTS
