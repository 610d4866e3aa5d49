"""Any folder of images as an in-memory `ImageDataModule` (`data=image_folder data.path=<dir>`).

Every PNG or JPEG under `path` is decoded with PIL (as torchvision's `ImageFolder` loads), its
shorter side resized to `size` and centre-cropped to `size` x `size` (antialiased bilinear,
torchvision's `resize` and `center_crop`), as grey (1 channel) or RGB (3). With `labels=true`
each direct subfolder is a class, in sorted order (torchvision's `find_classes`, as
`ImageFolder`); otherwise every label is 0. The test split is `test_size` images drawn with
`split_seed`, the validation split `val_size` more. Every image is decoded at setup (no cache).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor
from typing_extensions import override

from aelab.checks import ConfigError, DataSourceError, check_choice, check_int
from aelab.data.images import ImageDataModule

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg")
CHANNELS = (1, 3)


class ImageFolderDataModule(ImageDataModule):
    """The images of a folder, C x size x size (C = `channels`), pixels k / 255.

    Args:
        path: the folder (searched recursively; with `labels`, its direct subfolders are the
            classes).
        size: the side every image is resized and centre-cropped to, in pixels (4-1024).
        channels: 1 (grey) or 3 (RGB).
        labels: class-per-subfolder labels (sorted subfolder names -> 0, 1, ...); false: all 0.
        val_size, test_size: images held out for validation and test (drawn with `split_seed`).
        the rest: as `ImageDataModule`'s.

    Raises:
        ConfigError: `path` null, `size`, `channels` or a count out of range.
        DataSourceError: at setup, `path` is not a folder, holds no PNG or JPEG (naming it), an
            image cannot be decoded (naming the file), or with `labels` it has no subfolder.
    """

    name = "image folder"
    image_shape = (3, 64, 64)  # the defaults' (channels=3, size=64); an instance sets its own
    num_classes = None

    def __init__(
        self,
        path: str | None = None,
        size: int = 64,
        channels: int = 3,
        labels: bool = False,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 1000,
        test_size: int = 1000,
        classes: list[int] | None = None,
        num_workers: int = 0,
        split_seed: int = 0,
        on_device: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            data_dir, batch_size, eval_batch_size, val_size, "none", classes, num_workers,
            split_seed, False, on_device, seed,
        )  # fmt: skip
        if path is None:
            raise ConfigError("path", path, "a folder of PNG or JPEG images (data.path=<dir>)")
        self.path = Path(path).expanduser()
        self.size = check_int("size", size, 4, 1024)
        self.channels = check_choice("channels", channels, CHANNELS)
        if not isinstance(labels, bool):
            raise ConfigError("labels", labels, "true (one class per subfolder) or false")
        self.labels = labels
        self.test_size = check_int("test_size", test_size, 1)
        self.image_shape = (self.channels, self.size, self.size)

    def files(self) -> tuple[list[Path], list[int], list[str]]:
        """The image files in sorted order, their labels and the class names (subfolders)."""
        if not self.path.is_dir():
            raise DataSourceError(f"data.path={self.path}: not a folder of PNG or JPEG images")
        names: list[str] = []
        if self.labels:
            from torchvision.datasets.folder import find_classes

            try:
                names, _ = find_classes(str(self.path))
            except FileNotFoundError as err:
                raise DataSourceError(
                    f"data.path={self.path}: no subfolder, which data.labels=true takes as classes"
                ) from err
            roots = [(self.path / n, i) for i, n in enumerate(names)]
        else:
            roots = [(self.path, 0)]
        files, labels = [], []
        for root, label in roots:
            found = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)
            files += found
            labels += [label] * len(found)
        if not files:
            raise DataSourceError(f"data.path={self.path}: no PNG or JPEG image in it")
        return files, labels, names

    def decode(self, path: Path) -> Tensor:
        """One image file -> uint8 C x size x size."""
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2 import functional as F

        try:  # PIL, as torchvision's ImageFolder loads (torchvision.io's decoders are deprecated)
            with Image.open(path) as opened:
                pil = opened.convert("L" if self.channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError, ValueError) as err:
            why = " ".join(str(err).split())[:200]
            raise DataSourceError(f"{path}: not a readable PNG or JPEG image: {why}") from err
        image = F.pil_to_tensor(pil)
        image = F.resize(image, [self.size], antialias=True)  # the shorter side to `size`
        return F.center_crop(image, [self.size, self.size])

    @override
    def ensure(self) -> None:
        self.files()

    @override
    def load(self) -> dict[str, tuple[Tensor, Tensor]]:
        files, labels, names = self.files()
        n = len(files)
        if self.test_size + self.val_size >= n:
            raise ConfigError(
                "data.val_size + data.test_size",
                self.val_size + self.test_size,
                f"fewer than the {n} images in {self.path}",
                grouped=True,
            )
        if self.classes is not None and names:
            self._check_classes(self.classes, len(names))
        log.info("decoding %d images from %s at %d x %d", n, self.path, self.size, self.size)
        images = torch.stack([self.decode(p) for p in files])
        y = torch.tensor(labels, dtype=torch.long)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        test, train = order[: self.test_size].sort().values, order[self.test_size :].sort().values
        return {"train": (images[train], y[train]), "test": (images[test], y[test])}
