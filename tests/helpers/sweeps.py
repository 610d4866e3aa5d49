"""One real, tiny sweep (AE/VAE x latent 2/4 on a slice of MNIST), run once per test session and
shared by the report and TensorBoard tests: `from helpers.sweeps import tiny_sweep`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

# one epoch of 5 batches, one validation batch, 500 test images: every job takes seconds
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=500",
    "eval.generation.enabled=false",  # the report's tables as these tests know them, no FID
]
_SWEEPS: dict[str, Path] = {}  # module-level: every test module gets the same sweep
_STDOUT: dict[str, str] = {}


class FailOnFitStart(pl.Callback):
    """`+callbacks.boom._target_=helpers.sweeps.FailOnFitStart +callbacks.boom.fail=true`: a job
    that raises a plain error once its run folder exists (run_sweep puts tests/ on the path)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fail:
            raise RuntimeError("boom at fit start")


def run_sweep(root: Path, data_dir: Path, *overrides: str, returncode: int = 0) -> tuple[Path, str]:
    """`aelab-train -m <overrides>` under `root`; the sweep folder it made and the output
    (stdout, then stderr)."""
    sweep, stdout, stderr = run_sweep_streams(root, data_dir, *overrides, returncode=returncode)
    return sweep, stdout + stderr


def run_sweep_streams(
    root: Path, data_dir: Path, *overrides: str, returncode: int = 0
) -> tuple[Path, str, str]:
    """As `run_sweep`, with stdout and stderr apart."""
    cmd = [
        sys.executable,
        "-m",
        "aelab.train",
        "-m",
        f"paths.root_dir={root}",
        f"paths.data_dir={data_dir}",
        *overrides,
    ]
    path = os.pathsep.join(
        p for p in (str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")) if p
    )
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == returncode, done.stderr[-3000:]
    sweeps = list((root / "outputs" / "multiruns").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0], done.stdout, done.stderr


def assert_progress_line(stdout: str, num: int, jobs: int, folder: Path) -> None:
    """`job <num+1> of <jobs>: <folder>  val/loss x  test/loss y  (t s)`, once, in stdout."""
    metrics = json.loads((folder / "metrics.json").read_text())
    head = (
        f"job {num + 1} of {jobs}: {folder.name}  "
        f"val/loss {metrics['val/loss']:.4g}  test/loss {metrics['test/loss']:.4g}  ("
    )
    lines = [line for line in stdout.splitlines() if line.startswith(head)]
    assert len(lines) == 1, (head, stdout[-3000:])
    seconds = float(lines[0][len(head) :].removesuffix(" s)"))
    assert 0 < seconds < 600


def assert_headline_table(stdout: str, sweep: Path) -> None:
    """At the end of stdout: summary.md's main table (its first) as columns, a blank line
    before it, then the path of summary.md."""
    lines = stdout.splitlines()
    last = f"sweep report: {sweep / 'summary.md'}"
    assert last in lines, stdout[-3000:]
    lines = lines[: len(lines) - lines[::-1].index(last)]
    summary = (sweep / "summary.md").read_text().splitlines()
    first = next(i for i, ln in enumerate(summary) if ln.startswith("| "))
    end = next(i for i in range(first, len(summary) + 1) if not summary[i].startswith("| "))
    md = summary[first:end]
    printed = lines[-len(md) - 1 : -1]
    assert lines[-len(md) - 2] == ""
    assert set(printed[1]) <= {"-", " "}  # the rule under the header
    for shown, row in zip([printed[0], *printed[2:]], [md[0], *md[2:]], strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert shown.split() == " ".join(cells).split(), (shown, row)


TINY_SWEEP = ["model=ae,vae", "model.latent_dim=2,4"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, mnist_dir) -> Path:
    """The folder of `aelab-train -m model=ae,vae model.latent_dim=2,4` on tiny slices (`TINY`:
    overrides that every job shares)."""
    if "2x2" not in _SWEEPS:
        root = tmp_path_factory.mktemp("tiny_sweep")
        sweep, stdout, _ = run_sweep_streams(root, mnist_dir, *TINY_SWEEP, *TINY)
        _SWEEPS["2x2"] = sweep
        _STDOUT["2x2"] = stdout
    return _SWEEPS["2x2"]


@pytest.fixture(scope="session")
def tiny_sweep_stdout(tiny_sweep) -> str:
    """What `tiny_sweep`'s aelab-train wrote on stdout."""
    return _STDOUT["2x2"]
