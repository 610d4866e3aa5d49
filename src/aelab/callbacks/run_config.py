"""The run's composed config inside each of its checkpoints, which `aelab-eval` and a resumed run
rebuild the run from."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from typing_extensions import override

from aelab.run.checkpoint import CHECKPOINT_KEY

log = logging.getLogger(__name__)


class RunConfigInCheckpoints(pl.Callback):
    """Writes `config` as `checkpoint["aelab"]["config"]` into every checkpoint the run saves.

    `config`: the composed config, resolved, as plain containers (what
    `torch.load(weights_only=True)` reads back), e.g. `OmegaConf.to_container(cfg,
    resolve=True)`. Lightning calls the callbacks' `on_save_checkpoint` before the module's,
    which adds its own entries beside this one.
    aelab-train attaches it itself (not the `callbacks` group): no run may write checkpoints
    that aelab-eval cannot rebuild. Lightning calls no callback for a weights-only checkpoint
    (`save_weights_only=true`): such a checkpoint holds no config, which is said at set-up.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        self.config = config

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_weights_only:
                log.warning(
                    "save_weights_only=true: the checkpoints in %s hold no run config, so "
                    "aelab-eval cannot rebuild the run from them",
                    cb.dirpath,
                )

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint.setdefault(CHECKPOINT_KEY, {})["config"] = self.config
