"""Convolutional encoder/decoder: stride-2 convolutions down, transposed convolutions up."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from aelab.checks import ConfigError, check_choice, check_int

# the hidden layers' nonlinearity (`net.activation`): ReLU for aelab's nets; LeakyReLU (slope
# 0.01, torch's default) as PyTorch-VAE's CelebA net (`conf/net/conv_celeba.yaml`)
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


class ConvNet:
    """`channels` per stride-2 stage (28x28 -> 14x14 -> 7x7 for two stages), then a linear layer
    (two, through a ReLU layer of `dense` units, when `dense` is set); the decoder mirrors it.

    The image side must be divisible by 2**len(channels) so the decoder lands on the same size.
    Any C x H x W the stages fit: 1 x 28 x 28 with two stages, 3 x 32 x 32 or 3 x 64 x 64 with up
    to five and six. `channels=[32, 32, 64, 64]`, `kernel_size=4`, `dense=256` is
    disentanglement_lib's network for 64 x 64 images (Locatello et al. 2019, table 1;
    `conf/net/conv64.yaml`); `channels=[32, 64, 128, 256, 512]`, `kernel_size=3`,
    `batch_norm=true`, `activation=leaky_relu` is PyTorch-VAE's VanillaVAE net for CelebA 64 x 64
    (`conf/net/conv_celeba.yaml`). `batch_norm`: a BatchNorm2d after every hidden convolution.

    Raises:
        ConfigError: `channels` empty or holding a count < 1; `kernel_size` < 2; `dense` < 1;
            `batch_norm` not a bool; `activation` not relu or leaky_relu.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 4,
        dense: int | None = None,
        batch_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        if len(channels) == 0:
            raise ConfigError("channels", list(channels), "a non-empty list of positive counts")
        self.channels = [check_int("channels", c, 1) for c in channels]
        self.kernel_size = check_int("kernel_size", kernel_size, 2)
        self.dense = None if dense is None else check_int("dense", dense, 1)
        if not isinstance(batch_norm, bool):
            raise ConfigError("batch_norm", batch_norm, "true or false")
        self.batch_norm = batch_norm
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))

    def _hidden(self, conv: nn.Module, width: int) -> list[nn.Module]:
        """A hidden convolution, its BatchNorm (with `batch_norm`) and its nonlinearity."""
        norm = [nn.BatchNorm2d(width)] if self.batch_norm else []
        return [conv, *norm, ACTIVATIONS[self.activation]()]

    def _dense(self, n_in: int, n_out: int) -> list[nn.Module]:
        """n_in -> n_out, through the `dense` hidden layer when there is one."""
        if self.dense is None:
            return [nn.Linear(n_in, n_out)]
        act = ACTIVATIONS[self.activation]()
        return [nn.Linear(n_in, self.dense), act, nn.Linear(self.dense, n_out)]

    def _bottom(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        stages = len(self.channels)
        factor = 2**stages
        if h % factor or w % factor:
            fits = min(_halvings(h), _halvings(w))
            raise ConfigError(
                "channels",
                self.channels,
                f"at most as many stages as halve {h}x{w} evenly ({fits} for {h}x{w}; "
                f"{stages} stride-2 stages take sides divisible by {factor}, e.g. "
                f"{factor}x{factor} or {2 * factor}x{2 * factor})",
            )
        return self.channels[-1], h // factor, w // factor

    def _conv(self, c_in: int, c_out: int, transpose: bool) -> nn.Module:
        # kernel k, stride 2, padding (k-2)/2 rounded: exactly halves (or doubles) even sizes.
        k = self.kernel_size
        pad, out_pad = (k - 1) // 2, k % 2
        if transpose:
            return nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=pad, output_padding=out_pad)
        return nn.Conv2d(c_in, c_out, k, stride=2, padding=pad)

    def encoder(self, image_shape: Sequence[int], out_features: int) -> nn.Module:
        """Images B x C x H x W (`image_shape`, pixels in [0, 1]) -> B x out_features (the code,
        or the VAE's mu and log sigma^2 side by side).

        Raises:
            ConfigError: `channels` has more stages than halve H and W evenly.
        """
        layers: list[nn.Module] = []
        c_in = image_shape[0]
        for c_out in self.channels:
            layers += self._hidden(self._conv(c_in, c_out, transpose=False), c_out)
            c_in = c_out
        bottom = self._bottom(image_shape)
        return nn.Sequential(*layers, nn.Flatten(), *self._dense(math.prod(bottom), out_features))

    def decoder(self, latent_dim: int, image_shape: Sequence[int]) -> nn.Module:
        """Codes B x latent_dim -> pixel logits B x C x H x W (`image_shape`).

        Raises:
            ConfigError: `channels` has more stages than halve H and W evenly.
        """
        bottom = self._bottom(image_shape)
        act = ACTIVATIONS[self.activation]()
        layers: list[nn.Module] = [*self._dense(latent_dim, math.prod(bottom)), act]
        layers.append(nn.Unflatten(1, bottom))
        widths = [*reversed(self.channels), image_shape[0]]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            conv = self._conv(c_in, c_out, transpose=True)
            layers += self._hidden(conv, c_out) if i < len(widths) - 2 else [conv]
        return nn.Sequential(*layers)


def _halvings(side: int) -> int:
    """How many times `side` halves evenly (the stride-2 stages it takes)."""
    n = 0
    while side % 2 == 0 and side > 1:
        side //= 2
        n += 1
    return n
