"""The information-theoretic model family (issue 16): each model's maths against an independent
computation on tiny synthetic data, and one short training run per model on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from aelab.checks import ConfigError
from aelab.models import IWAE, VAE, ContractiveAutoencoder, SparseAutoencoder
from aelab.models.contractive import jacobian_frobenius_sq

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [64, 32]}


def binary_batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


def twins(k: int, latent_dim: int = 4) -> tuple[VAE, IWAE]:
    """A VAE and an IWAE with the same weights."""
    torch.manual_seed(0)
    vae = VAE(latent_dim=latent_dim, net=MLP)
    iwae = IWAE(latent_dim=latent_dim, k=k, net=MLP)
    iwae.load_state_dict(vae.state_dict())
    return vae.eval(), iwae.eval()


# --- IWAE -----------------------------------------------------------------------------------
@torch.no_grad()
def test_iwae_with_one_sample_is_the_vae_loss_on_the_same_random_numbers():
    vae, iwae = twins(k=1)
    x = binary_batch()
    parts_iw, _ = iwae.loss(x, x, torch.Generator().manual_seed(7))
    parts_vae, _ = vae.loss(x, x, torch.Generator().manual_seed(7))
    # the same z: the reconstruction terms agree exactly
    torch.testing.assert_close(parts_iw["recon"], parts_vae["recon"])
    torch.testing.assert_close(parts_iw["neg_elbo"], parts_vae["loss"])
    # L_1 = log p(x|z) + log p(z) - log q(z|x) at the VAE's own sample z (torch.distributions)
    mu, logvar = vae.posterior(x)
    z = vae.reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    q, prior = Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    kl_on_sample = (q.log_prob(z) - prior.log_prob(z)).sum(1).mean()
    torch.testing.assert_close(parts_iw["loss"], parts_vae["recon"] + kl_on_sample)
    # and on average over the noise the VAE's loss (its KL analytic) is the same number
    losses = [iwae.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(400)]
    losses = torch.stack(losses)
    stderr = losses.std() / math.sqrt(len(losses))
    vae_mean = torch.stack(
        [vae.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(400)]
    ).mean()
    assert abs(losses.mean() - vae_mean) < 4 * stderr + 1e-3


@torch.no_grad()
def test_iwae_five_sample_bound_is_at_least_the_elbo():
    vae, iwae = twins(k=5)
    x = binary_batch(64)
    g_iw, g_vae = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    bound = -torch.stack([iwae.loss(x, x, g_iw)[0]["loss"] for _ in range(20)]).mean()
    elbo = -torch.stack([vae.loss(x, x, g_vae)[0]["neg_elbo"] for _ in range(100)]).mean()
    assert bound >= elbo
    # and it is the suite's k-sample bound (an independent implementation) on the same noise
    from aelab.metrics.likelihood import iw_log_likelihood

    suite = iw_log_likelihood(iwae, x, 5, torch.Generator().manual_seed(3)).mean()
    model = -iwae.loss(x, x, torch.Generator().manual_seed(3))[0]["loss"]
    torch.testing.assert_close(model, suite)


def test_iwae_k_is_checked():
    with pytest.raises(ConfigError, match=r"^k=0 is invalid: allowed an integer >= 1"):
        IWAE(latent_dim=4, k=0, net=MLP)


# --- sparse autoencoder -----------------------------------------------------------------------
def sparse_model(rho: float = 0.1) -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(latent_dim=3, rho=rho, net=MLP)


def test_sparsity_penalty_is_zero_when_every_unit_averages_rho():
    rho = 0.2
    model = sparse_model(rho)
    # activations of three units over five images, each unit's mean exactly rho
    h = torch.tensor(
        [[0.0, 0.2, 1.0], [0.4, 0.2, 0.0], [0.2, 0.2, 0.0], [0.1, 0.2, 0.0], [0.3, 0.2, 0.0]]
    )
    assert torch.allclose(h.mean(0), torch.full((3,), rho))
    model.encode = lambda x: h  # the encoder's output, fixed
    parts, _ = model.loss(torch.zeros(5, 1, 28, 28), torch.zeros(5, 1, 28, 28))
    assert parts["sparsity"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["mean_activation"].item() == pytest.approx(rho)
    assert parts["loss"].item() == pytest.approx(parts["recon"].item())


def test_sparsity_penalty_is_the_bernoulli_kl_otherwise():
    model = sparse_model(0.05)
    x = binary_batch(8)
    with torch.no_grad():
        parts, _ = model.loss(x, x)
        rho_hat = model.encoder(x).sigmoid().mean(0).double()
    expected = sum(
        torch.distributions.kl_divergence(
            torch.distributions.Bernoulli(probs=torch.tensor(0.05, dtype=torch.float64)),
            torch.distributions.Bernoulli(probs=r),
        )
        for r in rho_hat
    )
    assert parts["sparsity"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["sparsity"].item() > 0.1
    assert parts["loss"].item() == pytest.approx(parts["recon"].item() + parts["sparsity"].item())


# --- contractive autoencoder ------------------------------------------------------------------
def jacobian_norm_per_image(encoder, x: torch.Tensor) -> torch.Tensor:
    """The reference: torch's full Jacobian of each image's code, one image at a time."""
    return torch.stack(
        [
            torch.autograd.functional.jacobian(lambda v: encoder(v[None])[0], xi).square().sum()
            for xi in x
        ]
    )


def test_contraction_is_the_autograd_jacobian_norm_of_a_small_mlp():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(latent_dim=5, net=MLP, contraction_weight=0.5)
    x = torch.rand(6, 1, 28, 28)
    parts, _ = model.loss(x, x)
    expected = jacobian_norm_per_image(model.encoder, x)
    assert expected.min() > 0
    torch.testing.assert_close(parts["contraction"], expected.mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(
        parts["loss"], parts["recon"] + 0.5 * expected.mean(), rtol=1e-5, atol=0
    )
    # per image, and differentiable: the penalty's gradient reaches the encoder's weights
    norm, _ = jacobian_frobenius_sq(model.encoder, x, create_graph=True)
    torch.testing.assert_close(norm, expected, rtol=1e-5, atol=0)
    norm.sum().backward()
    assert model.encoder[1][0].weight.grad.abs().sum() > 0


def test_contraction_under_inference_mode_as_in_lightning_evaluation():
    torch.manual_seed(0)
    model = ContractiveAutoencoder(latent_dim=3, net=MLP)
    x = torch.rand(4, 1, 28, 28)
    expected = jacobian_norm_per_image(model.encoder, x).mean()
    with torch.inference_mode():
        parts, _ = model.loss(x.clone(), x.clone())
    torch.testing.assert_close(parts["contraction"], expected, rtol=1e-5, atol=0)
