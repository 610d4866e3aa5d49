"""Images with known generative factors as LightningDataModules: `data=shapes` (aelab's renderer,
offline), `data=dsprites` (the official file) and `data=shapes3d` (3D Shapes' HDF5 file). They
serve images as MNIST's datamodule does (`aelab.data.images.InMemorySplits`: in memory, whole
batches, a resumable training loader) and add one name to the seam, `split_factors`, which the
disentanglement scores read (`aelab.callbacks.disentanglement`).

The factor grid is split at random (`split_seed`) into test, validation and training rows, so
each split covers the grid uniformly, as the sampled scores (BetaVAE, FactorVAE) assume. The
label a batch carries is the shape (dSprites: 0 square, 1 ellipse, 2 heart; Shapes3D: its 4
shapes), so the suite's probes have a class to predict.
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from typing_extensions import override

from aelab.checks import ConfigError, check_int
from aelab.data import dsprites, shapes, shapes3d
from aelab.data.images import InMemoryImages, InMemorySplits

log = logging.getLogger(__name__)

SPLIT_SEED = 0


class FactorImagesDataModule(InMemorySplits, pl.LightningDataModule):
    """Binary 64 x 64 images (B x 1 x 64 x 64, pixels 0 or 1) with their factor classes
    (B x 5: shape, scale, orientation, pos_x, pos_y); a subclass says where they come from
    (`load`).

    Args:
        data_dir: the data folder (`paths.data_dir`).
        batch_size, eval_batch_size: images per training / evaluation batch.
        val_size, test_size: rows of the grid held out for validation and test (the rest trains).
        split_seed: the permutation that splits the grid.
        num_workers, on_device, seed: as `aelab.data.mnist.MNISTDataModule`'s.

    Raises:
        ConfigError: a count out of range; at setup, val_size + test_size leaving no training row.
    """

    image_shape = (1, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
    factor_names = shapes.FACTOR_NAMES
    classes = None  # no class is "normal": the suite's one-class AUROC does not apply
    label_factor = 0  # the factor column a batch's label is (the shape)
    pixels = "binary"  # `load`'s images are 0/1; "levels": uint8 0-255 (Shapes3D)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        test_size: int = 10000,
        split_seed: int = SPLIT_SEED,
        num_workers: int = 0,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.set_loading(data_dir, batch_size, eval_batch_size, num_workers, on_device, seed)
        self.val_size = check_int("val_size", val_size, 1)
        self.test_size = check_int("test_size", test_size, 1)
        self.split_seed = check_int("split_seed", split_seed, 0)
        self.factors: dict[str, Tensor] = {}

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Images N x 64 x 64 uint8 in {0, 1} (or N x C x H x W uint8 levels where `pixels` is
        "levels") and factor classes N x len(factor_names) (int)."""
        raise NotImplementedError

    @override
    def prepare_data(self) -> None:
        self.load()

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        images, factors = self.load()
        n = len(images)
        held_out = self.val_size + self.test_size
        if held_out >= n:
            raise ConfigError(
                "data.val_size + data.test_size",
                held_out,
                f"fewer than the grid's {n} images (data.positions, data.orientations)",
                grouped=True,
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        rows = {
            "test": order[: self.test_size],
            "val": order[self.test_size : held_out],
            "train": order[held_out:],
        }
        device = self._device()
        x_all = torch.from_numpy(images)
        x_all = x_all.unsqueeze(1) if x_all.ndim == 3 else x_all
        if self.pixels == "binary":  # 0/1 pixels as 0/255, the uint8 range InMemoryImages divides
            x_all = x_all.mul_(255)
        f_all = torch.from_numpy(np.asarray(factors, dtype=np.int64))
        for name, idx in rows.items():
            idx, _ = idx.sort()  # grid order within a split: the same rows in every run
            x, f = x_all[idx], f_all[idx]
            self.splits[name] = InMemoryImages(x.to(device), f[:, self.label_factor].to(device))
            self.factors[name] = f
        log.info("%s splits: %s", type(self).__name__, {k: len(v) for k, v in rows.items()})

    def split_factors(self, split: str, indices: Tensor | None = None) -> Tensor:
        """Factor classes of `split`'s images, long N x len(factor_names) (dSprites': shape,
        scale, orientation, pos_x, pos_y), on the CPU, in `split_tensors`' order; `indices`
        picks them (None: all). Raises ValueError for a split that is not set up."""
        found = self.factors.get(split)
        if found is None:
            allowed = ", ".join(self.factors) or "none (not set up)"
            raise ValueError(f"split {split!r} is not available: allowed {allowed}")
        return found if indices is None else found[torch.as_tensor(indices, dtype=torch.long)]


class ShapesDataModule(FactorImagesDataModule):
    """aelab's renderer of dSprites' grid (`aelab.data.shapes`): 3 shapes x 6 scales x
    `orientations` x `positions`^2, rendered once and cached under `<data_dir>/shapes/`.

    Raises ConfigError for orientations outside [1, 40] or positions outside [2, 32].
    """

    def __init__(
        self,
        orientations: int = shapes.NUM_ORIENTATIONS,
        positions: int = shapes.NUM_POSITIONS,
        **kwargs: object,
    ) -> None:
        shapes.factor_grid(orientations, 2)  # refuses a bad count now, not at setup
        shapes.factor_grid(1, positions)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.orientations, self.positions = orientations, positions

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return shapes.load_shapes(self.data_dir, self.orientations, self.positions)


class DSpritesDataModule(FactorImagesDataModule):
    """The official dSprites file (Matthey et al. 2017) at `path` (null: under
    `<data_dir>/dsprites/`), downloaded where the network allows (`download`) and md5-checked
    (`aelab.data.dsprites`).

    Raises DataSourceError (one line: the file, where to get it, `data=shapes`) when it is
    missing and cannot be downloaded.
    """

    def __init__(self, path: str | None = None, download: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.path, self.download = path, download

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return dsprites.load_dsprites(self.data_dir, self.download, self.path)


class Shapes3DDataModule(FactorImagesDataModule):
    """3D Shapes (Burgess & Kim 2018): 480,000 colour 3 x 64 x 64 images of every combination of
    six factors (floor hue 10, wall hue 10, object hue 10, scale 8, shape 4, orientation 15),
    from the HDF5 file `3dshapes.h5` (`images` N x 64 x 64 x 3 uint8, `labels` N x 6 factor
    values) at `path` (null: `<data_dir>/shapes3d/3dshapes.h5`); the label a batch carries is
    the shape. Reads with h5py (`pip install aelab[shapes3d]`); the whole file is held in
    memory (5.9 GB).

    Raises DataSourceError (one line) when the file is missing and cannot be fetched, h5py is
    not installed, or the file is not in the layout above.
    """

    image_shape = (3, 64, 64)
    factor_names = shapes3d.FACTOR_NAMES
    label_factor = shapes3d.FACTOR_NAMES.index("shape")
    pixels = "levels"

    def __init__(self, path: str | None = None, download: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.path, self.download = path, download

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return shapes3d.load_shapes3d(self.data_dir, self.download, self.path)
