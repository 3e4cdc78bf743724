"""What the manifest tests share: kubectl to render the kustomizations, and copies of k8s/ with
one thing broken."""

import pathlib
import shutil

import pytest

K8S = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def kubectl():
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is required to render the kustomizations")


@pytest.fixture
def broken(tmp_path):
    """`broken(relative, old, new)`: the path of `relative` in a copy of k8s/ where its first
    `old` is replaced by `new` (which must be there)."""

    def copy_with(relative, old, new):
        root = tmp_path / "k8s"
        if not root.exists():
            shutil.copytree(
                K8S, root, ignore=shutil.ignore_patterns("tests", "__pycache__")
            )
        path = root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))
        return path

    return copy_with
