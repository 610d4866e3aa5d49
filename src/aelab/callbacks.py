"""Lightning callbacks that are aelab's own: image grids for TensorBoard and the run folder, the
epoch means a resumed run must carry on, and the phase timer of `scripts/benchmark.py`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from aelab.checks import check_int
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
        if hasattr(pl_module, "sample") and self.n_samples:
            g = torch.Generator(device=pl_module.device).manual_seed(EVAL_NOISE_SEED)
            samples = pl_module.sample(self.n_samples, generator=g)
            out["samples"] = make_grid(samples, nrow=int(self.n_samples**0.5), pad_value=1.0)
        return out

    @staticmethod
    def _first_batch(trainer: pl.Trainer, split: str) -> Tensor | None:
        datamodule = trainer.datamodule
        if datamodule is not None and split in getattr(datamodule, "splits", {}):
            dataset = datamodule.splits[split]
            return dataset.__getitems__(list(range(min(16, len(dataset)))))[0]
        if hasattr(datamodule, "fixed_batch"):  # a datamodule of the user's (README)
            try:
                return datamodule.fixed_batch(split, 16)[0]
            except ValueError:  # no such split
                return None
        return None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        x = self._first_batch(trainer, "val")
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if x is None or tb is None:
            return
        for name, grid in self.grids(pl_module, x).items():
            tb.experiment.add_image(f"images/{name}", grid, global_step=trainer.global_step)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        x = self._first_batch(trainer, "test")
        if x is None or not trainer.is_global_zero:
            return
        folder = Path(trainer.default_root_dir) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for name, grid in self.grids(pl_module, x).items():
            save_image(grid, folder / f"test_{name}.png")


class ResumableEpochMeans(pl.Callback):
    """A run resumed mid-epoch logs the same `train/*` epoch means as one that never stopped.

    The model sums the training figures over an epoch and logs their means at its end; the sums
    so far go into each checkpoint and come back before the resumed run's first step.
    """

    KEY = "aelab_train_means"

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        means = getattr(pl_module, "train_means", None)
        if means is not None:
            sums = {k: v.cpu() for k, v in means.sums.items()}
            checkpoint[self.KEY] = {"sums": sums, "weights": dict(means.weights)}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loaded = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not on loading: the model is on its device only now
        if self._loaded is not None and hasattr(pl_module, "train_means"):
            sums = {k: v.to(pl_module.device) for k, v in self._loaded["sums"].items()}
            pl_module.train_means.sums = sums
            pl_module.train_means.weights = dict(self._loaded["weights"])
        self._loaded = None


class ValidateAtMaxSteps(pl.Callback):
    """A run that `trainer.max_steps` ends part-way through an epoch validates its final weights
    (and so checkpoints them: `last.ckpt`, and the best one if they are), and the test scores them.

    Lightning validates at an epoch's end or when asked to stop early (as EarlyStopping does), but
    not when `max_steps` ends an epoch part-way; asking it to stop at that step makes it validate.
    """

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


class PhaseTimer(pl.Callback):
    """Clock readings at the edges of a run's phases, for `scripts/benchmark.py --overhead`.

    Not in the default callbacks: the benchmark adds it (`+callbacks.phase_timer=...`). `marks`
    is a list of (event, `time.perf_counter()` seconds): `built`, `setup_fit`, `fit_start`,
    `sanity_start`, `sanity_end`, per epoch `epoch_start`, `val_start`, `val_end`, then
    `train_end`, `teardown_fit`, `setup_test`, `test_epoch_start`, `test_epoch_end` (after the
    other callbacks' test-epoch hooks: the suite's and the image grids'), `teardown_test`.
    `parts` holds the test-time suite's `timings` (seconds per part). With `path`, both are
    written there as JSON (temp file and rename) at every teardown.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.marks: list[tuple[str, float]] = []
        self.parts: dict[str, float] = {}
        self._mark("built")

    def _mark(self, event: str) -> None:
        self.marks.append((event, time.perf_counter()))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._mark(f"setup_{getattr(stage, 'value', stage)}")  # Lightning passes a TrainerFn

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("fit_start")

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("sanity_start")

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("sanity_end")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("epoch_start")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._mark("val_start")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._mark("val_end")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("train_end")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("test_epoch_start")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("test_epoch_end")
        for callback in trainer.callbacks:
            self.parts.update(getattr(callback, "timings", None) or {})

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._mark(f"teardown_{getattr(stage, 'value', stage)}")
        if self.path is not None and trainer.is_global_zero:
            from aelab.runs import write_json_atomic

            write_json_atomic(self.path, {"marks": self.marks, "parts": self.parts})
