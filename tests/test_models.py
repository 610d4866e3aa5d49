import pytest
import pytorch_lightning as pl
import torch

from aelab.checks import ConfigError
from aelab.losses import kl_standard_normal_per_dim
from aelab.models import VAE, Autoencoder

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [64, 32]}
CONV = {"_target_": "aelab.nets.ConvNet", "channels": [8, 16]}
GAUSS = {"_target_": "aelab.noise.GaussianNoise", "std": 0.3}
FAST = {"_target_": "torch.optim.Adam", "lr": 3e-3}

CASES = {
    "ae-mlp": (Autoencoder, dict(latent_dim=4, net=MLP)),
    "ae-conv": (Autoencoder, dict(latent_dim=4, net=CONV)),
    "dae-mlp": (Autoencoder, dict(latent_dim=4, net=MLP, noise=GAUSS)),
    "vae-mlp": (VAE, dict(latent_dim=4, net=MLP, beta=1.0)),
    "vae-conv-bce": (VAE, dict(latent_dim=4, net=CONV, beta=4.0, noise=GAUSS)),
    "vae-mse": (VAE, dict(latent_dim=4, net=MLP, recon_loss="mse")),
}


def mean_loss(model, batches):
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return sum(model.loss(model.noise(x, g), x, g)[0]["loss"].item() for x, _ in batches)


@pytest.mark.parametrize("case", CASES)
def test_training_steps_lower_the_loss(case, tiny_batches):
    cls, kwargs = CASES[case]
    pl.seed_everything(0)
    model = cls(optimizer=FAST, **kwargs)
    before = mean_loss(model, tiny_batches)
    model.train()
    trainer = pl.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, train_dataloaders=tiny_batches)
    after = mean_loss(model, tiny_batches)
    assert after < 0.8 * before, (before, after)
    assert trainer.callback_metrics["train/loss"] > 0


@pytest.mark.parametrize("case", CASES)
def test_interface_shapes(case):
    cls, kwargs = CASES[case]
    model = cls(**kwargs)
    x = torch.rand(5, 1, 28, 28)
    assert model.encode(x).shape == (5, 4)
    assert model.decode(torch.zeros(5, 4)).shape == (5, 1, 28, 28)
    y = model.reconstruct(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    parts, logits = model.loss(x, x)
    assert logits.shape == x.shape and parts["loss"].ndim == 0
    if cls is VAE:
        assert set(parts) == {"loss", "recon", "kl", "neg_elbo"}
        assert model.sample(3).shape == (3, 1, 28, 28)


def test_vae_loss_is_recon_plus_beta_kl():
    model = VAE(latent_dim=3, net=MLP, beta=2.5)
    x = torch.rand(4, 1, 28, 28)
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(0))
    assert torch.isclose(parts["loss"], parts["recon"] + 2.5 * parts["kl"])
    assert torch.isclose(parts["neg_elbo"], parts["recon"] + parts["kl"])


def test_kl_of_prior_is_zero_and_matches_torch():
    zeros = torch.zeros(2, 5)
    assert torch.equal(kl_standard_normal_per_dim(zeros, zeros), zeros)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3, 4), torch.ones(3, 4))
    expected = torch.distributions.kl_divergence(q, p)
    assert torch.allclose(kl_standard_normal_per_dim(mu, logvar), expected, atol=1e-6)


def test_ae_loss_matches_seed_mse_scale():
    """The AE's per-image squared error is the reference AE's pixel-mean MSE times 784."""
    model = Autoencoder(latent_dim=4, net=MLP)
    x = torch.rand(6, 1, 28, 28)
    parts, logits = model.loss(x, x)
    seed_mse = torch.nn.functional.mse_loss(logits.sigmoid(), x)
    assert torch.isclose(parts["loss"], seed_mse * 784, rtol=1e-5)


def test_seed_architectures():
    ae = Autoencoder(latent_dim=12)  # default net: the reference AE's 784-128-64-12
    widths = [m.out_features for m in ae.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 12]
    assert sum(isinstance(m, torch.nn.ReLU) for m in ae.encoder.modules()) == 2  # 128, 64
    net = {"_target_": "aelab.nets.MLPNet", "hidden": [400, 200, 100], "relu_before_code": False}
    vae = VAE(net=net)
    widths = [m.out_features for m in vae.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [100, 200, 400, 784]
    # the reference VAE's heads read the 100-wide layer without a ReLU:
    # Linear(200, 100) -> Linear(100, 40)
    layers = list(vae.encoder[1])
    assert [type(m).__name__ for m in layers[-3:]] == ["ReLU", "Linear", "Linear"]
    assert layers[-1].out_features == 40


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(latent_dim=0), "latent_dim"),
        (dict(latent_dim=-3), "latent_dim"),
        (dict(beta=-1.0), "beta"),
        (dict(recon_loss="l1"), "recon_loss"),
        # the groups handed in are named as the user sets them, not as `model.*`
        (dict(optimizer={"_target_": "torch.optim.Adam", "lr": 0.0}), r"optimizer\.lr"),
        (dict(net={"_target_": "aelab.nets.ConvNet", "channels": [8, 8, 8]}), r"net\.channels"),
        (dict(noise={"_target_": "aelab.noise.GaussianNoise", "std": -1}), r"noise\.std"),
    ],
)
def test_bad_model_values(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        VAE(**kwargs)


@pytest.mark.parametrize("cls", [Autoencoder, VAE])
def test_lightning_hooks_are_marked_override_and_the_marked_ones_exist(cls):
    """@override (a type checker's promise) checked at run time: a misspelt hook would never run."""
    ours = {
        name: fn
        for klass in cls.__mro__
        if klass.__module__.startswith("aelab.")
        for name, fn in vars(klass).items()
        if callable(fn) and not name.startswith("__")
    }
    marked = {name for name, fn in ours.items() if getattr(fn, "__override__", False)}
    assert marked <= set(dir(pl.LightningModule)), marked - set(dir(pl.LightningModule))
    hooks = set(ours) & set(dir(pl.LightningModule))
    assert hooks == marked and "training_step" in marked
