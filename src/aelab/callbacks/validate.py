"""Validate (and so checkpoint) the final weights of a run that `trainer.max_steps` ends."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from typing_extensions import override


class ValidateAtMaxSteps(pl.Callback):
    """A run that `trainer.max_steps` ends part-way through an epoch validates its final weights
    (and so checkpoints them: `last.ckpt`, and the best one if they are), and the test scores them.

    Lightning validates at an epoch's end or when asked to stop early (as EarlyStopping does), but
    not when `max_steps` ends an epoch part-way; asking it to stop at that step makes it validate.
    """

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if 0 <= trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
