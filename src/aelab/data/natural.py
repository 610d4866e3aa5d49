"""The image datasets beside MNIST, each a short `ImageDataModule` over files prepared
offline-first with their published checksums (`aelab.data.files.ensure_files`):

- `FashionMNISTDataModule` (`data=fashion_mnist`): Xiao, Rasul & Vollgraf 2017, 70,000 grey
  28 x 28 images of ten kinds of clothing, the IDX gz files of MNIST's layout;
- `BinarizedMNISTDataModule` (`data=binarized_mnist`): Larochelle & Murray 2011's fixed
  binarization of MNIST (`.amat` text files) with its official 50k / 10k / 10k split, on which
  Burda et al. 2016 and the VampPrior (Tomczak & Welling 2018) report;
- `CIFAR10DataModule` (`data=cifar10`): Krizhevsky 2009, 60,000 colour 32 x 32 images of ten
  classes, the python-pickle batches inside `cifar-10-python.tar.gz` (read from the archive;
  nothing is extracted).
"""

from __future__ import annotations

import codecs
import gzip
import io
import logging
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from typing_extensions import override

from aelab.checks import DataSourceError
from aelab.data.files import ensure_files
from aelab.data.images import ImageDataModule
from aelab.data.source import _NumpyOnlyUnpickler, parse_idx

log = logging.getLogger(__name__)

# published md5s: torchvision's `FashionMNIST.resources` (torchvision/datasets/mnist.py), which
# match zalandoresearch/fashion-mnist's README; its mirror is torchvision's `FashionMNIST.mirrors`
FASHION_MNIST_FILES: dict[str, str | None] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# Larochelle's own page publishes no checksum, so none is pinned here: the reader checks each
# file's format instead (rows of 784 values 0 or 1, 50,000 / 10,000 / 10,000 rows)
BINARIZED_MNIST_FILES: dict[str, str | None] = {
    "binarized_mnist_train.amat": None,
    "binarized_mnist_valid.amat": None,
    "binarized_mnist_test.amat": None,
}
BINARIZED_MNIST_MIRRORS = ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",)
BINARIZED_MNIST_ROWS = {"train": 50_000, "valid": 10_000, "test": 10_000}

# the archive's published md5 and mirror: torchvision's `CIFAR10.tgz_md5` and `CIFAR10.url`
# (torchvision/datasets/cifar.py), as on Krizhevsky's page
CIFAR10_FILES: dict[str, str | None] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"
}
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_TRAIN = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("cifar-10-batches-py/test_batch",)


class _BatchUnpickler(_NumpyOnlyUnpickler):
    """The numpy-only unpickler and `_codecs.encode`, a pure function that a protocol-2 pickle
    written by Python 3 calls to rebuild its bytes (Krizhevsky's Python 2 batches do not)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        return super().find_class(module, name)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST from `<data_dir>/FashionMNIST/raw/*.gz` (torchvision's layout): 60k
    training images (`val_size` of them held out with `split_seed`) and the official 10k test
    set; 1 x 28 x 28 grey, labels 0-9 (T-shirt/top, trouser, pullover, dress, coat, sandal,
    shirt, sneaker, bag, ankle boot). Arguments and errors as `ImageDataModule`'s."""

    name = "Fashion-MNIST"
    image_shape = (1, 28, 28)
    num_classes = 10
    n_train = 60_000

    def folder(self) -> Path:
        return self.data_dir / "FashionMNIST" / "raw"

    @override
    def ensure(self) -> None:
        ensure_files(
            self.folder(), FASHION_MNIST_FILES, FASHION_MNIST_MIRRORS,
            what="data=fashion_mnist", allow_download=self.download,
        )  # fmt: skip

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.ensure()

        def read(name: str) -> Tensor:
            path = self.folder() / name
            try:
                return parse_idx(gzip.decompress(path.read_bytes()), path)
            except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
                raise DataSourceError(f"{path}: not a gzipped IDX file: {err}") from err

        out = {}
        for split, stem in (("train", "train"), ("test", "t10k")):
            x = read(f"{stem}-images-idx3-ubyte.gz")
            y = read(f"{stem}-labels-idx1-ubyte.gz")
            _check(
                x.ndim == 3 and x.shape[1:] == (28, 28), f"{stem} images", x.shape, "N x 28 x 28"
            )
            _check(y.shape == x.shape[:1], f"{stem} labels", y.shape, f"{len(x)} labels")
            out[split] = (x.unsqueeze(1), y)
        return out


def _check(ok: bool, what: str, got: object, expected: str) -> None:
    if not ok:
        raise DataSourceError(f"{what}: shape {tuple(got)}, expected {expected}")  # type: ignore[arg-type]


