"""The VAE-GAN (Larsen, Sønderby, Larochelle and Winther 2016, "Autoencoding beyond pixels
using a learned similarity metric").

The VAE's decoder is also a GAN's generator, and the reconstruction is scored in the feature
space of the GAN's image discriminator (its last hidden layer, Dis_l) instead of on pixels.
Each part follows its own objective (Alg. 1): the encoder L_prior + L_llike, the decoder
gamma L_llike - L_GAN, the discriminator L_GAN.

All three are trained in one step and one backward pass, as FactorVAE's and the AAE's
discriminators: D is a parameter group of its own; the encoder's and decoder's terms read D
with its weights frozen, D's reads the images detached; the decoder's share of L_llike is
scaled by gamma by evaluating it with the weights gamma w + (1 - gamma) sg[w], which have the
weights' value and gamma times their gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from typing_extensions import override

from aelab.checks import check_float
from aelab.losses import kl_standard_normal, recon_nll, reparameterize_given
from aelab.models.adversary import adversary_param_groups, discriminator_settings
from aelab.models.vae import VAE

VAEGAN_DISCRIMINATOR_HIDDEN = (512, 256)
VAEGAN_DISCRIMINATOR_OPTIMIZER = {"lr": 1e-4}


class ImageDiscriminator(nn.Module):
    """Dis: images B x C x H x W -> (B logits of "real", B x hidden[-1] features Dis_l), an MLP
    with LeakyReLU(0.2) hidden layers, Dis_l the last of them."""

    def __init__(self, image_shape: Sequence[int], hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = int(torch.tensor(list(image_shape)).prod())
        for width in hidden:
            layers += [nn.Linear(n_in, width), nn.LeakyReLU(0.2)]
            n_in = width
        self.features, self.head = nn.Sequential(*layers), nn.Linear(n_in, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.head(h).squeeze(1), h


class VAEGAN(VAE):
    """Per image: L_prior = KL(q(z | x~) || N(0, I)); L_llike = 1/2 ||Dis_l(x) - Dis_l(x_tilde)||^2,
    the Gaussian -log p(Dis_l(x) | z) less its constant, x_tilde = Dec(z), z ~ q(z | x~); L_GAN =
    log Dis(x) + log(1 - Dis(x_tilde)) + log(1 - Dis(Dec(z_p))), z_p ~ N(0, I) (Larsen et al.
    2016, eqs. 5-9 and Alg. 1; the decoder's GAN term in its non-saturating form, -log Dis(.)
    of its two kinds of image, Dis read frozen and on Dec(sg[z]) so the encoder gets no GAN
    gradient).

    Logged: `kl`, `feature_recon` (L_llike), `gan_generator` (the decoder's GAN term),
    `discriminator_loss` (-L_GAN, the sum of Dis's three cross-entropies), nats per image;
    `recon` (the pixel Bernoulli -log p(x | z) on the same z, not trained on) and `neg_elbo` =
    recon + kl, for comparison with the VAE; `loss` = kl + feature_recon + gan_generator (the
    encoder's and decoder's terms, their gradients split as the module says).

    Args:
        gamma: the decoder's weight on L_llike against the GAN term, in [0, 1].
        discriminator_hidden: Dis's hidden widths; the last is Dis_l.
        discriminator_optimizer: settings of Dis's parameter group (lr, betas for Adam).

    Raises ConfigError naming the field for gamma outside [0, 1], an empty or non-positive
    width list, or a discriminator lr <= 0.
    """

    kl_schedules = ("constant",)
    takes_free_bits = False
    why_not_stackable: ClassVar[str | None] = (
        "its image discriminator is trained beside the VAE in the same step, on its own loss "
        "with its own optimizer settings"
    )

    def __init__(
        self,
        latent_dim: int = 16,
        gamma: float = 0.5,
        discriminator_hidden: Sequence[int] = VAEGAN_DISCRIMINATOR_HIDDEN,
        discriminator_optimizer: Mapping[str, Any] | None = None,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        gamma = check_float("gamma", gamma, 0.0, 1.0)
        hidden, d_opt = discriminator_settings(
            discriminator_hidden, discriminator_optimizer, VAEGAN_DISCRIMINATOR_OPTIMIZER
        )
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            gamma=gamma,
            discriminator_hidden=hidden,
            discriminator_optimizer=d_opt,
            **kwargs,
        )
        self.gamma, self.discriminator_optimizer = gamma, d_opt
        self.discriminator = ImageDiscriminator(self.image_shape, hidden)

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """The VAE's `eps`, then `z_prior` ~ N(0, I) for the generator's prior images; each
        B x latent_dim."""
        drawn = super().draws(x_in, generator, dtype)
        drawn["z_prior"] = torch.randn(
            drawn["eps"].shape, generator=generator, device=x_in.device, dtype=drawn["eps"].dtype
        )
        return drawn

    def _frozen(self, module: nn.Module, scale: float | None = None) -> dict[str, Tensor]:
        """`module`'s weights detached (scale None), or as gamma w + (1 - gamma) sg[w]: their
        value, `scale` times their gradient."""
        if scale is None:
            return {k: v.detach() for k, v in module.named_parameters()}
        return {k: scale * v + (1 - scale) * v.detach() for k, v in module.named_parameters()}

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The parts of the class docstring (`schedule` unused). Logits: Dec(z)."""
        mu, logvar = self.posterior(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, mu.dtype)
        z = reparameterize_given(mu, logvar, draws["eps"])
        call = torch.func.functional_call
        # L_llike: the encoder's gradient in full, the decoder's scaled by gamma, Dis frozen
        x_tilde = call(self.decoder, self._frozen(self.decoder, self.gamma), (z,))
        frozen_d = self._frozen(self.discriminator)
        _, feat_fake = call(self.discriminator, frozen_d, (x_tilde.sigmoid(),))
        _, feat_real = call(self.discriminator, frozen_d, (target,))
        feature_recon = 0.5 * (feat_fake - feat_real).square().sum(1).mean()
        # the decoder's GAN term on its reconstruction and a prior image (no gradient into z)
        recon_img = self.decode(z.detach()).sigmoid()
        prior_img = self.decode(draws["z_prior"]).sigmoid()
        logit_recon, _ = call(self.discriminator, frozen_d, (recon_img,))
        logit_prior, _ = call(self.discriminator, frozen_d, (prior_img,))
        real = torch.ones_like(logit_recon)
        gan_generator = F.binary_cross_entropy_with_logits(
            logit_recon, real
        ) + F.binary_cross_entropy_with_logits(logit_prior, real)
        # Dis on real images and both kinds of generated ones, detached
        d_real, _ = self.discriminator(target)
        d_recon, _ = self.discriminator(recon_img.detach())
        d_prior, _ = self.discriminator(prior_img.detach())
        fake = torch.zeros_like(d_real)
        d_loss = (
            F.binary_cross_entropy_with_logits(d_real, real)
            + F.binary_cross_entropy_with_logits(d_recon, fake)
            + F.binary_cross_entropy_with_logits(d_prior, fake)
        )
        kl = kl_standard_normal(mu, logvar).mean()
        recon = recon_nll(self.recon_loss, x_tilde, target).mean()
        parts = {
            "loss": kl + feature_recon + gan_generator,
            "recon": recon,
            "kl": kl,
            "neg_elbo": recon + kl,
            "feature_recon": feature_recon,
            "gan_generator": gan_generator,
            "discriminator_loss": d_loss,
        }
        return parts, x_tilde

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        self.schedule_step = self.global_step
        parts, _ = self.loss(self.noise(x), x)
        self.train_means.update(parts, weight=x.shape[0])
        # disjoint gradients: one backward pass trains all three (see the module)
        return parts["loss"] + parts["discriminator_loss"]

    @override
    def optimizer_params(self) -> list[dict[str, Any]]:
        """Two parameter groups: the VAE's (the `optimizer` group's settings) and Dis's (its
        own, `discriminator_optimizer`)."""
        return adversary_param_groups(self, self.discriminator, self.discriminator_optimizer)
