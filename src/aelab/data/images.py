"""The in-memory image datamodules' base: every built-in dataset (`data=mnist`, `fashion_mnist`,
`binarized_mnist`, `cifar10`, `image_folder`) is a short subclass of `ImageDataModule` that says
where its uint8 images come from (`load`); the base splits them, keeps them in memory and serves
them.

The reference models' loader converts one PIL image at a time (`ToTensor`) and spends most of
its epoch there. Here the uint8 images live in one tensor (47 MB for MNIST's 60k training
images; on the GPU when training there), a batch is one fancy-index of that tensor, and the
DataLoader only hands out index lists, so Lightning's samplers (shuffling, DDP sharding) still
apply unchanged. The training loader is `ResumableLoader`: its order derives from (seed, epoch)
and a run resumed mid-epoch replays the same batches.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from aelab.checks import ConfigError, check_choice, check_int
from aelab.data.resumable import ResumableLoader, derive_seed

log = logging.getLogger(__name__)

BINARIZE = ("none", "dynamic", "static")
BINARIZE_SEED = 2024  # fixed: every run sees the same binarized val/test sets
# the one draw `split_tensors` takes of a dynamically binarized split when given no seed: the
# evaluation suite's own with its default `eval.seed=0` (its stream BINARIZED_DRAW)
BINARIZED_DRAW_STREAM = 6
FIXED_DRAW_SEED = derive_seed(0, BINARIZED_DRAW_STREAM)
# what a likelihood may assume of the pixels a datamodule serves (`ImageDataModule.pixels`):
# "binary" 0 or 1 (a Bernoulli is the exact likelihood); "levels" the 256 grey or colour levels
# k / 255 (a Bernoulli is only a surrogate; a discretized likelihood has 256 bins)
PIXELS = ("binary", "levels")


class InMemoryImages(Dataset):
    """Images (uint8, N x C x H x W) and labels; `__getitems__` serves a whole batch at once
    (float images in [0, 1], B x C x H x W, and labels, B).

    `dynamic_binarize`: `finish_batch` draws a fresh binarization of a served batch. It is kept
    out of `__getitems__`, which DataLoader workers run: `ResumableLoader` calls it in the
    training process right after re-seeding, so the draws do not depend on `num_workers`.
    """

    def __init__(self, images: Tensor, labels: Tensor, dynamic_binarize: bool = False) -> None:
        self.images, self.labels = images, labels
        self.dynamic_binarize = dynamic_binarize

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices)
        if self.images.is_cuda:  # only the indices cross, without waiting for the GPU's queue
            idx = idx.pin_memory().to(self.images.device, non_blocking=True)
        # index_select, not images[idx]: advanced indexing is slower per batch on a CPU (README,
        # Performance)
        x = self.images.index_select(0, idx).float().div_(255.0)
        return x, self.labels.index_select(0, idx)

    def tensors(
        self, indices: Tensor | None = None, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Images float B x C x H x W in [0, 1] and labels long B, where the images live.

        `indices`: which images, in that order (None: all). A dynamically binarized split gets
        one draw from a generator seeded with `seed` (None: `FIXED_DRAW_SEED`), the same every
        call. Raises IndexError for an index outside [0, len).
        """
        n = len(self)
        idx = torch.arange(n) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.numel():
            raise IndexError(f"index {int(bad[0])} is out of range for {n} images")
        device = self.images.device
        x = self.images[idx.to(device)].float().div_(255.0)
        if self.dynamic_binarize:
            seed = FIXED_DRAW_SEED if seed is None else seed
            x = torch.bernoulli(x, generator=torch.Generator(device=device).manual_seed(seed))
        return x, self.labels[idx.to(self.labels.device)].long()

    def finish_batch(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The random part of serving a batch, from the global torch RNG."""
        if not self.dynamic_binarize:
            return batch
        x, y = batch
        return torch.bernoulli(x), y  # a fresh binarization every time the image is drawn


def worker_start_method() -> str | None:
    """How DataLoader workers start: None (multiprocessing's default) where the default is a
    standard start method, else "fork".

    A joblib (loky) worker runs with "loky" as its default start method, with which
    multiprocessing's `Process` cannot start ("'Process' object has no attribute 'env'");
    "spawn" and "forkserver" fail there too, as their child is told to use "loky", which a fresh
    interpreter does not know. "fork" is what Linux uses everywhere else (Python < 3.14).
    """
    method = multiprocessing.get_start_method(allow_none=True)
    return None if method in (None, "fork", "spawn", "forkserver") else "fork"


def whole_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """collate_fn: `__getitems__` already returns the batch as tensors."""
    return batch


class InMemorySplits:
    """The public seam between a datamodule of `InMemoryImages` splits (`self.splits`) and its
    users (the callbacks, the stacked sweeps): a split's size and tensors, a fixed batch, and a
    training batch at given indices.

    A datamodule of other data offers the same names: `image_shape` (C, H, W), `classes`,
    `data_dir`, `split_size`, `split_tensors`, `fixed_batch`; data with known generative factors
    adds `split_factors` (`aelab.data.factors`), which the disentanglement scores read.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    splits: dict[str, InMemoryImages]

    def split_size(self, split: str) -> int:
        """Images in `split`; 0 when it does not exist or is not set up."""
        found = self.splits.get(split)
        return 0 if found is None else len(found)

    def split_tensors(
        self, split: str, indices: Tensor | None = None, *, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Images float B x C x H x W in [0, 1] (binarized where the datamodule binarizes the
        split: one fixed draw, from `seed` when given) and labels long B, on the datamodule's
        device; `indices` picks and orders them (None: all).

        Raises ValueError for a split that does not exist or is not set up (naming the ones
        that are), IndexError for an index out of range.
        """
        found = self.splits.get(split)
        if found is None:
            allowed = ", ".join(self.splits) or "none (not set up)"
            raise ValueError(f"split {split!r} is not available: allowed {allowed}")
        try:
            return found.tensors(indices, seed)
        except IndexError as err:
            raise IndexError(f"split {split!r}: {err}") from None

    def fixed_batch(self, split: str, n: int = 16) -> tuple[Tensor, Tensor]:
        """The first `n` images of `split` (fewer if it holds fewer) and their labels, as
        `split_tensors` gives them: the same in every run. Raises as `split_tensors`."""
        return self.split_tensors(split, torch.arange(min(n, self.split_size(split))))

    def training_batch(self, indices: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """The training images at `indices` as the training loader serves them, for a caller
        that keeps its own batch order (`aelab.stacked`): float B x C x H x W in [0, 1], a fresh
        binarization from the global torch RNG where the datamodule binarizes dynamically, and
        labels long B. Raises KeyError before `setup("fit")`."""
        split = self.splits["train"]
        return split.finish_batch(split.__getitems__(indices))

    # --- the loaders: a datamodule of this seam calls `set_loading` in its constructor and fills
    # `self.splits` in `setup`

    def set_loading(
        self,
        data_dir: str | Path,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        on_device: bool,
        seed: int,
    ) -> None:
        """The settings the loaders read (as `MNISTDataModule`'s arguments), checked; no splits
        yet. Raises ConfigError naming the field."""
        self.data_dir = Path(data_dir)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.on_device = on_device
        self.seed = check_int("seed", seed, 0)
        self.splits = {}

    def _device(self) -> torch.device:
        """The trainer's device when it is a GPU and workers are off: no host copy per step."""
        trainer = self.trainer
        if self.on_device and self.num_workers == 0 and trainer is not None:
            device = trainer.strategy.root_device
            if device.type != "cpu":
                return device
        return torch.device("cpu")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.splits:
            self.setup()
        dataset = self.splits[split]
        # the shuffled loader is resumable mid-epoch and replays each batch's randomness exactly
        resumable = {"seed": self.seed} if shuffle else {}
        return (ResumableLoader if shuffle else DataLoader)(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            num_workers=self.num_workers,
            collate_fn=whole_batch,
            persistent_workers=self.num_workers > 0,
            multiprocessing_context=worker_start_method() if self.num_workers else None,
            **resumable,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ImageDataModule(InMemorySplits, pl.LightningDataModule):
    """Images held in memory as uint8 and served as float B x C x H x W in [0, 1] with labels
    (long B), split into train / val / test; a subclass gives `image_shape`, `pixels`,
    `num_classes` and `load`.

    What the rest of aelab reads (`InMemorySplits`' seam): `image_shape` (C, H, W: the model and
    the net are built for it), `classes` (the labels a one-class run trains on), `split_size`,
    `split_tensors`, `fixed_batch`, `training_batch`, and `pixels` ("binary": every pixel 0 or 1;
    "levels": k / 255, k = 0..255; see `PIXELS`).

    The splits: `load` returns "train" and "test" and, where the dataset has an official one,
    "val"; without it `val_size` training images are held out for validation, drawn with
    `split_seed`. `classes` keeps only those labels in train and val (the test set keeps all, so
    anomaly detection can score it). `binarize`: none, dynamic (a new Bernoulli draw per
    training batch; val / test binarized once with a fixed seed) or static (everything binarized
    once with a fixed seed). `seed`: the order of the training batches and their random numbers
    (aelab-train hands in the run's `seed`).

    Raises:
        ConfigError: a count out of range, a `binarize` not in none / dynamic / static, `classes`
            empty or outside [0, num_classes); at setup, `val_size` leaving no training image or
            `classes` leaving none.
        DataSourceError: at `prepare_data` / `setup`, the files are missing or corrupt and
            cannot be fetched (one line naming them, where to get them, where to put them).
    """

    name = "images"  # in log lines
    image_shape: tuple[int, int, int] = (1, 28, 28)
    pixels = "levels"
    num_classes: int | None = 10  # labels 0..num_classes-1; None: known only once loaded
    n_train: int | None = None  # the training images `val_size` is taken from, where known

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        binarize: str = "none",
        classes: Sequence[int] | None = None,
        num_workers: int = 0,
        split_seed: int = 0,
        download: bool = True,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.set_loading(data_dir, batch_size, eval_batch_size, num_workers, on_device, seed)
        high = None if self.n_train is None else self.n_train - 1
        self.val_size = check_int("val_size", val_size, 1, high)
        self.binarize = check_choice("binarize", binarize, BINARIZE)
        if self.binarize != "none":
            self.pixels = "binary"
        self.classes = self._check_classes(classes, self.num_classes)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.download = download

    @staticmethod
    def _check_classes(classes: Sequence[int] | None, num_classes: int | None) -> list[int] | None:
        if classes is None:
            return None
        classes = list(classes)
        top = "" if num_classes is None else f" of 0-{num_classes - 1}"
        if not classes:
            raise ConfigError("classes", classes, f"null (all labels) or a non-empty list{top}")
        for c in classes:
            check_int("classes", c, 0, None if num_classes is None else num_classes - 1)
        return sorted(set(classes))

    def ensure(self) -> None:
        """Make the files available (offline-first, checksummed); reads nothing into memory.
        The default loads; a subclass with files to fetch does only that."""
        self.load()

    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        """The images, uint8 N x C x H x W (`image_shape`), and labels, long N, of "train" and
        "test" (and "val" where the dataset has an official validation split)."""
        raise NotImplementedError

    @override
    def prepare_data(self) -> None:
        self.ensure()

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        loaded = self.load()
        parts = {"train": loaded["train"]}
        if "val" in loaded:
            parts["val"] = loaded["val"]
        else:
            images, labels = loaded["train"]
            n = len(labels)
            check_int("val_size", self.val_size, 1, n - 1)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = perm[: self.val_size], perm[self.val_size :]
            parts = {
                "train": (images[train_idx], labels[train_idx]),
                "val": (images[val_idx], labels[val_idx]),
            }
        parts["test"] = loaded["test"]
        device = self._device()
        for i, (name, (x, y)) in enumerate(parts.items()):
            if self.classes is not None and name != "test":
                keep = torch.isin(y, torch.tensor(self.classes))
                x, y = x[keep], y[keep]
            dynamic = name == "train" and self.binarize == "dynamic"
            if self.binarize != "none" and not dynamic:
                x = binarize_once(x, seed=BINARIZE_SEED + i)
            self.splits[name] = InMemoryImages(x.to(device), y.to(device), dynamic)
        if len(self.splits["train"]) == 0:
            self.splits = {}
            raise ConfigError("classes", self.classes, "labels present in the training split")
        log.info("%s splits: %s", self.name, {k: len(v) for k, v in self.splits.items()})


def binarize_once(images: Tensor, seed: int) -> Tensor:
    """One fixed Bernoulli draw of uint8 images (pixel k is 1 with probability k / 255), as
    uint8 0 / 255, from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    probs = images.float().div_(255.0)
    return torch.bernoulli(probs, generator=g).mul_(255).to(torch.uint8)
