"""Same config and seed: the same metrics.json (CPU, deterministic mode). Each run records how to
redo it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.mnist]

OVERRIDES = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=25",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.eval_batch_size=250",
    "~callbacks.evaluation",
    # every source of randomness a step has: batch order, binarization, noise, sampling
    "model=vae",
    "noise=masking",
    "data.binarize=dynamic",
]


def run(log_dir: Path, data_dir: Path) -> Path:
    paths = [f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}"]
    cmd = [sys.executable, "-m", "aelab.train", *paths, *OVERRIDES]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (log_dir / "runs").glob("*/*_train")
    return folder


def test_same_config_and_seed_give_the_same_metrics(tmp_path, mnist_dir):
    first, second = run(tmp_path / "a", mnist_dir), run(tmp_path / "b", mnist_dir)
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["status"] == "completed" and "test/neg_elbo" in metrics
    assert (second / "metrics.json").read_text() == (first / "metrics.json").read_text()

    # what it takes to run it again: the composed config, the command, versions, the code
    config = yaml.safe_load((first / ".hydra" / "config.yaml").read_text())
    assert config["seed"] == 42 and config["model"]["_target_"] == "aelab.models.VAE"
    overrides = yaml.safe_load((first / ".hydra" / "overrides.yaml").read_text())
    info = json.loads((first / "run.json").read_text())
    assert info["argv"][1:] == overrides
    assert info["packages"]["torch"] == metadata.version("torch")
    assert info["packages"]["pytorch-lightning"] == metadata.version("pytorch-lightning")
    git = info["git"]
    assert git["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", git["commit"])
    assert git["dirty"] in (True, False, None)
