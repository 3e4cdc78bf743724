"""testpage's modules: no two depend on each other, even through others (a copier can lift a
module out with what it imports and nothing that imports it back), and every module is listed
where a reader looks for it: lib.rs's layout and the README's table."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "testpage" / "src"

USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def modules():
    lib = (SRC / "lib.rs").read_text()
    return re.findall(
        r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", lib, re.MULTILINE
    )


def imports(names):
    """module -> the crate modules its code names (`crate::x`), outside tests and docs."""
    graph = {}
    for name in names:
        text = (SRC / f"{name}.rs").read_text()
        text = text.split("#[cfg(test)]\nmod tests")[0]
        code = "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("//")
        )
        graph[name] = {m for m in USE.findall(code) if m in names and m != name}
    return graph


def cycles(graph):
    """Every cycle found by a depth-first search, each as a list of modules."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_testpage_depends_on_itself_through_others():
    names = modules()
    assert {"server", "connections", "shutdown", "websocket"} <= set(names)
    graph = imports(names)
    assert cycles(graph) == []


def test_the_shutdown_module_imports_nothing_of_the_crate():
    graph = imports(modules())
    assert graph["shutdown"] == set()
    assert graph["websocket"] == set()


def test_every_module_is_in_lib_rs_layout_and_the_readme_table():
    lib = (SRC / "lib.rs").read_text()
    layout = "\n".join(
        line
        for line in lib.split("# Layout")[1].splitlines()
        if line.startswith("//! - ")
    )
    readme = (ROOT / "README.md").read_text()
    zh = (ROOT / "README.zh-CN.md").read_text()
    for name in modules():
        assert f"`{name}`" in layout or f"[`{name}`]" in layout, (
            f"lib.rs layout: {name}"
        )
        assert f"`{name}.rs`" in readme, f"README.md module table: {name}"
        assert f"`{name}.rs`" in zh, f"README.zh-CN.md module table: {name}"
