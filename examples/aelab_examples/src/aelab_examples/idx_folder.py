"""A datamodule over a user's folder of uint8 IDX files in the MNIST layout (Fashion-MNIST,
KMNIST, ...), written against aelab's datamodule contract (README: Bring your own data).

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

each optionally gzipped (`.gz`, as they are downloaded). The folder is checked when the
datamodule is built (headers only): a missing file, images of different sizes or labels that do
not match the images in count are one `data.data_dir=...` line before any training.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from aelab.checks import ConfigError, check_int
from aelab.data.mnist import InMemoryImages, whole_batch

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLITS = ("train", "val", "test")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _header(path: Path) -> tuple[int, ...]:
    """The shape an IDX file's header gives; ValueError when it is not uint8 IDX."""
    with _open(path) as f:
        head = f.read(16)
    if len(head) < 8 or head[:3] != b"\x00\x00\x08" or head[3] not in (1, 3):
        raise ValueError(f"{path.name} is not a uint8 IDX file of 1 or 3 dimensions")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise ValueError(f"{path.name} has a truncated header")
    return tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _read(path: Path) -> Tensor:
    """An IDX file's data: images (N, H, W) uint8, labels (N,) int64."""
    shape = _header(path)
    with _open(path) as f:
        data = f.read()
    offset = 4 + 4 * len(shape)
    expected = 1
    for s in shape:
        expected *= s
    if len(data) - offset != expected:
        raise ValueError(f"{path.name}: {len(data) - offset} bytes of data, its header {shape} "
                         f"needs {expected}")  # fmt: skip
    out = torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)
    return out.long() if len(shape) == 1 else out


class IDXFolderDataModule(pl.LightningDataModule):
    """Train/val from the folder's train files (val_size images, chosen with split_seed), test
    from its t10k files; images in memory as uint8, served as floats in [0, 1], B x 1 x H x W.

    Raises ConfigError (`data.data_dir`, `data.val_size`, ...) for a folder it cannot use.
    """

    def __init__(
        self,
        data_dir: str = "data/idx",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.paths, shapes = self._check_folder()
        n_train = shapes["train"][0][0]
        self.val_size = check_int("val_size", val_size, 1, n_train - 1)
        self.image_shape: tuple[int, int, int] = (1, *shapes["train"][0][1:])
        self.classes: list[int] | None = None  # every label is normal: no one-class AUROC
        self._splits: dict[str, InMemoryImages] = {}

    def _refuse(self, why: str) -> ConfigError:
        return ConfigError("data_dir", str(self.data_dir), f"a folder of IDX files ({why})")

    def _check_folder(self) -> tuple[dict[str, tuple[Path, Path]], dict]:
        if not self.data_dir.is_dir():
            raise self._refuse("no such folder")
        paths, shapes = {}, {}
        for split, names in FILES.items():
            found = []
            for name in names:
                candidates = [self.data_dir / name, self.data_dir / f"{name}.gz"]
                path = next((p for p in candidates if p.is_file()), None)
                if path is None:
                    raise self._refuse(f"{name} or {name}.gz missing")
                found.append(path)
            try:
                image_shape, label_shape = _header(found[0]), _header(found[1])
            except (OSError, ValueError, EOFError) as err:
                raise self._refuse(str(err)) from None
            if len(image_shape) != 3 or len(label_shape) != 1:
                raise self._refuse(f"{found[0].name} must hold images, {found[1].name} labels")
            if image_shape[0] != label_shape[0]:
                raise self._refuse(
                    f"{found[0].name} holds {image_shape[0]} images, {found[1].name} "
                    f"{label_shape[0]} labels"
                )
            paths[split], shapes[split] = tuple(found), (image_shape, label_shape)
        if shapes["train"][0][1:] != shapes["test"][0][1:]:
            sizes = {s: "x".join(map(str, shapes[s][0][1:])) for s in FILES}
            raise self._refuse(f"images of different sizes: train {sizes['train']}, "
                               f"test {sizes['test']}")  # fmt: skip
        if shapes["train"][0][0] < 2:
            raise self._refuse("fewer than 2 training images: nothing to validate on")
        return paths, shapes

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        try:
            (x, y), (tx, ty) = (tuple(_read(p) for p in self.paths[s]) for s in FILES)
        except (OSError, ValueError, EOFError) as err:
            raise self._refuse(str(err)) from None
        generator = torch.Generator().manual_seed(self.split_seed)
        perm = torch.randperm(len(y), generator=generator)
        val, train = perm[: self.val_size], perm[self.val_size :]
        self._splits = {
            "train": InMemoryImages(x[train].unsqueeze(1), y[train]),
            "val": InMemoryImages(x[val].unsqueeze(1), y[val]),
            "test": InMemoryImages(tx.unsqueeze(1), ty),
        }

    # --- the contract the evaluation suite and the image grids read ------------------------------
    def split_size(self, split: str) -> int:
        """Images in `split` (0 for a split this datamodule does not have)."""
        self.setup()
        return len(self._splits[split]) if split in self._splits else 0

    def split_tensors(
        self, split: str, indices: Tensor | None = None, *, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Images (float, B x 1 x H x W in [0, 1]) and labels (long, B) of `split` at `indices`
        (all of them for None); `seed` is unused (nothing here is random). Raises ValueError
        for a split other than train, val, test."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: allowed one of {', '.join(SPLITS)}")
        self.setup()
        data = self._splits[split]
        idx = torch.arange(len(data)) if indices is None else torch.as_tensor(indices)
        return data.__getitems__(idx.tolist())

    def fixed_batch(self, split: str, n: int = 16) -> tuple[Tensor, Tensor]:
        """The first n images and labels of `split`: the same ones in every run."""
        return self.split_tensors(split, torch.arange(min(n, self.split_size(split))))

    # --- Lightning -----------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        size = self.batch_size if split == "train" else self.eval_batch_size
        return DataLoader(self._splits[split], batch_size=size, shuffle=shuffle,
                          collate_fn=whole_batch)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
