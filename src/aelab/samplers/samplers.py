"""Samplers: `fit(model, train_images)` once, then `sample(model, n, generator)` gives n images
(n x C x H x W intensities in [0, 1]).

- `PriorSampler`: z ~ N(0, I), the VAE family's prior.
- `GMMSampler`: a Gaussian mixture fitted on the training codes (scikit-learn's
  GaussianMixture), so any model with continuous codes generates (as pythae's post-hoc GMM).
- `EmpiricalCodeSampler`: for the VQ-VAE, each position's code index drawn independently from
  its empirical distribution over the training images - a weak baseline (it ignores the
  dependence between positions that a learned prior, e.g. PixelCNN, would model).
"""

from __future__ import annotations

import torch
from torch import Tensor

from aelab.checks import ConfigError, check_choice, check_int


class Sampler:
    """Base: `name` labels its figures (`gen/<name>/fid`)."""

    name = "sampler"

    def fit(self, model, images: Tensor) -> Sampler:  # noqa: ANN001 - any aelab model
        return self

    @torch.no_grad()
    def sample(self, model, n: int, generator: torch.Generator | None = None) -> Tensor:  # noqa: ANN001
        raise NotImplementedError


@torch.no_grad()
def _codes(model, images: Tensor, batch_size: int = 1000) -> Tensor:  # noqa: ANN001
    model.eval()
    return torch.cat([model.encode(x.to(model.device)) for x in images.split(batch_size)]).cpu()


class PriorSampler(Sampler):
    """z ~ N(0, I) of size latent_dim, decoded (a model with `prior_codes(n, generator)`, the
    VampPrior VAE: its own prior's codes). Meant for the VAE family (their prior); for a
    deterministic AE it runs but its codes need not be near N(0, I)."""

    name = "prior"

    @torch.no_grad()
    def sample(self, model, n: int, generator: torch.Generator | None = None) -> Tensor:  # noqa: ANN001
        check_int("n", n, 1)
        prior_codes = getattr(model, "prior_codes", None)  # a learned prior (the VampPrior)
        if prior_codes is not None:
            return model.decode(prior_codes(n, generator)).sigmoid()
        z = torch.randn(n, model.latent_dim, generator=generator)
        return model.decode(z.to(model.device)).sigmoid()


class GMMSampler(Sampler):
    """A Gaussian mixture of `n_components` with `covariance_type` (full, tied, diag,
    spherical) fitted on the training codes (B x latent_dim) by scikit-learn, seeded by `seed`.
    Raises ConfigError for a bad count or type, and for a VQ-VAE (discrete codes)."""

    name = "gmm"

    def __init__(
        self, n_components: int = 10, covariance_type: str = "full", seed: int = 0
    ) -> None:
        self.n_components = check_int("sampler.n_components", n_components, 1)
        self.covariance_type = check_choice(
            "sampler.covariance_type", covariance_type, ("full", "tied", "diag", "spherical")
        )
        self.seed = seed
        self.gmm = None

    def fit(self, model, images: Tensor) -> GMMSampler:  # noqa: ANN001
        from sklearn.mixture import GaussianMixture

        if hasattr(model, "code_indices"):
            raise ConfigError("sampler", "gmm", "prior or empirical_codes for a VQ-VAE")
        codes = _codes(model, images).double().numpy()
        check_int("sampler.n_components", self.n_components, 1, len(codes))
        self.gmm = GaussianMixture(
            self.n_components, covariance_type=self.covariance_type, random_state=self.seed
        ).fit(codes)
        return self

    @torch.no_grad()
    def sample(self, model, n: int, generator: torch.Generator | None = None) -> Tensor:  # noqa: ANN001
        check_int("n", n, 1)
        if self.gmm is None:
            raise RuntimeError("GMMSampler.sample before fit")
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        self.gmm.random_state = seed  # sklearn's sample draws from random_state
        z, _ = self.gmm.sample(n)
        z = torch.as_tensor(z, dtype=torch.float32)[torch.randperm(n, generator=generator)]
        return model.decode(z.to(model.device)).sigmoid()


class EmpiricalCodeSampler(Sampler):
    """VQ-VAE only: per position, the code index drawn from its empirical frequency over the
    training images (independent positions: the weak baseline). Raises ConfigError for a model
    without `code_indices`."""

    name = "empirical_codes"

    def fit(self, model, images: Tensor) -> EmpiricalCodeSampler:  # noqa: ANN001
        if not hasattr(model, "code_indices"):
            raise ConfigError("sampler", "empirical_codes", "prior or gmm for continuous codes")
        model.eval()
        with torch.no_grad():
            idx = torch.cat(
                [model.code_indices(x.to(model.device)).cpu() for x in images.split(1000)]
            )
        # counts[p, k]: how often position p took code k
        self.probs = torch.nn.functional.one_hot(idx, model.k).double().sum(0)
        self.probs /= self.probs.sum(1, keepdim=True)
        return self

    @torch.no_grad()
    def sample(self, model, n: int, generator: torch.Generator | None = None) -> Tensor:  # noqa: ANN001
        check_int("n", n, 1)
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator).T  # n x P
        z = model.codebook.detach().cpu()[idx].flatten(1)
        return model.decode(z.to(model.device)).sigmoid()
