"""The datasets beside MNIST (data=fashion_mnist, cifar10, binarized_mnist, image_folder) on small
files in the official formats (tests/helpers/fixture_data.py): what they read, their shapes and
splits, the checksum path (the official table patched with the fixtures' real md5s), the
download path (torchvision's download_url patched: no network here) and the one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.fixture_data import write_amat, write_cifar, write_fashion, write_image_folder

from aelab.checks import ConfigError, DataSourceError
from aelab.data import files, natural
from aelab.data.folder import ImageFolderDataModule
from aelab.data.natural import (
    BinarizedMNISTDataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every download fails at once, as on a machine without network."""
    calls = []

    def offline(url, root, filename=None, md5=None, **kwargs):
        calls.append(url)
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    return calls


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --- Fashion-MNIST --------------------------------------------------------------------------


def test_fashion_mnist_reads_the_idx_gz_files_and_splits_them(tmp_path, monkeypatch):
    made = write_fashion(tmp_path)
    monkeypatch.setattr(natural, "FASHION_MNIST_FILES", made["md5"])
    dm = FashionMNISTDataModule(data_dir=tmp_path, val_size=2, on_device=False)
    dm.setup()
    assert dm.image_shape == (1, 28, 28) and dm.pixels == "levels"
    assert {k: dm.split_size(k) for k in ("train", "val", "test")} == {
        "train": 10,
        "val": 2,
        "test": 4,
    }
    x, y = dm.split_tensors("test")
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    np.testing.assert_array_equal((x[:, 0] * 255).round().numpy(), made["x"]["test"])
    np.testing.assert_array_equal(y.numpy(), made["y"]["test"])
    # train and val partition the 12 training images
    train_x, _ = dm.split_tensors("train")
    val_x, _ = dm.split_tensors("val")
    together = torch.cat([train_x, val_x])[:, 0].mul(255).round().to(torch.uint8).numpy()
    assert sorted(map(bytes, together)) == sorted(map(bytes, made["x"]["train"]))


def test_fashion_mnist_classes_keep_those_labels_in_train_only(tmp_path, monkeypatch):
    made = write_fashion(tmp_path)
    monkeypatch.setattr(natural, "FASHION_MNIST_FILES", made["md5"])
    dm = FashionMNISTDataModule(data_dir=tmp_path, val_size=1, classes=[3, 7], on_device=False)
    dm.setup()
    kept = np.isin(made["y"]["train"], [3, 7]).sum()
    assert dm.split_size("train") + dm.split_size("val") == kept
    assert set(dm.split_tensors("train")[1].tolist()) <= {3, 7}
    assert dm.split_size("test") == 4  # all classes


def test_fashion_mnist_corrupt_file_gives_one_line_and_is_not_read(
    tmp_path, monkeypatch, no_network
):
    made = write_fashion(tmp_path)
    monkeypatch.setattr(natural, "FASHION_MNIST_FILES", made["md5"])
    raw = tmp_path / "FashionMNIST" / "raw"
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"not the file")
    before = sorted(p.name for p in raw.iterdir())
    dm = FashionMNISTDataModule(data_dir=tmp_path, on_device=False)
    with pytest.raises(DataSourceError) as err:
        dm.setup()
    line = one_line(err)
    bad_md5 = hashlib.md5(b"not the file").hexdigest()
    assert f"t10k-images-idx3-ubyte.gz (md5 {bad_md5} != " in line
    assert natural.FASHION_MNIST_MIRRORS[0] in line and str(raw) in line
    assert no_network == [natural.FASHION_MNIST_MIRRORS[0] + "t10k-images-idx3-ubyte.gz"]
    assert sorted(p.name for p in raw.iterdir()) == before  # no temp folder left


def test_the_official_checksums_refuse_the_fixture(tmp_path):
    write_fashion(tmp_path)  # the real table: these files are not Fashion-MNIST
    with pytest.raises(DataSourceError) as err:
        FashionMNISTDataModule(data_dir=tmp_path, download=False).prepare_data()
    line = one_line(err)
    assert "data.download=false" in line and line.count("md5") == 4


def test_missing_files_name_all_of_them(tmp_path):
    with pytest.raises(DataSourceError) as err:
        FashionMNISTDataModule(data_dir=tmp_path).prepare_data()
    line = one_line(err)
    for name in natural.FASHION_MNIST_FILES:
        assert f"{name} (missing)" in line
    assert "Name or service not known" in line


