"""Refuse data whose pixel range the model's likelihood cannot score, before the first step."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from typing_extensions import override

from aelab.checks import ConfigError

log = logging.getLogger(__name__)

# images looked at: enough to see a normalisation (it moves every image), cheap to read
CHECKED_IMAGES = 1024


def check_data_range(model: Any, datamodule: Any) -> None:
    """A Bernoulli likelihood (`model.recon_loss=bce`) scores pixels in [0, 1]: on images
    outside it (a user's datamodule normalising to (x - 0.5) / 0.5, say) the cross-entropy is
    no log-likelihood, and a run would complete with figures like recon = -28320 nats
    (lightning-bolts#177). The first `CHECKED_IMAGES` training images (B x C x H x W) are read
    through the datamodule seam (`fixed_batch`); a datamodule without it is not checked.

    On colour images of 256 levels (a datamodule whose `pixels` is "levels", C = 3: CIFAR-10,
    CelebA) the Bernoulli is no likelihood of the data either, only a surrogate: one warning
    line says so.

    Raises ConfigError (`model.recon_loss`) naming the likelihood and the data's range.
    """
    if getattr(model, "recon_loss", None) != "bce" or datamodule is None:
        return
    if not hasattr(datamodule, "fixed_batch"):
        return
    images, _ = datamodule.fixed_batch("train", CHECKED_IMAGES)
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ConfigError(
            "model.recon_loss",
            "bce",
            f"a likelihood for the data's pixels, which span [{low:.4g}, {high:.4g}] (a "
            "Bernoulli likelihood needs [0, 1]: model.recon_loss=mse, or images in [0, 1])",
            grouped=True,
        )
    if getattr(datamodule, "pixels", None) == "levels" and images.shape[1] == 3:
        log.warning(
            "model.recon_loss=bce on colour images of 256 levels (%s): the Bernoulli is no "
            "normalised likelihood of them, only a surrogate (Loaiza-Ganem & Cunningham 2019); "
            "model.recon_loss=mse is a Gaussian",
            " x ".join(map(str, images.shape[1:])),
        )


class DataRangeCheck(pl.Callback):
    """`check_data_range` before the first step of a fit (the stacked engine, which trains
    without a Trainer, calls it itself)."""

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_data_range(pl_module, trainer.datamodule)
