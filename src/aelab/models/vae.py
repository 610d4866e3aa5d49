"""The variational autoencoder with a beta weight on the KL term (beta-VAE; beta=1 is the VAE)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from aelab.checks import check_float
from aelab.losses import (
    kl_standard_normal,
    kl_standard_normal_per_dim,
    recon_nll,
    reparameterize_given,
)
from aelab.models.base import AutoencoderModule


class ELBOParts(NamedTuple):
    """`recon` = -log p(target | z) and `kl` = KL(q(z | x) || N(0, I)), nats per image, batch
    means; `logits` = decode(z), B x C x H x W; `mu`, `logvar`, the sample `z`: B x latent_dim."""

    recon: Tensor
    kl: Tensor
    logits: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


class VAE(AutoencoderModule):
    """L = E_q[-log p(x | z)] + beta * KL(q(z | x~) || N(0, I)), per image.

    The encoder outputs mu and log sigma^2 (one head of 2 * latent_dim, split in two); the KL is
    analytic and z is drawn by reparameterisation so the gradient flows through the sample
    (Kingma & Welling 2014, eq. 10, with one z per image). Shapes and units as in
    `AutoencoderModule`; `beta` >= 0 (Higgins et al. 2017), else ConfigError (`beta`).
    """

    why_not_stackable = None  # it stacks: z's noise comes from draws()

    code_factor = 2
    kl_schedules = ("constant", "warmup", "cyclical", "capacity")
    takes_free_bits = True

    def __init__(
        self, latent_dim: int = 20, beta: float = 1.0, recon_loss: str = "bce", **kwargs: Any
    ) -> None:
        beta = check_float("beta", beta, 0.0)
        super().__init__(latent_dim=latent_dim, recon_loss=recon_loss, beta=beta, **kwargs)
        self.beta = beta

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """mu and log sigma^2 of q(z | x) = N(mu, diag(sigma^2)): x of B x C x H x W in [0, 1]
        -> two tensors of B x latent_dim."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean mu: B x C x H x W in [0, 1] -> B x latent_dim."""
        return self.posterior(x)[0]

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss` with one z ~ q(z | x_in) per image drawn from `generator`:
        `recon` = -log p(target | z), `kl` = KL(q(z | x_in) || N(0, I)), `loss` = recon + the
        KL term under `kl_schedule` (beta * kl for the constant one; `AutoencoderModule
        .kl_penalty`), `neg_elbo` = recon + kl; nats per image, batch means. Logits: decode(z)."""
        sampled = self.elbo_parts(x_in, target, generator, draws)
        recon, kl = sampled.recon, sampled.kl
        parts = {"loss": recon + self.kl_term(sampled, schedule), "recon": recon, "kl": kl}
        parts["neg_elbo"] = recon + kl
        return parts, sampled.logits

    def kl_term(
        self, sampled: ELBOParts, schedule: Mapping[str, Tensor | float] | None = None
    ) -> Tensor:
        """The KL part of the loss under `kl_schedule` at the current step (beta * kl for the
        constant schedule; `AutoencoderModule.kl_penalty`), nats per image: every model built on
        `elbo_parts` adds this, so each takes every schedule. `schedule`: `loss`'s."""
        units = None
        if self.kl_schedule.needs_units:
            units = kl_standard_normal_per_dim(sampled.mu, sampled.logvar)
        return self.kl_penalty(sampled.kl, units, schedule)

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`eps` ~ N(0, I), B x latent_dim: the noise of z = mu + sigma * eps, one per image."""
        shape = (x_in.shape[0], self.latent_dim)
        eps = torch.randn(shape, generator=generator, device=x_in.device, dtype=dtype or x_in.dtype)
        return {"eps": eps}

    def elbo_parts(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
    ) -> ELBOParts:
        """The ELBO's two terms on one z ~ q(z | x_in) per image drawn from `generator` (or
        made from `draws`, as `draws` gives them), with what a model that adds a penalty needs
        (`ELBOParts`)."""
        mu, logvar = self.posterior(x_in)
        if draws is None:  # drawn here, after the encoder, in its output's dtype (autocast)
            draws = self.draws(x_in, generator, mu.dtype)
        z = reparameterize_given(mu, logvar, draws["eps"])
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        return ELBOParts(recon, kl_standard_normal(mu, logvar).mean(), logits, mu, logvar, z)

    def test_parts(self, x_in: Tensor) -> dict[str, Tensor]:
        """`kl_dim_{j}`: the rate of latent dimension j (nats, mean over images); they sum to
        `kl`, which is scored on the same (corrupted, for a noise run) inputs, B x C x H x W."""
        mu, logvar = self.posterior(x_in)
        per_dim = kl_standard_normal_per_dim(mu, logvar).mean(0)
        return {f"kl_dim_{j}": v for j, v in enumerate(per_dim)}

    def eval_logits(self, x_in: Tensor, loss_logits: Tensor) -> Tensor:
        """The posterior mean decoded (deterministic, unlike the loss's sampled z): logits of
        B x C x H x W for x_in of that shape."""
        return self.decode(self.encode(x_in))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from z ~ N(0, I) drawn from `generator` on the model's device: pixel
        intensities in [0, 1] (not logits), n x C x H x W."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z).sigmoid()
