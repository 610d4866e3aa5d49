"""A relative `ckpt_path` is read from the folder the command was started in, also under
`hydra.job.chdir=true`, which moves the job into its run folder (hydra#922; issue 22 item 13b)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.mnist]

TINY = [
    "++trainer.limit_train_batches=3",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1",
    "data.eval_batch_size=500",
    "threads=1",
]


def run(module: str, *overrides: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, f"paths.data_dir={data_dir}", *TINY, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_a_relative_ckpt_path_is_read_from_where_the_command_started(tmp_path, mnist_dir):
    first = run(
        "aelab.train",
        "trainer.max_epochs=1",
        "hydra.run.dir=first",
        cwd=tmp_path,
        data_dir=mnist_dir,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    relative = "first/checkpoints/last.ckpt"
    # the run folders are elsewhere: under chdir the job's current folder holds no `first/`
    logs = ["hydra.job.chdir=true", f"paths.log_dir={tmp_path / 'logs'}"]

    scored = run("aelab.eval", f"ckpt_path={relative}", *logs, cwd=tmp_path, data_dir=mnist_dir)
    assert scored.returncode == 0, scored.stderr[-3000:]
    (eval_dir,) = (tmp_path / "logs" / "runs").glob("*/*_eval")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    first_metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["ckpt_path"] == relative
    # the same weights, the same test batch: the figure the first run's test wrote
    assert metrics["test/recon_mse"] == pytest.approx(first_metrics["test/recon_mse"], rel=1e-5)

    more = run(
        "aelab.train",
        "trainer.max_epochs=2",
        f"ckpt_path={relative}",
        *logs,
        cwd=tmp_path,
        data_dir=mnist_dir,
    )
    assert more.returncode == 0, more.stderr[-3000:]
    (train_dir,) = (tmp_path / "logs" / "runs").glob("*/*_train")
    last = torch.load(train_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6  # continued from the first run's 3 steps, not from 0

    missing = run("aelab.eval", "ckpt_path=none/last.ckpt", *logs, cwd=tmp_path, data_dir=mnist_dir)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "aelab-eval: error: ckpt_path='none/last.ckpt' is invalid: allowed an existing "
        f"checkpoint file (none at {tmp_path / 'none' / 'last.ckpt'})"
    )
