"""The contractive autoencoder (Rifai et al. 2011): the squared Frobenius norm of the encoder's
Jacobian as a penalty, so the code moves little when the input does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from aelab.checks import check_float
from aelab.losses import recon_nll
from aelab.models.ae import Autoencoder


def jacobian_frobenius_sq(
    f: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """||d f(x_n) / d x_n||_F^2 for each image: shape (batch,), and f(x): shape (batch, d).

    One vector-Jacobian product per code unit, all d of them vmapped in one call
    (`torch.func.vjp` under `torch.func.vmap`): d products e_j^T J for the whole batch at once,
    no loop over images. f must treat images independently (no batch norm), as aelab's nets do.
    `create_graph`: keep the graph, so the penalty can be differentiated for training. Being
    torch.func transforms, it also runs under a stack's vmap over its members' weights. Works
    under Lightning's inference mode (the evaluation loops), where the result is detached.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()  # an inference tensor cannot join a graph
        h, pullback = torch.func.vjp(f, x)
        d = h.shape[1]
        grad_out = torch.eye(d, device=h.device, dtype=h.dtype)[:, None].expand(d, *h.shape)
        (jac,) = torch.func.vmap(pullback)(grad_out)  # (d, batch, *image): row j of each J
        norm = jac.square().flatten(2).sum(2).sum(0)
    if not create_graph:
        norm, h = norm.detach(), h.detach()
    return norm, h


class ContractiveAutoencoder(Autoencoder):
    """L = -log p(x | dec(h)) + contraction_weight * ||dh/dx~||_F^2, per image, h = enc(x~).

    Logged: `recon` and `contraction` (the squared Frobenius norm, mean over images).

    Raises ConfigError for a negative contraction_weight.
    """

    why_not_stackable = None  # it stacks: the Jacobian is torch.func's, under the stack's vmap

    def __init__(
        self,
        latent_dim: int = 12,
        contraction_weight: float = 0.1,
        recon_loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        weight = check_float("contraction_weight", contraction_weight, 0.0)
        super().__init__(
            latent_dim=latent_dim, recon_loss=recon_loss, contraction_weight=weight, **kwargs
        )
        self.contraction_weight = weight

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        norm, h = jacobian_frobenius_sq(self.encode, x_in, create_graph=torch.is_grad_enabled())
        logits = self.decode(h)
        recon = recon_nll(self.recon_loss, logits, target).mean()
        contraction = norm.mean()
        parts = {
            "loss": recon + self.contraction_weight * contraction,
            "recon": recon,
            "contraction": contraction,
        }
        return parts, logits
