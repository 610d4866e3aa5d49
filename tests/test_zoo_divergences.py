"""The zoo's aggregate-posterior models (WAE-MMD, InfoVAE, RAE, SWAE; issue 37): each loss on a
fixed batch against a direct computation here, and their bad values refused in one line."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from aelab.checks import ConfigError
from aelab.models import RAE, SWAE, VAE, WAE, InfoVAE
from aelab.models.swae import sliced_wasserstein
from aelab.models.wae import mmd, mmd_kernel

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32, 16]}


def batch(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


def kernel_by_hand(a: list[float], b: list[float], kernel: str, scale: float = 1.0) -> float:
    c = 2 * len(a) * scale
    sq = sum((u - v) ** 2 for u, v in zip(a, b, strict=True))
    return c / (c + sq) if kernel == "imq" else math.exp(-sq / c)


def mmd_by_hand(z: torch.Tensor, zp: torch.Tensor, kernel: str, scale: float = 1.0) -> float:
    """Tolstikhin et al. 2018, Alg. 2, written out as loops in float64."""
    zs, ps, n = z.double().tolist(), zp.double().tolist(), len(z)
    same = sum(
        kernel_by_hand(zs[i], zs[j], kernel, scale) + kernel_by_hand(ps[i], ps[j], kernel, scale)
        for i in range(n)
        for j in range(n)
        if i != j
    )
    cross = sum(kernel_by_hand(a, b, kernel, scale) for a in zs for b in ps)
    return same / (n * (n - 1)) - 2 * cross / n**2


def squared_error(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (logits.sigmoid() - x).square().flatten(1).sum(1).mean()


def bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1).mean()


# --- the MMD --------------------------------------------------------------------------------
def test_kernels_at_one_pair():
    a, b = torch.zeros(1, 2), torch.ones(1, 2)  # ||a - b||^2 = 2, C = 2 * 2 * 1 = 4
    assert mmd_kernel(a, b, "imq").item() == pytest.approx(4 / 6)
    assert mmd_kernel(a, b, "rbf").item() == pytest.approx(math.exp(-0.5))
    assert mmd_kernel(a, b, "imq", 0.5).item() == pytest.approx(2 / 4)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_the_unbiased_estimate_written_out(kernel):
    g = torch.Generator().manual_seed(3)
    z, zp = torch.randn(5, 3, generator=g) + 0.7, torch.randn(5, 3, generator=g)
    assert mmd(z, zp, kernel, 2.0).item() == pytest.approx(mmd_by_hand(z, zp, kernel, 2.0), 1e-5)
    # and it is near zero for two samples of one distribution, well above it for a shift
    big = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    assert abs(mmd(*big, kernel).item()) < 0.01
    assert mmd(big[0] + 2.0, big[1], kernel).item() > 0.1


# --- WAE-MMD --------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_wae_loss_is_squared_error_plus_lambda_mmd(kernel):
    torch.manual_seed(0)
    model = WAE(latent_dim=3, mmd_weight=7.0, kernel=kernel, net=MLP).eval()
    x = batch()
    draws = model.draws(x, torch.Generator().manual_seed(1))
    with torch.no_grad():
        parts, logits = model.loss(x, x, draws=draws)
        z = model.encoder(x)
        by_hand = mmd_by_hand(z, draws["z_prior"], kernel)
        recon = squared_error(model.decoder(z), x)
    assert parts["mmd"].item() == pytest.approx(by_hand, rel=1e-4, abs=1e-6)
    assert parts["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(recon.item() + 7.0 * by_hand, rel=1e-5)
    # drawn from a generator, the same numbers as handed in
    again, _ = model.loss(x, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again["loss"], parts["loss"])
    assert model.sample(3, torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)


# --- InfoVAE --------------------------------------------------------------------------------
@torch.no_grad()
def test_infovae_loss_is_its_weighted_kl_and_mmd():
    torch.manual_seed(0)
    model = InfoVAE(latent_dim=3, alpha=0.25, lbd=40.0, kernel="rbf", net=MLP).eval()
    x = batch()
    draws = model.draws(x, torch.Generator().manual_seed(2))
    parts, _ = model.loss(x, x, draws=draws)
    mu, logvar = model.encoder(x).chunk(2, dim=1)
    std = (0.5 * logvar).exp()
    z = mu + std * draws["eps"]
    recon = bernoulli(model.decoder(z), x).item()
    kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(1).mean().item()
    divergence = mmd_by_hand(z, draws["z_prior"], "rbf")
    assert parts["recon"].item() == pytest.approx(recon, rel=1e-5)
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert parts["mmd"].item() == pytest.approx(divergence, rel=1e-4, abs=1e-6)
    expected = recon + 0.75 * kl + (0.25 + 40.0 - 1.0) * divergence
    assert parts["loss"].item() == pytest.approx(expected, rel=1e-5)


@torch.no_grad()
def test_infovae_with_alpha_0_lambda_1_is_the_vae():
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, net=MLP).eval()
    info = InfoVAE(latent_dim=3, alpha=0.0, lbd=1.0, net=MLP).eval()
    info.load_state_dict(vae.state_dict())
    x = batch()
    draws = info.draws(x, torch.Generator().manual_seed(4))
    parts, _ = info.loss(x, x, draws=draws)
    torch.testing.assert_close(parts["loss"], vae.loss(x, x, draws=draws)[0]["loss"])


# --- RAE ------------------------------------------------------------------------------------
@torch.no_grad()
def test_rae_l2_loss_is_recon_code_norm_and_decoder_weights():
    torch.manual_seed(0)
    model = RAE(latent_dim=3, embedding_weight=0.5, reg_weight=0.01, net=MLP).eval()
    x = batch()
    parts, _ = model.loss(x, x)
    z = model.encoder(x)
    recon = bernoulli(model.decoder(z), x).item()
    code = 0.5 * (z.double().square().sum(1)).mean().item()
    weights = sum(v.double().square().sum().item() for k, v in model.state_dict().items()
                  if k.startswith("decoder."))  # fmt: skip
    assert parts["code_norm"].item() == pytest.approx(code, rel=1e-5)
    assert parts["decoder_reg"].item() == pytest.approx(weights, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(recon + 0.5 * code + 0.01 * weights, rel=1e-5)


def test_rae_gradient_penalty_is_the_decoders_gradient_per_image():
    torch.manual_seed(0)
    model = RAE(latent_dim=3, embedding_weight=1.0, reg_weight=2.0, regulariser="gp", net=MLP)
    x = batch(4)
    parts, _ = model.loss(x, x)
    z = model.encoder(x).detach()
    penalties = []
    for zi in z:  # one image at a time, torch.autograd
        zi = zi[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.decoder(zi).sum(), zi)
        penalties.append(grad.square().sum().item())
    assert parts["decoder_reg"].item() == pytest.approx(sum(penalties) / 4, rel=1e-5)
    parts["loss"].backward()  # the penalty trains the encoder and the decoder
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.inference_mode():  # as in Lightning's evaluation loops
        assert model.loss(x, x)[0]["decoder_reg"].item() == pytest.approx(sum(penalties) / 4, 1e-5)


# --- SWAE -----------------------------------------------------------------------------------
def test_sliced_wasserstein_is_the_optimal_matching_on_each_direction():
    g = torch.Generator().manual_seed(5)
    z, zp = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    directions = torch.randn(2, 3, generator=g)
    directions = directions / directions.norm(dim=1, keepdim=True)
    per_direction = []
    for theta in directions:  # W_2^2 in 1-d: the best of all 4! matchings
        a, b = (z @ theta).tolist(), (zp @ theta).tolist()
        per_direction.append(
            min(
                sum((a[i] - b[p[i]]) ** 2 for i in range(4)) / 4
                for p in itertools.permutations(range(4))
            )
        )
    expected = sum(per_direction) / 2
    assert sliced_wasserstein(z, zp, directions).item() == pytest.approx(expected, rel=1e-5)


@torch.no_grad()
def test_swae_loss_is_recon_plus_lambda_sw_on_its_draws():
    torch.manual_seed(0)
    model = SWAE(latent_dim=3, sw_weight=3.0, projections=7, net=MLP).eval()
    x = batch()
    draws = model.draws(x, torch.Generator().manual_seed(6))
    assert draws["directions"].shape == (7, 3)
    torch.testing.assert_close(draws["directions"].norm(dim=1), torch.ones(7))
    parts, _ = model.loss(x, x, draws=draws)
    z = model.encoder(x)
    recon = bernoulli(model.decoder(z), x).item()
    sw = sliced_wasserstein(z, draws["z_prior"], draws["directions"]).item()
    assert parts["loss"].item() == pytest.approx(recon + 3.0 * sw, rel=1e-5)
    assert model.sample(2).shape == (2, 1, 28, 28)


# --- bad values -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (WAE, {"mmd_weight": -1.0}, "mmd_weight=-1.0 is invalid: allowed a number in [0.0, inf)"),
        (WAE, {"kernel": "poly"}, "kernel='poly' is invalid: allowed one of imq, rbf"),
        (WAE, {"kernel_scale": 0.0}, "kernel_scale=0.0 is invalid: allowed a number in (0.0, inf)"),
        (InfoVAE, {"alpha": 1.5}, "alpha=1.5 is invalid: allowed a number in [0.0, 1.0]"),
        (InfoVAE, {"alpha": 0.5, "lbd": 0.25}, "lbd=0.25 is invalid: allowed a number in [0.5, inf)"),  # noqa: E501
        (InfoVAE, {"kernel": "cauchy"}, "kernel='cauchy' is invalid: allowed one of imq, rbf"),
        (RAE, {"reg_weight": -0.1}, "reg_weight=-0.1 is invalid: allowed a number in [0.0, inf)"),
        (RAE, {"regulariser": "l1"}, "regulariser='l1' is invalid: allowed one of l2, gp"),
        (SWAE, {"projections": 0}, "projections=0 is invalid: allowed an integer >= 1"),
        (SWAE, {"sw_weight": -2.0}, "sw_weight=-2.0 is invalid: allowed a number in [0.0, inf)"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_one_line(cls, kwargs, message):
    with pytest.raises(ConfigError) as err:
        cls(latent_dim=3, net=MLP, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("preset", ["wae", "infovae", "rae", "swae"])
def test_a_stack_refuses_them_in_one_line(make_cfg, preset):
    from aelab.stacked.grouping import why_not_stackable

    cfg = make_cfg(f"model={preset}")
    why = why_not_stackable(cfg)
    assert why is None or ("\n" not in why and why.startswith("model._target_="))
