"""InfoVAE with the MMD divergence (MMD-VAE; Zhao, Song and Ermon 2019, "InfoVAE: Balancing
Learning and Inference in Variational Autoencoders").

The VAE's Gaussian posterior and analytic KL, plus a divergence between the aggregate
posterior q(z) and the prior N(0, I), the MMD of `aelab.models.wae.mmd` on the batch's sampled
codes against as many prior draws; alpha and lambda weigh the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from aelab.checks import check_choice, check_float
from aelab.models.vae import VAE
from aelab.models.wae import MMD_KERNELS, mmd


class InfoVAE(VAE):
    """L = E_q[-log p(x | z)] + (1 - alpha) KL(q(z | x) || p(z)) + (alpha + lambda - 1)
    MMD(q(z) || p(z)), per image (Zhao et al. 2019, eq. 6 with D = MMD, Sec. 3.2; alpha = 0 and
    lambda = 1 is the VAE).

    Logged: `recon`, `kl` (analytic), `neg_elbo` = recon + kl (nats per image), `mmd` (no unit,
    `aelab.models.wae.mmd` on z ~ q(z | x) against `z_prior` ~ N(0, I)) and `loss`.

    Args:
        alpha: in [0, 1]; 1 - alpha weighs the KL.
        lbd: lambda >= 1 - alpha, so the MMD's weight alpha + lambda - 1 is >= 0 (a large
            lambda with alpha = 0, the MMD-VAE, lets the MMD dominate the KL).
        kernel, kernel_scale: the MMD's kernel (`imq` or `rbf`) and its sigma_z^2 > 0.

    Raises ConfigError naming the field for alpha outside [0, 1], lambda < 1 - alpha, an
    unknown kernel, a scale <= 0.
    """

    kl_schedules = ("constant",)
    takes_free_bits = False
    why_not_stackable: ClassVar[str | None] = None

    def __init__(
        self,
        latent_dim: int = 16,
        alpha: float = 0.0,
        lbd: float = 1000.0,
        kernel: str = "imq",
        kernel_scale: float = 1.0,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        alpha = check_float("alpha", alpha, 0.0, 1.0)
        lbd = check_float("lbd", lbd, 1.0 - alpha)
        kernel = check_choice("kernel", kernel, MMD_KERNELS)
        kernel_scale = check_float("kernel_scale", kernel_scale, 0.0, low_open=True)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            alpha=alpha,
            lbd=lbd,
            kernel=kernel,
            kernel_scale=kernel_scale,
            **kwargs,
        )
        self.alpha, self.lbd, self.kernel, self.kernel_scale = alpha, lbd, kernel, kernel_scale

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """The VAE's `eps` (B x latent_dim), then `z_prior` ~ N(0, I) (B x latent_dim) for the
        MMD."""
        drawn = super().draws(x_in, generator, dtype)
        drawn["z_prior"] = torch.randn(
            drawn["eps"].shape, generator=generator, device=x_in.device, dtype=drawn["eps"].dtype
        )
        return drawn

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`VAE.loss`'s parts with `mmd`; `loss` = recon + (1 - alpha) kl + (alpha + lambda -
        1) mmd (`schedule` unused: the weights are alpha and lambda). Logits: decode(z)."""
        if draws is None:
            draws = self.draws(x_in, generator)
        sampled = self.elbo_parts(x_in, target, draws=draws)
        recon, kl = sampled.recon, sampled.kl
        divergence = mmd(sampled.z, draws["z_prior"], self.kernel, self.kernel_scale)
        weight = self.alpha + self.lbd - 1.0
        parts = {
            "loss": recon + (1.0 - self.alpha) * kl + weight * divergence,
            "recon": recon,
            "kl": kl,
            "neg_elbo": recon + kl,
            "mmd": divergence,
        }
        return parts, sampled.logits
