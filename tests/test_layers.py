"""The layers contract of pyproject.toml (`[tool.importlinter]`): every module of aelab and its
Hydra plugins imports only from layers below its own, function-level imports included; and an
upward import is caught (a scratch copy of the sources with one added)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the pyproject.toml in `root`, on the sources in `root`/src."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    cmd = [sys.executable, "-c", LINT]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_every_import_goes_down_the_layers():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Contracts: 1 kept, 0 broken." in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    checks = tmp_path / "src" / "aelab" / "checks.py"
    # as a function-level import: those count too
    checks.write_text(checks.read_text() + "\n\ndef _up():\n    import aelab.train  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Contracts: 0 kept, 1 broken." in done.stdout
    assert "aelab.checks is not allowed to import aelab.train:" in done.stdout
    assert "- aelab.checks -> aelab.train (l." in done.stdout
