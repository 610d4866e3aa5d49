"""The regularised autoencoder (RAE; Ghosh, Sajjadi, Vergari, Black and Schölkopf 2020, "From
Variational to Deterministic Autoencoders").

A deterministic autoencoder whose codes are kept small by a penalty on ||z||^2 and whose
decoder is kept smooth by a regulariser (the L2 norm of its weights, or a gradient penalty);
it has no prior of its own: it generates ex post, through a density fitted on its training
codes (`aelab.samplers.GMMSampler`, as the paper's 10-component GMM).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from aelab.checks import check_choice, check_float
from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule

RAE_REGULARISERS = ("l2", "gp")


def decoder_gradient_penalty(decode: Any, z: Tensor) -> tuple[Tensor, Tensor]:
    """The decoder's logits at z (B x latent_dim -> B x C x H x W) and, per image, the gradient
    penalty ||grad_z sum_pixels D(z)||^2 (shape B), as the paper's and pythae's RAE-GP compute
    it: one vector-Jacobian product with a cotangent of ones (`torch.func.vjp`, so it also runs
    under a stack's vmap). Under Lightning's inference mode (the evaluation loops) both come
    back detached.
    """
    keep = torch.is_grad_enabled()
    with torch.inference_mode(False), torch.enable_grad():
        z = z.clone()  # an inference tensor cannot join a graph
        logits, pullback = torch.func.vjp(decode, z)
        (grad,) = pullback(torch.ones_like(logits))
        penalty = grad.square().sum(1)
    if not keep:
        logits, penalty = logits.detach(), penalty.detach()
    return logits, penalty


class RAE(AutoencoderModule):
    """L = E[-log p(x | D(z))] + beta * 1/2 ||z||^2 + lambda * L_REG, per image (Ghosh et al.
    2020, eq. 11), z = encode(x~) deterministic.

    L_REG (`regulariser`): `l2`, ||theta_D||^2 summed over the decoder's weights (RAE-L2, the
    paper's weight decay on the decoder, inside the loss so every optimizer applies it); `gp`,
    ||grad_z D(z)||^2 per image, `decoder_gradient_penalty` (RAE-GP). Logged: `recon` (nats per
    image), `code_norm` (1/2 ||z||^2, batch mean), `decoder_reg` (L_REG, batch mean for `gp`) and
    `loss`. No `sample`: the GMM sampler generates from its codes, ex post (paper Sec. 4).

    Args:
        embedding_weight: beta >= 0.
        reg_weight: lambda >= 0.
        regulariser: `l2` or `gp`.

    Raises ConfigError naming the field for a negative weight or an unknown regulariser.
    """

    why_not_stackable: ClassVar[str | None] = (
        "its L2 regulariser reads the decoder's weights as parameters, and a stack holds each "
        "member's weights outside the model (the loss would penalise one copy for all members)"
    )

    def __init__(
        self,
        latent_dim: int = 16,
        embedding_weight: float = 1.0,
        reg_weight: float = 1.0e-3,
        regulariser: str = "l2",
        recon_loss: str = "bce",
        **kwargs: Any,
    ) -> None:
        embedding_weight = check_float("embedding_weight", embedding_weight, 0.0)
        reg_weight = check_float("reg_weight", reg_weight, 0.0)
        regulariser = check_choice("regulariser", regulariser, RAE_REGULARISERS)
        super().__init__(
            latent_dim=latent_dim,
            recon_loss=recon_loss,
            embedding_weight=embedding_weight,
            reg_weight=reg_weight,
            regulariser=regulariser,
            **kwargs,
        )
        self.embedding_weight, self.reg_weight = embedding_weight, reg_weight
        self.regulariser = regulariser

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss`: `recon`, `code_norm`, `decoder_reg` and `loss` = recon +
        beta * code_norm + lambda * decoder_reg (nothing drawn: `generator`, `draws` and
        `schedule` unused). Logits: decode(z)."""
        z = self.encode(x_in)
        if self.regulariser == "gp":
            logits, penalty = decoder_gradient_penalty(self.decode, z)
            reg = penalty.mean()
        else:
            logits = self.decode(z)
            reg = sum(p.square().sum() for p in self.decoder.parameters())
        recon = recon_nll(self.recon_loss, logits, target).mean()
        code_norm = 0.5 * z.square().sum(1).mean()
        loss = recon + self.embedding_weight * code_norm + self.reg_weight * reg
        return {"loss": loss, "recon": recon, "code_norm": code_norm, "decoder_reg": reg}, logits
