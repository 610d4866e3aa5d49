"""The adversarial autoencoder (AAE; Makhzani, Shlens, Jaitly, Goodfellow and Frey 2016,
"Adversarial Autoencoders").

A deterministic encoder whose aggregate posterior q(z) is matched to the prior p(z) = N(0, I)
by a GAN on the codes: a discriminator D tells prior draws from the batch's codes, the encoder
is trained to fool it (Sec. 2, the reconstruction and the regularisation phase).

As FactorVAE's discriminator, D is trained in the same step, in a parameter group of its own
in the run's one optimizer (one backward pass: the autoencoder's loss reads D with its weights
frozen, D's loss reads the codes detached), so `global_step`, checkpoints and resume count the
steps as for every other model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from typing_extensions import override

from aelab.checks import check_float
from aelab.losses import recon_nll
from aelab.models.adversary import adversary_param_groups, discriminator_settings
from aelab.models.base import AutoencoderModule

AAE_DISCRIMINATOR_HIDDEN = (1000, 1000)  # two layers of 1000, as the paper's MNIST one
AAE_DISCRIMINATOR_OPTIMIZER = {"lr": 1e-4}


def code_discriminator(latent_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """D: B x latent_dim -> B logits of "drawn from the prior", ReLU hidden layers."""
    layers: list[nn.Module] = []
    n_in = latent_dim
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, 1))


class AAE(AutoencoderModule):
    """L = E[-log p(x | D_dec(z))] + lambda * E[-log D(z)], per image, z = encode(x~), with D
    trained on -[log D(z~) + log(1 - D(z))], z~ ~ N(0, I) (Makhzani et al. 2016, eq. 1 and Sec.
    2; the encoder's term is the non-saturating form of eq. 1's min over the generator).

    Logged: `recon` (nats per image), `adversarial` (-log D(z), the encoder's term, nats per
    code), `discriminator_loss` (D's cross-entropy, the mean of its two halves, nats per code)
    and `loss` = recon + lambda * adversarial. Samples decode z ~ N(0, I).

    Args:
        adversarial_weight: lambda >= 0.
        discriminator_hidden: D's hidden widths (a non-empty list of integers >= 1).
        discriminator_optimizer: settings of D's parameter group (lr, betas for Adam), over
            the run's `optimizer` group's.

    Raises ConfigError naming the field for lambda < 0, an empty or non-positive width list, or
    a discriminator lr <= 0.
    """

    why_not_stackable: ClassVar[str | None] = (
        "its discriminator is trained beside the autoencoder in the same step, on its own loss "
        "with its own optimizer settings"
    )

    def __init__(
        self,
        latent_dim: int = 8,
        adversarial_weight: float = 1.0,
        discriminator_hidden: Sequence[int] = AAE_DISCRIMINATOR_HIDDEN,
        discriminator_optimizer: Mapping[str, Any] | None = None,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        weight = check_float("adversarial_weight", adversarial_weight, 0.0)
        hidden, d_opt = discriminator_settings(
            discriminator_hidden, discriminator_optimizer, AAE_DISCRIMINATOR_OPTIMIZER
        )
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            adversarial_weight=weight,
            discriminator_hidden=hidden,
            discriminator_optimizer=d_opt,
            **kwargs,
        )
        self.adversarial_weight, self.discriminator_optimizer = weight, d_opt
        self.discriminator = code_discriminator(self.latent_dim, hidden)

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`z_prior` ~ N(0, I), B x latent_dim: the prior's codes D is shown."""
        shape = (x_in.shape[0], self.latent_dim)
        z = torch.randn(shape, generator=generator, device=x_in.device, dtype=dtype or x_in.dtype)
        return {"z_prior": z}

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss`'s parts with `adversarial` and `discriminator_loss`; `loss`
        = recon + lambda * adversarial (`schedule` unused). Logits: decode(z)."""
        z = self.encode(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, z.dtype)
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        fooled = self._frozen_discriminator(z).squeeze(1)
        adversarial = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        real = self.discriminator(draws["z_prior"]).squeeze(1)
        fake = self.discriminator(z.detach()).squeeze(1)
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )
        parts = {
            "loss": recon + self.adversarial_weight * adversarial,
            "recon": recon,
            "adversarial": adversarial,
            "discriminator_loss": d_loss,
        }
        return parts, logits

    def _frozen_discriminator(self, z: Tensor) -> Tensor:
        """D's logits for z with no gradient into D's weights (they follow D's own loss)."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (z,))

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        self.schedule_step = self.global_step
        parts, _ = self.loss(self.noise(x), x)
        self.train_means.update(parts, weight=x.shape[0])
        # disjoint gradients: one backward pass trains both (see the module)
        return parts["loss"] + parts["discriminator_loss"]

    @override
    def optimizer_params(self) -> list[dict[str, Any]]:
        """Two parameter groups: the autoencoder's (the `optimizer` group's settings) and D's
        (its own, `discriminator_optimizer`)."""
        return adversary_param_groups(self, self.discriminator, self.discriminator_optimizer)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from z ~ N(0, I) (the prior D matched the codes to), drawn from
        `generator` on the model's device: intensities in [0, 1], n x C x H x W."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z).sigmoid()
