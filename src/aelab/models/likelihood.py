"""Reconstruction losses as negative log-likelihoods per image, in nats.

The decoder outputs logits; `bce` reads them as a Bernoulli per pixel, `mse` reads the sigmoid of
them as the mean of a Gaussian. Summing over pixels (rather than averaging) keeps the VAE's
reconstruction and KL terms on the same per-image scale, as the ELBO requires.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

RECON_LOSSES = ("bce", "mse")


def per_image_bce(logits: Tensor, target: Tensor) -> Tensor:
    """-log Bernoulli(target | sigmoid(logits)), summed over pixels: shape (batch,)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce.flatten(1).sum(1)


def per_image_sse(logits: Tensor, target: Tensor) -> Tensor:
    """Squared error of sigmoid(logits), summed over pixels: shape (batch,).

    Equals the Gaussian negative log-likelihood with variance 1/2, up to a constant.
    """
    return (logits.sigmoid() - target).square().flatten(1).sum(1)


def recon_nll(kind: str, logits: Tensor, target: Tensor) -> Tensor:
    return per_image_bce(logits, target) if kind == "bce" else per_image_sse(logits, target)