def test_a_download_lands_only_with_the_right_md5(tmp_path, monkeypatch):
    """The download path: torchvision's download_url writes into a temp folder, the file is moved
    into place once its md5 is right; a wrong one leaves nothing."""
    source = tmp_path / "source"
    made = write_fashion(source)
    monkeypatch.setattr(natural, "FASHION_MNIST_FILES", made["md5"])
    served = source / "FashionMNIST" / "raw"

    def fake_download(url, root, filename=None, md5=None, **kwargs):
        data = (served / filename).read_bytes()
        if "t10k-labels" in filename:
            data += b"x"  # one corrupt transfer
        Path(root, filename).write_bytes(data)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    target = tmp_path / "data"
    with pytest.raises(DataSourceError) as err:
        FashionMNISTDataModule(data_dir=target).prepare_data()
    assert "t10k-labels-idx1-ubyte.gz (missing)" in one_line(err)
    raw = target / "FashionMNIST" / "raw"
    landed = set(made["md5"]) - {"t10k-labels-idx1-ubyte.gz"}
    assert sorted(p.name for p in raw.iterdir()) == sorted(landed)
    for name in landed:
        assert files.md5sum(raw / name) == made["md5"][name]


# --- CIFAR-10 -------------------------------------------------------------------------------


def test_cifar10_reads_the_pickled_batches_from_the_tar_gz(tmp_path, monkeypatch):
    made = write_cifar(tmp_path)
    monkeypatch.setattr(natural, "CIFAR10_FILES", made["md5"])
    dm = CIFAR10DataModule(data_dir=tmp_path, val_size=3, on_device=False)
    dm.setup()
    assert dm.image_shape == (3, 32, 32)
    assert (dm.split_size("train"), dm.split_size("val"), dm.split_size("test")) == (7, 3, 3)
    x, y = dm.split_tensors("test")
    assert x.shape == (3, 3, 32, 32)
    data = made["data"]["test"]
    # channel-major rows of 1024: pixel (c, h, w) is data[:, c * 1024 + h * 32 + w]
    assert round(float(x[1, 2, 5, 7]) * 255) == data[1, 2 * 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal((x * 255).round().reshape(3, -1).numpy(), data)
    assert y.tolist() == made["labels"]["test"]
    assert not (tmp_path / "cifar10" / "cifar-10-batches-py").exists()  # nothing extracted


def test_cifar10_refuses_an_archive_without_its_batches(tmp_path, monkeypatch):
    import tarfile

    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz"):
        pass
    monkeypatch.setattr(natural, "CIFAR10_FILES", {path.name: files.md5sum(path)})
    with pytest.raises(DataSourceError) as err:
        CIFAR10DataModule(data_dir=tmp_path).setup()
    assert one_line(err) == f"{path}: no member cifar-10-batches-py/data_batch_1"


# --- binarized MNIST ------------------------------------------------------------------------


def test_binarized_mnist_keeps_the_official_split_and_binary_pixels(tmp_path):
    made = write_amat(tmp_path)
    dm = BinarizedMNISTDataModule(data_dir=tmp_path, on_device=False)
    dm.setup()
    assert dm.pixels == "binary"
    sizes = {k: dm.split_size(k) for k in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 3, "test": 3}
    x, y = dm.split_tensors("val")
    np.testing.assert_array_equal(x.reshape(3, 784).numpy(), made["valid"].astype(np.float32))
    assert y.tolist() == [0, 0, 0]


def test_binarized_mnist_refuses_a_file_of_other_values(tmp_path):
    write_amat(tmp_path)
    bad = tmp_path / "binarized_mnist" / "binarized_mnist_test.amat"
    bad.write_text(" ".join(["0.5"] * 784) + "\n")
    with pytest.raises(DataSourceError) as err:
        BinarizedMNISTDataModule(data_dir=tmp_path).setup()
    assert one_line(err) == f"{bad}: 784 values a line, expected 784 values 0 or 1"


def test_binarized_mnist_missing_names_the_page_and_the_other_option(tmp_path):
    with pytest.raises(DataSourceError) as err:
        BinarizedMNISTDataModule(data_dir=tmp_path, download=False).prepare_data()
    line = one_line(err)
    assert "binarized_mnist_train.amat (missing)" in line
    assert natural.BINARIZED_MNIST_MIRRORS[0] in line and "data.binarize=static" in line


# --- image folder ---------------------------------------------------------------------------


def test_image_folder_reads_png_and_jpeg_with_subfolder_labels(tmp_path):
    colours = write_image_folder(tmp_path / "imgs")
    dm = ImageFolderDataModule(
        path=str(tmp_path / "imgs"), size=8, labels=True, val_size=1, test_size=2, on_device=False
    )
    dm.setup()
    assert dm.image_shape == (3, 8, 8)
    assert sum(dm.split_size(k) for k in ("train", "val", "test")) == 8
    x, y = dm.split_tensors("train")
    assert x.shape[1:] == (3, 8, 8) and set(y.tolist()) <= {0, 1}
    everything = torch.cat([dm.split_tensors(k)[0] for k in ("train", "val", "test")])
    labels = torch.cat([dm.split_tensors(k)[1] for k in ("train", "val", "test")])
    pngs = [c for name, c in colours.items() if name.endswith(".png")]
    found = {tuple((im[:, 0, 0] * 255).round().int().tolist()) for im in everything[labels == 0]}
    assert found == set(pngs)  # a PNG at its own size comes back exactly; cat = 0, dog = 1
    jpgs = everything[labels == 1]
    assert len(jpgs) == 4 and (jpgs[:, 2] * 255).round().sub(150).abs().max() <= 3  # lossy


def test_image_folder_resizes_and_crops_to_the_stated_size(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, 4:12] = 255  # the centre square white, the sides black
    for i in range(3):
        Image.fromarray(wide).save(tmp_path / "imgs" / f"{i}.png")
    dm = ImageFolderDataModule(
        path=str(tmp_path / "imgs"), size=4, channels=1, val_size=1, test_size=1, on_device=False
    )
    dm.setup()
    x, _ = dm.split_tensors("train")
    assert x.shape == (1, 1, 4, 4) and dm.image_shape == (1, 4, 4)
    # the centre crop is the white square (its edge blurred by the antialiased resize); the whole
    # image resized would be half black
    assert float(x.mean()) > 0.9


def test_image_folder_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        ImageFolderDataModule()
    assert one_line(err).startswith("path=None is invalid: allowed a folder of PNG or JPEG")
    with pytest.raises(ConfigError, match=r"^size=2 is invalid: allowed an integer in \[4, 1024\]"):
        ImageFolderDataModule(path=".", size=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError) as err:
        ImageFolderDataModule(path=str(tmp_path / "empty")).setup()
    assert one_line(err) == f"data.path={tmp_path / 'empty'}: no PNG or JPEG image in it"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(path=str(tmp_path / "broken"), val_size=1, test_size=1)
    with pytest.raises((DataSourceError, ConfigError)) as err:
        dm.setup()
    one_line(err)
    for i in range(3):
        (tmp_path / "broken" / f"b{i}.png").write_bytes(b"not a png")
    with pytest.raises(DataSourceError) as err:
        dm.setup()
    assert one_line(err).startswith(f"{tmp_path / 'broken' / 'a.png'}: not a readable PNG or JPEG")


def test_a_bernoulli_on_colour_levels_warns_in_one_line(tmp_path, monkeypatch, caplog):
    from aelab.callbacks.data_range import check_data_range
    from aelab.models import VAE

    made = write_cifar(tmp_path)
    monkeypatch.setattr(natural, "CIFAR10_FILES", made["md5"])
    colour = CIFAR10DataModule(data_dir=tmp_path, val_size=2, on_device=False)
    colour.setup()
    grey = write_fashion(tmp_path)
    monkeypatch.setattr(natural, "FASHION_MNIST_FILES", grey["md5"])
    fashion = FashionMNISTDataModule(data_dir=tmp_path, val_size=2, on_device=False)
    fashion.setup()
    net = {"_target_": "aelab.nets.MLPNet", "hidden": [8]}
    cases = [
        (VAE(image_shape=(3, 32, 32), net=net, recon_loss="bce"), colour, 1),
        (VAE(image_shape=(3, 32, 32), net=net, recon_loss="mse"), colour, 0),
        (VAE(image_shape=(1, 28, 28), net=net, recon_loss="bce"), fashion, 0),
    ]
    for model, data, warnings in cases:
        caplog.clear()
        with caplog.at_level("WARNING", logger="aelab.callbacks.data_range"):
            check_data_range(model, data)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == warnings
        if warnings:
            assert "\n" not in lines[0] and "(3 x 32 x 32)" in lines[0]
            assert "model.recon_loss=mse" in lines[0]