class BinarizedMNISTDataModule(ImageDataModule):
    """Larochelle's statically binarized MNIST from `<data_dir>/binarized_mnist/*.amat`: its
    official 50,000 train / 10,000 valid / 10,000 test images (any row count reads: a smaller
    file of the same format too), 1 x 28 x 28, every pixel 0 or 1. The files hold no labels:
    every label is 0, so the label probes and the one-class AUROC say there is one class.

    Raises DataSourceError (one line) for a missing file that cannot be fetched, or a line that
    is not 784 values 0 or 1.
    """

    name = "binarized MNIST"
    image_shape = (1, 28, 28)
    pixels = "binary"
    num_classes = 1

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        num_workers: int = 0,
        download: bool = True,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir, batch_size, eval_batch_size, num_workers=num_workers, download=download,
            on_device=on_device, seed=seed,
        )  # fmt: skip

    def folder(self) -> Path:
        return self.data_dir / "binarized_mnist"

    @override
    def ensure(self) -> None:
        ensure_files(
            self.folder(), BINARIZED_MNIST_FILES, BINARIZED_MNIST_MIRRORS,
            what="data=binarized_mnist", allow_download=self.download,
            hint="or data=mnist data.binarize=static (a fixed binarization of aelab's own)",
        )  # fmt: skip

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.ensure()
        out = {}
        for split, stem in (("train", "train"), ("val", "valid"), ("test", "test")):
            x = read_amat(self.folder() / f"binarized_mnist_{stem}.amat")
            out[split] = (x.mul_(255).reshape(-1, 1, 28, 28), torch.zeros(len(x), dtype=torch.long))
        return out


def read_amat(path: Path) -> Tensor:
    """A `.amat` file of Larochelle's binarized MNIST: one image a line, 784 space-separated
    values 0 or 1 -> uint8 N x 784 in {0, 1}. Raises DataSourceError naming the file for another
    format."""
    try:
        rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as err:
        raise DataSourceError(f"{path}: not a .amat file of 784 values a line: {err}") from err
    if rows.shape[1] != 784 or not np.isin(rows, (0.0, 1.0)).all():
        raise DataSourceError(f"{path}: {rows.shape[1]} values a line, expected 784 values 0 or 1")
    return torch.from_numpy(rows.astype(np.uint8))


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from `<data_dir>/cifar10/cifar-10-python.tar.gz`, read from the archive (its
    md5 checked): 50,000 training images (`val_size` held out with `split_seed`) and the
    official 10,000 test images; 3 x 32 x 32 colour, labels 0-9 (airplane, automobile, bird,
    cat, deer, dog, frog, horse, ship, truck). Arguments and errors as `ImageDataModule`'s."""

    name = "CIFAR-10"
    image_shape = (3, 32, 32)
    num_classes = 10
    n_train = 50_000

    def archive(self) -> Path:
        return self.data_dir / "cifar10" / "cifar-10-python.tar.gz"

    @override
    def ensure(self) -> None:
        ensure_files(
            self.archive().parent, CIFAR10_FILES, CIFAR10_MIRRORS,
            what="data=cifar10", allow_download=self.download,
        )  # fmt: skip

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.ensure()
        path = self.archive()
        try:
            with tarfile.open(path, "r:gz") as tar:
                return {
                    "train": _cifar_batches(tar, CIFAR10_TRAIN, path),
                    "test": _cifar_batches(tar, CIFAR10_TEST, path),
                }
        except (OSError, tarfile.TarError, EOFError) as err:
            raise DataSourceError(f"{path}: not CIFAR-10's tar.gz: {err}") from err


def _cifar_batches(
    tar: tarfile.TarFile, members: Sequence[str], path: Path
) -> tuple[Tensor, Tensor]:
    """Images uint8 N x 3 x 32 x 32 and labels long N of the pickled batches `members` (each a
    dict of `data`, N x 3072 uint8 in channel-row-column order, and `labels`)."""
    xs, ys = [], []
    for name in members:
        try:
            member = tar.extractfile(name)
        except KeyError:
            member = None
        if member is None:
            raise DataSourceError(f"{path}: no member {name}")
        try:
            batch = _BatchUnpickler(io.BytesIO(member.read()), encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise DataSourceError(f"{path}: {name} is not a readable pickle: {err}") from err
        data = np.asarray(batch.get("data") if isinstance(batch, dict) else None)
        labels = np.asarray(batch.get("labels", []) if isinstance(batch, dict) else [])
        if (
            data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
            or len(labels) != len(data)
        ):
            raise DataSourceError(
                f"{path}: {name} is not a CIFAR batch (data N x 3072 uint8, labels N)"
            )
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)
