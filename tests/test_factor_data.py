"""Data with known factors: the shapes and dSprites datamodules (splits, factors, the reader of
the official layout, the missing file's one line), the models taking the data's image shape,
net=conv64, and the disentanglement scores after the test loop."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from aelab.callbacks.disentanglement import DisentanglementScores
from aelab.checks import ConfigError
from aelab.data import dsprites, shapes
from aelab.data.factors import DSpritesDataModule, ShapesDataModule
from aelab.data.source import DataSourceError
from aelab.nets import ConvNet
from aelab.train import build_model, train

SMALL = {"orientations": 2, "positions": 4}  # 3 * 6 * 2 * 16 = 576 images


def small_shapes(tmp_path, **kwargs):
    dm = ShapesDataModule(data_dir=str(tmp_path), val_size=50, test_size=100, **SMALL, **kwargs)
    dm.setup()
    return dm


def test_shapes_splits_cover_the_grid_once_with_each_images_factors(tmp_path):
    dm = small_shapes(tmp_path)
    images, factors = shapes.render(**SMALL), shapes.factor_grid(**SMALL)
    sizes = {s: dm.split_size(s) for s in ("train", "val", "test")}
    assert sizes == {"train": 576 - 150, "val": 50, "test": 100}
    rows = {}
    for split in sizes:
        x, y = dm.split_tensors(split)
        f = dm.split_factors(split).numpy()
        assert x.shape == (sizes[split], 1, 64, 64) and f.shape == (sizes[split], 5)
        # each served image is the render of its factor row; the label is the shape
        index = np.ravel_multi_index(f.T, (3, 6, 2, 4, 4))
        np.testing.assert_array_equal(x[:, 0].numpy(), images[index].astype(np.float32))
        np.testing.assert_array_equal(factors[index], f)
        assert torch.equal(y, torch.as_tensor(f[:, 0]))
        rows[split] = set(index.tolist())
    assert set().union(*rows.values()) == set(range(576))
    assert sum(map(len, rows.values())) == 576  # disjoint
    again = small_shapes(tmp_path)  # the same split from the cache
    assert torch.equal(again.split_factors("test"), dm.split_factors("test"))
    with pytest.raises(ValueError, match="split 'nope' is not available"):
        dm.split_factors("nope")


def test_held_out_rows_beyond_the_grid_are_refused_in_one_line(tmp_path):
    dm = ShapesDataModule(data_dir=str(tmp_path), val_size=300, test_size=300, **SMALL)
    with pytest.raises(ConfigError, match=r"^data.val_size \+ data.test_size=600 .*576"):
        dm.setup()
    with pytest.raises(ConfigError, match="^orientations=41"):
        ShapesDataModule(data_dir=str(tmp_path), orientations=41)


def write_official_layout(path, n=40, seed=0):
    """A small file in dSprites' layout: imgs N x 64 x 64, latents_classes/values N x 6."""
    rng = np.random.default_rng(seed)
    classes = np.stack(
        [np.zeros(n, int)] + [rng.integers(0, k, n) for k in (3, 6, 40, 32, 32)], axis=1
    )
    imgs = rng.integers(0, 2, (n, 64, 64)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes / 2.0)
    return imgs, classes


def test_the_dsprites_reader_reads_the_official_layout(tmp_path):
    imgs, classes = write_official_layout(dsprites.dsprites_path(tmp_path))
    got_x, got_f = dsprites.load_dsprites(tmp_path, download=False)
    np.testing.assert_array_equal(got_x, imgs)
    np.testing.assert_array_equal(got_f, classes[:, 1:])  # color dropped
    dm = DSpritesDataModule(data_dir=str(tmp_path), download=False, val_size=5, test_size=10)
    dm.setup()
    assert dm.split_size("train") == 25 and dm.image_shape == (1, 64, 64)
    other = tmp_path / "elsewhere.npz"
    write_official_layout(other, n=12, seed=1)
    assert len(dsprites.load_dsprites(tmp_path, download=False, path=other)[0]) == 12
    np.savez(tmp_path / "bad.npz", imgs=imgs[:, :32])
    with pytest.raises(DataSourceError, match="not the dSprites layout"):
        dsprites.load_dsprites(tmp_path, download=False, path=tmp_path / "bad.npz")


