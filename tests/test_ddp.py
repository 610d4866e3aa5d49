"""trainer=ddp: two CPU processes (gloo) training one run, metrics reduced over both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import get_class

from aelab.callbacks.eval_suite import EvaluationSuite
from aelab.data.mnist import MNISTDataModule
from aelab.run.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.mnist]


def train(*overrides: str, log_dir: Path, data_dir: Path) -> str:
    cmd = [sys.executable, "-m", "aelab.train"]
    cmd += [f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}", *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


def test_ddp_on_two_cpu_processes_scores_like_one_process(tmp_path, mnist_dir):
    out = train(
        "trainer=ddp",
        "model.latent_dim=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.deterministic=true",
        "data.eval_batch_size=3000",
        "eval.probe_train_size=500",
        "eval.images=false",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    assert "distributed_backend=gloo" in out
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out
    # the epoch means are reduced by aelab before Lightning sees them: no advice to sync them
    assert "sync_dist" not in out
    # Lightning starts the second process in the same run folder; only rank 0 writes the results
    (run_dir,) = (tmp_path / "runs").glob("*/*_train")
    assert (run_dir / "train_ddp_process_1.log").is_file()
    # each process measured that it flushes denormal floats (flush_denormal, on by default)
    for log in ("train.log", "train_ddp_process_1.log"):
        assert "denormal floats flushed to zero: yes" in (run_dir / log).read_text(), log
    assert out.count("run directory:") == 1
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["status"] == "completed"

    # the same checkpoint scored by one process on the whole test set: the DDP figures must be
    # means over all 10000 images. Each process sees 5000 (10000 splits evenly in two, so
    # DistributedSampler pads in no duplicates) in batches of 3000 and 2000: an unreduced figure
    # (one process's half) or an unweighted mean of batch means would differ.
    (best,) = (run_dir / "checkpoints").glob("epoch*.ckpt")
    ckpt = load_checkpoint(best)
    model = get_class(ckpt["aelab"]["model_class"])(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    data = MNISTDataModule(data_dir=str(mnist_dir), eval_batch_size=3000, download=False)
    suite = EvaluationSuite(probe_train_size=500, images=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        deterministic=True,
        callbacks=[suite],
    )
    (single,) = trainer.test(model, datamodule=data, verbose=False)
    # the test-time suite: each process scores the whole test set, the same figures as one
    suite_keys = ("test/linear_probe_acc", "test/knn_acc", "test/linear_probe_acc_pca")
    keys = ("test/loss", "test/recon_mse", "test/recon_bce", "test/psnr", *suite_keys)
    keys = [k for k in keys if k in ddp]
    assert len(keys) == 7, sorted(ddp)
    for key in keys:
        assert ddp[key] == pytest.approx(single[key], rel=1e-5), key
