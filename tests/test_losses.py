"""aelab.losses against torch.distributions, which computes each density its own way."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from aelab.losses import (
    bernoulli_nll,
    gaussian_nll,
    kl_standard_normal,
    log_normal,
    log_standard_normal,
    recon_nll,
    reparameterize,
    reparameterize_with_eps,
)


def posterior(b: int = 5, d: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    return mu, torch.randn(b, d, generator=g, dtype=torch.float64)


def test_kl_per_image_is_torch_kl_summed_over_dimensions():
    mu, logvar = posterior()
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = kl_divergence(q, p).sum(1)
    assert kl_standard_normal(mu, logvar).shape == (5,)
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected, rtol=1e-12, atol=1e-12)


def test_log_densities_match_torch_with_and_without_eps():
    mu, logvar = posterior()
    z, eps = reparameterize_with_eps(mu, logvar, torch.Generator().manual_seed(1), samples=4)
    assert z.shape == eps.shape == (4, 5, 3)
    expected = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(log_normal(z, mu, logvar), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_normal(z, mu, logvar, eps=eps), expected, rtol=1e-12, atol=1e-12)
    prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(log_standard_normal(z), prior, rtol=1e-12, atol=1e-12)


def test_reparameterized_samples_have_the_posterior_moments_and_its_gradient():
    mu = torch.tensor([[2.0, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(0.25)]], requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0), samples=200_000)
    assert z.shape == (200_000, 1, 2)
    # standard errors of the mean: 1/447 and 0.5/447; of the std about half that
    torch.testing.assert_close(z.mean(0), mu.detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([[1.0, 0.5]]), atol=0.01, rtol=0)
    z.sum().backward()  # dz/dmu = 1 for every draw: the gradient flows through the sample
    assert torch.equal(mu.grad, torch.full((1, 2), 200_000.0))


def test_same_generator_same_draw():
    mu, logvar = posterior()
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    assert a.shape == mu.shape and torch.equal(a, b)


def test_bernoulli_and_gaussian_nll_per_image():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 1, 28, 28, generator=g, dtype=torch.float64) * 3
    binary = torch.bernoulli(torch.full((6, 1, 28, 28), 0.4, dtype=torch.float64), generator=g)
    expected = -Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli_nll(logits, binary), expected, rtol=1e-10, atol=1e-9)
    # a Gaussian of variance 1/2 around sigmoid(logits), less its constant (D/2) log(pi)
    gauss = Normal(logits.sigmoid(), math.sqrt(0.5)).log_prob(binary).flatten(1).sum(1)
    constant = 784 / 2 * math.log(math.pi)
    torch.testing.assert_close(
        gaussian_nll(logits, binary), -gauss - constant, rtol=1e-10, atol=1e-9
    )
    assert torch.equal(recon_nll("bce", logits, binary), bernoulli_nll(logits, binary))
    assert torch.equal(recon_nll("mse", logits, binary), gaussian_nll(logits, binary))


def test_an_unknown_reconstruction_loss_is_refused():
    with pytest.raises(ValueError, match="one of bce, mse, got 'l1'"):
        recon_nll("l1", torch.zeros(1, 4), torch.zeros(1, 4))
