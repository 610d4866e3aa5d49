"""Schedules of the KL term of a VAE's loss: β(t) and capacity C(t) as functions of the training
step, and free bits. Each is a pure function of the step, so a resumed run (whose step counter
is restored) has β(t) and C(t) exactly as an uninterrupted one.

`t` counts optimizer steps (`unit: steps`) or epochs, fractional within one (`unit: epochs`).
"""

from __future__ import annotations

import math

from torch import Tensor

from aelab.checks import ConfigError, check_choice, check_float, check_int

UNITS = ("steps", "epochs")


class KLSchedule:
    """The constant weight β of today's VAE (`kl_schedule=constant`), with optional free bits.

    The KL part of the loss is β · KL, KL = Σ_j KL(q(z_j | x) || N(0, 1)) in nats per image
    (batch mean). With `free_bits` λ > 0 it is β · Σ_g max(λ, KL_g), KL_g the batch mean of group
    g's KL (groups of `group_size` consecutive units; 1: per unit): units below λ nats get no
    gradient towards the prior (Kingma et al. 2016, "Improved variational inference with
    inverse autoregressive flow", eq. 13).

    Raises:
        ConfigError: `free_bits` < 0, `group_size` < 1, `unit` not steps or epochs.
    """

    kind = "constant"

    def __init__(self, free_bits: float = 0.0, group_size: int = 1, unit: str = "steps") -> None:
        self.free_bits = check_float("free_bits", free_bits, 0.0)
        self.group_size = check_int("group_size", group_size, 1)
        self.unit = check_choice("unit", unit, UNITS)

    @property
    def varies(self) -> bool:
        """Whether β or C change with t (then `train/beta`, `train/capacity` are logged)."""
        return False

    def beta(self, beta: float, t: float) -> float:
        """The KL weight at t for the model's target `beta`."""
        return beta

    def capacity(self, t: float) -> float | None:
        """The capacity C(t) in nats (None: this schedule has none)."""
        return None

    def penalty(self, kl: Tensor, kl_units: Tensor | None, beta: float, t: float) -> Tensor:
        """The KL part of the loss, nats per image.

        kl: the batch mean of the KL summed over units (scalar); kl_units: B x latent_dim, the
        KL of each unit of each image (needed with free bits; else may be None); beta: the
        model's target weight; t: the position in `unit`s.
        """
        return self.penalty_at(kl, kl_units, self.values(beta, t))

    def values(self, beta: float, t: float) -> dict[str, float]:
        """The numbers `penalty` reads at t besides the KL: the weight β(t) (`weight`), and the
        free bits λ where there are some. A caller that evaluates each model's schedule itself
        (a stack, member by member) hands them to the model's loss, as tensors."""
        values = {"weight": self.beta(beta, t)}
        if self.free_bits:
            values["free_bits"] = self.free_bits
        return values

    @property
    def form(self) -> tuple[object, ...]:
        """What two schedules must share for their penalties to be one computation over their
        `values` stacked (a stack's members in one vectorised loss): the code path."""
        return (type(self).penalty_at, self.free_bits > 0, self.group_size)

    def penalty_at(
        self, kl: Tensor, kl_units: Tensor | None, values: dict[str, float | Tensor]
    ) -> Tensor:
        """`penalty` from its `values` (floats, or 0-d tensors)."""
        weight = values["weight"]
        if "free_bits" not in values:
            return weight * kl
        if kl_units is None:
            raise ValueError("free bits need the KL of each latent unit")
        means = kl_units.mean(0)
        if means.numel() % self.group_size:
            raise ConfigError(
                "group_size", self.group_size, f"a divisor of latent_dim ({means.numel()})"
            )
        groups = means.view(-1, self.group_size).sum(1)
        return weight * groups.clamp(min=values["free_bits"]).sum()

    @property
    def needs_units(self) -> bool:
        """Whether `penalty` reads the KL of each unit."""
        return self.free_bits > 0

    @property
    def needs_run_length(self) -> bool:
        """Whether `bind` must be given the run's length (a cyclical schedule without `total`)."""
        return False

    def bind(self, run_length: float) -> None:
        """The run's length in `unit`s, for a schedule that spans the run (cyclical)."""


