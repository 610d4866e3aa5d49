"""aelab's own dSprites-style images with known generative factors, rendered offline.

The factor grid is dSprites' (Matthey et al. 2017, `dsprites_ndarray_co1sh3sc6or40x32y32_64x64`):
shape (square, ellipse, heart) x 6 scales x 40 orientations x 32 x-positions x 32 y-positions,
737,280 binary 64 x 64 images. A CPU study takes fewer orientations or positions (`orientations`,
`positions`): the positions then spread over the same range, every `31 / (positions - 1)` pixels.

The geometry: a sprite of scale s in linspace(0.5, 1, 6) has radius 10 s pixels (a square of side
20 s, an ellipse of semi-axes 10 s and 5 s, a heart 20 s wide), turned by orientation
2 pi o / 40 (o = 0..39, no repeat of 0 as 2 pi), its centre at pixel (16 + x, 16 + y) for
x, y = 0..31, so a sprite always lies wholly in the image and a position step moves it exactly
one pixel. A pixel is on when its centre lies inside the shape. Unlike dSprites' file, the
orientations stop short of 2 pi (dSprites lists 0 and 2 pi, the same image, as two values).

Rendering is deterministic (no random number); `digest` names the bytes, and the images are
cached once under `<data_dir>/shapes/` (written atomically, as MNIST's files are).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
from pathlib import Path

import numpy as np

from aelab.checks import check_int
from aelab.data.source import DataSourceError, _atomic_write

log = logging.getLogger(__name__)

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
NUM_SCALES, NUM_ORIENTATIONS, NUM_POSITIONS = 6, 40, 32
IMAGE_SIZE = 64
RADIUS = 10.0  # pixels at scale 1; a turned square's half-diagonal (14.1) stays inside the margin
MARGIN = 16  # the centre's first pixel; 16 + 31 + 14.1 < 63


def scales() -> np.ndarray:
    """The 6 scale values, linspace(0.5, 1, 6) as dSprites'."""
    return np.linspace(0.5, 1.0, NUM_SCALES)


def _position_steps(positions: int) -> np.ndarray:
    """Pixel offsets 0..31 of `positions` evenly spread positions (all 32 by default)."""
    return np.round(np.linspace(0, NUM_POSITIONS - 1, positions)).astype(np.int64)


def factor_grid(orientations: int = NUM_ORIENTATIONS, positions: int = NUM_POSITIONS) -> np.ndarray:
    """Every factor combination as class indices, N x 5 (shape, scale, orientation, pos_x, pos_y),
    N = 3 * 6 * orientations * positions**2, in the row order of `render`'s images.

    Raises:
        ConfigError: orientations outside [1, 40] or positions outside [2, 32].
    """
    check_int("orientations", orientations, 1, NUM_ORIENTATIONS)
    check_int("positions", positions, 2, NUM_POSITIONS)
    sizes = (len(SHAPES), NUM_SCALES, orientations, positions, positions)
    return np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=np.int64)


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of the points (u, v), in units of the radius, in the unturned shape."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "ellipse":
        return u**2 + (v / 0.5) ** 2 <= 1.0
    # the heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, about 2.3 wide: shrunk to width 2,
    # and shifted down so its point lies below the centre (y grows downwards in the image)
    x, y = 1.15 * u, -1.15 * v + 0.2
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def sprite(shape: str, scale: float, angle: float, offset: tuple[float, float]) -> np.ndarray:
    """One 64 x 64 binary (uint8 0/1) image: `shape` of `scale` turned by `angle` radians, its
    centre at pixel (MARGIN + offset_x, MARGIN + offset_y)."""
    rows, cols = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    dx, dy = cols - (MARGIN + offset[0]), rows - (MARGIN + offset[1])
    cos, sin = np.cos(angle), np.sin(angle)
    radius = RADIUS * scale
    u, v = (cos * dx + sin * dy) / radius, (-sin * dx + cos * dy) / radius
    return _inside(shape, u, v).astype(np.uint8)


def render(orientations: int = NUM_ORIENTATIONS, positions: int = NUM_POSITIONS) -> np.ndarray:
    """The images of `factor_grid(orientations, positions)`, N x 64 x 64 uint8 in {0, 1}.

    Each (shape, scale, orientation) sprite is drawn once at offset (0, 0) and moved by whole
    pixels, so the positions cost a copy each. The full grid is 3 GB in memory.
    """
    grid_steps = _position_steps(positions)
    factor_grid(orientations, positions)  # checks the arguments
    n_pos = len(grid_steps)
    out = np.zeros(
        (len(SHAPES), NUM_SCALES, orientations, n_pos, n_pos, IMAGE_SIZE, IMAGE_SIZE), np.uint8
    )
    span = IMAGE_SIZE - NUM_POSITIONS + 1  # the rows a sprite at offset 0 can cover
    for (s, shape), (c, scale), o in itertools.product(
        enumerate(SHAPES), enumerate(scales()), range(orientations)
    ):
        base = sprite(shape, scale, 2 * np.pi * o / orientations, (0.0, 0.0))
        assert not base[span:].any() and not base[:, span:].any()  # it fits every shift
        for (i, x), (j, y) in itertools.product(enumerate(grid_steps), repeat=2):
            out[s, c, o, i, j, y : y + span, x : x + span] = base[:span, :span]
    return out.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def digest(images: np.ndarray) -> str:
    """sha256 of the images' bytes: two renders agree when their digests do."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def cache_path(data_dir: str | Path, orientations: int, positions: int) -> Path:
    """Where `load_shapes` keeps one grid: `<data_dir>/shapes/shapes_or{o}_pos{p}.npz`."""
    return Path(data_dir) / "shapes" / f"shapes_or{orientations}_pos{positions}.npz"


def load_shapes(
    data_dir: str | Path, orientations: int = NUM_ORIENTATIONS, positions: int = NUM_POSITIONS
) -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 64 x 64 uint8 0/1) and factor classes (N x 5), rendered on the first call
    and read from the cache after (bits packed, as dSprites' images are 0/1).

    Raises:
        ConfigError: orientations or positions outside their range.
        DataSourceError: the cache cannot be written or is not a grid of the expected size.
    """
    factors = factor_grid(orientations, positions)
    path = cache_path(data_dir, orientations, positions)
    if path.exists():
        with np.load(path) as cached:
            packed = cached["imgs_packed"]
        images = np.unpackbits(packed, axis=-1, count=IMAGE_SIZE * IMAGE_SIZE)
        if len(images) != len(factors):
            raise DataSourceError(
                f"{path}: {len(images)} images, the grid has {len(factors)}: delete it to render"
            )
        return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), factors
    log.info("rendering %d shapes images into %s (once)", len(factors), path)
    images = render(orientations, positions)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, imgs_packed=np.packbits(images.reshape(len(images), -1), axis=-1))
    _atomic_write(path, buffer.getvalue())
    return images, factors
