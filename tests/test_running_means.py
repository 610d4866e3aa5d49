"""RunningMeans: exact per-image epoch means from per-batch means, without a sync per step."""

import torch

from aelab.metrics import RunningMeans


def test_means_are_weighted_by_batch_size_and_reset():
    means = RunningMeans()
    loss = torch.tensor(2.0, requires_grad=True)
    means.update({"loss": loss * 1.0, "kl": torch.tensor(1.0)}, weight=64)
    means.update({"loss": torch.tensor(5.0), "kl": torch.tensor(3.0)}, weight=16)  # short last
    out = means.compute_and_reset()
    assert set(out) == {"loss", "kl"}
    assert torch.isclose(out["loss"], torch.tensor((2.0 * 64 + 5.0 * 16) / 80))
    assert torch.isclose(out["kl"], torch.tensor((1.0 * 64 + 3.0 * 16) / 80))
    assert not out["loss"].requires_grad  # no graph kept alive across the epoch
    assert means.compute_and_reset() == {}


def test_update_does_not_alias_the_callers_tensor():
    means = RunningMeans()
    value = torch.tensor(1.0)
    means.update({"x": value}, weight=1)
    means.update({"x": torch.tensor(3.0)}, weight=1)
    assert value.item() == 1.0
    assert means.compute_and_reset()["x"].item() == 2.0
