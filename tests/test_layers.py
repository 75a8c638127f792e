"""The house: every module imports only from its own layer or the layers below it, and the
import graph has no circle (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "lipopt_suite"
# Bottom to top (docs/DESIGN.md section 2). A module belongs to the first entry whose name
# is it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("lipopt_suite._version", "lipopt_suite.errors", "lipopt_suite.bound",
              "lipopt_suite.network", "lipopt_suite.registry", "lipopt_suite.io",
              "lipopt_suite.limits", "lipopt_suite.quiet", "lipopt_suite.unroll")),
    ("numerics", ("lipopt_suite.numerics",)),
    ("core", ("lipopt_suite.core",)),
    ("solvers", ("lipopt_suite.solvers",)),
    ("harness", ("lipopt_suite.harness",)),
    ("apps", ("lipopt_suite.apps", "lipopt_suite.bench", "lipopt_suite.cli", "lipopt_suite")),
]
# Modules allowed to print: the commands. Everything else logs or returns.
PRINTERS = ("lipopt_suite.apps", "lipopt_suite.cli")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes if p != "lipopt_suite"):
            return i
    if name == "lipopt_suite":
        return len(LAYERS) - 1
    raise AssertionError(f"module {name} is in no layer: add it to LAYERS")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every lipopt_suite module `name` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases = [a.name for a in node.names]
            out.update(b for b in bases if b.split(".")[0] == "lipopt_suite")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "lipopt_suite":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph()
    for name, path in mods.items():
        g.add_node(name)
        for target in imports_of(name, path, set(mods)):
            g.add_edge(name, target)
    return g


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_from_a_layer_above_it() -> None:
    g = graph()
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, b in g.edges if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_circle() -> None:
    g = graph()
    # a package's __init__ importing its own modules is how a package is assembled
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "circular imports: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_only_the_commands_print() -> None:
    printers = []
    for name, path in modules().items():
        if any(name == p or name.startswith(p + ".") for p in PRINTERS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "print"):
                printers.append(f"{name}:{node.lineno}")
    assert not printers, "print outside the commands: " + ", ".join(printers)


def test_the_checks_see_a_lazy_upward_import(tmp_path: Path) -> None:
    # the checks must be able to fail: a core module importing the harness inside a
    # function is found, and the harness is above core
    src = tmp_path / "probe.py"
    src.write_text("def f():\n    from ..harness import runner\n    return runner\n")
    known = {"lipopt_suite.core.probe", "lipopt_suite.harness.runner"}
    assert imports_of("lipopt_suite.core.probe", src, known) == {"lipopt_suite.harness.runner"}
    assert layer_of("lipopt_suite.harness.runner") > layer_of("lipopt_suite.core.probe")
