"""`make cluster` publishes every NodePort the experiments use: k8s/kind-cluster.yaml maps each
nodePort found under k8s/ (manifests, and `nodePort=` settings in the READMEs' install commands)
to the same port on localhost."""

import pathlib
import re

import yaml

K8S = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "kind-cluster.yaml"


def node_ports(root):
    """nodePort -> where it is set, for every manifest and README under root."""
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        if path.name == CONFIG or "tests" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Service":
                for port in doc.get("spec", {}).get("ports", []):
                    if "nodePort" in port:
                        found[port["nodePort"]] = str(path.relative_to(root))
    for path in sorted(root.rglob("README*.md")):
        for match in re.finditer(r"nodePort=(\d+)", path.read_text()):
            found[int(match.group(1))] = str(path.relative_to(root))
    return found


def mappings(root):
    config = yaml.safe_load((root / CONFIG).read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    return [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]


def unmapped(root):
    mapped = {m["containerPort"] for m in mappings(root)}
    return {
        port: where for port, where in node_ports(root).items() if port not in mapped
    }


def test_every_node_port_is_mapped():
    assert node_ports(K8S), "no nodePort found: the scan is broken"
    assert unmapped(K8S) == {}


def test_mappings_are_the_same_port_on_localhost_only():
    for mapping in mappings(K8S):
        assert mapping["hostPort"] == mapping["containerPort"], mapping
        # testpage's admin routes need no password: not on every interface of a laptop.
        assert mapping["listenAddress"] == "127.0.0.1", mapping
        assert mapping.get("protocol", "TCP") == "TCP"


def test_no_mapping_is_left_over():
    used = set(node_ports(K8S))
    assert {m["containerPort"] for m in mappings(K8S)} <= used


def test_a_new_node_port_is_caught(broken):
    service = broken(
        "rolling-update/service.yaml", "nodePort: 30080", "nodePort: 30999"
    )
    root = service.parents[1]
    assert unmapped(root) == {30999: "rolling-update/service.yaml"}
