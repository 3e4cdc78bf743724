"""scripts/k8s.sh, the steps behind `make upgrade`, `make cluster` and `make client-*`, run for
real against recording stand-ins for the cluster tools (no cluster can run here). `kubectl
kustomize` is the real kubectl: the experiments are rendered from their own manifests."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "k8s.sh"
KUBECTL = shutil.which("kubectl")

# Asking for the current context is the check before every action, not an action: not logged.
# FAKE_CONTEXT="" plays a machine without a kubeconfig (kubectl then exits 1).
RECORDER = """#!{python}
import json, os, sys
if {passthrough!r} and sys.argv[1:2] == ["kustomize"]:
    os.execv({passthrough!r}, [{passthrough!r}] + sys.argv[1:])
if sys.argv[1:3] == ["config", "current-context"]:
    context = os.environ.get("FAKE_CONTEXT", "kind-kind")
    print(context or "error: current-context is not set", file=sys.stdout if context else sys.stderr)
    sys.exit(0 if context else 1)
with open({log!r}, "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def tools(tmp_path):
    """A bin directory whose kubectl, kind, k3d and minikube record their arguments; returns a
    function that runs k8s.sh and gives back the recorded calls (kustomize calls excepted)."""
    if KUBECTL is None:
        pytest.fail("kubectl is required to render the kustomizations")
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for tool in ("kubectl", "kind", "k3d", "minikube"):
        path = bin_dir / tool
        passthrough = KUBECTL if tool == "kubectl" else ""
        path.write_text(
            RECORDER.format(
                python=sys.executable, passthrough=passthrough, log=str(log)
            )
        )
        path.chmod(0o755)

    def run(*args, expect=0, **env):
        # The venv's python3 first: the script reads YAML with it.
        path = f"{bin_dir}:{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": path, **env},
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        assert done.returncode == expect, done.stderr
        calls = (
            [json.loads(line) for line in log.read_text().splitlines()]
            if log.exists()
            else []
        )
        log.unlink(missing_ok=True)
        return calls

    return run


def patch_of(call):
    assert call[:2] == ["kubectl", "-n"], call
    return json.loads(call[call.index("-p") + 1])


def container_of(patch):
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    return container


def test_upgrade_sets_image_and_version_in_one_patch(tools):
    # 004-rolling-update-8081 has no deployment-0.9.yaml and sets VERSION=0.5 in its env:
    # an image change alone would leave the page reporting 0.5.
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "k8s/004-rolling-update-8081")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (deployment,) = [
        d for d in yaml.safe_load_all(rendered) if d["kind"] == "Deployment"
    ]
    (folder_container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "VERSION", "value": "0.5"} in folder_container["env"]
    assert not (ROOT / "k8s/004-rolling-update-8081/deployment-0.9.yaml").exists()

    (call,) = tools("upgrade", "004-rolling-update-8081", "0.9")
    assert call[:5] == [
        "kubectl",
        "-n",
        "rolling-update-8081",
        "patch",
        "deployment/testpage",
    ]
    assert call[5:7] == ["--type=strategic", "-p"]
    container = container_of(patch_of(call))
    # A strategic merge keyed by name: this container's VERSION is replaced, the rest kept.
    assert container == {
        "name": folder_container["name"],
        "image": "testpage:0.9",
        "env": [{"name": "VERSION", "value": "0.9"}],
    }


def test_upgrade_reports_the_variants_version(tools):
    # hello:v2 says "This is version 2." as in the article: VERSION follows images/variants.tsv.
    (call,) = tools("upgrade", "001-rolling-update-test", "v2")
    container = container_of(patch_of(call))
    assert container["image"] == "hello:v2"
    assert container["env"] == [{"name": "VERSION", "value": "2"}]


def test_upgrade_to_an_unlisted_tag_reports_the_tag(tools):
    calls = tools("upgrade", "004-strategies/canary", "v3.1.0")
    assert sorted(c[4] for c in calls) == [
        "deployment/my-app-v1",
        "deployment/my-app-v2",
    ]
    for call in calls:
        assert call[2] == "strategy-canary"
        container = container_of(patch_of(call))
        assert container["image"] == "my-app:v3.1.0"
        assert container["env"] == [{"name": "VERSION", "value": "v3.1.0"}]


