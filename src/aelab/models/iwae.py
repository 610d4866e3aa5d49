"""The importance-weighted autoencoder (Burda, Grosse & Salakhutdinov 2016).

The VAE's net and posterior, trained on the k-sample bound of Burda et al.'s eq. 8 instead of
the ELBO: L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_1..z_k ~ q(z | x). L_1 is the ELBO
(with its KL estimated on the sample rather than analytic) and L_k tightens towards log p(x).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from aelab.checks import check_int
from aelab.losses import (
    iw_bound,
    kl_standard_normal,
    log_weights,
    recon_nll,
    reparameterize_given,
)
from aelab.models.vae import VAE


class IWAE(VAE):
    """L = -L_k per image, nats: k importance samples from q(z | x~) (Burda et al. 2016, eq. 8).

    Logged beside the loss: `recon` (the mean over the k samples of -log p(x | z)), the
    analytic `kl` and `neg_elbo` = recon + kl, so IWAE and VAE runs compare on the same
    figures. Costs k decoder passes per image.

    Raises ConfigError for k < 1.
    """

    why_not_stackable = None  # it stacks: the k samples' noise comes from draws()

    kl_schedules = ("constant",)  # the bound has no KL weight to schedule
    takes_free_bits = False
    keys_not_taken = ("beta",)  # the VAE's KL weight: the bound has none

    def __init__(
        self, latent_dim: int = 20, k: int = 5, recon_loss: str = "bce", **kwargs: Any
    ) -> None:
        k = check_int("k", k, 1)
        super().__init__(latent_dim=latent_dim, recon_loss=recon_loss, k=k, **kwargs)
        self.k = k

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`eps` ~ N(0, I), k x B x latent_dim: the noise of the k samples z_i = mu + sigma *
        eps_i per image (for k=1 the very numbers the VAE draws)."""
        shape = (self.k, x_in.shape[0], self.latent_dim)
        eps = torch.randn(shape, generator=generator, device=x_in.device, dtype=dtype or x_in.dtype)
        return {"eps": eps}

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        mu, logvar = self.posterior(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, mu.dtype)
        eps = draws["eps"]
        z = reparameterize_given(mu, logvar, eps)
        logits = self.decode(z.flatten(0, 1))
        targets = target.expand(self.k, *target.shape).flatten(0, 1)
        nll = recon_nll(self.recon_loss, logits, targets).view(self.k, -1)
        bound = iw_bound(log_weights(-nll, z, mu, logvar, eps))
        recon = nll.mean()
        kl = kl_standard_normal(mu, logvar).mean()
        parts = {"loss": -bound.mean(), "recon": recon, "kl": kl, "neg_elbo": recon + kl}
        return parts, logits.view(self.k, *target.shape)[0]
