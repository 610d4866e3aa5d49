"""The shapes renderer: the grid's size, position and scale seen in the pixels, determinism."""

import math

import numpy as np
import pytest

from aelab.checks import ConfigError
from aelab.data import shapes


def test_the_grid_has_the_documented_size():
    full = shapes.factor_grid()
    assert full.shape == (3 * 6 * 40 * 32 * 32, 5) == (737_280, 5)
    assert [len(np.unique(c)) for c in full.T] == [3, 6, 40, 32, 32]
    small = shapes.factor_grid(orientations=4, positions=8)
    assert small.shape == (3 * 6 * 4 * 8 * 8, 5)
    images = shapes.render(orientations=2, positions=3)
    assert images.shape == (3 * 6 * 2 * 3 * 3, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 1}


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(x, y) pixel centre of mass of each binary image, N x 2."""
    rows, cols = np.mgrid[0:64, 0:64]
    area = images.sum(axis=(1, 2))
    return np.stack([(images * cols).sum((1, 2)) / area, (images * rows).sum((1, 2)) / area], 1)


def test_the_centre_of_mass_follows_the_position_factors():
    positions = 4
    images = shapes.render(orientations=3, positions=positions)
    factors = shapes.factor_grid(orientations=3, positions=positions)
    com = centre_of_mass(images)
    step = 31 / (positions - 1)  # pixels between neighbouring positions: 0, 10, 21, 31 rounded
    pixels = np.round(np.arange(positions) * step)
    at_origin = (factors[:, 3] == 0) & (factors[:, 4] == 0)
    for key in map(tuple, np.unique(factors[:, :3], axis=0)):
        same = (factors[:, :3] == key).all(axis=1)
        origin = com[same & at_origin][0]
        moved = com[same] - origin
        np.testing.assert_allclose(moved[:, 0], pixels[factors[same, 3]], atol=1e-9)
        np.testing.assert_allclose(moved[:, 1], pixels[factors[same, 4]], atol=1e-9)
    # a square at orientation 0 is symmetric about its centre, pixel (16 + x, 16 + y)
    square = (factors[:, 0] == 0) & (factors[:, 2] == 0)
    want = shapes.MARGIN + pixels[factors[square][:, 3:]]
    np.testing.assert_allclose(com[square], want, atol=1e-9)


@pytest.mark.parametrize(
    ("shape", "area", "perimeter"),
    [
        # square of side 20 s; ellipse of semi-axes 10 s, 5 s (Ramanujan's perimeter)
        ("square", lambda s: (20 * s) ** 2, lambda s: 80 * s),
        ("ellipse", lambda s: math.pi * 50 * s**2, lambda s: math.pi * s * (45 - math.sqrt(875))),
    ],
)
def test_the_area_follows_the_scale_factor(shape, area, perimeter):
    for scale in shapes.scales():
        for angle in (0.0, 0.7):
            pixels = shapes.sprite(shape, scale, angle, (10.0, 10.0)).sum()
            # every pixel a boundary crosses may go either way: at most ~the perimeter of them
            assert abs(pixels - area(scale)) <= perimeter(scale) + 4


def test_the_area_grows_as_the_scale_squared_for_every_shape():
    images = shapes.render(orientations=2, positions=2)
    factors = shapes.factor_grid(orientations=2, positions=2)
    areas = images.sum(axis=(1, 2))
    for s in range(3):
        rows = factors[:, 0] == s
        r = np.corrcoef(areas[rows], shapes.scales()[factors[rows, 1]] ** 2)[0, 1]
        assert r > 0.99


def test_rendering_twice_gives_the_same_digest_and_the_cache_returns_it(tmp_path):
    first = shapes.render(orientations=2, positions=4)
    assert shapes.digest(first) == shapes.digest(shapes.render(orientations=2, positions=4))
    assert shapes.digest(first) != shapes.digest(shapes.render(orientations=3, positions=4))
    images, factors = shapes.load_shapes(tmp_path, orientations=2, positions=4)
    assert shapes.cache_path(tmp_path, 2, 4).exists()
    cached, cached_factors = shapes.load_shapes(tmp_path, orientations=2, positions=4)
    assert shapes.digest(cached) == shapes.digest(images) == shapes.digest(first)
    np.testing.assert_array_equal(cached_factors, factors)


@pytest.mark.parametrize(("field", "value"), [("orientations", 0), ("positions", 33)])
def test_a_grid_out_of_range_is_refused_in_one_line(field, value):
    with pytest.raises(ConfigError, match=rf"{field}={value} is invalid: allowed an integer in"):
        shapes.factor_grid(**{field: value})
