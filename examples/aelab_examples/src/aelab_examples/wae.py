"""A Wasserstein autoencoder with an MMD penalty (WAE-MMD; Tolstikhin, Bousquet, Gelly and
Schoelkopf, "Wasserstein Auto-Encoders", ICLR 2018), written against aelab's model contract.

A deterministic encoder; the codes of a batch, as a sample of q(z), are pulled towards the prior
p(z) = N(0, I) by lambda * MMD(q(z), p(z)) with the inverse multiquadratic kernel
k(x, y) = C / (C + ||x - y||^2), summed over the paper's scales of C = 2 * latent_dim (twice the
code's dimension times the prior's variance). Being generative, it offers `sample`; having no
posterior, it gets no likelihood figures from aelab's evaluation suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from aelab.checks import ConfigError, check_float
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2, (n, m); no square root, whose gradient at 0 (the diagonal) is NaN."""
    return (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * a @ b.T).clamp_min(0.0)


def imq_mmd(z: Tensor, prior: Tensor, scales: Sequence[float] = SCALES) -> Tensor:
    """Unbiased estimate of MMD^2 between the samples z (n x d) and prior (n x d) under the
    inverse multiquadratic kernel, summed over C = 2 * d * scale; 0 for fewer than 2 codes."""
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=z.device)
    zz, pp, zp = (_squared_distances(a, b) for a, b in ((z, z), (prior, prior), (z, prior)))
    total = z.new_zeros(())
    for scale in scales:
        c = 2.0 * d * scale
        within = (c / (c + zz))[off_diagonal].mean() + (c / (c + pp))[off_diagonal].mean()
        total = total + within - 2.0 * (c / (c + zp)).mean()
    return total


class WAE(AutoencoderModule):
    """L = -log p(x | dec(enc(x~))) + mmd_weight * MMD^2(enc(x~) over the batch, N(0, I)),
    per image (the reconstruction in nats; the MMD, unitless, is a batch statistic)."""

    def __init__(
        self,
        latent_dim: int = 8,
        recon_loss: str = "bce",
        mmd_weight: float = 10.0,
        kernel_scales: Sequence[float] = SCALES,
        **kwargs: Any,
    ) -> None:
        mmd_weight = check_float("mmd_weight", mmd_weight, 0.0)
        scales = [check_float("kernel_scales", s, 0.0, low_open=True) for s in kernel_scales]
        if not scales:
            allowed = "a non-empty list of numbers > 0"
            raise ConfigError("kernel_scales", list(kernel_scales), allowed)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            mmd_weight=mmd_weight,
            kernel_scales=scales,
            **kwargs,
        )
        self.mmd_weight, self.kernel_scales = mmd_weight, scales

    def loss(
        self, x_in: Tensor, target: Tensor, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        z = self.encode(x_in)
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        prior = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        mmd = imq_mmd(z, prior, self.kernel_scales)
        return {"loss": recon + self.mmd_weight * mmd, "recon": recon, "mmd": mmd}, logits

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from the prior N(0, I), as pixel intensities (n x C x H x W)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z).sigmoid()
