"""Each stacked member's learning-rate scheduler, stepped where Lightning steps it in the
member's own run.

A member's scheduler is torch's own class (or aelab's `cosine_with_warmup`), built from the
member's `lr_scheduler` config on a stand-in optimizer of the member's optimizer class with the
member's learning rate: torch's schedulers read and write only the param group's `lr`, so the
stand-in's `lr` after each scheduler step is the value the member's own optimizer would hold,
and the stacked Adam takes it for the member's next step. When, as in Lightning 2's training
loop (`_TrainingEpochLoop._update_learning_rates`, `_FitLoop.on_advance_end`):

- `interval: step`: after each optimizer step, when (batch index in the epoch + 1) is a multiple
  of `frequency`;
- `interval: epoch`: after the epoch's last batch (before its validation), when (epoch + 1) is a
  multiple of `frequency`;
- ReduceLROnPlateau: after the epoch's validation, with the member's `monitor` figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from aelab.checks import ConfigError, build
from aelab.schedules.lr import is_plateau

# schedulers that set only the param group's `lr` (OneCycleLR and CyclicLR also cycle Adam's
# betas, which the stacked Adam keeps one value of for the stack)
STACKABLE_SCHEDULERS = (
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR",
    "torch.optim.lr_scheduler.ExponentialLR",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.LinearLR",
    "torch.optim.lr_scheduler.ConstantLR",
    "torch.optim.lr_scheduler.PolynomialLR",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
    "aelab.schedules.cosine_with_warmup",
    "aelab.schedules.lr.cosine_with_warmup",
)


def why_scheduler_not_stackable(config: Mapping[str, Any] | None) -> str | None:
    """None when a member with this `lr_scheduler` config can be stacked, else one line."""
    scheduler = (config or {}).get("scheduler")
    if not scheduler:
        return None
    target = scheduler.get("_target_")
    if target not in STACKABLE_SCHEDULERS:
        return (
            f"lr_scheduler.scheduler._target_={target}: a stack steps the schedulers that set "
            "only the learning rate (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, "
            "LinearLR, ConstantLR, PolynomialLR, ReduceLROnPlateau, cosine_with_warmup)"
        )
    return None


class MemberSchedulers:
    """The members' learning rates over a stacked run: `lr` (M floats) is what each member's
    own optimizer holds at the next step.

    `cfgs`: the members' composed configs; `run_steps`: the run's optimizer steps (handed to a
    scheduler whose `total_steps` is null, as `aelab.schedules.lr.total_steps` does in a run).
    """

    def __init__(self, cfgs: Sequence[DictConfig], run_steps: int) -> None:
        self.configs: list[dict[str, Any]] = []
        self.stand_ins: list[torch.optim.Optimizer] = []
        self.schedulers: list[Any] = []
        for cfg in cfgs:
            config = cfg.get("lr_scheduler") or {}
            plain = OmegaConf.to_container(config, resolve=True) if config else {}
            self.configs.append(plain)  # type: ignore[arg-type]
            optimizer = get_class(cfg.optimizer._target_)(
                [torch.zeros(1, requires_grad=True)], lr=float(cfg.optimizer.lr)
            )
            self.stand_ins.append(optimizer)
            if not plain.get("scheduler"):  # type: ignore[union-attr]
                self.schedulers.append(None)
                continue
            extra = {}
            if "total_steps" in config.scheduler and config.scheduler.total_steps is None:
                extra["total_steps"] = int(run_steps)
            scheduler = build(
                config.scheduler, "lr_scheduler.scheduler", optimizer=optimizer, **extra
            )
            # one step of the stand-in (its parameter has no gradient: nothing moves), once:
            # torch warns at a scheduler's first step when its optimizer never stepped
            optimizer.step()
            self.schedulers.append(scheduler)

    @property
    def active(self) -> bool:
        """Whether any member has a scheduler (else every lr stays as configured)."""
        return any(s is not None for s in self.schedulers)

    @property
    def lr(self) -> list[float]:
        return [float(o.param_groups[0]["lr"]) for o in self.stand_ins]

    def after_batch(self, index: int, epoch: int, last_batch: bool) -> None:
        """After the optimizer step of batch `index` (0-based, in the epoch) of `epoch`;
        `last_batch`: the epoch's last (Lightning's `_num_ready_batches_reached`)."""
        for config, scheduler in zip(self.configs, self.schedulers, strict=True):
            if scheduler is None or is_plateau(config):
                continue
            frequency = int(config.get("frequency") or 1)
            if (config.get("interval") or "epoch") == "step":
                if (index + 1) % frequency == 0:
                    scheduler.step()
            elif last_batch and (epoch + 1) % frequency == 0:
                scheduler.step()

    def after_validation(
        self, epoch: int, figures: Sequence[Mapping[str, float]], alive: Sequence[bool]
    ) -> None:
        """After `epoch`'s validation: each live member's plateau scheduler on its `monitor`.

        Raises ConfigError naming `lr_scheduler.monitor` when a member's figures lack it (its
        own run refuses the same at its first validation).
        """
        for k, (config, scheduler) in enumerate(zip(self.configs, self.schedulers, strict=True)):
            if scheduler is None or not is_plateau(config) or not alive[k]:
                continue
            if (epoch + 1) % int(config.get("frequency") or 1):
                continue
            monitor = config.get("monitor")
            if monitor not in figures[k]:
                names = ", ".join(sorted(n for n in figures[k] if n.startswith("val/")))
                raise ConfigError("lr_scheduler.monitor", monitor, f"one of {names}", grouped=True)
            scheduler.step(figures[k][monitor])

    def state(self) -> list[dict[str, Any]]:
        """Each member's scheduler and learning rate (for the stack checkpoint)."""
        return [
            {
                "scheduler": None if s is None else s.state_dict(),
                "lr": float(o.param_groups[0]["lr"]),
            }
            for s, o in zip(self.schedulers, self.stand_ins, strict=True)
        ]

    def load(self, state: Sequence[Mapping[str, Any]]) -> None:
        for saved, scheduler, optimizer in zip(state, self.schedulers, self.stand_ins, strict=True):
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            optimizer.param_groups[0]["lr"] = saved["lr"]
