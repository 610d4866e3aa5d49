"""The sparse autoencoder: sigmoid code activations held near a small mean rho by a KL penalty
(Ng, "Sparse autoencoder", CS294A lecture notes, 2011)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from aelab.checks import ConfigError, check_float
from aelab.losses import recon_nll
from aelab.models.ae import Autoencoder

EPS = 1e-6  # keeps the KL finite when a unit is off (or on) for a whole batch


def bernoulli_kl(rho: float, rho_hat: Tensor) -> Tensor:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)) per unit, nats: shape like rho_hat (0 where
    rho_hat == rho). rho_hat is clamped to [1e-6, 1 - 1e-6]."""
    rho_hat = rho_hat.clamp(EPS, 1.0 - EPS)
    return rho * (rho / rho_hat).log() + (1.0 - rho) * ((1.0 - rho) / (1.0 - rho_hat)).log()


class SparseAutoencoder(Autoencoder):
    """L = -log p(x | dec(h)) + sparsity_weight * sum_j KL(rho || rho_hat_j), per image, with
    h = sigmoid(enc(x~)) and rho_hat_j the batch mean of unit j's activation.

    Logged: `recon`, `sparsity` (the KL sum, nats) and `mean_activation` (mean of h over units
    and images: rho when the penalty has its way).

    Raises ConfigError for rho outside (0, 1) or a negative sparsity_weight.
    """

    why_not_stackable = None  # it stacks: the sparsity penalty reads the batch's codes only

    def __init__(
        self,
        latent_dim: int = 12,
        rho: float = 0.05,
        sparsity_weight: float = 1.0,
        recon_loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        rho = check_float("rho", rho, 0.0, 1.0, low_open=True)
        if rho == 1.0:
            raise ConfigError("rho", rho, "a number in (0.0, 1.0)")
        weight = check_float("sparsity_weight", sparsity_weight, 0.0)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            rho=rho,
            sparsity_weight=weight,
            **kwargs,
        )
        self.rho, self.sparsity_weight = rho, weight

    def encode(self, x: Tensor) -> Tensor:
        """Code activations in (0, 1): shape (batch, latent_dim)."""
        return self.encoder(x).sigmoid()

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        h = self.encode(x_in)
        logits = self.decode(h)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        sparsity = bernoulli_kl(self.rho, h.mean(0)).sum()
        parts = {
            "loss": recon + self.sparsity_weight * sparsity,
            "recon": recon,
            "sparsity": sparsity,
            "mean_activation": h.mean(),
        }
        return parts, logits
