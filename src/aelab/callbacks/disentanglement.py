"""The disentanglement scores at test time, for any model, on data with known factors.

After the test loop this callback encodes the datamodule's test split (the model's `encode`: a
VAE's posterior mean, as disentanglement_lib scores it) and scores the codes against the split's
factor classes (`split_factors`, e.g. `aelab.data.factors`) with
`aelab.metrics.disentanglement_scores.all_scores`. The figures are logged through the module as
`disent/<metric>`, so they reach `trainer.test()`'s result, hence metrics.json, TensorBoard and
the HParams row. A datamodule without factors (MNIST) is skipped in one log line. Configured by
the `disent` config group; aelab-train and aelab-eval attach the same one.

`timings` holds the seconds each score of the last evaluation took.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytorch_lightning as pl
import torch
from typing_extensions import override

from aelab.checks import ConfigError, check_int
from aelab.metrics.disentanglement_scores import all_scores

log = logging.getLogger(__name__)

PREFIX = "disent/"


class DisentanglementScores(pl.Callback):
    """BetaVAE, FactorVAE, MIG, SAP, DCI, modularity and explicitness of the model's codes.

    Args:
        num_train, num_test: rows of the test split each classifier-based score fits on and is
            scored on (MIG and modularity use num_train rows). disentanglement_lib's are 10,000
            and 5,000; smaller keeps DCI's gradient-boosted trees, the bulk of the cost, short.
        num_eval: the sampled scores' (BetaVAE, FactorVAE) evaluation points; they draw
            num_train training points.
        batch_size: rows per sampled point (disentanglement_lib: 64).
        encode_batch_size: images per forward pass while encoding.
        seed: the draws of every score.

    Raises:
        ConfigError: a count below 1 (batch_size below 2); at setup, num_train + num_test more
            than the test split holds (naming `disent.num_train`).
    """

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 1000,
        num_eval: int = 1000,
        batch_size: int = 64,
        encode_batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.num_train = check_int("num_train", num_train, 1)
        self.num_test = check_int("num_test", num_test, 1)
        self.num_eval = check_int("num_eval", num_eval, 1)
        self.batch_size = check_int("batch_size", batch_size, 2)
        self.encode_batch_size = check_int("encode_batch_size", encode_batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.timings: dict[str, float] = {}

    @staticmethod
    def has_factors(datamodule: object) -> bool:
        return hasattr(datamodule, "split_factors") and hasattr(datamodule, "split_tensors")

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # the datamodule is set up before the callbacks: a count the split cannot supply is
        # refused before training, not after it
        datamodule = trainer.datamodule
        if not self.has_factors(datamodule):
            return
        size = datamodule.split_size("test")
        if size and self.num_train + self.num_test > size:
            raise ConfigError(
                "disent.num_train",
                self.num_train,
                f"num_train + num_test (disent.num_test={self.num_test}) at most the test "
                f"split's {size} images (data.test_size)",
                grouped=True,
            )

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not self.has_factors(datamodule):
            log.info("disentanglement scores skipped: the data has no factors (split_factors)")
            return
        scores = self.evaluate(
            pl_module,
            datamodule.split_tensors("test")[0],
            datamodule.split_factors("test").numpy(),
        )
        # every process scores the same codes with the same seed: equal figures, synced with
        # max (exact for equal values) as the evaluation suite's
        pl_module.log_dict(
            {PREFIX + k: v for k, v in scores.items()}, sync_dist=True, reduce_fx="max"
        )

    @torch.no_grad()
    def evaluate(
        self, model: pl.LightningModule, images: torch.Tensor, factors: np.ndarray
    ) -> dict[str, float]:
        """The scores of `model.encode`'s codes of `images` (N x C x H x W in [0, 1]) against
        `factors` (N x K): {metric: value in [0, 1]}. Fills `timings` (seconds per score, and
        `encode`)."""
        self.timings = {}
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        codes = torch.cat(
            [model.encode(b.to(model.device)) for b in images.split(self.encode_batch_size)]
        )
        model.train(was_training)
        self.timings["encode"] = time.perf_counter() - start
        scores = all_scores(
            codes.double().cpu().numpy(),
            factors,
            seed=self.seed,
            timings=self.timings,
            num_train=self.num_train,
            num_test=self.num_test,
            num_eval=self.num_eval,
            batch_size=self.batch_size,
        )
        log.info(
            "disentanglement scores in %.1f s: %s",
            sum(self.timings.values()),
            {k: round(v, 1) for k, v in self.timings.items()},
        )
        return {k: float(v) for k, v in scores.items()}
