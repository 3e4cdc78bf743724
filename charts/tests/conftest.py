"""What the chart tests share: helm (installed into the project by scripts/helm.sh), a render
of the chart with value files and --set values, and copies of the chart with one thing broken."""

import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "testpage"
sys.path.insert(0, str(ROOT / "k8s"))  # validate.py, a script of its own

import testlib

# The value sets: the defaults, and every file under ci/ (the chart-testing convention).
VALUE_SETS = ["defaults"] + sorted(p.name for p in (CHART / "ci").glob("*.yaml"))


def value_args(value_set):
    return [] if value_set == "defaults" else ["-f", str(CHART / "ci" / value_set)]


@pytest.fixture(scope="session")
def helm():
    """The path of helm, installed by scripts/helm.sh if it is not there yet."""
    done = subprocess.run(
        [ROOT / "scripts" / "helm.sh"], capture_output=True, text=True, check=False
    )
    if done.returncode:
        testlib.skip_or_fail(f"helm: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


class RenderError(Exception):
    pass


def without_notices(stderr):
    """helm's stderr without its INFO lines (the symbolic links to k8s/ in files/)."""
    return "\n".join(
        line for line in stderr.splitlines() if not line.startswith("level=INFO")
    ).strip()


@pytest.fixture(scope="session")
def render(helm):
    """`render(*args, chart=CHART, release="t")`: the objects `helm template` renders, in
    order; RenderError with helm's message when it fails."""

    def run(*args, chart=CHART, release="t", namespace="demo"):
        done = subprocess.run(
            [helm, "template", release, str(chart), "--namespace", namespace, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RenderError(without_notices(done.stderr))
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return run


@pytest.fixture
def broken(tmp_path):
    """`broken(relative, old, new)`: a copy of the chart where the first `old` of `relative`
    is replaced by `new` (which must be there); returns the copy's folder."""
    root = tmp_path / "testpage"
    # Symbolic links to k8s/ become the files they point to.
    shutil.copytree(CHART, root, symlinks=False)

    def copy_with(relative, old, new):
        path = root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
        return root

    return copy_with
