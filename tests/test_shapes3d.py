"""data=shapes3d on a small 3dshapes.h5 written in DeepMind's layout: the images (channels
moved first), the six factors as classes, the shape as the label, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aelab.checks import DataSourceError

pytest.importorskip("h5py")

from helpers.fixture_data import write_shapes3d  # noqa: E402

from aelab.data.factors import Shapes3DDataModule  # noqa: E402


def test_shapes3d_serves_colour_images_with_six_factors(tmp_path):
    made = write_shapes3d(tmp_path)
    dm = Shapes3DDataModule(data_dir=tmp_path, val_size=4, test_size=8, on_device=False)
    dm.setup()
    assert dm.image_shape == (3, 64, 64) and len(dm.factor_names) == 6
    n = len(made["images"])
    assert sum(dm.split_size(k) for k in ("train", "val", "test")) == n == 96
    x, y = dm.split_tensors("test")
    factors = dm.split_factors("test")
    assert x.shape == (8, 3, 64, 64) and factors.shape == (8, 6)
    # each served image is a file row with channels first; its factors and label are that row's
    rows = [
        int(
            np.flatnonzero(
                (made["images"] == im.permute(1, 2, 0).mul(255).round().byte().numpy()).all(
                    axis=(1, 2, 3)
                )
            )[0]
        )
        for im in x
    ]
    np.testing.assert_array_equal(factors.numpy(), made["classes"][rows])
    assert y.tolist() == made["classes"][rows, 4].tolist()  # the shape
    assert torch.equal(torch.from_numpy(made["classes"][:, 4]).unique(), torch.arange(3))


def test_shapes3d_missing_file_is_one_line(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(DataSourceError) as err:
        Shapes3DDataModule(data_dir=tmp_path).prepare_data()
    line = str(err.value)
    assert "\n" not in line and "3dshapes.h5 (missing)" in line
    assert "https://storage.googleapis.com/3d-shapes/" in line


def test_shapes3d_refuses_another_layout(tmp_path):
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 32, 32, 3), np.uint8))
        f.create_dataset("labels", data=np.zeros((2, 6)))
    with pytest.raises(DataSourceError) as err:
        Shapes3DDataModule(path=str(path)).prepare_data()
    assert str(err.value) == f"{path}: images uint8 (2, 32, 32, 3), expected N x 64 x 64 x 3"
