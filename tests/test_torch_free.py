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
        "aelab.board",
        "aelab.board.summaries",
        "aelab.metric_names",
        "aelab.report.cli",
        "aelab.report.disentanglement",
    ],
)
def test_importing_it_imports_no_torch(module):
    code = f"import sys, {module}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


SWEEP_ONLY = ("optuna", "submitit", "joblib")
PLUGINS = (
    "hydra_plugins.aelab_sweeper.optuna_sweeper",
    "hydra_plugins.aelab_sweeper.baseline_sweeper",
    "hydra_plugins.aelab_stacked.stacked_launcher",
)


def test_plugin_discovery_imports_no_sweep_library():
    """Hydra imports every plugin module at each start (`aelab-train` too): ours, and Hydra's
    own, must leave optuna, submitit and joblib to the sweeps that use them."""
    code = (
        f"import sys, {', '.join(PLUGINS)}\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()  # the scan of every plugin module, as an app's start does\n"
        f"print(sorted(m for m in {SWEEP_ONLY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_load_run_imports_no_entry_point():
    """`aelab.load_run` (a notebook's call) rebuilds the model from `aelab.run.checkpoint`: it
    loads neither the training stack nor aelab-eval's."""
    entry = ("aelab.train", "aelab.eval", "aelab.stacked", "aelab.callbacks")
    code = f"import sys, aelab.api\nprint(sorted(m for m in {entry!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
