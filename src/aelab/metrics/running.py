"""Epoch means of per-batch scalars without a host sync per step.

Lightning's per-step `self.log` costs more than the step itself for these small models; a
torchmetrics MeanMetric per figure keeps the sums on the device, weights each batch by its size
(exact per-image means even with a short last batch) and reduces across processes under DDP.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import MeanMetric


class RunningMeans(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.means = nn.ModuleDict()

    def update(self, values: dict[str, Tensor], weight: int) -> None:
        for name, value in values.items():
            if name not in self.means:
                self.means[name] = MeanMetric(nan_strategy="disable").to(value.device)
            self.means[name].update(value.detach(), weight)

    def compute_and_reset(self) -> dict[str, Tensor]:
        out = {}
        for name, mean in self.means.items():
            if mean.update_count:
                out[name] = mean.compute()
            mean.reset()
        return out
