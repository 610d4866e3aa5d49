"""Fully connected encoder/decoder, as in the seed document."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from aelab.checks import ConfigError, check_int


def mlp(widths: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them and none after the last (it is a code or a logit)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPNet:
    """`hidden` are the encoder's widths; the decoder mirrors them.

    The defaults are the seed's autoencoder (784-128-64-12); its VAE uses 400-200-100.
    """

    def __init__(self, hidden: Sequence[int] = (128, 64)) -> None:
        if len(hidden) == 0:
            raise ConfigError("hidden", list(hidden), "a non-empty list of positive widths")
        self.hidden = [check_int("hidden", w, 1) for w in hidden]

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(), mlp([math.prod(image_shape), *self.hidden, out_features])
        )

    def decoder(self, latent_dim: int, image_shape: Sequence[int]) -> nn.Module:
        widths = [latent_dim, *reversed(self.hidden), math.prod(image_shape)]
        return nn.Sequential(mlp(widths), nn.Unflatten(1, tuple(image_shape)))
