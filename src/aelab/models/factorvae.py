"""FactorVAE (Kim & Mnih 2018, "Disentangling by factorising"): the VAE's loss plus gamma times
the total correlation TC(z) = KL(q(z) || prod_j q(z_j)), estimated by a discriminator.

The density-ratio trick (eq. 3 and alg. 2): a classifier D tells codes z ~ q(z) (the batch's
samples) from codes of prod_j q(z_j) (each dimension permuted across the batch, `permute_dims`);
with D's logits for "from q(z)" and "permuted", TC(z) ~ E_q(z)[logit_q - logit_perm]. The VAE
minimises recon + KL + gamma * TC; D minimises its cross-entropy on both kinds of code.

disentanglement_lib's choices: D is an MLP of 6 layers of 1000 units with LeakyReLU(0.2) and two
logits; D is trained with Adam (lr 1e-4, betas 0.5, 0.9), the VAE with Adam (lr 1e-4, betas 0.9,
0.999); both updated on every batch.

D has its own optimizer settings as a parameter group of its own in the run's one optimizer,
not as a second optimizer: in manual optimization Lightning counts each optimizer's step in
`global_step`, which would halve max_steps, the step checkpoints and resume for this model
alone. One backward pass gives each its own gradient: the VAE's loss reads D with its weights
frozen, D's loss reads the codes detached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from typing_extensions import override

from aelab.checks import check_float
from aelab.models.adversary import adversary_param_groups, discriminator_settings
from aelab.models.vae import VAE

DISCRIMINATOR_HIDDEN = (1000,) * 6
DISCRIMINATOR_OPTIMIZER = {"lr": 1e-4, "betas": [0.5, 0.9]}


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each column of z (B x d) permuted across the batch on its own: a sample of prod_j q(z_j)
    (Kim & Mnih 2018, alg. 1)."""
    b, d = z.shape
    order = torch.argsort(torch.rand(b, d, generator=generator, device=z.device), dim=0)
    return torch.gather(z, 0, order)


def discriminator(latent_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """The TC discriminator: B x latent_dim -> 2 logits (from q(z), permuted), LeakyReLU(0.2)."""
    layers: list[nn.Module] = []
    n_in = latent_dim
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.LeakyReLU(0.2)]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, 2))


def tc_estimate(logits: Tensor) -> Tensor:
    """The density-ratio estimate of TC (nats) from D's logits on codes of q(z), B x 2."""
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(logits_q: Tensor, logits_perm: Tensor) -> Tensor:
    """D's cross-entropy: class 0 for codes of q(z), class 1 for permuted ones (B x 2 each);
    the mean of the two halves, as disentanglement_lib."""
    real = torch.zeros(len(logits_q), dtype=torch.long, device=logits_q.device)
    fake = torch.ones(len(logits_perm), dtype=torch.long, device=logits_perm.device)
    return 0.5 * (F.cross_entropy(logits_q, real) + F.cross_entropy(logits_perm, fake))


class FactorVAE(VAE):
    """The VAE with gamma * TC(z), TC from a discriminator (see the module).

    Logged per image, nats: `recon`, `kl`, `neg_elbo`, `tc` (the discriminator's estimate) and
    `loss` = recon + kl + gamma * tc; `discriminator_loss` (its cross-entropy, nats per code).

    Args:
        gamma: the TC weight (disentanglement_lib's study: 10, 20, 30, 40, 50, 100).
        discriminator_hidden: the discriminator's hidden widths.
        discriminator_optimizer: settings of its parameter group (lr, betas for Adam), over the
            run's `optimizer` group's.

    Raises ConfigError for gamma < 0, an empty or non-positive width list, or a discriminator
    lr <= 0.
    """

    why_not_stackable = (  # its jobs run alone in a stacked sweep
        "its discriminator is trained beside the VAE in the same step, on its own loss with its "
        "own optimizer settings, which the stacked step (one loss over the encoder and decoder "
        "weights) does not have"
    )

    def __init__(
        self,
        latent_dim: int = 10,
        gamma: float = 10.0,
        discriminator_hidden: Sequence[int] = DISCRIMINATOR_HIDDEN,
        discriminator_optimizer: Mapping[str, Any] | None = None,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        gamma = check_float("gamma", gamma, 0.0)
        hidden, d_opt = discriminator_settings(
            discriminator_hidden, discriminator_optimizer, DISCRIMINATOR_OPTIMIZER
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
        self.discriminator = discriminator(self.latent_dim, hidden)

    def loss(
        self, x_in: Tensor, target: Tensor, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`VAE.loss`'s parts with `tc` and `discriminator_loss`; `loss` is the VAE's
        (recon + beta * kl + gamma * tc, beta = 1 in the paper)."""
        sampled = self.elbo_parts(x_in, target, generator)
        recon, kl, z = sampled.recon, sampled.kl, sampled.z
        tc = tc_estimate(self._frozen_discriminator(z))
        d_loss = discriminator_loss(
            self.discriminator(z.detach()), self.discriminator(permute_dims(z.detach(), generator))
        )
        parts = {
            "loss": recon + self.kl_term(sampled) + self.gamma * tc,
            "recon": recon,
            "kl": kl,
            "tc": tc,
            "neg_elbo": recon + kl,
            "discriminator_loss": d_loss,
        }
        return parts, sampled.logits

    def _frozen_discriminator(self, z: Tensor) -> Tensor:
        """D's logits for z with no gradient into D's weights (they follow D's own loss)."""
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (z,))

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, _ = batch
        parts, _ = self.loss(self.noise(x), x)
        self.train_means.update(parts, weight=x.shape[0])
        # disjoint gradients: one backward pass trains both (see the module)
        return parts["loss"] + parts["discriminator_loss"]

    @override
    def optimizer_params(self) -> list[dict[str, Any]]:
        """Two parameter groups: the VAE's (the `optimizer` group's settings) and D's (its own,
        `discriminator_optimizer`)."""
        return adversary_param_groups(self, self.discriminator, self.discriminator_optimizer)
