"""aelab.load_run: a real, tiny trained run read back from its folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import aelab
from aelab.models import Autoencoder

pytestmark = [pytest.mark.slow, pytest.mark.mnist]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_dir) -> Path:
    """`aelab-train model.latent_dim=3` for two epochs of 5 batches."""
    root = tmp_path_factory.mktemp("api")
    cmd = [
        sys.executable, "-m", "aelab.train", f"paths.root_dir={root}",
        f"paths.data_dir={mnist_dir}", "model.latent_dim=3", "trainer.max_epochs=2",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.eval_batch_size=200", "eval.images=false",
        "threads=1",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = (root / "outputs" / "runs").glob("*/*_train")
    return found


def test_load_run_gives_the_checkpoints_model_config_and_metrics(run_dir):
    run = aelab.load_run(run_dir)
    (best,) = (run_dir / "checkpoints").glob("epoch*.ckpt")  # save_top_k=1: the best one
    assert run.paths.checkpoint == best
    assert run.paths.best_checkpoint == best
    assert run.paths.last_checkpoint == run_dir / "checkpoints" / "last.ckpt"
    assert run.paths.run_dir == run_dir
    assert run.metrics == json.loads((run_dir / "metrics.json").read_text())
    assert run.metrics["status"] == "completed"
    assert run.config.model.latent_dim == 3
    assert run.config.trainer.max_epochs == 2
    assert not run.model.training

    # the same reconstruction as a model built by hand from the checkpoint's weights
    stored = torch.load(best, map_location="cpu", weights_only=True)
    by_hand = Autoencoder(**stored["hyper_parameters"])
    by_hand.load_state_dict(stored["state_dict"])
    by_hand.eval()
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = by_hand.reconstruct(x)
        assert torch.equal(run.model.reconstruct(x), expected)
        fresh = Autoencoder(**stored["hyper_parameters"]).eval()
        assert not torch.allclose(fresh.reconstruct(x), expected)  # weights were loaded
    assert run.model.encode(x).shape == (8, 3)


def test_load_run_last_checkpoint(run_dir):
    run = aelab.load_run(str(run_dir), checkpoint="last")
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert run.paths.checkpoint == run_dir / "checkpoints" / "last.ckpt"
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, last["state_dict"][name]), name
    assert OmegaConf.to_container(run.config) == last["aelab"]["config"]


def test_load_run_moved_folder_finds_its_best_checkpoint(run_dir, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    (best,) = (moved / "checkpoints").glob("epoch*.ckpt")
    assert aelab.load_run(moved).paths.checkpoint == best


def test_load_run_refuses_what_is_not_a_run(run_dir, tmp_path):
    with pytest.raises(aelab.RunFolderError, match=r"no_such: not a run folder \(no such folder"):
        aelab.load_run(tmp_path / "no_such")
    with pytest.raises(aelab.RunFolderError, match=r"not a run folder \(no .hydra/config.yaml\)"):
        aelab.load_run(tmp_path)
    with pytest.raises(ValueError, match="checkpoint='first': allowed one of best, last"):
        aelab.load_run(run_dir, checkpoint="first")


def test_load_run_refuses_a_run_without_checkpoint(run_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(aelab.RunFolderError) as err:
        aelab.load_run(bare)
    assert str(err.value) == f"{bare}: the run holds no checkpoint (checkpoints/last.ckpt missing)"
    (bare / "checkpoints").mkdir()
    (bare / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(aelab.RunFolderError, match="loading failed: not a torch checkpoint"):
        aelab.load_run(bare)


def test_import_aelab_stays_torch_free():
    code = "import sys, aelab; print(sorted({'torch', 'pytorch_lightning'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
