"""data=celeba on a small img_align_celeba.zip with its partition and attribute files, written as
the official ones (tests/helpers/fixture_data.py): the crop and resize, the official split, the
attribute labels, the unpacked-folder variant, the cache, and the one-line errors."""

from __future__ import annotations

import hashlib
import shutil
import zipfile

import pytest
from helpers.fixture_data import write_celeba

from aelab.checks import ConfigError, DataSourceError
from aelab.data import celeba
from aelab.data.celeba import CelebADataModule


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    made = write_celeba(tmp_path)
    md5 = made["md5"]
    monkeypatch.setattr(
        celeba,
        "CELEBA_FILES",
        {n: md5[n] for n in ("img_align_celeba.zip", "list_eval_partition.txt")},
    )
    monkeypatch.setattr(celeba, "ATTR_FILE", ("list_attr_celeba.txt", md5["list_attr_celeba.txt"]))
    return tmp_path, made


def test_celeba_crops_resizes_and_keeps_the_official_partition(fixture):
    root, made = fixture
    dm = CelebADataModule(data_dir=root, attribute="Male", size=16, on_device=False)
    dm.setup()
    assert dm.image_shape == (3, 16, 16)
    sizes = {k: dm.split_size(k) for k in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 2}  # parts 0 0 0 1 2 2
    x, y = dm.split_tensors("test")
    assert x.shape == (2, 3, 16, 16)
    assert float(x.min()) > 0.95  # the centre 148 x 148 is the white square (JPEG: nearly 1)
    assert y.tolist() == made["male"][4:6]
    assert dm.split_tensors("train")[1].tolist() == made["male"][:3]
    assert dm.cache_path().is_file()


def test_a_cached_decode_and_the_unpacked_folder_read_the_same(fixture):
    root, _ = fixture
    first = CelebADataModule(data_dir=root, size=8, on_device=False)
    first.setup()
    x, _ = first.split_tensors("train")
    first.cache_path().unlink()
    with zipfile.ZipFile(root / "celeba" / "img_align_celeba.zip") as zf:
        zf.extractall(root / "celeba")
    (root / "celeba" / "img_align_celeba.zip").unlink()  # the folder alone is enough
    again = CelebADataModule(data_dir=root, size=8, on_device=False)
    again.setup()
    assert again.split_tensors("train")[0].equal(x)
    cached = CelebADataModule(data_dir=root, size=8, on_device=False)
    shutil.rmtree(root / "celeba" / "img_align_celeba")
    (root / "celeba" / "img_align_celeba").mkdir()  # empty: only the cache can serve it
    cached.setup()
    assert cached.split_tensors("train")[0].equal(x)


def test_celeba_missing_names_the_files_and_the_page(tmp_path):
    with pytest.raises(DataSourceError) as err:
        CelebADataModule(data_dir=tmp_path).prepare_data()
    line = str(err.value)
    assert "\n" not in line
    assert "img_align_celeba.zip (missing), list_eval_partition.txt (missing)" in line
    assert "mmlab.ie.cuhk.edu.hk/projects/CelebA.html" in line
    assert str(tmp_path / "celeba") in line


def test_celeba_refuses_a_corrupt_zip_and_an_unknown_attribute(fixture):
    root, _ = fixture
    zip_path = root / "celeba" / "img_align_celeba.zip"
    zip_path.write_bytes(zip_path.read_bytes()[:-10])
    with pytest.raises(DataSourceError) as err:
        CelebADataModule(data_dir=root).setup()
    got = hashlib.md5(zip_path.read_bytes()).hexdigest()
    assert f"img_align_celeba.zip (md5 {got} != " in str(err.value)
    write_celeba(root)
    with pytest.raises(ConfigError) as err:
        CelebADataModule(data_dir=root, attribute="Bald", on_device=False).setup()
    assert str(err.value) == (
        "attribute='Bald' is invalid: allowed null or one of 5_o_Clock_Shadow, Male, Smiling"
    )
