"""What a user's model must be for aelab to train and evaluate it (README: "Bring your own
model"), checked before anything is built so a wrong `model._target_` is one line."""

from __future__ import annotations

from typing import Any

from aelab.checks import ConfigError, import_refusal, locate
from aelab.models.base import AutoencoderModule

BASE = f"{AutoencoderModule.__module__}.{AutoencoderModule.__qualname__}"
# the methods training and the evaluation suite call; the base class has encode and decode
# (through the `net` group's encoder and decoder), a model of its own says its loss
MODEL_METHODS = ("encode", "decode", "loss")


def lacking(cls: type) -> list[str]:
    """What `cls` lacks of an aelab model: contract methods it does not implement, and the
    base class's training steps and checkpoints when it is not an AutoencoderModule."""
    missing = [
        f"{name}()"
        for name in MODEL_METHODS
        if not callable(getattr(cls, name, None))
        or (name == "loss" and getattr(cls, name) is AutoencoderModule.loss)
    ]
    if not issubclass(cls, AutoencoderModule):
        missing.append(f"the training steps and checkpoints of {BASE}")
    return missing


def check_model_target(target: Any, group: str = "model") -> None:
    """Raises ConfigError (`model._target_`) for a target that cannot be imported or a class
    that is not an aelab model, naming what it lacks. A factory function passes (its result is
    checked by `check_model`)."""
    if not isinstance(target, str):
        raise ConfigError(f"{group}._target_", target, f"the dotted name of a {BASE} subclass")
    try:
        found = locate(target)
    except ImportError as err:
        raise import_refusal(group, target, err) from err
    if isinstance(found, type):
        missing = lacking(found)
        if missing:
            allowed = f"a subclass of {BASE} (it lacks {', '.join(missing)})"
            raise ConfigError(f"{group}._target_", target, allowed, grouped=True)


def check_model(model: Any, target: Any, group: str = "model") -> Any:
    """`model` if it is an aelab model, else ConfigError naming what it lacks."""
    if not isinstance(model, AutoencoderModule) or lacking(type(model)):
        what = ", ".join(lacking(type(model)))
        raise ConfigError(
            f"{group}._target_",
            target,
            f"a target that returns a {BASE} (it returned {type(model).__name__}, lacking {what})",
            grouped=True,
        )
    return model
