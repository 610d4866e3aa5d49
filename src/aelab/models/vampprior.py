"""The VAE with a VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior").

The prior is the mixture of the encoder's own posteriors at K learned pseudo-inputs u_k,
p(z) = 1/K sum_k q(z | u_k); the KL to it has no closed form, so it is estimated on the
posterior sample. The importance-weighted bound (`aelab.metrics.iw_bound`), the rate and the
prior samples (`sample`, `aelab.samplers.PriorSampler`) all use this prior, through
`log_prior` and `prior_codes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from aelab.checks import check_int
from aelab.losses import log_normal
from aelab.models.vae import VAE


class VampPriorVAE(VAE):
    """L = E_q[-log p(x | z)] + beta * E_q[log q(z | x) - log p(z)], per image, with
    p(z) = 1/K sum_k q(z | u_k) (Tomczak & Welling 2018, eqs. 8-9 and 17), the KL a one-sample
    Monte Carlo estimate on the reparameterised z.

    The pseudo-inputs u_k = sigmoid(w_k) are K x C x H x W parameters (pixels in (0, 1), as the
    data), w_k initialised ~ N(0, 1) so that they differ. Logged: `recon`, `kl` (the MC
    estimate against the mixture), `neg_elbo` = recon + kl (nats per image) and `loss` =
    recon + beta * kl.

    Args:
        pseudo_inputs: K >= 1 (the paper's MNIST runs: 500).

    Raises ConfigError for K < 1 (`pseudo_inputs`), and as the VAE for beta < 0.
    """

    kl_schedules = ("constant",)
    takes_free_bits = False
    why_not_stackable: ClassVar[str | None] = (
        "its prior's pseudo-inputs are weights outside the encoder and decoder, which a stack "
        "holds per member"
    )

    def __init__(
        self, latent_dim: int = 40, pseudo_inputs: int = 500, recon_loss: str = "bce", **kwargs: Any
    ) -> None:
        pseudo_inputs = check_int("pseudo_inputs", pseudo_inputs, 1)
        super().__init__(
            latent_dim=latent_dim, recon_loss=recon_loss, pseudo_inputs=pseudo_inputs, **kwargs
        )
        self.n_pseudo_inputs = pseudo_inputs
        self.pseudo_logits = nn.Parameter(torch.randn(pseudo_inputs, *self.image_shape))

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs, K x C x H x W in (0, 1)."""
        return self.pseudo_logits.sigmoid()

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) = log 1/K sum_k N(z; mu(u_k), sigma^2(u_k)), nats: z of (..., latent_dim) ->
        its shape less the last dimension."""
        mu, logvar = self.posterior(self.pseudo_inputs())  # K x latent_dim each
        per_component = log_normal(z.unsqueeze(-2), mu, logvar)  # (..., K)
        return torch.logsumexp(per_component, dim=-1) - math.log(self.n_pseudo_inputs)

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`VAE.loss`'s parts with the KL estimated on the sample against the mixture prior:
        `kl` = mean of log q(z | x_in) - log p(z); `loss` = recon + beta * kl (the constant
        schedule's; `schedule` as `VAE.loss`). Logits: decode(z)."""
        sampled = self.elbo_parts(x_in, target, generator, draws)
        log_q = log_normal(sampled.z, sampled.mu, sampled.logvar)
        kl = (log_q - self.log_prior(sampled.z)).mean()
        recon = sampled.recon
        parts = {"loss": recon + self.kl_penalty(kl, None, schedule), "recon": recon, "kl": kl}
        parts["neg_elbo"] = recon + kl
        return parts, sampled.logits

    def test_parts(self, x_in: Tensor) -> dict[str, Tensor]:
        """None: the rate does not split by dimension under a mixture prior."""
        return {}

    @torch.no_grad()
    def prior_codes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n codes z ~ p(z): a component k uniform among the K, then z ~ q(z | u_k); drawn from
        `generator` (on the CPU for a CPU generator), n x latent_dim on the model's device."""
        device = generator.device if generator is not None else self.device
        k = torch.randint(self.n_pseudo_inputs, (n,), generator=generator, device=device)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device)
        mu, logvar = self.posterior(self.pseudo_inputs())
        k, eps = k.to(self.device), eps.to(self.device)
        return mu[k] + (0.5 * logvar[k]).exp() * eps

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from z ~ the VampPrior (`prior_codes`): intensities in [0, 1],
        n x C x H x W."""
        return self.decode(self.prior_codes(n, generator)).sigmoid()
