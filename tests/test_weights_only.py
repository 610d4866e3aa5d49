"""Checkpoints: every load in a run is weights-only, and every save says what it writes (Lightning
logs "`weights_only` was not set, defaulting to `False`" otherwise, e.g. at Ctrl-C)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from aelab.callbacks.faults import GracefulInterrupt
from aelab.callbacks.slurm import SlurmRequeue, StoppedBySlurm
from aelab.data.mnist import InMemoryImages, whole_batch
from aelab.models import Autoencoder
from aelab.train import fit_and_test

NOT_SET = "`weights_only` was not set"


class TinyData(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.images = InMemoryImages(*synthetic_images(96))

    def _loader(self) -> DataLoader:
        return DataLoader(self.images, batch_size=32, collate_fn=whole_batch)

    train_dataloader = val_dataloader = test_dataloader = _loader


def tiny_model() -> Autoencoder:
    return Autoencoder(latent_dim=4, net={"_target_": "aelab.nets.MLPNet", "hidden": [16]})


def tiny_trainer(folder: Path, *callbacks: pl.Callback, epochs: int = 1) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=folder,
        callbacks=list(callbacks),
    )


@contextlib.contextmanager
def lightning_log() -> Iterator[list[str]]:
    """Lightning's log messages (its logger does not propagate where the root logger has no
    handler, so caplog may not see them)."""
    messages: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class At(pl.Callback):
    """Calls `act` before training batch `batch` (a signal arriving there)."""

    def __init__(self, batch: int, act) -> None:
        self.batch, self.act = batch, act

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch:
            self.act()


def test_ctrl_c_saves_a_full_checkpoint_without_lightnings_notice(tmp_path):
    interrupt = GracefulInterrupt()
    last = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_top_k=0, save_last=True)
    trainer = tiny_trainer(
        tmp_path, interrupt, last, At(1, lambda: setattr(interrupt, "requested", True))
    )
    with lightning_log() as messages, pytest.raises((KeyboardInterrupt, SystemExit)):
        trainer.fit(tiny_model(), datamodule=TinyData())
    assert not [m for m in messages if NOT_SET in m], messages
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["optimizer_states"] and ckpt["callbacks"]


def test_a_slurm_stop_saves_a_full_checkpoint_without_lightnings_notice(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    before = signal.getsignal(signal.SIGUSR1)
    try:
        requeue = SlurmRequeue()
        stop = At(1, lambda: setattr(requeue, "_received", signal.SIGTERM))
        trainer = tiny_trainer(tmp_path, requeue, stop)
        with lightning_log() as messages, pytest.raises(StoppedBySlurm):
            trainer.fit(tiny_model(), datamodule=TinyData())
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert not [m for m in messages if NOT_SET in m], messages
    ckpt = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["optimizer_states"]


def test_resuming_and_testing_the_best_checkpoint_load_weights_only(tmp_path, monkeypatch):
    def best() -> ModelCheckpoint:
        return ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True)

    cfg = SimpleNamespace(test=False)
    fit_and_test(cfg, tiny_trainer(tmp_path, best()), tiny_model(), TinyData(), None)

    loads = []
    torch_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    trainer = tiny_trainer(tmp_path, best(), epochs=2)
    cfg = SimpleNamespace(test=True)
    metrics = fit_and_test(cfg, trainer, tiny_model(), TinyData(), str(tmp_path / "last.ckpt"))
    assert trainer.global_step == 6 and "test/loss" in metrics
    assert loads == [True, True]  # the resume, then the best checkpoint for testing
