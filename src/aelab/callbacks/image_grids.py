"""Rows of input / corrupted input / reconstruction (and prior samples) for TensorBoard and the
run folder."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image
from typing_extensions import override

from aelab.checks import check_int
from aelab.contract import CanSample
from aelab.models.base import EVAL_NOISE_SEED


class ImageGrids(pl.Callback):
    """Rows of input / corrupted input / reconstruction (and prior samples for the VAE).

    Logged to TensorBoard after each validation epoch and saved as PNG in `<run>/images/` after
    testing, always on the same first validation/test images and the same corruption.
    """

    def __init__(self, n_images: int = 8, n_samples: int = 64) -> None:
        self.n_images = check_int("n_images", n_images, 1)
        self.n_samples = check_int("n_samples", n_samples, 0)

    @torch.no_grad()
    def grids(self, pl_module: pl.LightningModule, x: Tensor) -> dict[str, Tensor]:
        x = x[: self.n_images].to(pl_module.device)
        generator = torch.Generator(device=x.device).manual_seed(EVAL_NOISE_SEED)
        x_in = pl_module.noise(x, generator)
        rows = [x] if pl_module.noise.is_identity else [x, x_in]
        rows.append(pl_module.reconstruct(x_in))
        out = {"reconstructions": make_grid(torch.cat(rows), nrow=len(x), pad_value=1.0)}
        if isinstance(pl_module, CanSample) and self.n_samples:
            g = torch.Generator(device=pl_module.device).manual_seed(EVAL_NOISE_SEED)
            samples = pl_module.sample(self.n_samples, generator=g)
            out["samples"] = make_grid(samples, nrow=int(self.n_samples**0.5), pad_value=1.0)
        return out

    @staticmethod
    def _first_batch(trainer: pl.Trainer, split: str) -> Tensor | None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "fixed_batch") or not datamodule.split_size(split):
            return None
        return datamodule.fixed_batch(split)[0]

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        x = self._first_batch(trainer, "val")
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if x is None or tb is None:
            return
        for name, grid in self.grids(pl_module, x).items():
            tb.experiment.add_image(f"images/{name}", grid, global_step=trainer.global_step)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        x = self._first_batch(trainer, "test")
        if x is None or not trainer.is_global_zero:
            return
        folder = Path(trainer.default_root_dir) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for name, grid in self.grids(pl_module, x).items():
            save_image(grid, folder / f"test_{name}.png")
