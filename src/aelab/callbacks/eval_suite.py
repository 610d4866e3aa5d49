"""The test-time evaluation suite: every run, every re-evaluation, the same figures.

A Lightning callback: after the test loop it scores the model on the datamodule's test split
(and, for the probes, a fixed subset of the training split), logs the scalars through the
module (so they reach `trainer.test()`'s result, hence metrics.json, TensorBoard and the HParams
row) and writes the generation figures to `<run>/images/` and TensorBoard. Configured by the
`eval` config group; aelab-train and aelab-eval attach the same one.

`timings` holds the seconds each part of the last evaluation took (a few clock reads: no cost);
`scripts/benchmark.py --overhead` prints them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image
from typing_extensions import override

from aelab.callbacks.generation_figures import GenerationFigures
from aelab.checks import ConfigError, check_float, check_int
from aelab.contract import CanSample, HasCodeIndices, HasPosterior
from aelab.data.mnist import BINARIZED_DRAW_STREAM
from aelab.data.resumable import derive_seed
from aelab.metrics import generation
from aelab.metrics.anomaly import anomaly_scores, one_class_auroc
from aelab.metrics.disentanglement import kl_decomposition
from aelab.metrics.iw_bound import (
    active_units,
    bits_per_dim,
    iw_log_likelihood,
    mutual_information,
)
from aelab.metrics.probes import PCABaselineCache, probe_scores
from aelab.models.vqvae import codebook_figures

log = logging.getLogger(__name__)

Images = dict[str, Tensor | Figure]


class Split(Protocol):
    """The images the suite scores: an `aelab.data.mnist.InMemoryImages`, or a datamodule's
    split through its public seam (`DatamoduleSplit`)."""

    def __len__(self) -> int: ...

    def tensors(
        self, indices: Tensor | None = None, seed: int | None = None
    ) -> tuple[Tensor, Tensor]: ...


class DatamoduleSplit:
    """One split of a datamodule, through `split_size` and `split_tensors`."""

    def __init__(self, datamodule: Any, name: str) -> None:
        self.datamodule, self.name = datamodule, name

    def __len__(self) -> int:
        return self.datamodule.split_size(self.name)

    def tensors(
        self, indices: Tensor | None = None, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        return self.datamodule.split_tensors(self.name, indices, seed=seed)


class Stream(enum.IntEnum):
    """The suite's random streams, one per use, each seeded `derive_seed(eval.seed, stream)` as
    the data's shuffles are (`aelab.data.resumable`): well-mixed seeds, apart from each other and
    from every small integer seed a run uses elsewhere. A figure's subset of images (a CPU
    permutation) and its own draws (on the model's device) share its stream."""

    IW = 0  # the importance-weighted bound: `eval.iw_images`, the K posterior draws
    MI = 1  # I(x; z): `eval.mi_images`, the aggregate posterior's draws
    ANOMALY = 2  # the -ELBO anomaly scores' draws
    IMAGES = 3  # the 16 test images of the interpolations and traversals
    PRIOR_SAMPLES = 4  # the 64 prior samples of `gen_prior_samples.png`
    TEST_SUBSET = 5  # the images the probes and the figures use (`eval.probe_*` budgets)
    BINARIZED_DRAW = BINARIZED_DRAW_STREAM  # the one draw of a dynamically binarized split
    TC = 7  # the total-correlation decomposition: `eval.tc_images`, its draws
    GENERATION_HALVES = 8  # the shuffle that halves the test set for the generation scores
    GENERATION_FIT = 9  # the training images the generation samplers are fitted on


class EvaluationSuite(pl.Callback):
    """Likelihood and information figures (VAE), probes, one-class AUROC, generation figures.

    Every estimator draws from its own seeded generator and the subsets are fixed, so a re-run on
    the same checkpoint gives the same numbers. `pca_cache`: the PCA baseline's figures, which
    do not depend on the model, are kept under `<data_dir>/cache/pca_baselines/` and reused by
    every later run on the same images (`aelab.metrics.probes.PCABaselineCache`).
    """

    def __init__(
        self,
        iw_samples: int = 100,
        iw_images: int | None = 1000,
        elbo_samples: int = 10,
        active_threshold: float = 0.01,
        mi_images: int | None = 2000,
        tc_images: int | None = 500,
        probe_train_size: int | None = 10000,
        knn_k: int = 5,
        images: bool = True,
        batch_size: int = 1000,
        seed: int = 0,
        pca_cache: bool = True,
        generation: GenerationFigures | dict | None = None,
    ) -> None:
        self.iw_samples = check_int("iw_samples", iw_samples, 1)
        self.iw_images = None if iw_images is None else check_int("iw_images", iw_images, 1)
        self.elbo_samples = check_int("elbo_samples", elbo_samples, 1)
        self.active_threshold = check_float("active_threshold", active_threshold, 0.0)
        self.mi_images = None if mi_images is None else check_int("mi_images", mi_images, 1)
        self.tc_images = None if tc_images is None else check_int("tc_images", tc_images, 1)
        self.probe_train_size = (
            None if probe_train_size is None else check_int("probe_train_size", probe_train_size, 2)
        )
        # known before training: a k-NN vote over fewer images than k cannot be taken
        high = self.probe_train_size
        if high is not None and isinstance(knn_k, int) and knn_k > high:
            raise ConfigError("knn_k", knn_k, f"an integer in [1, {high}] (eval.probe_train_size)")
        self.knn_k = check_int("knn_k", knn_k, 1)
        self.images = bool(images)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.pca_cache = bool(pca_cache)
        if not isinstance(generation, GenerationFigures):
            generation = GenerationFigures(**(generation or {"enabled": False}))
        self.generation = generation
        self.timings: dict[str, float] = {}

    # --- Lightning hook -------------------------------------------------------------------------
    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "split_tensors") or not datamodule.split_size("test"):
            log.warning(
                "evaluation suite skipped: the datamodule offers no test split to score "
                "(split_size('test') > 0 and split_tensors(); docs/how-to/own-data.md)"
            )
            return
        test, train = (DatamoduleSplit(datamodule, name) for name in ("test", "train"))
        if not len(train):
            log.info("probes skipped: the datamodule offers no train split to fit them on")
        classes = getattr(datamodule, "classes", None)
        data_dir = getattr(datamodule, "data_dir", None)
        cache = None
        if self.pca_cache and data_dir is not None:
            cache = PCABaselineCache(Path(data_dir) / "cache" / "pca_baselines")
        metrics, images = self.evaluate(
            pl_module, test, train if len(train) else None, classes, cache
        )
        if self.generation.enabled:
            with self._timed("generation"):
                gen_metrics, draws = self.generation_figures(
                    pl_module, test, train, None if data_dir is None else Path(data_dir)
                )
            metrics.update(gen_metrics)
            if self.images:
                images.update(
                    {f"samples_{k}": make_grid(v, nrow=8, pad_value=1.0) for k, v in draws.items()}
                )
        # under DDP every process scores the whole test set with the same seeded generators, so
        # the figures are equal; synced with max (exact for equal values) as the model's means are
        pl_module.log_dict(
            {f"test/{k}": v for k, v in metrics.items()}, sync_dist=True, reduce_fx="max"
        )
        if self.images and trainer.is_global_zero:
            with self._timed("save_figures"):
                self.save(images, Path(trainer.default_root_dir) / "images", trainer)

    # --- the figures ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self,
        model: pl.LightningModule,
        test: Split,
        train: Split | None = None,
        classes: list[int] | None = None,
        pca_cache: PCABaselineCache | None = None,
    ) -> tuple[dict[str, float], Images]:
        """All figures for `model` on `test` (probes fit on `train`); scalars and images.

        `pca_cache`: where the PCA baseline's figures are reused from (None: computed)."""
        self.timings = {}
        was_training = model.training
        model.eval()
        with self._timed("encode"):
            x, y = self._tensors(test, None, model.device)
            metrics: dict[str, float] = {"likelihood_on_binarized": float(_is_binary(x))}
            is_vae = isinstance(model, HasPosterior)
            if is_vae:
                posterior = zip(*self._map(model.posterior, x), strict=True)
                mu, logvar = (torch.cat(p) for p in posterior)
            else:
                log.info(
                    "likelihood figures (iw_nll, active_units, mutual_info) skipped: %s has no "
                    "posterior(x)",
                    type(model).__name__,
                )
                mu, logvar = torch.cat(self._map(model.encode, x)), None
        if isinstance(model, HasCodeIndices):  # a VQ code: its rate and codebook use
            metrics.update(codebook_figures(torch.cat(self._map(model.code_indices, x)), model.k))
        if is_vae:
            metrics.update(self._latent_figures(model, x, mu, logvar))
            self._warn_about_likelihood(model, metrics["likelihood_on_binarized"])
        if train is not None:
            metrics.update(self._probes(model, train, x, mu, y, pca_cache))
        normal = classes is not None and torch.isin(y, torch.tensor(classes, device=y.device)).all()
        if normal:
            log.info(
                "auroc skipped: data.classes=%s holds every test digit, none is anomalous", classes
            )
        elif classes is None:
            log.info("auroc skipped: the datamodule's classes is null (no normal class)")
        else:
            with self._timed("anomaly"):
                g = self._generator(model, Stream.ANOMALY)
                scores = torch.cat(
                    self._map(lambda b: anomaly_scores(model, b, self.elbo_samples, g), x)
                )
                metrics["auroc"] = one_class_auroc(scores, y, classes)
        with self._timed("figures"):
            images = self._figures(model, x, y, mu, logvar) if self.images else {}
        model.train(was_training)
        return metrics, images

    @torch.no_grad()
    def generation_figures(
        self, model: pl.LightningModule, test: Split, train: Split, data_dir: Path | None
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        """`eval.generation`'s figures (`aelab.callbacks.generation_figures`): the reference
        and held-out real images are two disjoint fixed subsets of the test split; the feature
        network and the samplers are fit on the training split."""
        gen = self.generation
        was_training = model.training
        model.eval()
        if not len(train):
            log.info("generation figures (gen/*) skipped: the datamodule has no train split")
            return {}, {}
        train_x, train_y = self._tensors(
            train, gen.feature_train_size, model.device, name="generation.feature_train_size"
        )
        x, y = self._tensors(test, None, model.device)
        if gen.features == "digits" and tuple(x.shape[1:]) != (1, 28, 28):
            log.info(
                "generation figures (gen/*) skipped: the digit-feature network takes 1 x 28 x 28 "
                "images, these are %s (eval.generation.features=inception for other images)",
                " x ".join(map(str, x.shape[1:])),
            )
            return {}, {}
        if gen.features == "digits" and (train_y.unique().numel() < 2 or (train_y < 0).any()):
            log.info(
                "generation figures (gen/*) skipped: the training split has no digit labels to "
                "train the feature network on (eval.generation.features=inception needs none)"
            )
            return {}, {}
        cache_dir = None if data_dir is None else data_dir / "cache" / "featurenet"
        with self._timed("generation_features"):
            features, acc = gen.extractor(
                (train_x.cpu(), train_y.cpu()), (x.cpu(), y.cpu()), cache_dir, self.seed
            )
            if isinstance(features, torch.nn.Module):
                features = features.to(model.device)
        # a fixed shuffle, so the two halves are alike (the test split may be sorted by class)
        order = torch.randperm(
            len(x), generator=torch.Generator().manual_seed(self._seed(Stream.GENERATION_HALVES))
        )
        half = len(order) // 2
        fit_x = train_x[self._subset(len(train_x), gen.fit_size, Stream.GENERATION_FIT)]
        metrics, draws = gen.scores(
            model, features, fit_x, x[order[:half]], x[order[half:]], self.seed
        )
        if acc is not None:
            metrics["gen/feature_net_acc"] = acc
        model.train(was_training)
        return metrics, draws

    @contextlib.contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - start

    def _latent_figures(
        self, model: pl.LightningModule, x: Tensor, mu: Tensor, logvar: Tensor
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._timed("iw_bound"):
            idx = self._subset(len(x), self.iw_images, Stream.IW, name="iw_images")
            g = self._generator(model, Stream.IW)
            log_px = self._map(lambda b: iw_log_likelihood(model, b, self.iw_samples, g), x[idx])
            out["iw_nll"] = -float(torch.cat(log_px).double().mean())
            out["iw_nll_bits_per_dim"] = bits_per_dim(out["iw_nll"], x[0].numel())
        with self._timed("active_units"):
            out["active_units"] = float(active_units(mu, self.active_threshold))
        with self._timed("mutual_info"):
            outer = self._subset(len(x), self.mi_images, Stream.MI, name="mi_images").to(mu.device)
            g = self._generator(model, Stream.MI)
            out["mutual_info"] = mutual_information(mu, logvar, g, outer)
        if getattr(model, "log_prior", None) is not None:  # the split's dim-wise KL is to N(0, I)
            log.info("kl decomposition skipped: %s has a prior of its own", type(model).__name__)
            return out
        with self._timed("kl_decomposition"):  # Chen et al.'s three parts of the KL
            outer = self._subset(len(x), self.tc_images, Stream.TC, name="tc_images")
            out.update(kl_decomposition(mu, logvar, self._generator(model, Stream.TC), outer))
        return out

    def _probes(
        self,
        model: pl.LightningModule,
        train: Split,
        x: Tensor,
        z: Tensor,
        y: Tensor,
        pca_cache: PCABaselineCache | None = None,
    ) -> dict[str, float]:
        train_x, train_y = self._tensors(
            train, self.probe_train_size, model.device, name="probe_train_size"
        )
        if train_y.unique().numel() < 2:
            log.info("probes skipped: the training split holds one class, nothing to tell apart")
            return {}
        with self._timed("probes_encode"):
            train_z = torch.cat(self._map(model.encode, train_x))

        def arrays(z: Tensor, x: Tensor, y: Tensor) -> tuple:
            return z.cpu().numpy(), x.flatten(1).cpu().numpy(), y.cpu().numpy()

        train_arrays, test_arrays = arrays(train_z, train_x, train_y), arrays(z, x, y)
        return probe_scores(train_arrays, test_arrays, self.knn_k, pca_cache, self.timings)

    def _figures(
        self, model: pl.LightningModule, x: Tensor, y: Tensor, mu: Tensor, logvar: Tensor | None
    ) -> Images:
        def decode(z: Tensor) -> Tensor:
            return model.decode(z).sigmoid()

        var = mu.var(0) + (logvar.exp().mean(0) if logvar is not None else 0.0)
        center, scale = mu.mean(0), var.sqrt()
        pick = self._subset(len(x), 16, Stream.IMAGES)
        pairs = len(pick) // 2
        a, b = pick[:pairs], pick[pairs : 2 * pairs]
        out: Images = {
            "interpolations": generation.interpolations(decode, mu[a], mu[b], x[a], x[b]),
            "traversals": generation.traversals(decode, mu[pick[0]], center, scale),
        }
        if isinstance(model, CanSample):
            samples = model.sample(64, generator=self._generator(model, Stream.PRIOR_SAMPLES))
            out["prior_samples"] = make_grid(samples.cpu(), nrow=8, pad_value=1.0)
        elif isinstance(model, HasCodeIndices):
            log.info("prior_samples skipped: not meaningful for a uniform code prior (VQ-VAE)")
        else:
            log.info(
                "prior_samples figure skipped: %s has no sample(n, generator)", type(model).__name__
            )
        if mu.shape[1] == 2:
            out["manifold"] = generation.manifold(decode, center, scale)
            out["latent_scatter"] = generation.latent_scatter(mu, y)
        else:
            log.info(
                "manifold and latent_scatter figures skipped: they need model.latent_dim=2 "
                "(it is %d)",
                mu.shape[1],
            )
        return out

    def _warn_about_likelihood(self, model: pl.LightningModule, binarized: float) -> None:
        if not binarized:
            log.warning(
                "likelihood figures (test/neg_elbo, test/iw_nll) are computed on grey levels: a "
                "Bernoulli likelihood of non-binary pixels is not comparable with published "
                "binarized-MNIST results (train with data.binarize=dynamic)"
            )
        if model.recon_loss != "bce":
            log.warning(
                "recon_loss=%s: test/iw_nll and test/neg_elbo are a squared-error energy, not "
                "a normalised log-likelihood",
                model.recon_loss,
            )

    # --- output ---------------------------------------------------------------------------------
    @staticmethod
    def save(images: Images, folder: Path, trainer: pl.Trainer | None = None) -> None:
        """PNG files `gen_<name>.png` in `folder`; TensorBoard `generation/<name>` when logged."""
        folder.mkdir(parents=True, exist_ok=True)
        loggers = trainer.loggers if trainer is not None else []
        tb = next((lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
        step = trainer.global_step if trainer is not None else 0
        for name, image in images.items():
            if isinstance(image, Figure):
                image.savefig(folder / f"gen_{name}.png")
                if tb is not None:
                    tb.add_figure(f"generation/{name}", image, global_step=step)
            else:
                save_image(image, folder / f"gen_{name}.png")
                if tb is not None:
                    tb.add_image(f"generation/{name}", image, global_step=step)

    # --- data -----------------------------------------------------------------------------------
    def _subset(self, n: int, size: int | None, stream: Stream, name: str = "") -> Tensor:
        """A fixed random choice of `size` indices out of n (all of them, in order, for None or
        a size over n: the budget `eval.<name>` is then said to be clipped)."""
        if size is not None and size > n and name:
            log.info("eval.%s=%d exceeds the %d images there are: all are used", name, size, n)
        if size is None or size >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self._seed(stream))
        return torch.randperm(n, generator=g)[:size]

    def _tensors(
        self, split: Split, size: int | None, device: torch.device, name: str = ""
    ) -> tuple[Tensor, Tensor]:
        """Images in [0, 1] and labels; a dynamically binarized split gets one fixed draw."""
        idx = self._subset(len(split), size, Stream.TEST_SUBSET, name=name)
        x, y = split.tensors(idx, seed=self._seed(Stream.BINARIZED_DRAW))
        return x.to(device), y.to(device)

    def _map(self, fn: Callable[[Tensor], object], x: Tensor) -> list:
        return [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]

    def _seed(self, stream: Stream) -> int:
        return derive_seed(self.seed, stream)

    def _generator(self, model: pl.LightningModule, stream: Stream) -> torch.Generator:
        return self._generator_on(model.device, stream)

    def _generator_on(self, device: torch.device, stream: Stream) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self._seed(stream))


def _is_binary(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())
