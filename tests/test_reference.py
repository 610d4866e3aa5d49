"""The reference presets (`experiment=reference/*`): they compose, their tables hold the paper's
figure, aelab's and the difference, and the PCA row of Hinton & Salakhutdinov 2006 is right."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from aelab import CONFIG_DIR
from aelab.checks import ConfigError
from aelab.nets import MLPNet
from aelab.reference import FIGURES, compare, markdown, pca_sse_per_image, sweep_table, write_table
from aelab.train import build_model

PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment" / "reference").glob("*.yaml"))
TINY = [
    "trainer.max_epochs=2",
    "++trainer.limit_train_batches=3",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1",
    "threads=1",
]


def test_every_preset_is_found():
    assert PRESETS == ["burda2016", "burda2016_cpu", "hinton2006", "pytorch_vae", "ruff2018"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_builds_its_model(preset, make_cfg):
    cfg = make_cfg(f"experiment=reference/{preset}")
    model = build_model(cfg)
    paper = cfg.callbacks.reference.paper
    assert paper in FIGURES
    if preset == "hinton2006":
        widths = [m.out_features for m in model.encoder.modules() if isinstance(m, nn.Linear)]
        assert widths == [1000, 500, 250, 30]
    if preset.startswith("burda2016"):
        assert any(isinstance(m, nn.Tanh) for m in model.encoder.modules())
        assert not any(isinstance(m, nn.ReLU) for m in model.modules())
        assert model.latent_dim == 50 and cfg.data.binarize == "dynamic"
    if preset == "pytorch_vae":
        widths = [m.out_features for m in model.encoder.modules() if isinstance(m, nn.Linear)]
        assert widths == [400, 40] and cfg.data.batch_size == 128  # mu and log sigma^2: 2 x 20


def test_burda_presets_sweep_k(make_cfg):
    full = make_cfg("experiment=reference/burda2016")
    cpu = make_cfg("experiment=reference/burda2016_cpu")
    assert full.trainer.max_epochs == 3280 and cpu.trainer.max_epochs == 10
    assert full.eval.iw_samples == 5000 and full.eval.iw_images is None


def test_pca_error_equals_sklearn_reconstruction(mnist_dir):
    from sklearn.decomposition import PCA

    from aelab.data.mnist import read_idx
    from aelab.data.source import ensure_mnist

    raw = ensure_mnist(mnist_dir)
    train = read_idx(raw / "train-images-idx3-ubyte")[:3000].float() / 255
    test = read_idx(raw / "t10k-images-idx3-ubyte")[:1000].float() / 255
    pca = PCA(n_components=30, svd_solver="full").fit(train.flatten(1).numpy().astype(np.float64))
    t = test.flatten(1).numpy().astype(np.float64)
    expected = ((pca.inverse_transform(pca.transform(t)) - t) ** 2).sum(1).mean()
    assert pca_sse_per_image(train, test, 30) == pytest.approx(expected, rel=1e-9)
    # more components reconstruct better
    assert pca_sse_per_image(train, test, 60) < pca_sse_per_image(train, test, 30)


def test_pca_refuses_more_components_than_images():
    x = torch.rand(5, 1, 4, 4)
    with pytest.raises(ConfigError, match="n_components"):
        pca_sse_per_image(x, x, 6)


def test_compare_gives_paper_aelab_and_difference():
    table = compare("ruff2018", {("digit 3", "test/auroc_percent"): 95.5}, rows=["digit 3"])
    assert table[["row", "paper", "aelab"]].values.tolist() == [["digit 3", 86.7, 95.5]]
    assert table["difference"].iloc[0] == pytest.approx(95.5 - 86.7)
    full = compare("hinton2006", {})
    assert full["paper"].tolist() == [3.00, 8.01, 13.87] and full["aelab"].isna().all()
    assert markdown("hinton2006", full).count("not reproduced") == 3


def test_compare_keeps_figures_the_paper_lacks():
    measured = {("test loss after epoch 7", "epoch7/neg_elbo"): 107.0}
    measured[("test loss after epoch 1", "epoch1/neg_elbo")] = 130.0
    table = compare("pytorch_vae", measured).set_index("row")
    assert table.loc["test loss after epoch 7", "difference"] == pytest.approx(107.0 - 106.6624)
    assert math.isnan(table.loc["test loss after epoch 1", "paper"])  # not in the stored log
    assert table.index.tolist() == [f"test loss after epoch {e}" for e in range(1, 11)]


def test_unknown_paper_is_one_line():
    with pytest.raises(ConfigError, match="paper.*hinton2006"):
        compare("nope", {})


def test_sweep_table_joins_the_jobs_in_the_papers_order(tmp_path):
    for c, auroc in ((7, 97.0), (2, 91.0)):
        write_table(
            tmp_path / f"job{c}",
            "ruff2018",
            compare("ruff2018", {(f"digit {c}", "test/auroc_percent"): auroc}, [f"digit {c}"]),
        )
    joined = sweep_table(tmp_path, "ruff2018")
    assert joined["row"].tolist() == ["digit 2", "digit 7"]
    assert joined["aelab"].tolist() == [91.0, 97.0]
    assert pd.read_csv(tmp_path / "job7" / "reference.csv")["paper"].tolist() == [92.3]


def test_mlp_activation():
    net = MLPNet([8, 4], activation="tanh")
    kinds = [type(m) for m in net.encoder((1, 4, 4), 2).modules()]
    assert kinds.count(nn.Tanh) == 2 and nn.ReLU not in kinds
    with pytest.raises(ConfigError, match="activation.*relu, tanh, sigmoid"):
        MLPNet([8], activation="gelu")


@pytest.mark.slow
@pytest.mark.mnist
def test_hinton_run_writes_its_table(make_cfg, mnist_dir):
    from aelab.data.mnist import read_idx
    from aelab.data.source import ensure_mnist
    from aelab.train import train

    cfg = make_cfg("experiment=reference/hinton2006", *TINY, "trainer.max_epochs=1")
    metrics = train(cfg)
    table = pd.read_csv(Path(cfg.paths.output_dir) / "reference.csv").set_index("row")
    ae = table.loc["deep autoencoder 784-1000-500-250-30"]
    assert ae["aelab"] == pytest.approx(metrics["test/recon_mse"] * 784, rel=1e-4)
    raw = ensure_mnist(mnist_dir)
    train_x = read_idx(raw / "train-images-idx3-ubyte").float() / 255
    test_x = read_idx(raw / "t10k-images-idx3-ubyte").float() / 255
    pca = table.loc["PCA, 30 components"]
    assert pca["aelab"] == pytest.approx(pca_sse_per_image(train_x, test_x, 30), rel=1e-6)
    assert abs(pca["aelab"] - 13.87) < 0.05  # the paper's figure, on all 10 000 test images
    assert "not reproduced" in (Path(cfg.paths.output_dir) / "reference.md").read_text()


@pytest.mark.slow
@pytest.mark.mnist
def test_pytorch_vae_scores_the_test_split_after_every_epoch(make_cfg, mnist_dir):
    from aelab.train import train

    cfg = make_cfg("experiment=reference/pytorch_vae", *TINY)
    train(cfg)
    table = pd.read_csv(Path(cfg.paths.output_dir) / "reference.csv").set_index("row")
    first = table.loc["test loss after epoch 1", "aelab"]
    second = table.loc["test loss after epoch 2", "aelab"]
    assert second < first  # six Adam steps in, the loss is still falling fast
    assert math.isnan(table.loc["test loss after epoch 7", "aelab"])  # two epochs only
    assert table.loc["test loss after epoch 7", "paper"] == 106.6624
