"""MNIST as an in-memory `ImageDataModule` (`aelab.data.images`): the files prepared
offline-first by `aelab.data.source`, every image held in one uint8 tensor and served in whole
batches.

The in-memory machinery lives in `aelab.data.images`; its names are importable from here too,
where the callbacks and the user's datamodules have always found them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from typing_extensions import override

from aelab.data.images import (  # noqa: F401 - re-exported: the seam's historical home
    BINARIZE,
    BINARIZE_SEED,
    BINARIZED_DRAW_STREAM,
    FIXED_DRAW_SEED,
    ImageDataModule,
    InMemoryImages,
    InMemorySplits,
    whole_batch,
    worker_start_method,
)
from aelab.data.source import ensure_mnist, read_idx

N_TRAIN = 60_000  # the official training set, which the train/val split divides
VAL_SIZE = 5000  # its default validation part (`data.val_size`), drawn with SPLIT_SEED
SPLIT_SEED = 0


class MNISTDataModule(ImageDataModule):
    """MNIST train/val split from the official 60k (fixed seed), the official 10k test set;
    1 x 28 x 28 grey images, labels the digits 0-9.

    `classes` keeps only those digits in train and val (one-class training); the test set always
    holds all ten, so anomaly detection can score it. `binarize`: none (grey levels in [0, 1]),
    dynamic (a new Bernoulli draw per batch while training; val/test binarized once with a fixed
    seed), static (everything binarized once with a fixed seed). `seed`: the order of the
    training batches and their random numbers (aelab-train hands in the run's `seed`).
    """

    name = "MNIST"
    image_shape = (1, 28, 28)
    num_classes = 10
    n_train = N_TRAIN

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = VAL_SIZE,
        binarize: str = "none",
        classes: Sequence[int] | None = None,
        num_workers: int = 0,
        split_seed: int = SPLIT_SEED,
        download: bool = True,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir, batch_size, eval_batch_size, val_size, binarize, classes, num_workers,
            split_seed, download, on_device, seed,
        )  # fmt: skip

    @override
    def ensure(self) -> None:
        ensure_mnist(self.data_dir, allow_download=self.download)

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        raw = ensure_mnist(self.data_dir, allow_download=self.download)
        return {
            "train": (
                read_idx(raw / "train-images-idx3-ubyte").unsqueeze(1),
                read_idx(raw / "train-labels-idx1-ubyte"),
            ),
            "test": (
                read_idx(raw / "t10k-images-idx3-ubyte").unsqueeze(1),
                read_idx(raw / "t10k-labels-idx1-ubyte"),
            ),
        }
