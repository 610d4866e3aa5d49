"""The official dSprites file (Matthey, Higgins, Hassabis & Lerchner 2017), read from the data
folder: `<data_dir>/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`.

Its layout: `imgs` 737,280 x 64 x 64 uint8 in {0, 1}; `latents_classes` and `latents_values`
737,280 x 6 (color, shape, scale, orientation, posX, posY). Color is constant, so the factors
served are the last five, as `aelab.data.shapes.FACTOR_NAMES`.

A missing file is downloaded from its public location where the network allows (md5-checked,
written atomically); otherwise one line names the file, where to get it, and `data=shapes`, the
offline renderer of the same grid.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from aelab.data.source import DataSourceError, _atomic_write

log = logging.getLogger(__name__)

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
URL = f"https://github.com/deepmind/dsprites-dataset/raw/master/{FILE}"
MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
NUM_LATENTS = 6  # color, shape, scale, orientation, posX, posY
DOWNLOAD_TIMEOUT_S = 60


def dsprites_path(data_dir: str | Path) -> Path:
    """Where the file is looked for: `<data_dir>/dsprites/<FILE>`."""
    return Path(data_dir) / "dsprites" / FILE


def _missing(path: Path, why: str) -> DataSourceError:
    return DataSourceError(
        f"{path} is missing ({why}): download {URL} into {path.parent}, "
        "or use data=shapes (aelab's offline renderer of the same factor grid)"
    )


def fetch(path: Path) -> None:
    """Fetch the file to `path` (atomically), refusing bytes whose md5 is not the official one.

    Raises DataSourceError naming the file when the network fails or the md5 differs.
    """
    try:
        with urllib.request.urlopen(URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as err:
        raise _missing(path, f"download failed: {err}") from err
    got = hashlib.md5(data).hexdigest()
    if got != MD5:
        raise DataSourceError(f"{URL}: md5 {got} != {MD5}, not written to {path}")
    _atomic_write(path, data)


def load_dsprites(
    data_dir: str | Path, download: bool = True, path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 64 x 64 uint8 in {0, 1}) and factor classes (N x 5 int: shape, scale,
    orientation, pos_x, pos_y) of the file at `path` (None: `dsprites_path(data_dir)`), fetched
    first when missing and `download`. Any N: a file in the official layout with fewer rows
    reads the same way.

    Raises:
        DataSourceError: the file is missing (and cannot be fetched), or is not an npz file with
            `imgs` N x 64 x 64 and `latents_classes` N x 6.
    """
    path = dsprites_path(data_dir) if path is None else Path(path)
    if not path.is_file():
        if not download:
            raise _missing(path, "data.download=false")
        log.info("fetching %s into %s", URL, path)
        fetch(path)
    try:
        with np.load(path) as npz:
            images, classes = npz["imgs"], npz["latents_classes"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DataSourceError(
            f"{path}: not the dSprites layout (imgs, latents_classes): {err}"
        ) from err
    if images.ndim != 3 or images.shape[1:] != (64, 64):
        raise DataSourceError(f"{path}: imgs of shape {images.shape}, expected N x 64 x 64")
    if classes.shape != (len(images), NUM_LATENTS):
        raise DataSourceError(
            f"{path}: latents_classes of shape {classes.shape}, expected {len(images)} x 6"
        )
    return images.astype(np.uint8, copy=False), classes[:, 1:].astype(np.int64)
