"""The Wasserstein autoencoder with an MMD penalty (WAE-MMD; Tolstikhin, Bousquet, Gelly and
Schölkopf 2018, "Wasserstein Auto-Encoders"), and the MMD estimate InfoVAE shares.

A deterministic encoder; the KL of the VAE is replaced by a divergence between the aggregate
posterior q(z) = E_x q(z | x) and the prior p(z) = N(0, I), here the maximum mean discrepancy
with a characteristic kernel, estimated on the batch's codes against as many prior draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from aelab.checks import check_choice, check_float
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule

MMD_KERNELS = ("imq", "rbf")


def mmd_kernel(a: Tensor, b: Tensor, kernel: str, scale: float = 1.0) -> Tensor:
    """k(a_i, b_j) for codes a (n x d) and b (m x d): n x m.

    `imq`: C / (C + ||a - b||^2), `rbf`: exp(-||a - b||^2 / C), with C = 2 d `scale`
    (Tolstikhin et al. 2018, Sec. 4: C = 2 d sigma_z^2 for the prior N(0, sigma_z^2 I)).
    """
    c = 2.0 * a.shape[1] * scale
    sq = (a[:, None, :] - b[None, :, :]).square().sum(-1)  # cdist's backward is NaN at 0
    return c / (c + sq) if kernel == "imq" else torch.exp(-sq / c)


def mmd(z: Tensor, z_prior: Tensor, kernel: str, scale: float = 1.0) -> Tensor:
    """The unbiased estimate of MMD_k(q(z), p(z))^2 from codes z ~ q(z) and z_prior ~ p(z),
    each n x d (Tolstikhin et al. 2018, Alg. 2):

        1/(n(n-1)) sum_{l != j} [k(z~_l, z~_j) + k(z_l, z_j)] - 2/n^2 sum_{l, j} k(z_l, z~_j).

    A scalar (no unit; it can be slightly negative). For n = 1 the within-sample sums are empty
    and read 0 (no NaN).
    """
    n = z.shape[0]
    off = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)
    pairs = max(n * (n - 1), 1)
    within = (mmd_kernel(z, z, kernel, scale) * off).sum() + (
        mmd_kernel(z_prior, z_prior, kernel, scale) * off
    ).sum()
    return within / pairs - 2.0 * mmd_kernel(z, z_prior, kernel, scale).mean()


class WAE(AutoencoderModule):
    """WAE-MMD: L = E[c(x, G(z))] + lambda * MMD_k(q(z), p(z)), per image (Tolstikhin et al.
    2018, eq. 4 with the MMD penalty of Alg. 2), z = encode(x~) deterministic, p(z) = N(0, I).

    c is the `recon_loss` (the paper's squared error: `mse`); MMD is `mmd` on the batch's codes
    (B x latent_dim) against as many prior draws (`draws`: `z_prior`). Logged: `recon` (nats
    per image), `mmd` (no unit) and `loss` = recon + lambda * mmd. Samples decode z ~ N(0, I).

    Args:
        mmd_weight: lambda >= 0 (the paper's MNIST runs: 10).
        kernel: `imq` (the paper's) or `rbf`.
        kernel_scale: sigma_z^2 in the kernel's C = 2 d sigma_z^2, > 0 (1: the prior's).

    Raises ConfigError naming the field for lambda < 0, an unknown kernel, a scale <= 0.
    """

    why_not_stackable: ClassVar[str | None] = None

    def __init__(
        self,
        latent_dim: int = 8,
        mmd_weight: float = 10.0,
        kernel: str = "imq",
        kernel_scale: float = 1.0,
        recon_loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        mmd_weight = check_float("mmd_weight", mmd_weight, 0.0)
        kernel = check_choice("kernel", kernel, MMD_KERNELS)
        kernel_scale = check_float("kernel_scale", kernel_scale, 0.0, low_open=True)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            mmd_weight=mmd_weight,
            kernel=kernel,
            kernel_scale=kernel_scale,
            **kwargs,
        )
        self.mmd_weight, self.kernel, self.kernel_scale = mmd_weight, kernel, kernel_scale

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`z_prior` ~ N(0, I), B x latent_dim: the prior's sample the MMD compares the codes
        with."""
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
        """`AutoencoderModule.loss`: `recon` = c(target, decode(z)), `mmd` against `z_prior`,
        `loss` = recon + lambda * mmd (`schedule` unused: no KL term). Logits: decode(z)."""
        z = self.encode(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, z.dtype)
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        divergence = mmd(z, draws["z_prior"], self.kernel, self.kernel_scale)
        parts = {"loss": recon + self.mmd_weight * divergence, "recon": recon, "mmd": divergence}
        return parts, logits

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from z ~ N(0, I) (the prior the MMD matched), drawn from
        `generator` on the model's device: intensities in [0, 1], n x C x H x W."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z).sigmoid()
