"""Epoch means of per-batch scalars without a host sync per step.

Lightning's per-step `self.log` syncs with the host and costs more than a small model's step;
torchmetrics' MeanMetric avoids the sync but its `update` still does checks and state bookkeeping
per figure, a share of a small MNIST step on a CPU (docs, Performance). Here each figure is one
detached running sum on the device (one in-place add per step), weighted by the batch size so the
means are exact per-image means even with a short last batch, and summed across processes once
per epoch under DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


class RunningMeans:
    """Weighted running means of named scalar tensors; `compute_and_reset` once per epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.weights: dict[str, float] = {}

    def update(self, values: dict[str, Tensor], weight: int) -> None:
        for name, value in values.items():
            if name in self.sums:
                self.sums[name].add_(value.detach(), alpha=weight)
                self.weights[name] += weight
            else:
                self.sums[name] = value.detach().float() * weight
                self.weights[name] = float(weight)

    def compute_and_reset(self) -> dict[str, Tensor]:
        """The means since the last reset (summed over all processes first), then forget them."""
        if not self.sums:
            return {}
        names = list(self.sums)
        sums = torch.stack([self.sums[n] for n in names])
        weights = torch.tensor([self.weights[n] for n in names], device=sums.device)
        if dist.is_available() and dist.is_initialized():
            both = torch.cat([sums, weights])
            dist.all_reduce(both)
            sums, weights = both.split(len(names))
        self.sums, self.weights = {}, {}
        return dict(zip(names, (sums / weights).unbind(), strict=True))
