"""A run's outcome has one home, `aelab.run.outcome`: no other module writes a `status` into a
file (metrics.json), whether the dict is written where it is made or through a name."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
OUTCOME = SRC / "aelab" / "run" / "outcome.py"


def _has_status_key(node: ast.AST) -> bool:
    """`{"status": ...}` (also beside `**other`) or `dict(status=...)`."""
    if isinstance(node, ast.Dict):
        return any(isinstance(k, ast.Constant) and k.value == "status" for k in node.keys)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return any(kw.arg == "status" for kw in node.keywords)
    return False


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def status_writes(source: str) -> list[int]:
    """The lines of `source` that hand a dict with a `status` key to a writer (a call whose name
    has `write` or `dump` in it), directly or through a name bound to such a dict."""
    tree = ast.parse(source)
    named: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        if any(_has_status_key(n) for n in ast.walk(node.value)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named |= {t.id for t in targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node).lower()
        if "write" not in name and "dump" not in name:
            continue
        for arg in [*node.args, *(kw.value for kw in node.keywords)]:
            if any(_has_status_key(n) for n in ast.walk(arg)) or (
                isinstance(arg, ast.Name) and arg.id in named
            ):
                found.append(node.lineno)
    return found


def test_the_check_sees_both_ways_of_writing_a_status():
    inline = 'write_json_atomic(p, {**stored, "status": "failed", "error": m})\n'
    through_a_name = 'failed = {"status": "failed"}\nwrite_json_atomic(p, failed)\n'
    read_only = 'metrics = {"status": "failed"}\nprint(metrics)\n'
    assert status_writes(inline) == [1]
    assert status_writes(through_a_name) == [2]
    assert status_writes(read_only) == []


def test_only_the_outcome_module_writes_a_status():
    writers = {
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        if path != OUTCOME
        for line in status_writes(path.read_text())
    }
    assert not writers, f"a run's status written outside aelab/run/outcome.py: {sorted(writers)}"
    assert status_writes(OUTCOME.read_text())  # and the check sees the one home's writes
