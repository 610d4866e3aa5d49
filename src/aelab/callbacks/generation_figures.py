"""The generation figures of the test-time suite (`eval.generation`): FID, KID, precision and
recall of each sampler's draws, of the test reconstructions and of held-out real images (the
floor), in the feature space of a digit classifier (`aelab.metrics.features`).

Names: `gen/<sampler>/<score>`, `gen/recon/<score>`, `gen/floor/<score>` with score in fid,
kid_mean, kid_std, precision, recall (`aelab.metrics.fid.model_generation_scores`), and
`gen/feature_net_acc` (the feature network's test accuracy, in [0, 1]).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor

from aelab.checks import ConfigError, check_choice, check_int
from aelab.contract import CanSample, HasCodeIndices
from aelab.metrics.features import FeatureExtractor, FeatureNetCache
from aelab.metrics.fid import model_generation_scores
from aelab.samplers import EmpiricalCodeSampler, GMMSampler, PriorSampler, Sampler

log = logging.getLogger(__name__)

# `eval.generation.samplers` names -> the classes conf/sampler/<name>.yaml builds
SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (PriorSampler, GMMSampler, EmpiricalCodeSampler)
}
FEATURES = ("digits", "inception")


def inception_available() -> bool:
    """Whether torchmetrics' Inception features can be built (torch-fidelity installed)."""
    return importlib.util.find_spec("torch_fidelity") is not None


class GenerationFigures:
    """Settings of `eval.generation`, checked when built (before training).

    enabled: compute the figures; samplers: names of conf/sampler (prior, gmm, empirical_codes)
    or sampler configs / instances; n_samples: images per set (draws, reconstructions, held-out
    real images, test images); kid_subsets / kid_subset_size: KID's subsets; k: the neighbours
    of precision/recall (Kynkaanniemi et al. 2019 use 3); features: digits (the cached digit
    classifier) or inception (torchmetrics' InceptionV3, when torch-fidelity is installed;
    otherwise one warning and the digit features); feature_train_size: training images the
    digit classifier is trained on (null: all); feature_epochs: its epochs; fit_size: training
    images whose codes the samplers are fit on (null: all; the GMM's EM dominates the cost).
    Raises ConfigError for a value out of range or an unknown sampler name.
    """

    def __init__(
        self,
        enabled: bool = True,
        samplers: Sequence[Any] = ("prior", "gmm", "empirical_codes"),
        n_samples: int = 1000,
        kid_subsets: int = 10,
        kid_subset_size: int = 100,
        k: int = 3,
        features: str = "digits",
        feature_train_size: int | None = None,
        feature_epochs: int = 3,
        fit_size: int | None = 2000,
    ) -> None:
        self.enabled = bool(enabled)
        self.n_samples = check_int("eval.generation.n_samples", n_samples, 4)
        self.kid_subsets = check_int("eval.generation.kid_subsets", kid_subsets, 1)
        self.kid_subset_size = check_int(
            "eval.generation.kid_subset_size", kid_subset_size, 2, self.n_samples
        )
        self.k = check_int("eval.generation.k", k, 1, self.n_samples - 1)
        self.features = check_choice("eval.generation.features", features, FEATURES)
        self.feature_train_size = (
            None
            if feature_train_size is None
            else check_int("eval.generation.feature_train_size", feature_train_size, 10)
        )
        self.feature_epochs = check_int("eval.generation.feature_epochs", feature_epochs, 1)
        self.fit_size = (
            None if fit_size is None else check_int("eval.generation.fit_size", fit_size, 2)
        )
        self.samplers = [self._sampler(s) for s in samplers]
        if self.enabled and self.features == "inception" and not inception_available():
            log.warning(
                "eval.generation.features=inception: torch-fidelity is not installed (pip "
                "install torch-fidelity, and its Inception weights in the torch hub cache); "
                "the digit features are used"
            )
            self.features = "digits"

    @staticmethod
    def _sampler(spec: Any) -> Sampler:
        if isinstance(spec, Sampler):
            return spec
        if isinstance(spec, str):
            if spec not in SAMPLERS:
                raise ConfigError("eval.generation.samplers", spec, f"one of {sorted(SAMPLERS)}")
            return SAMPLERS[spec]()
        if isinstance(spec, Mapping) and "_target_" in spec:
            return instantiate(spec)
        raise ConfigError("eval.generation.samplers", spec, "a sampler name or config")

    def usable(self, model: Any) -> dict[str, Sampler]:
        """The samplers that can draw from `model`; one logged line per skipped one."""
        out: dict[str, Sampler] = {}
        discrete = isinstance(model, HasCodeIndices)
        for sampler in self.samplers:
            why = None
            if isinstance(sampler, PriorSampler) and not isinstance(model, CanSample):
                other = "empirical_codes" if discrete else "gmm"
                why = f"it has no sample(n, generator) (use {other})"
            elif isinstance(sampler, GMMSampler) and discrete:
                why = "its codes are discrete (use empirical_codes)"
            elif isinstance(sampler, EmpiricalCodeSampler) and not discrete:
                why = "it has no code indices (a VQ-VAE sampler)"
            if why:
                log.info("gen/%s skipped for %s: %s", sampler.name, type(model).__name__, why)
            else:
                out[sampler.name] = sampler
        return out

    def extractor(
        self,
        train: tuple[Tensor, Tensor],
        test: tuple[Tensor, Tensor],
        cache_dir: Path | None,
        seed: int,
    ) -> tuple[torch.nn.Module, float | None]:
        """The feature map (B x 1 x 28 x 28 -> B x D) and, for digits, its test accuracy."""
        if self.features == "inception":
            from torchmetrics.image.fid import NoTrainInceptionV3

            net = NoTrainInceptionV3("inception-v3-compat", features_list=["2048"])

            def inception(x: Tensor) -> Tensor:
                rgb = (x.expand(-1, 3, -1, -1) * 255).to(torch.uint8)
                return net(rgb).double()

            return inception, None  # type: ignore[return-value]
        cache = FeatureNetCache(
            cache_dir if cache_dir is not None else Path("."), seed, self.feature_epochs
        )
        if cache_dir is None:  # no data folder: trained, never written
            from aelab.metrics.features import accuracy, train_feature_net

            net = train_feature_net(*train, seed=seed, epochs=self.feature_epochs)
            acc = accuracy(net, *test)
        else:
            net, acc = cache.get(*train, test=test)
        return FeatureExtractor(net), acc

    def scores(
        self,
        model: Any,
        features: torch.nn.Module,
        fit_x: Tensor,
        test_x: Tensor,
        heldout_x: Tensor,
        seed: int,
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        """The figures (see the module docstring) and each sampler's first 64 draws."""
        samplers = self.usable(model)
        for sampler in samplers.values():
            sampler.fit(model, fit_x)
        n = min(self.n_samples, len(test_x), len(heldout_x))
        if n < self.n_samples:
            log.info("eval.generation.n_samples=%d clipped to the %d images there are",
                     self.n_samples, n)  # fmt: skip
        metrics = model_generation_scores(
            model,
            samplers,
            features,
            test_x,
            heldout_x,
            n_samples=n,
            kid_subsets=self.kid_subsets,
            kid_subset_size=min(self.kid_subset_size, n),
            seed=seed,
        )
        draws = {}
        for name, sampler in samplers.items():
            g = torch.Generator().manual_seed(seed)
            draws[name] = sampler.sample(model, 64, g).cpu()
        return metrics, draws
