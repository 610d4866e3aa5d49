"""Images outside [0, 1] under a Bernoulli likelihood are refused before the first step
(lightning-bolts#177: a run completed with test/recon = -28320 nats)."""

import os
import subprocess
import sys
import textwrap

import pytest
import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from torch.utils.data import DataLoader, TensorDataset

from aelab.callbacks.data_range import DataRangeCheck
from aelab.checks import ConfigError
from aelab.models import VAE, Autoencoder

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [16]}


class Normalised(pl.LightningDataModule):
    """A user's datamodule serving (x - 0.5) / 0.5, pixels in [-1, 1]."""

    def __init__(self, scale: bool = True) -> None:
        super().__init__()
        x, y = synthetic_images(128)
        self.x = x.float() / 255
        self.x = (self.x - 0.5) / 0.5 if scale else self.x
        self.y = y

    def fixed_batch(self, split, n=16):
        return self.x[:n], self.y[:n]

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=32)


def fit(model, data, tmp_path):
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[DataRangeCheck()],
    )
    trainer.fit(model, datamodule=data)
    return trainer


def test_a_bernoulli_model_on_images_in_minus_one_one_is_refused_before_a_step(tmp_path):
    model = VAE(latent_dim=2, net=SMALL)
    data = Normalised()
    low, high = float(data.x.min()), float(data.x.max())
    assert low < 0 < 1 < high + 1e-9  # the constructed case: [-1, 1]
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError) as err:
        fit(model, data, tmp_path)
    assert str(err.value) == (
        f"model.recon_loss='bce' is invalid: allowed a likelihood for the data's pixels, which "
        f"span [{low:.4g}, {high:.4g}] (a Bernoulli likelihood needs [0, 1]: "
        "model.recon_loss=mse, or images in [0, 1])"
    )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_gaussian_likelihood_or_data_in_range_trains(tmp_path):
    assert fit(Autoencoder(latent_dim=2, net=SMALL), Normalised(), tmp_path).global_step == 4
    assert fit(VAE(latent_dim=2, net=SMALL), Normalised(scale=False), tmp_path).global_step == 4


# a user's module: MNIST served as (x - 0.5) / 0.5
NORMALISED_MNIST = textwrap.dedent(
    """
    from aelab.data.mnist import MNISTDataModule

    class Normalised(MNISTDataModule):
        def fixed_batch(self, split, n=16):
            x, y = super().fixed_batch(split, n)
            return (x - 0.5) / 0.5, y

    """
)


@pytest.mark.slow
def test_aelab_train_refuses_it_in_one_line_and_leaves_no_folder(tmp_path, mnist_dir):
    (tmp_path / "my_data.py").write_text(NORMALISED_MNIST)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "aelab.train", "model=vae", "debug=smoke"]
    cmd += ["data._target_=my_data.Normalised", f"paths.data_dir={mnist_dir}"]
    cmd += [f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("aelab-train: error: model.recon_loss='bce' is invalid: allowed a ")
    assert "span [-1, 1]" in last
    assert not run_dir.exists()


@pytest.mark.mnist
def test_a_stacked_sweep_refuses_it_before_a_step_as_a_run_alone_does(
    tmp_path, mnist_dir, monkeypatch
):
    from aelab.stacked.core import train_stacked
    from tests.conftest import compose_cfg

    step_taken = "    def training_batch(self, rows):\n        raise AssertionError('a step')\n"
    (tmp_path / "my_data_stacked.py").write_text(NORMALISED_MNIST + step_taken)
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ["model=vae", "data._target_=my_data_stacked.Normalised", "threads=1"]
    common += [f"paths.data_dir={mnist_dir}", "trainer.max_epochs=1"]
    cfgs = [compose_cfg([*common, f"optimizer.lr={lr}"], tmp_path / lr) for lr in ("1e-3", "2e-3")]
    with pytest.raises(ConfigError) as err:
        train_stacked(cfgs)
    assert str(err.value).startswith("model.recon_loss='bce' is invalid: allowed a likelihood")
    assert "span [-1, 1]" in str(err.value)
