"""The sliced-Wasserstein autoencoder (SWAE; Kolouri, Pope, Martin and Rohde 2019, "Sliced
Wasserstein Auto-Encoders").

A deterministic autoencoder whose aggregate posterior is pulled towards the prior N(0, I) by the
sliced Wasserstein distance: the codes and as many prior draws projected on L random directions,
where the 1-d optimal transport is a sort.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from aelab.checks import check_float, check_int
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule


def sliced_wasserstein(z: Tensor, z_prior: Tensor, projections: Tensor) -> Tensor:
    """The sliced W_2^2 estimate between the codes z and z_prior (n x d each) on the unit
    directions `projections` (L x d) (Kolouri et al. 2019, eq. 19): the mean over directions and
    over the n sorted pairs of the squared difference of the projections. A scalar, in squared
    code units."""
    a = torch.sort(z @ projections.T, dim=0).values
    b = torch.sort(z_prior @ projections.T, dim=0).values
    return (a - b).square().mean()


class SWAE(AutoencoderModule):
    """L = E[-log p(x | D(z))] + lambda * SW_2^2(q(z), p(z)), per image (Kolouri et al. 2019,
    eq. 15, the distance estimated as eq. 19 with L = `projections` directions), z = encode(x~)
    deterministic, p(z) = N(0, I).

    Logged: `recon` (nats per image), `sw` (`sliced_wasserstein`, squared code units) and
    `loss` = recon + lambda * sw. Samples decode z ~ N(0, I).

    Args:
        sw_weight: lambda >= 0.
        projections: L >= 1, the random directions drawn for each batch (`draws`).

    Raises ConfigError naming the field for lambda < 0 or L < 1.
    """

    why_not_stackable: ClassVar[str | None] = None

    def __init__(
        self,
        latent_dim: int = 16,
        sw_weight: float = 10.0,
        projections: int = 50,
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        sw_weight = check_float("sw_weight", sw_weight, 0.0)
        projections = check_int("projections", projections, 1)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            sw_weight=sw_weight,
            projections=projections,
            **kwargs,
        )
        self.sw_weight, self.projections = sw_weight, projections

    def draws(
        self,
        x_in: Tensor,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Tensor]:
        """`z_prior` ~ N(0, I), B x latent_dim, then `directions`: L x latent_dim uniform on the
        unit sphere (normalised Gaussians)."""
        kw = {"generator": generator, "device": x_in.device, "dtype": dtype or x_in.dtype}
        z_prior = torch.randn(x_in.shape[0], self.latent_dim, **kw)
        directions = torch.randn(self.projections, self.latent_dim, **kw)
        return {"z_prior": z_prior, "directions": directions / directions.norm(dim=1, keepdim=True)}

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss`: `recon`, `sw` and `loss` = recon + lambda * sw (`schedule`
        unused). Logits: decode(z)."""
        z = self.encode(x_in)
        if draws is None:
            draws = self.draws(x_in, generator, z.dtype)
        logits = self.decode(z)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        sw = sliced_wasserstein(z, draws["z_prior"], draws["directions"])
        return {"loss": recon + self.sw_weight * sw, "recon": recon, "sw": sw}, logits

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from z ~ N(0, I), drawn from `generator` on the model's device:
        intensities in [0, 1], n x C x H x W."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z).sigmoid()
