"""The run bookkeeping and the report import neither torch nor Lightning: `aelab-report` starts
in a fraction of a second, and the resolvers `import aelab` registers stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "pytorch_lightning", "lightning_fabric")


@pytest.mark.parametrize(
    "module",
    [
        "aelab",
        "aelab.run",
        "aelab.run.atomic",
        "aelab.run.folder",
        "aelab.run.record",
        "aelab.run.checkpoint",
        "aelab.run.sweep",
        "aelab.data.source",
        "aelab.report",
        "aelab.report.load",
        "aelab.report.tables",
        "aelab.report.plots",
        "aelab.report.tensorboard",
        "aelab.report.cli",
        "aelab.report.disentanglement",
    ],
)
def test_importing_it_imports_no_torch(module):
    code = f"import sys, {module}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
