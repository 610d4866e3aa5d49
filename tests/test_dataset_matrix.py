"""`aelab-train data=<each> model=<each> debug=smoke` on small files in each dataset's official
format (tests/helpers/fixture_data.py): every run trains, tests and scores the images the data
serves (C x H x W reaches the model and the figures), with no network."""

from __future__ import annotations

import math

import pytest
from conftest import compose_cfg
from helpers.fixture_data import (
    write_amat,
    write_celeba,
    write_cifar,
    write_fashion,
    write_image_folder,
    write_shapes3d,
)
from omegaconf import open_dict

from aelab.data import celeba, natural
from aelab.train import train

SHAPES = {
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "binarized_mnist": (1, 28, 28),
    "image_folder": (3, 16, 16),
    "celeba": (3, 64, 64),
    "shapes3d": (3, 64, 64),
}
# every dataset with the AE and the VAE; Shapes3D (whose disentanglement scores take most of a
# run's time) with one VAE
MATRIX = [(data, model) for data in SHAPES if data != "shapes3d" for model in ("ae", "vae")] + [
    ("shapes3d", "vae net=conv64"),  # with the disentanglement scores on its six factors
    # the presets (PyTorch-VAE's conv net on CIFAR-10 and CelebA), shortened by debug=smoke
    ("cifar10", "vae experiment=cifar10_vae"),
    ("celeba", "vae experiment=celeba_vae"),
    ("fashion_mnist", "vae experiment=fashion_vae"),
    ("image_folder", "vae net=conv"),
    *[("cifar10", model) for model in ("dae", "iwae", "vqvae", "sparse_ae", "cae", "tcvae")],
]


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    md5 = {
        "FASHION_MNIST_FILES": write_fashion(root, n_train=48, n_test=16)["md5"],
        "CIFAR10_FILES": write_cifar(root, per_batch=10, n_test=16)["md5"],
    }
    write_amat(root, rows=(40, 8, 16))
    write_shapes3d(root)
    celeba_md5 = write_celeba(root, parts=(0,) * 12 + (1,) * 4 + (2,) * 8)["md5"]
    md5["CELEBA_FILES"] = {n: celeba_md5[n] for n in celeba.CELEBA_FILES}
    md5["ATTR_FILE"] = ("list_attr_celeba.txt", celeba_md5["list_attr_celeba.txt"])
    write_image_folder(root / "folder", per_class=20, side=16)
    overrides = {
        "fashion_mnist": ["data.val_size=8"],
        "cifar10": ["data.val_size=8"],
        "binarized_mnist": [],
        "celeba": ["data.attribute=Male"],
        "shapes3d": [
            "data.val_size=8",
            "data.test_size=40",
            "disent.num_train=24",
            "disent.num_test=16",
            "disent.num_eval=8",
            "disent.batch_size=4",
        ],
        "image_folder": [
            f"data.path={root / 'folder'}",
            "data.size=16",
            "data.labels=true",
            "data.val_size=8",
            "data.test_size=8",
        ],
    }
    return root, md5, overrides


@pytest.mark.slow
@pytest.mark.parametrize(("data", "model"), MATRIX, ids=lambda v: v.replace(" ", "+"))
def test_every_dataset_trains_and_scores_each_model(
    data, model, fixture_data, tmp_path, monkeypatch
):
    root, md5, overrides = fixture_data
    for table, files in md5.items():  # the fixtures' own md5s for the published ones
        monkeypatch.setattr(celeba if hasattr(celeba, table) else natural, table, files)

    def offline(*args, **kwargs):
        raise OSError("no network in tests")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    model_name, *more = model.split()
    cfg = compose_cfg(
        [
            "debug=smoke",
            f"data={data}",
            f"model={model_name}",
            *more,
            "data.batch_size=8",
            "data.eval_batch_size=8",
            "logger=none",
            *overrides[data],
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.paths.data_dir = str(root)
    metrics = train(cfg)
    if data == "shapes3d":  # the six factors reach the disentanglement scores
        assert 0 <= metrics["disent/mig"] <= 1
    assert math.isfinite(metrics["test/loss"])
    assert 0 <= metrics["test/recon_mse"] <= 1
    assert metrics["test/likelihood_on_binarized"] == (data == "binarized_mnist")
    pixels = math.prod(SHAPES[data])
    if "test/iw_nll" in metrics:  # bits per dimension divide by the data's C x H x W
        bits = metrics["test/iw_nll"] / (pixels * math.log(2))
        assert metrics["test/iw_nll_bits_per_dim"] == pytest.approx(bits, rel=1e-4)
    # the summed Bernoulli term is over every pixel of every channel: about ln 2 a pixel for a
    # barely trained model, far from MNIST's 784 on CIFAR's 3072
    assert 0.5 * pixels * math.log(2) < metrics["test/recon_bce"] < 1.5 * pixels * math.log(2)
