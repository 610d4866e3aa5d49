"""The 3D Shapes file (Burgess & Kim 2018, github.com/deepmind/3d-shapes), `3dshapes.h5`:
`images` 480,000 x 64 x 64 x 3 uint8 and `labels` 480,000 x 6 float factor values (floor_hue,
wall_hue, object_hue, scale, shape, orientation), read with h5py.

A missing file is fetched from its public bucket where the network allows (torchvision's
`download_url`, bounded, moved into place whole: `aelab.data.files`); otherwise one line names
the file and where to get it. DeepMind publishes no checksum for it, so none is pinned: the
reader checks the layout instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aelab.data.files import ensure_files
from aelab.data.source import DataSourceError

FILE = "3dshapes.h5"
MIRRORS = ("https://storage.googleapis.com/3d-shapes/",)
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


def load_shapes3d(
    data_dir: str | Path, download: bool = True, path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 3 x 64 x 64 uint8) and factor classes (N x 6 int: each column's values
    numbered in increasing order) of the file at `path` (None: `<data_dir>/shapes3d/3dshapes.h5`,
    fetched first when missing and `download`). Any N: a smaller file of the layout reads too.

    Raises:
        DataSourceError: the file is missing (and cannot be fetched), h5py is missing, or the
            file has no `images` N x 64 x 64 x 3 uint8 and `labels` N x 6.
    """
    if path is None:
        folder = ensure_files(
            Path(data_dir) / "shapes3d", {FILE: None}, MIRRORS, what="data=shapes3d",
            allow_download=download,
        )  # fmt: skip
        path = folder / FILE
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(f"data=shapes3d: {path} is missing: get {MIRRORS[0]}{FILE}")
    try:
        import h5py
    except ImportError as err:
        raise DataSourceError(
            "data=shapes3d needs h5py: pip install 'aelab[shapes3d]' (or h5py)"
        ) from err
    try:
        with h5py.File(path, "r") as f:
            images, values = f["images"][()], f["labels"][()]
    except (OSError, KeyError) as err:
        raise DataSourceError(f"{path}: not the 3D Shapes layout (images, labels): {err}") from err
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (64, 64, 3):
        raise DataSourceError(
            f"{path}: images {images.dtype} {images.shape}, expected N x 64 x 64 x 3"
        )
    if values.shape != (len(images), len(FACTOR_NAMES)):
        raise DataSourceError(f"{path}: labels of shape {values.shape}, expected {len(images)} x 6")
    classes = np.stack(
        [np.unique(values[:, j], return_inverse=True)[1] for j in range(values.shape[1])], axis=1
    )
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), classes.astype(np.int64)
