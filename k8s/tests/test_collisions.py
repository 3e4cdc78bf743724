"""Experiments share one cluster: the cross-folder checks pass on the shipped folders and catch
each kind of collision in a broken copy of the whole tree."""

import pathlib
import sys

import pytest

K8S = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(K8S))

import validate


def test_shipped_folders_do_not_collide():
    assert [p for p in validate.validate_tree(K8S) if "collision" in p] == []


def test_bases_are_not_experiments():
    bases = {
        b.relative_to(K8S)
        for k in K8S.rglob("kustomization.yaml")
        for b in validate.base_folders(k.parent)
    }
    assert pathlib.Path("004-strategies/base") in bases


CASES = [
    (
        "same Deployment name and namespace",
        "rolling-update/kustomization.yaml",
        "namespace: rolling-update\n",
        "",
        "000-rolling-update and rolling-update both create Deployment default/testpage",
    ),
    (
        "two strategies in one namespace",
        "004-strategies/canary/kustomization.yaml",
        "namespace: strategy-canary",
        "namespace: strategy-ramped",
        "both create Namespace strategy-ramped",
    ),
    (
        "nodePort used twice",
        "rolling-update/service.yaml",
        "nodePort: 30080",
        "nodePort: 30021",
        "both use nodePort 30021",
    ),
    (
        "a Service selecting another experiment's pods",
        "000-rolling-update/service.yaml",
        "selector:\n    type: testpage",
        "selector:\n    app: myapp",
        "Service default/testpage selects the pods of 003-zero-downtime's Deployment myapp",
    ),
    (
        "objects in another experiment's namespace",
        "002-deploy-demo/deploy-demo.yaml",
        "namespace: test",
        "namespace: blue-green",
        "which 002-blue-green creates",
    ),
]


@pytest.mark.parametrize(
    ("case", "relative", "old", "new", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_collision_is_caught(broken, case, relative, old, new, expected):
    # The whole tree: a collision is between folders.
    root = broken(relative, old, new).parents[len(pathlib.Path(relative).parts) - 1]
    problems = [p for p in validate.validate_tree(root) if "collision" in p]
    assert any(expected in p for p in problems), f"{case}: {problems}"


def test_alternative_file_in_another_namespace_is_caught(broken):
    path = broken(
        "004-strategies/recreate/app-v2.yaml", "  namespace: strategy-recreate\n", ""
    )
    problems = validate.validate_tree(path.parent)
    assert any(
        "in namespace default, the folder's copy is in strategy-recreate" in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("1m30s", 90),
        ("1h 5m", 3900),
        ("2m", 120),
        ("5", 5),
        ("0.5", 0.5),
        ("250 ms", 0.25),
    ],
)
def test_duration_reads_what_testpage_reads(text, seconds):
    assert validate.duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1.5s", "-1", "5x", "s", "1m30", "10 parsecs"])
def test_duration_refuses_what_testpage_refuses(text):
    with pytest.raises(ValueError, match="duration"):
        validate.duration(text)
