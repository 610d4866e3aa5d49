"""Learning-rate schedules beyond torch's own classes (`conf/lr_scheduler/`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from aelab.checks import ConfigError, build, check_choice, check_float, check_int, in_group


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_factor: float = 0.001,
    min_lr: float = 0.0,
) -> LRScheduler:
    """Linear warm-up from `warmup_start_factor` x lr to lr over `warmup_steps` steps, then
    cosine annealing to `min_lr` at `total_steps` (Loshchilov & Hutter 2017, eq. 5, one cycle
    without restarts): torch's LinearLR then CosineAnnealingLR, in a SequentialLR.

    `total_steps`: the run's optimizer steps (aelab-train hands in Lightning's
    `estimated_stepping_batches` when the config leaves it null).

    Raises ConfigError: `total_steps` < 1, `warmup_steps` outside [0, total_steps),
    `warmup_start_factor` outside (0, 1], `min_lr` < 0.
    """
    total = check_int("total_steps", total_steps, 1)
    warmup = check_int("warmup_steps", warmup_steps, 0)
    if warmup >= total:
        raise ConfigError("warmup_steps", warmup, f"an integer in [0, {total - 1}] (total_steps)")
    factor = check_float("warmup_start_factor", warmup_start_factor, 0.0, 1.0, low_open=True)
    eta_min = check_float("min_lr", min_lr, 0.0)
    cosine = CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=eta_min)
    if warmup == 0:
        return cosine
    linear = LinearLR(optimizer, start_factor=factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


INTERVALS = ("step", "epoch")
STAND_IN_TOTAL = 1000  # total_steps for the check before training, when the config leaves it null


def total_steps(config: Mapping[str, Any], trainer: Any) -> dict[str, int]:
    """`total_steps` for a scheduler config that has the key null: the run's optimizer steps
    (Lightning's `estimated_stepping_batches`); {} when it is set or absent."""
    scheduler = config.get("scheduler") or {}
    if "total_steps" in scheduler and scheduler["total_steps"] is None:
        steps = STAND_IN_TOTAL if trainer is None else run_steps(trainer)
        return {"total_steps": int(steps)}
    return {}


def run_steps(trainer: Any) -> int:
    """The run's optimizer steps, as Lightning's `estimated_stepping_batches` counts them, but
    from the datamodule's split size where it has one: asking Lightning sets up the training
    data before a resumed run has restored its loader's place in the epoch, and the resumed run
    then draws other batches than an uninterrupted one."""
    datamodule = trainer.datamodule
    epochs = trainer.max_epochs
    if (trainer.max_steps or -1) > 0:
        return int(trainer.max_steps)
    if not hasattr(datamodule, "split_size") or epochs in (None, -1):
        return int(trainer.estimated_stepping_batches)
    per_process = math.ceil(datamodule.split_size("train") / max(trainer.world_size, 1))
    batches = math.ceil(per_process / datamodule.batch_size)
    limit = trainer.limit_train_batches
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
    return per_epoch * int(epochs)


def is_plateau(config: Mapping[str, Any]) -> bool:
    """Whether the `lr_scheduler` config steps on a monitored figure (ReduceLROnPlateau)."""
    target = str((config.get("scheduler") or {}).get("_target_", ""))
    return target.endswith("ReduceLROnPlateau")


def _positive(field: str, value: Any) -> None:
    check_float(field, value, 0.0, low_open=True)


def _fraction(field: str, value: Any) -> None:
    check_float(field, value, 0.0, 1.0, low_open=True)
    if value == 1.0:
        raise ConfigError(field, value, "a number in (0.0, 1.0)")


def _count(low: int) -> Any:
    return lambda field, value: check_int(field, value, low)


def _non_negative(field: str, value: Any) -> None:
    check_float(field, value, 0.0)


def _milestones(field: str, value: Any) -> None:
    allowed = "an increasing list of integers >= 1"  # empty: a constant lr (a reference run's)
    if not isinstance(value, list | tuple):
        raise ConfigError(field, value, allowed)
    for m in value:
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise ConfigError(field, list(value), allowed)
    if list(value) != sorted(set(value)):
        raise ConfigError(field, list(value), allowed)


# what torch's schedulers accept at construction but fail on (a ZeroDivisionError at the first
# step: step_size=0, T_max=0) or turn into a meaningless lr (gamma <= 0: lr 0 or negative), per
# class: their parameters' ranges
TORCH_SCHEDULER_RANGES: dict[str, dict[str, Any]] = {
    "StepLR": {"step_size": _count(1), "gamma": _positive},
    "MultiStepLR": {"milestones": _milestones, "gamma": _positive},
    "ExponentialLR": {"gamma": _positive},
    "CosineAnnealingLR": {"T_max": _count(1), "eta_min": _non_negative},
    "CosineAnnealingWarmRestarts": {
        "T_0": _count(1),
        "T_mult": _count(1),
        "eta_min": _non_negative,
    },
    "ReduceLROnPlateau": {
        "factor": _fraction,
        "patience": _count(0),
        "cooldown": _count(0),
        "threshold": _non_negative,
        "min_lr": _non_negative,
        "eps": _non_negative,
    },
    "PolynomialLR": {"total_iters": _count(1), "power": _non_negative},
    "ConstantLR": {"factor": _fraction, "total_iters": _count(0)},
}


def check_scheduler_ranges(scheduler: Mapping[str, Any]) -> None:
    """The parameters of a torch scheduler (`lr_scheduler.scheduler`) in their ranges
    (`TORCH_SCHEDULER_RANGES`): torch checks few of them when the scheduler is built.

    Raises ConfigError naming `lr_scheduler.scheduler.<parameter>` and its range.
    """
    target = str(scheduler.get("_target_", ""))
    module, _, name = target.rpartition(".")
    if module != "torch.optim.lr_scheduler":
        return
    with in_group("lr_scheduler.scheduler"):
        for key, check in TORCH_SCHEDULER_RANGES.get(name, {}).items():
            if key in scheduler:
                check(key, scheduler[key])


def check_lr_scheduler(config: Mapping[str, Any], optimizer: Mapping[str, Any]) -> None:
    """Refuse a bad `lr_scheduler` group before training: Lightning's keys out of range, a
    plateau schedule without a `monitor`, a torch scheduler's parameter out of its range
    (`check_scheduler_ranges`), or a scheduler its class refuses (built once on a stand-in
    optimizer with `optimizer`'s lr).

    Raises ConfigError naming `lr_scheduler.<field>`.
    """
    if not config.get("scheduler"):
        extra = sorted(k for k in config if not k.startswith("_"))
        if extra and any(config[k] is not None for k in extra if k != "scheduler"):
            raise ConfigError("lr_scheduler", extra, "a `scheduler` beside them", grouped=True)
        return
    with in_group("lr_scheduler"):
        check_choice("interval", config.get("interval", "epoch"), INTERVALS)
        check_int("frequency", config.get("frequency", 1), 1)
        monitor = config.get("monitor")
        if is_plateau(config) and not (isinstance(monitor, str) and monitor):
            raise ConfigError("monitor", monitor, "a logged figure, e.g. val/loss")
    check_scheduler_ranges(config["scheduler"])
    params = [torch.nn.Parameter(torch.zeros(1))]
    stand_in = torch.optim.SGD(params, lr=float(optimizer.get("lr") or 1e-3))
    node = OmegaConf.create({"lr_scheduler": dict(config)}).lr_scheduler.scheduler
    build(node, "lr_scheduler.scheduler", optimizer=stand_in, **total_steps(config, None))


def check_plateau_can_be_fed(config: Mapping[str, Any], trainer: Any) -> None:
    """Refuse a plateau schedule that would step without a fresh `monitor` value: the run does
    not validate (`trainer.limit_val_batches=0`), steps it per optimizer step, or validates less
    often than every `frequency` epochs (`trainer.check_val_every_n_epoch`).

    Raises ConfigError naming `lr_scheduler.frequency` or `lr_scheduler.interval`.
    """
    if trainer is None or not is_plateau(config):
        return
    frequency = int(config.get("frequency", 1))
    every = trainer.check_val_every_n_epoch or 1
    if config.get("interval", "epoch") != "epoch":
        raise ConfigError(
            "lr_scheduler.interval",
            config.get("interval"),
            "epoch (a plateau schedule steps on validation figures)",
            grouped=True,
        )
    if not trainer.limit_val_batches or frequency % every:
        raise ConfigError(
            "lr_scheduler.frequency",
            frequency,
            f"a multiple of trainer.check_val_every_n_epoch={every}, in a run that validates "
            f"(trainer.limit_val_batches={trainer.limit_val_batches})",
            grouped=True,
        )
