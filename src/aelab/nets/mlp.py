"""Fully connected encoder/decoder, as in the reference models (docs/tutorials/first-run.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from aelab.checks import ConfigError, check_choice, check_int

# the hidden units' nonlinearity (`net.activation`): ReLU for the reference models; tanh as
# Burda et al. 2016 use; logistic (sigmoid) as Hinton & Salakhutdinov 2006
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def mlp(
    widths: Sequence[int], relu_before_last: bool = True, activation: str = "relu"
) -> nn.Sequential:
    """Linear layers with `activation` between them and none after the last (it is a code or a
    logit); `relu_before_last=False` leaves the layer before the last linear as well."""
    layers: list[nn.Module] = []
    n_layers = len(widths) - 1
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < n_layers - 2 or (i == n_layers - 2 and relu_before_last):
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPNet:
    """`hidden` are the encoder's widths; the decoder mirrors them.

    The defaults are the reference autoencoder (784-128-64-12); its VAE uses 400-200-100 with
    `relu_before_code=False`: its mu and log sigma^2 heads read the 100-wide layer as it is, and a
    ReLU there (dead units feeding the posterior) cost 1-6 nats of test -ELBO after 3 epochs.

    `activation`: the hidden units' nonlinearity, one of `ACTIVATIONS` (relu, tanh, sigmoid);
    `relu_before_code` applies to it whatever it is.

    Raises:
        ConfigError: `hidden` empty or holding a width < 1; `relu_before_code` not a bool;
            `activation` not one of relu, tanh, sigmoid.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (128, 64),
        relu_before_code: bool = True,
        activation: str = "relu",
    ) -> None:
        if len(hidden) == 0:
            raise ConfigError("hidden", list(hidden), "a non-empty list of positive widths")
        self.hidden = [check_int("hidden", w, 1) for w in hidden]
        if not isinstance(relu_before_code, bool):
            raise ConfigError("relu_before_code", relu_before_code, "true or false")
        self.relu_before_code = relu_before_code
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        """Images B x C x H x W (`image_shape`, pixels in [0, 1]) -> B x out_features (the code,
        or the VAE's mu and log sigma^2 side by side)."""
        widths = [math.prod(image_shape), *self.hidden, out_features]
        return nn.Sequential(nn.Flatten(), mlp(widths, self.relu_before_code, self.activation))

    def decoder(self, latent_dim: int, image_shape: Sequence[int]) -> nn.Module:
        """Codes B x latent_dim -> pixel logits B x C x H x W (`image_shape`)."""
        widths = [latent_dim, *reversed(self.hidden), math.prod(image_shape)]
        return nn.Sequential(
            mlp(widths, activation=self.activation), nn.Unflatten(1, tuple(image_shape))
        )
