"""Estimators on a VAE: the importance-weighted bound on log p(x), the negative ELBO, the rate
(KL) per latent dimension, active units and the mutual information I(x; z) under the aggregate
posterior.

All take a model with `posterior(x) -> (mu, logvar)`, `decode(z) -> logits` and `recon_loss`
(aelab's VAE), and score whatever input they are given (the suite passes clean test images).
Per-image figures are in nats; `log p(x | z)` is the model's own reconstruction term, so the
bounds here and the `neg_elbo` the model logs are on the same scale. The densities, the KL and
the reparameterisation are `aelab.losses`'.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from aelab.losses import (
    LOG_2PI,
    kl_standard_normal,
    kl_standard_normal_per_dim,
    log_normal,
    log_weights,
    recon_nll,
    reparameterize,
    reparameterize_with_eps,
)

MAX_DECODED = 2**14  # images decoded per forward pass: bounds memory whatever K and the batch


class LatentVariableModel(Protocol):
    recon_loss: str

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor) -> Tensor: ...


def _log_px_given_z(model: LatentVariableModel, z: Tensor, x: Tensor) -> Tensor:
    """log p(x | z) for z of shape (k, batch, d): shape (k, batch)."""
    k, batch = z.shape[:2]
    logits = model.decode(z.flatten(0, 1))
    target = x.expand(k, *x.shape).flatten(0, 1)
    return -recon_nll(model.recon_loss, logits, target).view(k, batch)


def log_importance_weights(
    model: LatentVariableModel, x: Tensor, k: int, generator: torch.Generator | None = None
) -> Tensor:
    """log w_i = log p(x, z_i) - log q(z_i | x), z_i ~ q(z | x): shape (k, batch); p(z) is
    the model's `log_prior(z)` where it has one, else N(0, I)."""
    mu, logvar = model.posterior(x)
    z, eps = reparameterize_with_eps(mu, logvar, generator, samples=k)
    log_px_z = _log_px_given_z(model, z, x)
    log_prior = getattr(model, "log_prior", None)
    if log_prior is None:
        return log_weights(log_px_z, z, mu, logvar, eps)
    # a learned prior (the VampPrior): log p(z) is the model's, not N(0, I)
    return log_px_z + log_prior(z) - log_normal(z, mu, logvar, eps)


def iw_log_likelihood(
    model: LatentVariableModel, x: Tensor, k: int, generator: torch.Generator | None = None
) -> Tensor:
    """The importance-weighted lower bound on log p(x) (Burda et al. 2016), per image, nats.

    log (1/K) sum_i w_i; K=1 is the ELBO, and the bound tightens towards log p(x) as K grows.
    The K samples are drawn in chunks, so K=5000 fits in memory.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    chunk = max(1, MAX_DECODED // x.shape[0])
    parts = []
    for start in range(0, k, chunk):
        log_w = log_importance_weights(model, x, min(chunk, k - start), generator)
        parts.append(torch.logsumexp(log_w, dim=0))
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(k)


def neg_elbo_per_image(
    model: LatentVariableModel,
    x: Tensor,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """-ELBO = E_q[-log p(x | z)] + KL(q(z | x) || N(0, I)) per image: the recon term averaged
    over `samples` draws, the KL analytic (as the model's own `neg_elbo`); against a model's
    `log_prior(z)` where it has one, the KL estimated on those draws."""
    mu, logvar = model.posterior(x)
    z = reparameterize(mu, logvar, generator, samples)
    recon = -_log_px_given_z(model, z, x).mean(0)
    log_prior = getattr(model, "log_prior", None)
    if log_prior is None:
        return recon + kl_standard_normal(mu, logvar)
    # a learned prior: the KL on the same samples, as the model's own `kl`
    return recon + (log_normal(z, mu, logvar) - log_prior(z)).mean(0)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """The rate split by latent dimension, averaged over images: shape (d,). Sums to the KL."""
    return kl_standard_normal_per_dim(mu, logvar).mean(0)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Burda et al.'s count: dimensions whose posterior mean varies with x, Cov_x(E_q[z_j]) > t.

    A collapsed dimension ignores its input (q(z_j | x) = prior), so its mean never moves.
    """
    return int((mu.var(dim=0) > threshold).sum())


def mutual_information(
    mu: Tensor,
    logvar: Tensor,
    generator: torch.Generator | None = None,
    outer: Tensor | None = None,
    chunk: int = 1024,
) -> float:
    """I(x; z) in nats under q(x, z) = p_data(x) q(z | x), over the given N images.

    I = E_x E_{q(z|x)} [log q(z | x) - log q(z)] with the aggregate posterior
    q(z) = (1/N) sum_n q(z | x_n), one z per image (Hoffman & Johnson 2016; the estimator of
    He et al. 2019). It cannot exceed log N; a posterior equal for every x gives 0. `outer`
    (indices) averages the expectation over x on a subset, the aggregate still over all N.
    Pairwise densities are matrix products in float64 (in chunks of rows).
    """
    mu, logvar = mu.double(), logvar.double()
    n = mu.shape[0]
    rows = torch.arange(n, device=mu.device) if outer is None else outer.to(mu.device)
    z, eps = reparameterize_with_eps(mu[rows], logvar[rows], generator)
    inv_var = (-logvar).exp()
    # log N(z_i; mu_n, var_n) = -0.5 * sum_j (z_ij^2 / v_nj - 2 z_ij mu_nj / v_nj + c_nj)
    const = (mu.square() * inv_var + logvar + LOG_2PI).sum(1)
    log_qz = torch.cat(
        [
            torch.logsumexp(-0.5 * (zc.square() @ inv_var.T - 2 * zc @ (mu * inv_var).T + const), 1)
            for zc in z.split(chunk)
        ]
    )
    log_qzx = log_normal(z, mu[rows], logvar[rows], eps=eps)
    return float((log_qzx - log_qz).mean()) + math.log(n)


def bits_per_dim(nats_per_image: float, n_dims: int) -> float:
    return nats_per_image / (n_dims * math.log(2))
