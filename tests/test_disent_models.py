"""FactorVAE and DIP-VAE: their penalties against independent computations, the discriminator's
TC estimate on constructed Gaussian codes, one training step of each part, bad values."""

import math

import numpy as np
import pytest
import torch

from aelab.checks import ConfigError
from aelab.models import DIPVAE, VAE, FactorVAE
from aelab.models.dipvae import dip_covariance, dip_penalty
from aelab.models.factorvae import (
    discriminator,
    discriminator_loss,
    permute_dims,
    tc_estimate,
)

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32], "relu_before_code": False}


def test_dip_covariances_are_numpys_on_the_batch():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g) * 0.3
    cov_i = np.cov(mu.numpy(), rowvar=False, bias=True)  # the biased batch covariance
    cov_ii = cov_i + np.diag(np.exp(logvar.numpy()).mean(0))
    np.testing.assert_allclose(dip_covariance(mu, logvar, "i").numpy(), cov_i, atol=1e-5)
    np.testing.assert_allclose(dip_covariance(mu, logvar, "ii").numpy(), cov_ii, atol=1e-5)
    # by hand: off-diagonal 0.5 twice, diagonal 2 and 1 -> 3 * 2 * 0.25 + 5 * (1 + 0)
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert dip_penalty(cov, 3.0, 5.0).item() == pytest.approx(3 * 0.5 + 5 * 1.0)
    assert dip_penalty(torch.eye(4), 3.0, 5.0).item() == 0.0


@pytest.mark.parametrize(("dip_type", "factor"), [("i", 10.0), ("ii", 1.0)])
def test_dipvae_loss_is_the_vae_loss_plus_the_penalty(dip_type, factor):
    torch.manual_seed(0)
    model = DIPVAE(latent_dim=3, lambda_od=2.0, dip_type=dip_type, net=MLP)
    assert model.lambda_d == factor * 2.0  # disentanglement_lib's default
    vae = VAE(latent_dim=3, net=MLP)
    vae.load_state_dict(model.state_dict())
    x = torch.rand(16, 1, 28, 28)
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(1))
    want, _ = vae.loss(x, x, torch.Generator().manual_seed(1))  # the same z
    mu, logvar = model.posterior(x)
    cov = np.cov(mu.detach().numpy(), rowvar=False, bias=True)
    if dip_type == "ii":
        cov = cov + np.diag(np.exp(logvar.detach().numpy()).mean(0))
    off = cov - np.diag(np.diag(cov))
    penalty = 2.0 * (off**2).sum() + factor * 2.0 * ((np.diag(cov) - 1) ** 2).sum()
    assert parts["dip"].item() == pytest.approx(penalty, rel=1e-4)
    assert parts["loss"].item() == pytest.approx(want["loss"].item() + penalty, rel=1e-5)
    assert parts["neg_elbo"].item() == pytest.approx(want["neg_elbo"].item(), rel=1e-6)


def test_permuted_dims_keep_each_marginal_and_break_the_dependence():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, generator=g)
    z = torch.cat([x, x], dim=1)  # perfectly correlated
    perm = permute_dims(z, torch.Generator().manual_seed(1))
    for j in range(2):
        assert torch.equal(perm[:, j].sort().values, z[:, j].sort().values)
    assert abs(np.corrcoef(perm.T.numpy())[0, 1]) < 0.05


