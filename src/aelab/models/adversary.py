"""What the models with a discriminator trained in the same step share (FactorVAE's on codes,
the AAE's on codes, the VAE-GAN's on images): the check of its settings, and the two parameter
groups of the run's one optimizer, the model's and the discriminator's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from aelab.checks import ConfigError, check_float, check_int
from aelab.models.base import plain


def discriminator_settings(
    hidden: Sequence[int], optimizer: Mapping[str, Any] | None, default: Mapping[str, Any]
) -> tuple[list[int], dict[str, Any]]:
    """The discriminator's hidden widths and its parameter group's settings (`default` updated
    by `optimizer`, as plain containers: checkpoint-safe).

    Raises ConfigError naming `discriminator_hidden` for an empty list or a width < 1, and
    `discriminator_optimizer.lr` for an lr <= 0.
    """
    widths = list(hidden)
    if not widths:
        raise ConfigError("discriminator_hidden", widths, "a non-empty list of widths >= 1")
    widths = [check_int("discriminator_hidden", w, 1) for w in widths]
    settings = plain(optimizer, default)
    if "lr" in settings:
        check_float("discriminator_optimizer.lr", settings["lr"], 0.0, low_open=True)
    return widths, settings


def adversary_param_groups(
    model: nn.Module, discriminator: nn.Module, settings: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Two parameter groups: the model's without its discriminator (the `optimizer` group's
    settings) and the discriminator's (its own `settings`; `betas` as the tuple torch wants)."""
    d_params = set(map(id, discriminator.parameters()))
    own = dict(settings)
    if "betas" in own:
        own["betas"] = tuple(own["betas"])
    return [
        {"params": [p for p in model.parameters() if id(p) not in d_params]},
        {"params": list(discriminator.parameters()), **own},
    ]
