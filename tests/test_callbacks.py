"""aelab's callbacks on tiny synthetic data: the run config and the epoch sums in checkpoints."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from aelab.callbacks import RunConfigInCheckpoints
from aelab.data.mnist import InMemoryImages, whole_batch
from aelab.models import Autoencoder

CONFIG = {"model": {"latent_dim": 4}, "seed": 3}


def fit_two_steps(tmp_path, *callbacks: pl.Callback) -> dict:
    """Two training steps of 32 images, a checkpoint after each; the first one, loaded back."""
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=4, net={"_target_": "aelab.nets.MLPNet", "hidden": [16]})
    every_step = ModelCheckpoint(
        dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[every_step, *callbacks],
    )
    loader = DataLoader(
        InMemoryImages(*synthetic_images(96)), batch_size=32, collate_fn=whole_batch
    )
    trainer.fit(model, train_dataloaders=loader)
    return torch.load(tmp_path / "step=1.ckpt", weights_only=True)


def test_checkpoints_hold_the_run_config_and_the_epochs_sums_so_far(tmp_path):
    ckpt = fit_two_steps(tmp_path, RunConfigInCheckpoints(CONFIG))
    assert list(ckpt["aelab"]) == [
        "version",
        "model_class",
        "config",
        "validation",
        "schedule_step",  # the KL schedule's step, for evaluation outside training
        "steps_per_epoch",
    ]
    assert ckpt["aelab"]["config"] == CONFIG
    assert ckpt["aelab"]["model_class"] == "aelab.models.ae.Autoencoder"
    means = ckpt["aelab_train_means"]
    assert means["weights"] == {"loss": 32.0, "recon": 32.0}  # one step of 32 images so far
    assert means["sums"]["loss"] == means["sums"]["recon"] > 0  # an AE's loss is its recon


def test_a_checkpoint_saved_without_the_callback_holds_no_config(tmp_path):
    assert fit_two_steps(tmp_path)["aelab"]["config"] is None


def test_resumed_sums_reach_the_model_when_training_starts(tmp_path):
    ckpt = fit_two_steps(tmp_path, RunConfigInCheckpoints(CONFIG))
    model = Autoencoder(latent_dim=4, net={"_target_": "aelab.nets.MLPNet", "hidden": [16]})
    model.on_load_checkpoint(ckpt)
    assert model.train_means.sums == {}  # not before: the model may not be on its device yet
    model.on_train_start()
    saved = ckpt["aelab_train_means"]
    assert model.train_means.sums == saved["sums"]
    assert model.train_means.weights == saved["weights"]


def test_weights_only_checkpoints_are_said_to_hold_no_config(tmp_path, caplog):
    weights = ModelCheckpoint(dirpath=tmp_path / "w", save_weights_only=True)
    with caplog.at_level(logging.WARNING, logger="aelab.callbacks.run_config"):
        fit_two_steps(tmp_path, weights, RunConfigInCheckpoints(CONFIG))
    assert "save_weights_only=true" in caplog.text and str(tmp_path / "w") in caplog.text
