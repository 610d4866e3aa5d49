"""The probabilistic pieces every model and estimator shares: the KL to the prior N(0, I), the
reparameterisation, the log-densities of a diagonal Gaussian, and the reconstruction terms as
negative log-likelihoods.

Conventions: images are B x C x H x W (MNIST: B x 1 x 28 x 28) with targets in [0, 1]; decoders
output logits of that shape; a posterior q(z | x) = N(mu, diag(exp(logvar))) is given by `mu` and
`logvar`, each B x latent_dim. Every per-image figure is in nats, summed (not averaged) over
pixels and latent dimensions, so a reconstruction term and a KL add up to the negative ELBO
(Kingma & Welling 2014, "Auto-Encoding Variational Bayes", eq. 10).

Imports torch only, so models and metrics both build on it without importing each other.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from aelab import vmapped

RECON_LOSSES = ("bce", "mse")  # `model.recon_loss`: Bernoulli or Gaussian likelihood
LOG_2PI = math.log(2 * math.pi)


# --- the KL term and the reparameterisation --------------------------------------------------
def kl_standard_normal_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for each image and latent dimension, in nats.

    (mu^2 + sigma^2 - 1 - log sigma^2) / 2: the negative of the KL part of Kingma & Welling 2014,
    eq. 10 (derived in their appendix B), dimension by dimension. Shape like mu (B x latent_dim).
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z | x) || N(0, I)) per image, in nats: shape (B,) for mu, logvar of B x latent_dim.

    The rate of a VAE; the sum over dimensions of `kl_standard_normal_per_dim`.
    """
    return kl_standard_normal_per_dim(mu, logvar).sum(1)


def reparameterize_with_eps(
    mu: Tensor,
    logvar: Tensor,
    generator: torch.Generator | None = None,
    samples: int | None = None,
) -> tuple[Tensor, Tensor]:
    """z = mu + sigma * eps with eps ~ N(0, I), and that eps (Kingma & Welling 2014, eq. 10).

    The sample is a differentiable function of mu and logvar (B x latent_dim), so gradients flow
    through it. `samples=None`: one z per image, shape like mu; `samples=k`: k per image, shape
    (k, *mu.shape). eps is drawn from `generator` (else torch's global one) on mu's device and
    dtype. eps is returned beside z for `log_normal(..., eps=eps)`, which then needs no division.
    """
    shape = mu.shape if samples is None else (samples, *mu.shape)
    eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return reparameterize_given(mu, logvar, eps), eps