def test_a_missing_dsprites_file_is_one_line_naming_where_and_the_offline_alternative(tmp_path):
    with pytest.raises(DataSourceError) as err:
        dsprites.load_dsprites(tmp_path, download=False)
    message = str(err.value)
    assert "\n" not in message and dsprites.FILE in message
    assert dsprites.URL in message and "data=shapes" in message


def test_conv64_is_disentanglement_libs_network():
    net = ConvNet(channels=[32, 32, 64, 64], kernel_size=4, dense=256)
    enc, dec = net.encoder((1, 64, 64), 20), net.decoder(10, (1, 64, 64))
    assert enc(torch.zeros(2, 1, 64, 64)).shape == (2, 20)
    assert dec(torch.zeros(2, 10)).shape == (2, 1, 64, 64)
    convs = [m for m in enc if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    linears = [m for m in enc if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 4 * 4, 256), (256, 20)]
    with pytest.raises(ConfigError, match="^dense=0"):
        ConvNet(dense=0)


def test_models_take_the_datas_image_shape(make_cfg):
    model = build_model(make_cfg("model=vae", "net=conv64", "data=shapes"))
    assert model.image_shape == (1, 64, 64)
    assert build_model(make_cfg("model=vae")).image_shape == (1, 28, 28)
    # a 64 x 64 network on MNIST: the net's own one line
    with pytest.raises(ConfigError, match=r"^net.channels=\[32, 32, 64, 64\] .*28x28"):
        build_model(make_cfg("model=vae", "net=conv64"))


class Identity(torch.nn.Module):
    """Encodes an image that holds its factor classes in its first pixels as those values."""

    device = torch.device("cpu")

    def encode(self, x):
        return x.flatten(1)[:, :5]


def test_the_callback_scores_the_factors_themselves_at_the_top():
    factors = shapes.factor_grid(**SMALL)
    images = torch.zeros(len(factors), 1, 8, 8)
    images.view(len(factors), -1)[:, :5] = torch.as_tensor(factors, dtype=torch.float32)
    cb = DisentanglementScores(num_train=300, num_test=200, num_eval=200, batch_size=16)
    scores = cb.evaluate(Identity(), images, factors)
    # a factor is its own code: fixing it fixes exactly that code (BetaVAE, FactorVAE = 1)
    assert scores["beta_vae_score"] == 1.0 and scores["factor_vae_score"] == 1.0
    assert scores["dci_disentanglement"] > 0.9 and scores["modularity"] > 0.99
    assert set(cb.timings) >= {"encode", "dci", "mig", "sap"}


def test_a_run_on_shapes_writes_the_scores_and_refuses_counts_beyond_the_split(make_cfg, tmp_path):
    tiny = [
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=5",
        "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1",
        "threads=1",
        "eval.probe_train_size=200",
        "eval.iw_images=20",
        "eval.iw_samples=5",
        "eval.images=false",
    ]
    data = ["data=shapes", "data.orientations=2", "data.positions=4", "data.val_size=50"]
    small = ["data.test_size=200", "disent.num_train=120", "disent.num_test=80"]
    cfg = make_cfg("model=vae", "net=conv64", *data, *small, *tiny)
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    names = ["beta_vae_score", "factor_vae_score", "mig", "sap", "dci_disentanglement"]
    names += ["dci_completeness", "dci_informativeness", "modularity", "explicitness"]
    for name in names:
        assert 0.0 <= metrics[f"disent/{name}"] <= 1.0
    # the report's traversals decode from this run's best checkpoint (a run folder as Hydra
    # leaves it: its composed config in .hydra/)
    from omegaconf import OmegaConf

    from aelab.report.disentanglement import traversal_figure

    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")

    job = {"model": "VAE", "status": "completed", "path": str(tmp_path), **metrics}
    jobs = pd.DataFrame([job, {**job, "path": str(tmp_path / "none"), "disent/mig": -1.0}])
    fig = traversal_figure(jobs)
    assert len(fig.axes) == 1 and fig.axes[0].get_title().startswith("beta-VAE: mig")
    height, width = fig.axes[0].images[0].get_array().shape[:2]  # units x 7 steps, 64 + 1 each
    assert (height, width) == (cfg.model.latent_dim * 65 + 1, 7 * 65 + 1)
    with pytest.raises(ConfigError, match=r"^disent.num_train=300 .*200 images"):
        train(make_cfg("model=vae", "net=conv64", *data, *small, "disent.num_train=300", *tiny))
