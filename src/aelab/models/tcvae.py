"""The beta-TCVAE (Chen, Li, Grosse & Duvenaud 2018): the VAE's KL split into index-code
mutual information, total correlation and dimension-wise KL, each with its own weight.

L = E_q[-log p(x|z)] + alpha * I(x; z) + beta * TC(z) + gamma * sum_j KL(q(z_j) || p(z_j)),
the three terms estimated on the training batch (`aelab.metrics.disentanglement`), which needs
the number of training images N: `dataset_size`, or, left null, the datamodule's training split
at setup. alpha = beta = gamma = 1 is the VAE's loss, with its KL estimated on the sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from aelab.checks import ConfigError, check_choice, check_float, check_int
from aelab.losses import kl_standard_normal, recon_nll, reparameterize_given
from aelab.metrics.disentanglement import ESTIMATORS, minibatch_decomposition
from aelab.models.vae import VAE


class BetaTCVAE(VAE):
    """The VAE's net and posterior with Chen et al.'s decomposed KL (see the module).

    Logged per image, nats: `recon`, `mi`, `tc`, `dim_kl` (this batch's estimates; `mws`'s are
    offset by constants, see `minibatch_decomposition`), the analytic `kl` and `neg_elbo`.

    Raises ConfigError for a negative weight, an unknown estimator or dataset_size < 1.
    """

    why_not_stackable = None  # it stacks: its TC estimate reads the batch and the split size

    # a schedule moves the TC weight beta; capacity and free bits are the plain KL's
    kl_schedules = ("constant", "warmup", "cyclical")
    takes_free_bits = False

    def __init__(
        self,
        latent_dim: int = 20,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mss",
        dataset_size: int | None = None,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        alpha = check_float("alpha", alpha, 0.0)
        gamma = check_float("gamma", gamma, 0.0)
        estimator = check_choice("estimator", estimator, ESTIMATORS)
        if dataset_size is not None:
            dataset_size = check_int("dataset_size", dataset_size, 1)
        super().__init__(
            latent_dim=latent_dim,
            beta=beta,
            recon_loss=recon_loss,
            alpha=alpha,
            gamma=gamma,
            estimator=estimator,
            dataset_size=dataset_size,
            **kwargs,
        )
        self.alpha, self.gamma, self.estimator = alpha, gamma, estimator
        self.dataset_size = dataset_size

    @override
    def use_data(self, datamodule: Any, stage: str) -> None:
        """N: the training split's size (`datamodule.split_size("train")`), unless set."""
        if self.dataset_size is None:
            size = getattr(datamodule, "split_size", lambda split: 0)("train")
            if size > 0:
                self.dataset_size = size
                self.hparams["dataset_size"] = self.dataset_size  # kept in checkpoints
            elif stage == "fit":
                raise ConfigError(
                    "model.dataset_size",
                    None,
                    "the number of training images: the datamodule has no split_size('train') "
                    "to take it from",
                    grouped=True,
                )

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        if self.dataset_size is None:
            raise RuntimeError(
                "BetaTCVAE needs the number of training images: set model.dataset_size or "
                "train with a datamodule that has a train split"
            )
        mu, logvar = self.posterior(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, mu.dtype)
        z = reparameterize_given(mu, logvar, draws["eps"])
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        terms = {
            k: v.mean()
            for k, v in minibatch_decomposition(
                z, mu, logvar, self.dataset_size, self.estimator
            ).items()
        }
        kl = kl_standard_normal(mu, logvar).mean()
        # the TC weight: beta under the schedule (warm-up, cycles)
        beta = (schedule if schedule is not None else self.schedule_values())["weight"]
        loss = recon + self.alpha * terms["mi"] + beta * terms["tc"]
        loss = loss + self.gamma * terms["dim_kl"]
        parts = {"loss": loss, "recon": recon, **terms, "kl": kl, "neg_elbo": recon + kl}
        return parts, logits
