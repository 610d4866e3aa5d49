"""What a user's model must be for aelab to train and evaluate it (docs/how-to/own-model.md),
checked before anything is built so a wrong `model._target_` is one line."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from aelab.checks import ConfigError, import_refusal, locate
from aelab.models.base import AutoencoderModule

BASE = f"{AutoencoderModule.__module__}.{AutoencoderModule.__qualname__}"
# the methods training and the evaluation suite call; the base class has encode and decode
# (through the `net` group's encoder and decoder), a model of its own says its loss
MODEL_METHODS = ("encode", "decode", "loss")


# --- the optional interface (docs/how-to/own-model.md): what the evaluation suite asks a
# model for beyond the contract, each a Protocol so callers test `isinstance(model, HasPosterior)`
# and a model's misspelling is caught when it is built (`check_optional_interface`)
@runtime_checkable
class HasPosterior(Protocol):
    """A diagonal Gaussian q(z | x): likelihood figures (IW bound), active units, I(x; z)."""

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: B x C x H x W in [0, 1] -> (mu, log sigma^2), each B x latent_dim."""
        ...


@runtime_checkable
class CanSample(Protocol):
    """A generative model of its own: prior samples."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images, n x C x H x W intensities in [0, 1], drawn with `generator`."""
        ...


@runtime_checkable
class HasCodeIndices(Protocol):
    """A discrete code (VQ-VAE): its rate in bits, codebook use and perplexity."""

    def code_indices(self, x: Tensor) -> Tensor:
        """x: B x C x H x W in [0, 1] -> the chosen codebook entries, B x positions (int64)."""
        ...


# every optional method (the base class gives `test_parts` and `eval_logits` defaults), with
# the positional arguments aelab passes it after `self`
OPTIONAL_METHODS: dict[str, tuple[str, ...]] = {
    "posterior": ("x",),
    "sample": ("n", "generator"),
    "code_indices": ("x",),
    "log_prior": ("z",),  # a learned prior: the IW bound and rate use it
    "prior_codes": ("n", "generator"),
    "test_parts": ("x_in",),
    "eval_logits": ("x_in", "loss_logits"),
}
# a name this close to an interface method (difflib's ratio) is taken for a misspelling of it
NEAR_MISS_RATIO = 0.85


def _own_names(cls: type) -> set[str]:
    """Public callables that `cls` and its bases define above AutoencoderModule (a user's)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is AutoencoderModule or not issubclass(klass, AutoencoderModule):
            continue
        names.update(n for n, v in vars(klass).items() if not n.startswith("_") and callable(v))
    return names


def interface_faults(cls: type) -> list[str]:
    """What is wrong with `cls`'s optional interface: a method named like an interface method
    that `cls` lacks (`posterier` for `posterior`), or an interface method that cannot be called
    as aelab calls it. Empty for a class that is not an AutoencoderModule (`lacking` says that)."""
    if not issubclass(cls, AutoencoderModule):
        return []
    faults = []
    interface = (*OPTIONAL_METHODS, *MODEL_METHODS)
    for name in sorted(_own_names(cls)):
        if name in interface:
            continue
        for meant in difflib.get_close_matches(name, interface, n=1, cutoff=NEAR_MISS_RATIO):
            if meant not in _own_names(cls):
                faults.append(f"{cls.__name__}.{name} looks like a misspelt {meant}()")
    for name, args in OPTIONAL_METHODS.items():
        method = inspect.getattr_static(cls, name, None)
        if method is None or getattr(AutoencoderModule, name, None) is method:
            continue
        try:
            inspect.signature(method).bind(None, *args)  # None: self
        except TypeError:
            faults.append(
                f"{cls.__name__}.{name}{inspect.signature(method)} cannot be called as "
                f"{name}({', '.join(args)})"
            )
        except ValueError:  # no signature to read (a builtin): trusted
            pass
    return faults


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
        check_optional_interface(found, target, group)


def check_optional_interface(cls: type, target: Any, group: str = "model") -> None:
    """Raises ConfigError (`model._target_`) naming every misspelt or mis-signed optional
    method of `cls` (`interface_faults`): such a model would silently lose the figures that
    method gives."""
    faults = interface_faults(cls)
    if faults:
        allowed = (
            "a model whose optional methods are spelt and called as aelab calls them "
            f"({'; '.join(faults)})"
        )
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
    check_optional_interface(type(model), target, group)
    return model


def validation_figures(model: AutoencoderModule) -> set[str]:
    """The `val/*` names `model`'s validation logs, found by scoring two random images on a copy
    of it (the model itself, its weights and the global random state stay as they were).

    A model whose validation the stand-in batch cannot run gives the empty set (not checked).
    """
    import copy

    probe = copy.deepcopy(model).eval()
    if getattr(probe, "dataset_size", 0) is None:  # β-TCVAE: its N comes from the data at setup
        probe.dataset_size = 1000
    x = torch.rand(2, *probe.image_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            probe.evaluate_batch((x, torch.zeros(2, dtype=torch.long)), 0, "val")
            names = probe.running_means("val").compute_and_reset()
    except Exception:  # noqa: BLE001 - a user's model on a stand-in batch: Lightning says it later
        return set()
    return {f"val/{k}" for k in names}


def check_optimized_metric(metric: Any, model: AutoencoderModule) -> None:
    """`optimized_metric` (the best checkpoint's `monitor`, a sweep's objective) is a figure the
    model's validation logs; else Lightning fails with a traceback after the first epoch.

    Raises ConfigError naming `optimized_metric` and the figures allowed.
    """
    logged = validation_figures(model)
    if logged and metric not in logged:
        names = ", ".join(sorted(logged))
        raise ConfigError("optimized_metric", metric, f"a figure validation logs: one of {names}")
