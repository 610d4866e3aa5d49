"""Sample-quality scores in a feature space: Frechet distance (FID), KID, precision/recall.

All take two feature matrices, real `a` (N x D) and generated `b` (M x D), as float tensors.
The feature network (`aelab.metrics.features`) maps B x 1 x 28 x 28 images to B x D.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from aelab.checks import ConfigError, check_int


def _check_features(a: Tensor, b: Tensor, least: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError("features", f"{tuple(a.shape)} vs {tuple(b.shape)}", "two N x D matrices")
    if min(len(a), len(b)) < least:
        raise ConfigError("n_samples", min(len(a), len(b)), f"at least {least} per set")


def frechet_distance_gaussians(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)), the squared 2-Wasserstein distance of
    two Gaussians (Dowson & Landau 1982; Heusel et al. 2017, eq. 6). Computed in float64 with
    scipy's `sqrtm` (its tiny imaginary part, from round-off, dropped)."""
    m1, m2 = mu1.double().cpu().numpy(), mu2.double().cpu().numpy()
    c1, c2 = cov1.double().cpu().numpy(), cov2.double().cpu().numpy()
    root = linalg.sqrtm(c1 @ c2)
    if np.iscomplexobj(root):
        root = root.real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(root))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """FID: the Frechet distance of Gaussians fitted to the features a (N x D) and b (M x D),
    unbiased covariances (as torchmetrics' FrechetInceptionDistance). Units: squared feature
    units. Raises ConfigError for fewer than 2 rows in a set or mismatched widths."""
    _check_features(a, b, 2)
    a, b = a.double(), b.double()
    return frechet_distance_gaussians(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def polynomial_mmd2_unbiased(a: Tensor, b: Tensor) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018, eq. 3
    and sec. 5): the mean off-diagonal k(a, a) + the same for b - 2 mean k(a, b)."""
    a, b = a.double(), b.double()
    d = a.shape[1]
    kaa, kbb, kab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    n, m = len(a), len(b)
    term_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    term_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return float(term_a + term_b - 2 * kab.mean())


def kernel_inception_distance(
    a: Tensor, b: Tensor, subsets: int = 10, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and standard deviation of `polynomial_mmd2_unbiased` over `subsets` random
    subsets of `subset_size` rows of each set (drawn without replacement from `seed`), as in
    Binkowski et al. 2018 and torchmetrics' KernelInceptionDistance.

    Raises ConfigError when subset_size exceeds a set's size or is below 2."""
    check_int("subsets", subsets, 1)
    _check_features(a, b, 2)
    check_int("subset_size", subset_size, 2, min(len(a), len(b)))
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor(
        [
            polynomial_mmd2_unbiased(
                a[torch.randperm(len(a), generator=g)[:subset_size]],
                b[torch.randperm(len(b), generator=g)[:subset_size]],
            )
            for _ in range(subsets)
        ],
        dtype=torch.float64,
    )
    std = float(values.std(unbiased=False)) if subsets > 1 else 0.0
    return float(values.mean()), std


def _kth_radius(x: Tensor, k: int) -> Tensor:
    """The distance of each row of x to its k-th nearest other row (N,)."""
    dist = torch.cdist(x, x)
    return dist.kthvalue(k + 1, dim=1).values  # +1: a row is its own 0-th neighbour


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, eqs. 1-2): precision is the
    share of `fake` rows inside the union of real k-NN balls, recall the share of `real` rows
    inside the union of fake k-NN balls. Both in [0, 1]. Raises ConfigError when k is not below
    a set's size."""
    _check_features(real, fake, 2)
    check_int("k", k, 1, min(len(real), len(fake)) - 1)
    real, fake = real.double(), fake.double()

    def covered(manifold: Tensor, probes: Tensor) -> float:
        radius = _kth_radius(manifold, k)
        inside = torch.cdist(probes, manifold) <= radius[None, :]
        return float(inside.any(dim=1).double().mean())

    return covered(real, fake), covered(fake, real)


def generation_scores(
    real: Tensor, fake: Tensor, *, kid_subsets: int, kid_subset_size: int, k: int = 3
) -> dict[str, float]:
    """`fid`, `kid_mean`, `kid_std`, `precision`, `recall` of `fake` against `real` features."""
    kid_mean, kid_std = kernel_inception_distance(
        real, fake, kid_subsets, min(kid_subset_size, len(real), len(fake))
    )
    precision, recall = precision_recall(real, fake, k)
    return {
        "fid": frechet_distance(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }


@torch.no_grad()
def model_generation_scores(
    model,  # noqa: ANN001 - any aelab model
    samplers: dict[str, object],
    features,  # noqa: ANN001 - B x 1 x 28 x 28 -> B x D (a FeatureExtractor)
    test_x: Tensor,
    heldout_x: Tensor,
    *,
    n_samples: int,
    kid_subsets: int = 10,
    kid_subset_size: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """The generation figures of one model against the first `n_samples` test images:
    `gen/<sampler>/<score>` for each fitted sampler's `n_samples` draws, `gen/recon/<score>`
    for the reconstructions of those test images, and `gen/floor/<score>` for `n_samples`
    held-out real images (the best a model can reach at this sample count). Scores as in
    `generation_scores`; FID in squared feature units. Raises ConfigError when a set holds
    fewer than `n_samples` images."""
    check_int("n_samples", n_samples, 4, min(len(test_x), len(heldout_x)))
    model.eval()
    kwargs = {"kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size}
    real = features(test_x[:n_samples].to(model.device)).cpu()
    out: dict[str, float] = {}
    sets = {
        "floor": heldout_x[:n_samples],
        "recon": model.reconstruct(test_x[:n_samples].to(model.device)),
    }
    for name, sampler in samplers.items():
        g = torch.Generator().manual_seed(seed)
        sets[name] = sampler.sample(model, n_samples, g)
    for name, images in sets.items():
        fake = features(images.to(model.device)).cpu()
        for key, value in generation_scores(real, fake, **kwargs).items():
            out[f"gen/{name}/{key}"] = value
    return out