def reparameterize_given(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + sigma * eps for eps drawn beforehand (`reparameterize_with_eps` draws it): eps of
    mu's shape, or (k, *mu.shape) for k samples per image."""
    return mu + eps * (0.5 * logvar).exp()


def reparameterize(
    mu: Tensor,
    logvar: Tensor,
    generator: torch.Generator | None = None,
    samples: int | None = None,
) -> Tensor:
    """z ~ N(mu, exp(logvar)) by reparameterisation: `reparameterize_with_eps` without eps."""
    return reparameterize_with_eps(mu, logvar, generator, samples)[0]


# --- log-densities (the importance-weighted bound's log p(z) and log q(z | x)) ------------------
def log_normal(z: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), in nats, summed over the last (latent) dimension.

    z: (..., latent_dim), broadcast against mu and logvar; the result has z's shape less its last
    dimension. `eps`: (z - mu) / sigma when the caller drew z as mu + sigma * eps (exact, and
    no division).
    """
    if eps is None:
        eps = (z - mu) * (-0.5 * logvar).exp()
    return -0.5 * (eps.square() + logvar + LOG_2PI).sum(-1)


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I), in nats, summed over the last (latent) dimension: shape z.shape[:-1]."""
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def log_weights(
    log_px_z: Tensor, z: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor | None = None
) -> Tensor:
    """Importance weights log w = log p(x | z) + log N(z; 0, I) - log q(z | x), in nats
    (Burda, Grosse & Salakhutdinov 2016, eq. 8).

    log_px_z: (k, B); z, eps: (k, B, latent_dim); mu, logvar: (B, latent_dim). Returns (k, B).
    """
    return log_px_z + log_standard_normal(z) - log_normal(z, mu, logvar, eps)


def iw_bound(log_w: Tensor) -> Tensor:
    """The k-sample bound log (1/k) sum_i w_i per image (Burda et al. 2016, eq. 8), in nats,
    from log weights of shape (k, B): shape (B,). k = 1 is the ELBO on that sample."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


# --- reconstruction terms: -log p(x | z) per image -------------------------------------------
class _BCEWithLogitsCPU(torch.autograd.Function):
    """Elementwise BCE with logits, as max(l, 0) - l*t + log(1 + exp(-|l|)), for CPU tensors.

    torch's CPU `binary_cross_entropy_with_logits` goes through `log_sigmoid`, whose `log1p` is
    scalar code (a measurable share of a small VAE's step: docs, Performance); `log` is
    vectorised, and `log(1 + u)` for u = exp(-|l|) in (0, 1] is within a float's rounding of
    `log1p(u)`. The gradient is the usual sigmoid(l) - t, computed once in backward. Under a
    stack's `torch.func.vmap` (`aelab.stacked`) `bce_with_logits` applies it once to the members'
    storage (`aelab.vmapped`); its `vmap` rule, elementwise, serves where that way is closed.
    """

    @staticmethod
    def forward(logits: Tensor, target: Tensor) -> Tensor:
        softplus_neg_abs = logits.abs().neg_().exp_().add_(1.0).log_()
        return logits.clamp_min(0.0).sub_(logits * target).add_(softplus_neg_abs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, int | None], logits: Tensor, target: Tensor
    ) -> tuple[Tensor, int]:
        """Elementwise: both operands with the vmapped dimension first, the function applied
        to them as they are."""
        logits, target = (
            t.movedim(d, 0) if d is not None else t.expand(info.batch_size, *t.shape)
            for t, d in zip((logits, target), in_dims, strict=True)
        )
        return _BCEWithLogitsCPU.apply(logits, target), 0

    @staticmethod
    @once_differentiable  # nothing in aelab differentiates a loss twice; fail loudly if it does
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        logits, target = ctx.saved_tensors
        return logits.sigmoid().sub_(target).mul_(grad), None


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """-log Bernoulli(target | sigmoid(logits)) per pixel, in nats: shape like logits.

    torch's own kernel off the CPU; on it the vectorised `_BCEWithLogitsCPU` (equal within a
    float's rounding). Logits below float32 (bf16 under mixed precision) are scored in float32.
    Raises RuntimeError on a second derivative on the CPU path (none is needed).
    """
    if logits.device.type != "cpu" or target.requires_grad:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # as autocast does for torch's kernel: bf16 logits (mixed precision) are scored in float32
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits, target = logits.to(dtype), target.to(dtype)
    found = vmapped.unbatched(logits, target)
    if found is not None:  # a stack's members (aelab.stacked): once on vmap's storage
        (logits, target), level = found
        return vmapped.batched(vmapped.outside(_BCEWithLogitsCPU.apply, logits, target), level)
    return _BCEWithLogitsCPU.apply(logits, target)


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """-log p(x | z) for a Bernoulli per pixel (Kingma & Welling 2014, appendix C.1), in nats per
    image: logits and targets in [0, 1] of shape B x 1 x 28 x 28 (any B x ...) -> shape (B,).

    Grey-level targets give the cross-entropy, not a normalised likelihood of those images.
    """
    return bce_with_logits(logits, target).flatten(1).sum(1)


def gaussian_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Squared error of sigmoid(logits) against the target, summed over pixels: shape (B,).

    The Gaussian negative log-likelihood with mean sigmoid(logits) and variance 1/2 per pixel
    (Kingma & Welling 2014, appendix C.2, with a fixed variance), in nats per image, less its
    constant (D/2) log(pi) for D pixels: an energy, not a normalised log-likelihood.
    """
    return (logits.sigmoid() - target).square().flatten(1).sum(1)


def recon_nll(kind: str, logits: Tensor, target: Tensor) -> Tensor:
    """The reconstruction term -log p(x | z) of `kind` in RECON_LOSSES ("bce": `bernoulli_nll`,
    "mse": `gaussian_nll`), nats per image: logits, target B x 1 x 28 x 28 -> shape (B,).

    Raises ValueError for another kind (models check `recon_loss` when they are built).
    """
    if kind == "bce":
        return bernoulli_nll(logits, target)
    if kind == "mse":
        return gaussian_nll(logits, target)
    raise ValueError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {kind!r}")