def test_upgrade_applies_the_folders_file_when_there_is_one(tools):
    (call,) = tools("upgrade", "000-rolling-update", "0.9")
    assert call == [
        "kubectl",
        "apply",
        "-f",
        "k8s/000-rolling-update/deployment-0.9.yaml",
    ]


def test_unknown_experiment_is_refused(tools):
    assert tools("upgrade", "no-such-folder", "0.9", expect=2) == []


def mapped_ports():
    config = yaml.safe_load((ROOT / "k8s/kind-cluster.yaml").read_text())
    return [m["hostPort"] for m in config["nodes"][0]["extraPortMappings"]]


def test_cluster_kind_uses_the_config_in_the_repository(tools):
    (call,) = tools("cluster", "kind", "workshop")
    assert call == [
        "kind",
        "create",
        "cluster",
        "--name",
        "workshop",
        "--config",
        "k8s/kind-cluster.yaml",
    ]


def test_cluster_k3d_and_minikube_publish_the_same_ports(tools):
    (k3d,) = tools("cluster", "k3d", "k3s-default")
    published = [k3d[i + 1] for i, arg in enumerate(k3d) if arg == "-p"]
    assert published == [f"127.0.0.1:{p}:{p}@server:0" for p in mapped_ports()]
    (minikube,) = tools("cluster", "minikube")
    (ports,) = [a for a in minikube if a.startswith("--ports=")]
    assert ports.split("=", 1)[1].split(",") == [
        f"127.0.0.1:{p}:{p}" for p in mapped_ports()
    ]


def test_cluster_delete(tools):
    assert tools("cluster-delete", "kind", "workshop") == [
        ["kind", "delete", "cluster", "--name", "workshop"]
    ]
    assert tools("cluster-delete", "k3d", "k3s-default") == [
        ["k3d", "cluster", "delete", "k3s-default"]
    ]
    assert tools("cluster", "docker-desktop", expect=2) == []


def test_client_runs_the_probe_in_the_client_pod(tools):
    url = "http://my-app.strategy-canary:8080/"
    (call,) = tools("client-load", url, "-c", "8", "--qps", "500", "-t", "60s")
    assert call == [
        "kubectl",
        "-n",
        "testpage-tools",
        "exec",
        "-i",
        "deployment/client",
        "--",
        "/probe",
        "load",
        "-c",
        "8",
        "--qps",
        "500",
        "-t",
        "60s",
        url,
    ]
    (call,) = tools("client-watch", url)
    assert call[-4:] == ["--", "/probe", "watch", url]


def test_client_namespace_is_the_manifests():
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "k8s/tools")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered)}
    assert ("Namespace", "testpage-tools") in names
    assert ("Deployment", "client") in names


KUBECTL_TARGETS = {
    # make target: its variables
    "deploy": ["EXP=000-rolling-update"],
    "upgrade": ["EXP=000-rolling-update", "TO=0.9"],
    "rollback": ["EXP=000-rolling-update"],
    "status": ["EXP=000-rolling-update"],
    "watch": ["EXP=000-rolling-update"],
    "undeploy": ["EXP=000-rolling-update"],
    "client": [],
    "client-watch": ["URL=http://my-app.strategy-canary:8080/"],
    "client-load": ["URL=http://my-app.strategy-canary:8080/"],
    "client-delete": [],
}


@pytest.mark.parametrize("action", ["upgrade", "rollback", "status", "watch"])
def test_without_a_context_the_script_says_so_and_calls_nothing(tools, action):
    args = [action, "000-rolling-update"] + (["0.9"] if action == "upgrade" else [])
    assert tools(*args, expect=1, FAKE_CONTEXT="") == []


@pytest.mark.parametrize("target", sorted(KUBECTL_TARGETS))
def test_each_kubectl_target_checks_for_a_context_first(tmp_path, target):
    """`make TARGET` with a kubectl that has no current context (no kubeconfig) stops before
    any kubectl action, with one line naming the target and what to do."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        RECORDER.format(python=sys.executable, passthrough="", log=str(log))
    )
    kubectl.chmod(0o755)
    path = f"{bin_dir}:{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", target, *KUBECTL_TARGETS[target]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path, "FAKE_CONTEXT": ""},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "no current context" in line]
    line = f"make {target}: kubectl has no current context: make cluster, or kubectl config use-context NAME"
    assert said == [line], done.stderr
    assert not log.exists(), log.read_text()
