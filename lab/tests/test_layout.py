"""The lab's modules import one another in one direction only: no circle, not even through
imports made for type checking alone, so each part can be read (and tested) without the ones
above it."""

import ast
import pathlib

LAB = pathlib.Path(__file__).resolve().parents[1]


def module_name(path):
    parts = path.relative_to(LAB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports():
    """Every lab module and the lab modules it imports, anywhere in the file."""
    graph = {}
    for path in sorted(LAB.rglob("*.py")):
        if "tests" in path.relative_to(LAB).parts:
            continue
        name = module_name(path)
        wanted = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "lab":
                    wanted |= {f"lab.{a.name}" for a in node.names}
                elif node.module.startswith("lab."):
                    wanted.add(node.module)
            elif isinstance(node, ast.Import):
                wanted |= {a.name for a in node.names if a.name.startswith("lab.")}
        graph[name] = wanted - {name}
    return graph


def test_the_graph_is_read():
    graph = imports()
    assert "lab.kube.cluster" in graph["lab.run"] or "lab.kube" in graph["lab.run"]
    assert "lab.kube.records" in graph["lab.kube.kubelet"]


def test_no_module_of_the_lab_imports_itself_back():
    graph = imports()
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError(" -> ".join([*path[path.index(name) :], name]))
        if name in done or name not in graph:
            return
        path.append(name)
        for other in sorted(graph[name]):
            if other != "lab" and not (
                name == "lab.kube" and other.startswith("lab.kube.")
            ):
                visit(other)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)