class Warmup(KLSchedule):
    """KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): β(t) rises linearly from
    `start` to the model's β over `steps` (in `unit`s), then stays.

    Raises ConfigError: `steps` < 1, `start` < 0, and the base class's.
    """

    kind = "warmup"

    def __init__(self, steps: int = 10000, start: float = 0.0, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.steps = check_int("steps", steps, 1)
        self.start = check_float("start", start, 0.0)

    @property
    def varies(self) -> bool:
        return True

    def beta(self, beta: float, t: float) -> float:
        return self.start + (beta - self.start) * min(1.0, t / self.steps)


class Cyclical(KLSchedule):
    """Cyclical annealing (Fu et al. 2019, "Cyclical annealing schedule", eq. 6): the run's
    first `total` `unit`s are cut into `cycles` periods of T/M; within one, β rises linearly from
    `start` to the model's β over the fraction `ratio` (R) of it and holds for the rest. After
    `total` (null: the run's length), β holds at the model's β.

    Raises ConfigError: `cycles` < 1, `ratio` outside (0, 1], `total` < 1, and the base class's.
    """

    kind = "cyclical"

    def __init__(
        self,
        cycles: int = 4,
        ratio: float = 0.5,
        total: float | None = None,
        start: float = 0.0,
        **kwargs,  # noqa: ANN003
    ) -> None:
        super().__init__(**kwargs)
        self.cycles = check_int("cycles", cycles, 1)
        self.ratio = check_float("ratio", ratio, 0.0, 1.0, low_open=True)
        self.total = None if total is None else check_float("total", total, 1.0)
        self.start = check_float("start", start, 0.0)
        self._run_length: float | None = None

    @property
    def varies(self) -> bool:
        return True

    @property
    def needs_run_length(self) -> bool:
        return self.total is None

    def bind(self, run_length: float) -> None:
        self._run_length = run_length

    def beta(self, beta: float, t: float) -> float:
        total = self.total if self.total is not None else self._run_length
        if total is None or t >= total:
            return beta
        period = total / self.cycles
        tau = math.fmod(t, period) / period
        return self.start + (beta - self.start) * min(1.0, tau / self.ratio)


class Capacity(KLSchedule):
    """Capacity annealing (Burgess et al. 2018, "Understanding disentangling in β-VAE", eq. 8):
    the KL part of the loss is γ · |KL − C(t)|, C(t) rising linearly from 0 to `c_max` nats over
    `steps` `unit`s. The model's β is not used.

    Raises ConfigError: `c_max` < 0, `steps` < 1, `gamma` < 0, free bits (not combined in the
    paper), and the base class's.
    """

    kind = "capacity"

    def __init__(
        self,
        c_max: float = 25.0,
        steps: int = 100000,
        gamma: float = 1000.0,
        **kwargs,  # noqa: ANN003
    ) -> None:
        super().__init__(**kwargs)
        if self.free_bits:
            raise ConfigError("free_bits", self.free_bits, "0 with capacity annealing")
        self.c_max = check_float("c_max", c_max, 0.0)
        self.steps = check_int("steps", steps, 1)
        self.gamma = check_float("gamma", gamma, 0.0)

    @property
    def varies(self) -> bool:
        return True

    def capacity(self, t: float) -> float:
        return self.c_max * min(1.0, t / self.steps)

    def beta(self, beta: float, t: float) -> float:
        return self.gamma

    def values(self, beta: float, t: float) -> dict[str, float]:
        return {"weight": self.gamma, "capacity": self.capacity(t)}

    def penalty_at(
        self, kl: Tensor, kl_units: Tensor | None, values: dict[str, float | Tensor]
    ) -> Tensor:
        return values["weight"] * (kl - values["capacity"]).abs()


def position(step: int, unit: str, steps_per_epoch: float | None) -> float:
    """t in `unit`s for a global step: the step, or step / steps_per_epoch (epochs)."""
    if unit == "steps":
        return float(step)
    if not steps_per_epoch or not math.isfinite(steps_per_epoch):
        return 0.0
    return step / steps_per_epoch
