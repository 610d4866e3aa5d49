"""CelebA's aligned faces (Liu, Luo, Wang & Tang 2015) as an in-memory `ImageDataModule`
(`data=celeba`), centre-cropped to 148 x 148 and resized to 64 x 64 as PyTorch-VAE and pythae
train on them, with the official partition (162,770 train / 19,867 val / 19,962 test).

The files are read from `<data_dir>/celeba/`: `img_align_celeba.zip` (or the folder
`img_align_celeba/` it unpacks to), `list_eval_partition.txt` and, for labels,
`list_attr_celeba.txt`. Nothing is downloaded: CelebA's only host is a Google Drive folder whose
quota stops scripted downloads (torchvision #1920, #2262, #5705), so one line names the files and
where to get them. The zip and the text files are md5-checked against the published sums
(torchvision's `CelebA.file_list`). The 202,599 JPEGs are decoded once and kept as uint8 in
`<data_dir>/celeba/aelab_crop{crop}_size{size}.npy` (2.5 GB at 64 x 64), written atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from typing_extensions import override

from aelab.checks import ConfigError, DataSourceError, check_int
from aelab.data.files import ensure_files
from aelab.data.images import ImageDataModule

log = logging.getLogger(__name__)

# published md5s: torchvision's `CelebA.file_list` (torchvision/datasets/celeba.py)
CELEBA_FILES: dict[str, str | None] = {
    "img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
    "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
}
ATTR_FILE = ("list_attr_celeba.txt", "75e246fa4810816ffd6ee81facbd244c")
FOLDER = "img_align_celeba"
PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped images)"
PARTITIONS = {"train": 0, "val": 1, "test": 2}


class CelebADataModule(ImageDataModule):
    """CelebA's aligned faces, 3 x `size` x `size`, pixels k / 255, split by the official
    partition.

    Args:
        crop: the side of the centre square cut from each 178 x 218 image first (148 as
            PyTorch-VAE; 10-178).
        size: the side it is then resized to (antialiased; 4-178).
        attribute: the label: one of the 40 attribute names of `list_attr_celeba.txt` (e.g.
            Male, Smiling: 1 where present, else 0), or null (every label 0; the attribute file
            is then not needed).
        the rest: as `ImageDataModule`'s.

    Raises:
        ConfigError: `crop` or `size` out of range; at setup, an `attribute` the file does not
            name (naming the allowed ones).
        DataSourceError: a file missing or failing its md5, the folder lacking an image of the
            partition, or an image that cannot be decoded (one line naming it).
    """

    name = "CelebA"
    image_shape = (3, 64, 64)  # the defaults'; an instance sets its own from `size`
    num_classes = 2

    def __init__(
        self,
        data_dir: str = "data",
        crop: int = 148,
        size: int = 64,
        attribute: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        classes: list[int] | None = None,
        num_workers: int = 0,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir, batch_size, eval_batch_size, classes=classes, num_workers=num_workers,
            download=False, on_device=on_device, seed=seed,
        )  # fmt: skip
        self.crop = check_int("crop", crop, 10, 178)
        self.size = check_int("size", size, 4, 178)
        self.attribute = attribute
        self.image_shape = (3, self.size, self.size)

    def folder(self) -> Path:
        return self.data_dir / "celeba"

    def _files(self) -> dict[str, str | None]:
        """The files to verify: the zip only where no unpacked folder is in place."""
        files = dict(CELEBA_FILES)
        if (self.folder() / FOLDER).is_dir():
            del files["img_align_celeba.zip"]
        if self.attribute is not None:
            files[ATTR_FILE[0]] = ATTR_FILE[1]
        return files

    @override
    def ensure(self) -> None:
        ensure_files(
            self.folder(), self._files(), (), what="data=celeba", allow_download=False,
            why="not downloaded: the Google Drive quota stops scripted downloads", page=PAGE,
        )  # fmt: skip

    def _partition(self) -> tuple[list[str], np.ndarray]:
        names, parts = [], []
        for line in (self.folder() / "list_eval_partition.txt").read_text().split("\n"):
            if line.strip():
                name, part = line.split()
                names.append(name)
                parts.append(int(part))
        return names, np.asarray(parts)

    def _labels(self, names: list[str]) -> Tensor:
        if self.attribute is None:
            return torch.zeros(len(names), dtype=torch.long)
        path = self.folder() / ATTR_FILE[0]
        lines = path.read_text().split("\n")
        header = lines[1].split()
        if self.attribute not in header:
            raise ConfigError("attribute", self.attribute, f"null or one of {', '.join(header)}")
        col = header.index(self.attribute)
        by_name = {}
        for line in lines[2:]:
            if line.strip():
                fields = line.split()
                by_name[fields[0]] = int(fields[1 + col]) > 0
        try:
            return torch.tensor([by_name[n] for n in names], dtype=torch.long)
        except KeyError as err:
            raise DataSourceError(f"{path}: no row for {err.args[0]}") from None

    def cache_path(self) -> Path:
        return self.folder() / f"aelab_crop{self.crop}_size{self.size}.npy"

    def _decode_all(self, names: list[str]) -> np.ndarray:
        from PIL import Image
        from torchvision.transforms.v2 import functional as F

        unpacked = self.folder() / FOLDER
        archive = None if unpacked.is_dir() else zipfile.ZipFile(self.folder() / f"{FOLDER}.zip")
        out = np.empty((len(names), 3, self.size, self.size), np.uint8)
        log.info("decoding %d CelebA images (once) into %s", len(names), self.cache_path())
        try:
            for i, name in enumerate(names):
                where = f"{FOLDER}/{name}"
                try:
                    if archive is None:
                        opened = Image.open(unpacked / name)
                    else:
                        opened = Image.open(archive.open(where))
                    with opened:
                        image = F.pil_to_tensor(opened.convert("RGB"))
                except (OSError, KeyError, ValueError) as err:
                    why = " ".join(str(err).split())[:200]
                    raise DataSourceError(
                        f"{self.folder() / where}: cannot be read: {why}"
                    ) from err
                image = F.center_crop(image, [self.crop, self.crop])
                out[i] = F.resize(image, [self.size, self.size], antialias=True).numpy()
        finally:
            if archive is not None:
                archive.close()
        return out

    def _images(self, names: list[str]) -> np.ndarray:
        cache = self.cache_path()
        if cache.is_file():
            images = np.load(cache, mmap_mode="r")
            if images.shape == (len(names), 3, self.size, self.size):
                return np.array(images)  # a writable copy in memory
            log.warning("%s: shape %s, not this partition's: decoding again", cache, images.shape)
        images = self._decode_all(names)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", dir=cache.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, images)
            os.replace(tmp, cache)
        except OSError as err:  # a read-only folder: the images are still used, just not kept
            log.warning("%s: not cached (%s)", cache, err.strerror or err)
            Path(tmp).unlink(missing_ok=True)
        return images

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.ensure()
        names, parts = self._partition()
        labels = self._labels(names)
        images = torch.from_numpy(self._images(names))
        out = {}
        for split, code in PARTITIONS.items():
            idx = torch.from_numpy(np.flatnonzero(parts == code))
            out[split] = (images[idx], labels[idx])
        return out
