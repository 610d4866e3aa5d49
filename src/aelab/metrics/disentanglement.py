"""The KL of a VAE split three ways (Chen et al. 2018, "Isolating sources of disentanglement"):

E_x KL(q(z|x) || p(z)) = I(x; z) + TC(z) + sum_j KL(q(z_j) || p(z_j)),

index-code mutual information, total correlation of the aggregate posterior
q(z) = E_x q(z|x), and dimension-wise KL, all in nats per image. Each is an expectation over
z ~ q(z|x) of a difference of log densities; the densities of the aggregate q(z) and of its
marginals q(z_j) are what must be estimated. Two estimators here:

- `minibatch_decomposition`: from one training batch, with the dataset size N, as in Chen et
  al.'s Appendix C (minibatch-weighted or stratified sampling): per image, differentiable,
  what the beta-TCVAE trains on.
- `kl_decomposition`: with the aggregate over every image given (the test set), for the
  evaluation suite. It is exact up to the one sample z per image.

All take posteriors N(mu, exp(logvar)) with diagonal covariance: mu, logvar of shape (N, d).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aelab.losses import LOG_2PI, log_normal, log_standard_normal, reparameterize_with_eps

ESTIMATORS = ("mws", "mss")


def log_normal_matrix(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_ij; mu_nj, exp(logvar_nj)) for every sample i, posterior n and dimension j.

    z: (M, d); mu, logvar: (N, d). Returns (M, N, d)."""
    z, mu, logvar = z[:, None], mu[None], logvar[None]
    return -0.5 * ((z - mu).square() * (-logvar).exp() + logvar + LOG_2PI)


def _terms(log_qz_x: Tensor, log_qz: Tensor, log_prod: Tensor, z: Tensor) -> dict[str, Tensor]:
    log_pz = log_standard_normal(z)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_prod, "dim_kl": log_prod - log_pz}


def minibatch_decomposition(
    z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int, estimator: str = "mws"
) -> dict[str, Tensor]:
    """`mi`, `tc`, `dim_kl` per image (shape (M,), nats) for z_i ~ q(z | x_i) of a batch of M.

    q(z_i) and q(z_ij) are estimated from the batch's M posteriors (Chen et al. 2018, App. C):
    - `mws`, minibatch-weighted sampling: log q(z_i) ~ log sum_m q(z_i | x_m) - log(N M), the
      paper's formula. It is biased: every value of log q is off by about -log N (the term
      -log N per dimension in the marginals makes TC read high by about (d - 1) log N; MI and
      dim_kl move the other way). The offsets are constants, so the gradients the loss takes
      are unbiased in that sense; the logged TC is not the aggregate's TC.
    - `mss`, stratified: the image's own posterior at weight 1/N, the M - 1 others standing for
      the other N - 1 images at weight (N - 1) / (N (M - 1)) each: a consistent estimate.
    The three terms sum to log q(z_i | x_i) - log p(z_i), whichever the estimator.
    """
    m = z.shape[0]
    mat = log_normal_matrix(z, mu, logvar)  # (M, M, d)
    log_qz_x = mat.diagonal(dim1=0, dim2=1).sum(0)  # sample i under its own posterior
    if estimator == "mws" or m == 1:
        norm = math.log(dataset_size * m)
        log_qz = torch.logsumexp(mat.sum(2), dim=1) - norm
        log_prod = (torch.logsumexp(mat, dim=1) - norm).sum(1)
    elif estimator == "mss":
        n = max(dataset_size, m)
        own, other = -math.log(n), math.log((n - 1) / (n * (m - 1)))
        log_w = torch.full((m, m), other, dtype=z.dtype, device=z.device)
        log_w.fill_diagonal_(own)
        log_qz = torch.logsumexp(log_w + mat.sum(2), dim=1)
        log_prod = torch.logsumexp(log_w[:, :, None] + mat, dim=1).sum(1)
    else:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return _terms(log_qz_x, log_qz, log_prod, z)


@torch.no_grad()
def kl_decomposition(
    mu: Tensor,
    logvar: Tensor,
    generator: torch.Generator | None = None,
    outer: Tensor | None = None,
    chunk: int = 32,
) -> dict[str, float]:
    """`index_code_mi`, `total_correlation`, `dimwise_kl` (nats per image) under the aggregate
    posterior of all N given images, one z ~ q(z | x_n) per image of `outer` (indices; all N
    by default). The (samples, N, d) log densities are float32 (float64 costs 3x the time, for
    differences of 1e-5 nats), `chunk` samples at a time: memory chunk * N * d * 4 bytes, time
    len(outer) * N * d.

    The three sum to the sampled E_x[log q(z|x) - log p(z)], whose mean is the KL; TC >= 0 and
    dimwise_kl >= 0 up to sampling error; index_code_mi <= log N.
    """
    n = mu.shape[0]
    rows = torch.arange(n, device=mu.device) if outer is None else outer.to(mu.device)
    mu, logvar = mu.float(), logvar.float()
    z, eps = reparameterize_with_eps(mu[rows], logvar[rows], generator)
    log_qz_x = log_normal(z, mu[rows], logvar[rows], eps)
    inv_var, const = (-logvar).exp(), -0.5 * (logvar + LOG_2PI)
    log_qz, log_prod = [], []
    for zc in z.split(chunk):
        mat = const - 0.5 * (zc[:, None] - mu[None]).square() * inv_var  # (chunk, N, d)
        log_qz.append(torch.logsumexp(mat.sum(2), dim=1) - math.log(n))
        log_prod.append((torch.logsumexp(mat, dim=1) - math.log(n)).sum(1))
    terms = _terms(log_qz_x, torch.cat(log_qz), torch.cat(log_prod), z)
    names = {"mi": "index_code_mi", "tc": "total_correlation", "dim_kl": "dimwise_kl"}
    return {names[k]: float(v.double().mean()) for k, v in terms.items()}
