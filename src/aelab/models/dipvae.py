"""DIP-VAE (Kumar, Sattigeri & Balakrishnan 2018, "Variational inference of disentangled latent
concepts from unlabeled observations"): the VAE's loss plus a penalty that moves the covariance
of the aggregate posterior q(z) towards the prior's identity.

L = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))
    + lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2,

with Cov estimated on the training batch: DIP-VAE-I takes Cov_p(x)[mu(x)] (eq. 6), DIP-VAE-II
Cov_q(z)[z] = E_p(x)[diag sigma^2(x)] + Cov_p(x)[mu(x)] (eq. 7). disentanglement_lib's
choices: the biased (1/B) covariance of the batch, and lambda_d = 10 lambda_od for I,
lambda_d = lambda_od for II when `lambda_d` is not given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from aelab.checks import check_choice, check_float
from aelab.models.vae import VAE

DIP_TYPES = ("i", "ii")
LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}  # disentanglement_lib's lambda_d / lambda_od


def dip_covariance(mu: Tensor, logvar: Tensor, dip_type: str) -> Tensor:
    """The covariance the penalty reads, latent_dim x latent_dim, from a batch's posterior
    parameters (B x latent_dim each): Cov[mu] (type "i"), Cov[mu] + mean diag(sigma^2) ("ii")."""
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if dip_type == "ii":
        cov = cov + torch.diag(logvar.exp().mean(0))
    return cov


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od * sum of squared off-diagonal entries + lambda_d * sum (diagonal - 1)^2."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.square().sum() + lambda_d * (diag - 1).square().sum()


class DIPVAE(VAE):
    """The VAE with the DIP penalty (see the module). Logged per image, nats: `recon`, `kl`,
    `neg_elbo`; beside them `dip` (the penalty, weighted, per batch) and `loss`.

    Args:
        lambda_od: the off-diagonal weight (disentanglement_lib's study: 1, 2, 5, 10, 20, 50).
        lambda_d: the diagonal weight; None takes disentanglement_lib's (10 lambda_od for I,
            lambda_od for II).
        dip_type: "i" or "ii".

    Raises ConfigError for a negative weight or a type not in ("i", "ii").
    """

    why_not_stackable = None  # it stacks: the covariance penalty reads the batch's posterior only

    def __init__(
        self,
        latent_dim: int = 10,
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        dip_type: str = "i",
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        lambda_od = check_float("lambda_od", lambda_od, 0.0)
        dip_type = check_choice("dip_type", dip_type, DIP_TYPES)
        if lambda_d is not None:
            lambda_d = check_float("lambda_d", lambda_d, 0.0)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            lambda_od=lambda_od,
            lambda_d=lambda_d,
            dip_type=dip_type,
            **kwargs,
        )
        self.lambda_od, self.dip_type = lambda_od, dip_type
        self.lambda_d = LAMBDA_D_FACTOR[dip_type] * lambda_od if lambda_d is None else lambda_d

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`VAE.loss`'s parts with `dip` added to `loss` (`beta` weighs the KL, 1 in the paper)."""
        sampled = self.elbo_parts(x_in, target, generator, draws)
        recon, kl = sampled.recon, sampled.kl
        cov = dip_covariance(sampled.mu, sampled.logvar, self.dip_type)
        dip = dip_penalty(cov, self.lambda_od, self.lambda_d)
        parts = {
            "loss": recon + self.kl_term(sampled, schedule) + dip,
            "recon": recon,
            "kl": kl,
            "dip": dip,
            "neg_elbo": recon + kl,
        }
        return parts, sampled.logits
