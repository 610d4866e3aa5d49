"""Write the "paper / aelab / difference" table of a reference preset (`experiment=reference/*`)
into the run folder, and over all finished jobs into the sweep folder."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from typing_extensions import override

from aelab.checks import ConfigError, check_int
from aelab.reference import compare, pca_sse_per_image, sweep_table, write_table
from aelab.reference.published import FIGURES
from aelab.reference.table import check_paper

log = logging.getLogger(__name__)

TEST_CURVE_SEED = 4321  # the z draws of the per-epoch test loss: the same in every run


class ReferenceTable(pl.Callback):
    """After the test loop: aelab's figures beside `paper`'s (`aelab.reference.FIGURES`) in
    `<run>/reference.{csv,md}`; in a sweep, every job also rewrites `<sweep>/reference.{csv,md}`
    from the jobs finished so far.

    Args:
        paper: one of `aelab.reference.FIGURES` (hinton2006, pytorch_vae, burda2016, ruff2018).
        test_each_epoch: score the model's loss on the whole test split after every training
            epoch (`reference/test_<part>` in TensorBoard, per epoch), as pytorch/examples'
            VAE prints it; one z per image from a fixed generator.
        pca_components: hinton2006's PCA row: components fit on all training images (the
            training and validation splits, 60 000 for MNIST).

    Raises:
        ConfigError: an unknown `paper` or `pca_components` < 1.
    """

    def __init__(self, paper: str, test_each_epoch: bool = False, pca_components: int = 30) -> None:
        self.paper = check_paper(paper)
        if not isinstance(test_each_epoch, bool):
            raise ConfigError("test_each_epoch", test_each_epoch, "true or false")
        self.test_each_epoch = test_each_epoch
        self.pca_components = check_int("pca_components", pca_components, 1)
        self.curve: dict[int, dict[str, float]] = {}  # epoch (1-based) -> the test loss parts

    # --- per-epoch test loss ------------------------------------------------------------------
    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.test_each_epoch or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        self.curve[epoch] = parts = self._test_loss(trainer, pl_module)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, value in parts.items():
                    logger.experiment.add_scalar(f"reference/test_{name}", value, epoch)
        figures = ", ".join(f"{k} {v:.4f}" for k, v in parts.items())
        log.info("epoch %d: test loss %s", epoch, figures)

    @staticmethod
    def _test_loss(trainer: pl.Trainer, model: pl.LightningModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        n = datamodule.split_size("test")
        batch = getattr(datamodule, "eval_batch_size", 1000)
        generator = torch.Generator(device=model.device).manual_seed(TEST_CURVE_SEED)
        sums: dict[str, float] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, n, batch):
                    idx = torch.arange(start, min(start + batch, n))
                    x, _ = datamodule.split_tensors("test", idx)
                    x = x.to(model.device)
                    parts, _ = model.loss(x, x, generator)
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
        finally:
            model.train(was_training)
        return {k: v / n for k, v in sums.items()}

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"curve": {str(k): v for k, v in self.curve.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = {int(k): dict(v) for k, v in state_dict.get("curve", {}).items()}

    # --- the table ----------------------------------------------------------------------------
    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        measured, rows = self.measure(metrics, trainer.datamodule, pl_module)
        table = compare(self.paper, measured, rows)
        folder = Path(trainer.default_root_dir)
        write_table(folder, self.paper, table)
        log.info("reference table: %s", folder / "reference.md")
        sweep = folder.parent
        if (sweep / "multirun.yaml").is_file():
            write_table(sweep, self.paper, sweep_table(sweep, self.paper))

    def measure(
        self, metrics: dict[str, float], datamodule: Any, model: pl.LightningModule
    ) -> tuple[dict[tuple[str, str], float], list[str] | None]:
        """aelab's figures by (row, metric) of `aelab.reference.FIGURES[paper]`, from the test
        `metrics` (and, for hinton2006, a PCA fit here), and the rows this run stands for (None:
        all of the paper's)."""
        if self.paper == "hinton2006":
            row = FIGURES["hinton2006"]
            pixels = math.prod(datamodule.image_shape)
            train = torch.cat([datamodule.split_tensors(s)[0] for s in ("train", "val")])
            pca = pca_sse_per_image(train, datamodule.split_tensors("test")[0], self.pca_components)
            return {
                (row[0].row, row[0].metric): metrics.get("test/recon_mse", math.nan) * pixels,
                (row[2].row, row[2].metric): pca,
            }, None
        if self.paper == "pytorch_vae":
            return {
                (f"test loss after epoch {e}", f"epoch{e}/{k}"): v
                for e, parts in sorted(self.curve.items())
                for k, v in parts.items()
                if k == "neg_elbo"
            }, None
        if self.paper == "burda2016":
            k = getattr(model, "k", 1)
            row = f"{'IWAE' if hasattr(model, 'k') else 'VAE'} k={k}"
            return {
                (row, m): metrics.get(m, math.nan) for m in ("test/iw_nll", "test/active_units")
            }, [row]
        classes = list(getattr(datamodule, "classes", None) or [])
        row = f"digit {classes[0]}" if len(classes) == 1 else f"digits {classes}"
        return {(row, "test/auroc_percent"): 100 * metrics.get("test/auroc", math.nan)}, [row]
