"""The deterministic autoencoder. Trained on corrupted inputs it is the denoising autoencoder."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from aelab.losses import recon_nll
from aelab.models.base import AutoencoderModule


class Autoencoder(AutoencoderModule):
    """L = -log p(x | dec(enc(x~))), per image; x~ = x without noise, a corruption of x with it."""

    why_not_stackable = None  # it stacks: its loss reads only its weights; nothing is drawn

    def loss(
        self,
        x_in: Tensor,
        target: Tensor,
        generator: torch.Generator | None = None,
        draws: Mapping[str, Tensor] | None = None,
        schedule: Mapping[str, Tensor | float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """`AutoencoderModule.loss`: `loss` = `recon` = -log p(target | decode(encode(x_in))),
        nats per image, batch mean (`generator`, `draws`, `schedule` unused: nothing is drawn, no
        KL term). Logits: the decoder's."""
        logits = self.decode(self.encode(x_in))
        recon = recon_nll(self.recon_loss, logits, target).mean()
        return {"loss": recon, "recon": recon}, logits
