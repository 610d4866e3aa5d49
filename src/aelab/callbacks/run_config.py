"""The run's composed config inside each of its checkpoints, which `aelab-eval` and a resumed run
rebuild the run from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from typing_extensions import override

from aelab.models.base import CHECKPOINT_KEY


class RunConfigInCheckpoints(pl.Callback):
    """Writes `config` as `checkpoint["aelab"]["config"]` into every checkpoint the run saves.

    `config`: the composed config, resolved, as plain containers (what a weights-only checkpoint
    can hold), e.g. `OmegaConf.to_container(cfg, resolve=True)`. Lightning calls the callbacks'
    `on_save_checkpoint` before the module's, which adds its own entries beside this one.
    aelab-train attaches it itself (not the `callbacks` group): no run may write checkpoints
    that aelab-eval cannot rebuild.
    """

    def __init__(self, config: Mapping[str, Any] | None) -> None:
        self.config = config

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint.setdefault(CHECKPOINT_KEY, {})["config"] = self.config
