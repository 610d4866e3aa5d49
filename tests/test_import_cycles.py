"""No import cycle among aelab's modules (and its Hydra plugins'), imports inside functions
included: each module's imports are read with `ast` from every statement, a function's body
too, and a cycle among them fails with its modules named in order. The layers contract
(`tests/test_layers.py`) keeps the layers acyclic; this keeps any two modules of one layer, or
an exception someone adds to the contract, from closing a loop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aelab", "hydra_plugins")


def module_names(src: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module under `src`/<package>, by dotted name (a package by its `__init__`)."""
    found = {}
    for package in packages:
        for path in sorted((src / package).rglob("*.py")):
            parts = list(path.relative_to(src).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that `name` (at `path`) imports anywhere in its body: `from a
    import b` counts as `a.b` where that is a module, else as `a`; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            # the longest prefix that is one of ours: `import aelab.run.atomic` is that module
            parts = target.split(".")
            for n in range(len(parts), 0, -1):
                if ".".join(parts[:n]) in modules:
                    found.add(".".join(parts[:n]))
                    break
    found.discard(name)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each as
    one cycle through its members in import order, sorted by their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_cycle_through(c, graph) for c in components)


def _cycle_through(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One shortest import path from the component's first module back to itself (BFS)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{component} is no cycle")  # Tarjan's components always are


def cycles_in(src: Path) -> list[list[str]]:
    modules = module_names(src)
    return import_cycles({m: imports_of(m, p, modules) for m, p in modules.items()})


def test_no_import_cycle_among_aelab_modules():
    cycles = cycles_in(ROOT / "src")
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    pkg = tmp_path / "aelab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from aelab.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("def late():\n    from ..a import x  # noqa\n")
    (pkg / "d.py").write_text("import aelab.a\n")  # imports into the cycle, is no part of it
    assert cycles_in(tmp_path) == [["aelab.a", "aelab.sub.b", "aelab.sub.c", "aelab.a"]]