def fit_discriminator(z_sampler, steps=1500, seed=0):
    """D trained as FactorVAE trains it, on fresh codes each step; returns its TC estimate on
    a fresh large sample."""
    torch.manual_seed(seed)
    d = discriminator(2, [64, 64])
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        z = z_sampler(256, g)
        loss = discriminator_loss(d(z), d(permute_dims(z, g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return tc_estimate(d(z_sampler(20000, g))).item()


def test_the_discriminator_estimates_the_total_correlation_of_gaussian_codes():
    rho = 0.9
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))

    def correlated(n, g):
        return torch.randn(n, 2, generator=g) @ chol.T

    def independent(n, g):
        return torch.randn(n, 2, generator=g)

    # TC of a Gaussian with unit variances and correlation matrix R: -1/2 log det R
    analytic = -0.5 * math.log(1 - rho**2)  # 0.830 nats
    assert fit_discriminator(correlated) == pytest.approx(analytic, abs=0.15)
    assert abs(fit_discriminator(independent)) < 0.05


def test_factorvae_loss_parts_and_one_step_trains_vae_and_discriminator_apart():
    torch.manual_seed(0)
    model = FactorVAE(latent_dim=3, gamma=7.0, discriminator_hidden=[16], net=MLP)
    x = torch.rand(32, 1, 28, 28)
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(1))
    vae = VAE(latent_dim=3, net=MLP)
    vae.load_state_dict({k: v for k, v in model.state_dict().items() if "discriminator" not in k})
    want, _ = vae.loss(x, x, torch.Generator().manual_seed(1))
    z = vae.elbo_parts(x, x, torch.Generator().manual_seed(1)).z
    tc = tc_estimate(model.discriminator(z)).item()
    assert parts["tc"].item() == pytest.approx(tc, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(want["loss"].item() + 7.0 * tc, rel=1e-5)
    # the VAE's loss gives the discriminator no gradient; its own loss gives the VAE none
    model.zero_grad()
    parts["loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.discriminator.parameters())
    model.zero_grad()
    parts["discriminator_loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-4] and groups[1]["betas"] == (0.5, 0.9)
    assert len(groups[1]["params"]) == len(list(model.discriminator.parameters()))


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (FactorVAE, {"gamma": -1.0}, "gamma"),
        (FactorVAE, {"discriminator_hidden": []}, "discriminator_hidden"),
        (FactorVAE, {"discriminator_optimizer": {"lr": 0.0}}, "discriminator_optimizer.lr"),
        (DIPVAE, {"lambda_od": -1.0}, "lambda_od"),
        (DIPVAE, {"lambda_d": -2.0}, "lambda_d"),
        (DIPVAE, {"dip_type": "iii"}, "dip_type"),
    ],
)
def test_bad_values_are_refused_in_one_line(cls, kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}=") as err:
        cls(net=MLP, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cls", [FactorVAE, DIPVAE])
def test_a_checkpoint_restores_the_model_and_training_resumes_step_for_step(
    cls, tiny_batches, tmp_path
):
    import pytorch_lightning as pl

    def trainer(steps):
        return pl.Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )

    extra = {"discriminator_hidden": [16]} if cls is FactorVAE else {"dip_type": "ii"}
    model = cls(latent_dim=3, net=MLP, **extra)
    first = trainer(3)
    first.fit(model, tiny_batches)
    assert first.global_step == 3  # one optimizer step per batch, the discriminator's included
    path = tmp_path / "m.ckpt"
    first.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)
    again = cls(**stored["hyper_parameters"])
    again.load_state_dict(stored["state_dict"])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, msg=key)
    groups = stored["optimizer_states"][0]["param_groups"]
    assert len(groups) == (2 if cls is FactorVAE else 1)
    second = trainer(5)
    second.fit(again, tiny_batches, ckpt_path=path, weights_only=True)
    assert second.global_step == 5


@pytest.mark.parametrize(
    ("study", "level", "target", "key", "value"),
    [
        ("beta_vae", 2, "aelab.models.VAE", "beta", 4),
        ("beta_tcvae", 4, "aelab.models.BetaTCVAE", "beta", 8),
        ("factor_vae", 5, "aelab.models.FactorVAE", "gamma", 100),
        ("dip_vae_i", 0, "aelab.models.DIPVAE", "lambda_od", 1),
        ("dip_vae_ii", 3, "aelab.models.DIPVAE", "lambda_od", 10),
    ],
)
def test_the_study_gives_each_model_disentanglement_libs_value(
    study, level, target, key, value, make_cfg
):
    from aelab.train import build_model

    cfg = make_cfg("experiment=disentanglement", f"+disent_model={study}",
                   f"disent_study.level={level}")  # fmt: skip
    assert cfg.model._target_ == target and cfg.model[key] == value
    assert cfg.net.channels == [32, 32, 64, 64] and cfg.data.orientations == 10
    model = build_model(cfg)
    assert model.image_shape == (1, 64, 64) and getattr(model, key) == value
    if study.startswith("dip"):
        assert model.dip_type == study.removeprefix("dip_vae_")
