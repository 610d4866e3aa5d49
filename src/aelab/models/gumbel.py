"""The categorical VAE with the Gumbel-softmax relaxation (Jang, Gu and Poole 2017,
"Categorical Reparameterization with Gumbel-Softmax"; Maddison et al. 2017's Concrete).

The code is `latent_dim` categorical variables of `categories` classes each; the encoder gives
their logits, a sample is relaxed to the simplex by the Gumbel-softmax at temperature tau, which
is annealed towards a floor as training goes on, and the decoder reads the N x K relaxed
one-hot vectors, flattened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from aelab.checks import check_float, check_int, in_group
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule, build_group


def temperature_at(step: float, start: float, floor: float, rate: float) -> float:
    """Jang et al.'s schedule tau(t) = max(floor, start * exp(-rate * t)) at training step t."""
    return max(floor, start * math.exp(-rate * step))


def gumbel_softmax_given(logits: Tensor, uniform: Tensor, temperature: float) -> Tensor:
    """softmax((logits + g) / tau) over the last dimension, g = -log(-log u) the Gumbel noise
    of the uniform draws u in (0, 1) (Jang et al. 2017, eq. 2; its argmax is the Gumbel-max
    draw of eq. 1); shapes as logits."""
    gumbel = -torch.log(-torch.log(uniform))
    return torch.softmax((logits + gumbel) / temperature, dim=-1)


class GumbelSoftmaxVAE(AutoencoderModule):
    """L = E_{y ~ GS(q(y | x~), tau)}[-log p(x | y)] + KL(q(y | x~) || U(K)^N), per image (the
    ELBO of Jang et al. 2017, Sec. 3 and the relaxed sample of eq. 2, one per image), the KL
    analytic: sum_n sum_k q_nk log(K q_nk).

    tau follows `temperature_at` at the model's `schedule_step` (the training step). `encode`
    gives the posterior probabilities q (B x latent_dim * categories, the mean of the one-hot
    code), which the evaluation decodes; samples decode uniform one-hot codes (`prior_codes`).
    Logged: `recon`, `kl`, `neg_elbo` = recon + kl (nats per image; with a relaxed sample
    `neg_elbo` is the relaxed bound, not a bound on log p(x)) and `temperature`.

    Args:
        latent_dim: N, the categorical variables.
        categories: K >= 2 classes of each.
        temperature: tau_0 > 0 at step 0; temperature_min: the floor, in (0, tau_0];
        anneal_rate: r >= 0 per step (the paper's: 1e-5 to 1e-4, floor 0.5).

    Raises ConfigError naming the field for K < 2, tau_0 <= 0, a floor outside (0, tau_0] or
    r < 0.
    """

    why_not_stackable: ClassVar[str | None] = (
        "its temperature follows the model's own training step, which a stack's loss is not handed"
    )

    def __init__(
        self,
        latent_dim: int = 30,
        categories: int = 10,
        temperature: float = 1.0,
        temperature_min: float = 0.5,
        anneal_rate: float = 3.0e-5,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        categories = check_int("categories", categories, 2)
        temperature = check_float("temperature", temperature, 0.0, low_open=True)
        temperature_min = check_float(
            "temperature_min", temperature_min, 0.0, temperature, low_open=True
        )
        anneal_rate = check_float("anneal_rate", anneal_rate, 0.0)
        self.code_factor = categories  # the encoder's N x K logits
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            categories=categories,
            temperature=temperature,
            temperature_min=temperature_min,
            anneal_rate=anneal_rate,
            **kwargs,
        )
        self.categories, self.anneal_rate = categories, anneal_rate
        self.temperature, self.temperature_min = temperature, temperature_min
        nets = build_group(self.hparams["net"], "net")
        with in_group("net"):  # the decoder reads the N x K relaxed one-hot code
            self.decoder = nets.decoder(self.latent_dim * categories, self.image_shape)

    def current_temperature(self) -> float:
        """tau at `schedule_step` (`temperature_at`)."""
        return temperature_at(
            self.schedule_step, self.temperature, self.temperature_min, self.anneal_rate
        )

    def posterior_logits(self, x: Tensor) -> Tensor:
        """The logits of q(y | x): x of B x C x H x W in [0, 1] -> B x latent_dim x categories."""
        return self.encoder(x).view(x.shape[0], self.latent_dim, self.categories)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior probabilities, flattened: B x C x H x W -> B x latent_dim * categories."""
        return self.posterior_logits(x).softmax(-1).flatten(1)

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`uniform` in (0, 1), B x latent_dim x categories: the Gumbel noise's source."""
        shape = (x_in.shape[0], self.latent_dim, self.categories)
        u = torch.rand(shape, generator=generator, device=x_in.device, dtype=dtype or x_in.dtype)
        tiny = torch.finfo(u.dtype).tiny
        return {"uniform": u.clamp(tiny, 1.0 - torch.finfo(u.dtype).eps)}

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss`: `recon` on one relaxed sample per image, the analytic
        `kl` to the uniform prior, `loss` = `neg_elbo` = recon + kl, and `temperature` (tau of
        this step). Logits: decode(the relaxed sample)."""
        logits = self.posterior_logits(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, logits.dtype)
        tau = self.current_temperature()
        y = gumbel_softmax_given(logits, draws["uniform"], tau)
        decoded = self.decode(y.flatten(1))
        recon = recon_nll(self.recon_loss, decoded, target).mean()
        log_q = torch.log_softmax(logits, -1)
        kl = (log_q.exp() * (log_q + math.log(self.categories))).sum((1, 2)).mean()
        parts = {"loss": recon + kl, "recon": recon, "kl": kl, "neg_elbo": recon + kl}
        parts["temperature"] = torch.tensor(tau, device=recon.device)
        return parts, decoded

    def eval_logits(self, x_in: Tensor, loss_logits: Tensor) -> Tensor:
        """The posterior probabilities decoded (deterministic): B x C x H x W."""
        return self.decode(self.encode(x_in))

    @torch.no_grad()
    def prior_codes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n codes of the uniform prior: each variable one-hot at a uniform class, n x
        latent_dim * categories on the model's device, drawn from `generator`."""
        device = generator.device if generator is not None else self.device
        k = torch.randint(self.categories, (n, self.latent_dim), generator=generator, device=device)
        one_hot = torch.nn.functional.one_hot(k.to(self.device), self.categories)
        return one_hot.flatten(1).to(next(self.decoder.parameters()).dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from uniform one-hot codes (`prior_codes`): intensities in [0, 1],
        n x C x H x W."""
        return self.decode(self.prior_codes(n, generator)).sigmoid()
