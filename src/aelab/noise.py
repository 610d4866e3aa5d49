"""Input corruptions for denoising autoencoders.

Each corruption works on a whole batch at once, on the batch's device, and draws from the global
torch RNG (seeded by the run seed) unless a generator is given: evaluation passes a fixed one so
that every run and every re-evaluation scores the same corrupted test set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aelab.checks import check_float


class Noise:
    """No corruption; the base of the others. `level` is the one number a sweep varies."""

    kind = "none"
    level = 0.0

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x

    @property
    def is_identity(self) -> bool:
        return self.level == 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level})"

    @staticmethod
    def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class GaussianNoise(Noise):
    """x + std * N(0, 1), clipped back to the pixel range [0, 1]."""

    kind = "gaussian"

    def __init__(self, std: float = 0.3) -> None:
        self.level = self.std = check_float("std", std, 0.0)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.std == 0.0:
            return x
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + self.std * eps).clamp_(0.0, 1.0)


class MaskingNoise(Noise):
    """Each pixel is set to 0 with probability p (the classic DAE 'masking noise')."""

    kind = "masking"

    def __init__(self, p: float = 0.3) -> None:
        self.level = self.p = check_float("p", p, 0.0, 1.0)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p == 0.0:
            return x
        return x * (self._uniform(x, generator) >= self.p)


class SaltPepperNoise(Noise):
    """Each pixel is replaced with probability p by 0 or 1, chosen with equal odds."""

    kind = "salt_pepper"

    def __init__(self, p: float = 0.2) -> None:
        self.level = self.p = check_float("p", p, 0.0, 1.0)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p == 0.0:
            return x
        u = self._uniform(x, generator)
        # u < p/2 -> pepper (0), p/2 <= u < p -> salt (1): one draw decides both.
        out = torch.where(u < self.p, (u >= self.p / 2).to(x.dtype), x)
        return out
