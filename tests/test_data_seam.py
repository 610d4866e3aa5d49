"""The datamodule's public seam (`split_size`, `split_tensors`, `fixed_batch`, `image_shape`) and
the loader's seed, which comes from the datamodule, not from the environment."""

from __future__ import annotations

import pytest
import torch
from conftest import synthetic_images

from aelab.data.mnist import (
    FIXED_DRAW_SEED,
    N_TRAIN,
    SPLIT_SEED,
    VAL_SIZE,
    InMemoryImages,
    MNISTDataModule,
    whole_batch,
)
from aelab.data.resumable import EpochSampler, ResumableLoader, derive_seed


def tiny_datamodule(dynamic_train: bool = False, seed: int = 0) -> MNISTDataModule:
    """An MNIST datamodule whose splits are synthetic (set up by hand: no files read)."""
    dm = MNISTDataModule(data_dir="unused", batch_size=8, download=False, seed=seed)
    (x, y), (tx, ty) = synthetic_images(40, seed=0), synthetic_images(10, seed=1)
    dm.splits = {"train": InMemoryImages(x, y, dynamic_train), "test": InMemoryImages(tx, ty)}
    return dm


def test_split_size_is_zero_for_a_missing_or_not_set_up_split():
    assert MNISTDataModule(download=False).split_size("train") == 0  # not set up
    dm = tiny_datamodule()
    assert (dm.split_size("train"), dm.split_size("test"), dm.split_size("val")) == (40, 10, 0)
    assert dm.image_shape == (1, 28, 28)


def test_split_tensors_are_the_images_in_unit_range_and_long_labels():
    dm = tiny_datamodule()
    raw, labels = synthetic_images(10, seed=1)
    x, y = dm.split_tensors("test")
    assert x.dtype == torch.float32 and x.shape == (10, 1, 28, 28)
    assert torch.equal(x, raw.float() / 255) and y.dtype == torch.long
    assert torch.equal(y, labels.long())
    picked, picked_y = dm.split_tensors("test", torch.tensor([3, 1]))
    assert torch.equal(picked, x[[3, 1]]) and torch.equal(picked_y, y[[3, 1]])


def test_fixed_batch_is_the_first_images():
    dm = tiny_datamodule()
    x, _ = dm.split_tensors("test")
    assert torch.equal(dm.fixed_batch("test", 4)[0], x[:4])
    assert torch.equal(dm.fixed_batch("test")[0], x)  # 16 asked, 10 there


def test_an_unknown_split_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"split 'val' is not available: allowed train, test"):
        tiny_datamodule().split_tensors("val")
    with pytest.raises(ValueError, match=r"allowed none \(not set up\)"):
        MNISTDataModule(download=False).fixed_batch("test")


@pytest.mark.parametrize("index", [10, -1])
def test_an_index_out_of_range_is_refused(index):
    with pytest.raises(IndexError, match=rf"split 'test': index {index} is out of range for 10"):
        tiny_datamodule().split_tensors("test", torch.tensor([0, index]))


def test_a_dynamically_binarized_split_gets_one_fixed_draw():
    dm = tiny_datamodule(dynamic_train=True)
    grey = synthetic_images(40, seed=0)[0].float() / 255
    expected = torch.bernoulli(grey, generator=torch.Generator().manual_seed(FIXED_DRAW_SEED))
    first, again = dm.split_tensors("train")[0], dm.split_tensors("train")[0]
    assert torch.equal(first, expected) and torch.equal(again, expected)
    seeded = torch.bernoulli(grey, generator=torch.Generator().manual_seed(17))
    assert torch.equal(dm.split_tensors("train", seed=17)[0], seeded)
    assert not torch.equal(seeded, expected)


def test_the_loader_takes_its_seed_from_the_datamodule(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "999")  # what the loader read before: no longer
    loader = tiny_datamodule(seed=7).train_dataloader()
    assert isinstance(loader.sampler, EpochSampler) and loader.sampler.seed == 7
    order = torch.randperm(40, generator=torch.Generator().manual_seed(derive_seed(7, 0)))
    assert list(loader.sampler) == order.tolist()


def test_a_resumable_loader_without_seed_or_sampler_is_refused():
    with pytest.raises(ValueError, match="seed="):
        ResumableLoader(InMemoryImages(*synthetic_images(8)), batch_size=4)


def test_the_datamodule_gets_the_runs_seed(make_cfg):
    assert make_cfg("seed=5").data.seed == 5


def test_the_split_constants_are_the_configs_defaults(make_cfg):
    # scripts/benchmark.py imports them to rebuild aelab's training split
    cfg = make_cfg()
    assert (cfg.data.val_size, cfg.data.split_seed) == (VAL_SIZE, SPLIT_SEED) == (5000, 0)
    dm = MNISTDataModule(download=False)
    assert (dm.val_size, dm.split_seed, N_TRAIN) == (5000, 0, 60_000)


def test_a_training_batch_is_what_the_training_loader_serves_at_those_indices():
    """What a stacked sweep draws its members' batches with: the loader's batch, same numbers."""
    dm = tiny_datamodule(dynamic_train=True, seed=3)
    loader = ResumableLoader(dm.splits["train"], batch_size=8, seed=3, collate_fn=whole_batch)
    first_x, first_y = next(iter(loader))  # epoch 0, batch 0: reseeded from (3, 0, 0)
    order = list(EpochSampler(40, 3))[:8]
    torch.manual_seed(derive_seed(3, 0, 0))
    x, y = dm.training_batch(order)
    raw, labels = synthetic_images(40, seed=0)
    assert torch.equal(y, labels[order].long()) and torch.equal(y, first_y)
    assert set(x.unique().tolist()) <= {0.0, 1.0}  # binarized, dynamically
    assert torch.equal(x, first_x)
