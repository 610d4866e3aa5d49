"""The zoo's learned-prior models (issue 37): the VampPrior VAE's mixture prior, KL, IW bound
and samples against torch.distributions on a fixed batch, and its bad values in one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from aelab.checks import ConfigError
from aelab.metrics.iw_bound import iw_log_likelihood, neg_elbo_per_image
from aelab.models import VampPriorVAE
from aelab.samplers import PriorSampler

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32, 16]}


def batch(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


def vamp(k: int = 4, beta: float = 1.0) -> VampPriorVAE:
    torch.manual_seed(0)
    return VampPriorVAE(latent_dim=3, pseudo_inputs=k, beta=beta, net=MLP).eval()


def mixture(model: VampPriorVAE) -> MixtureSameFamily:
    """The VampPrior as torch.distributions builds it, from the encoder at the pseudo-inputs."""
    mu, logvar = model.encoder(model.pseudo_logits.sigmoid()).chunk(2, dim=1)
    weights = Categorical(logits=torch.zeros(len(mu)))
    return MixtureSameFamily(weights, Independent(Normal(mu, (0.5 * logvar).exp()), 1))


@torch.no_grad()
def test_vampprior_log_prior_is_the_mixture_of_posteriors_at_the_pseudo_inputs():
    model = vamp(5)
    z = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.log_prior(z), mixture(model).log_prob(z))


@torch.no_grad()
def test_vampprior_loss_is_recon_plus_beta_times_the_sampled_kl():
    model = vamp(4, beta=2.0)
    x = batch()
    draws = model.draws(x, torch.Generator().manual_seed(2))
    parts, _ = model.loss(x, x, draws=draws)
    mu, logvar = model.encoder(x).chunk(2, dim=1)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    z = mu + (0.5 * logvar).exp() * draws["eps"]
    kl = (q.log_prob(z) - mixture(model).log_prob(z)).mean().item()
    recon = -torch.distributions.Bernoulli(logits=model.decoder(z)).log_prob(x).sum((1, 2, 3))
    assert parts["kl"].item() == pytest.approx(kl, rel=1e-4, abs=1e-5)  # float32 log-densities
    assert parts["recon"].item() == pytest.approx(recon.mean().item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(recon.mean().item() + 2.0 * kl, rel=1e-5)
    assert parts["neg_elbo"].item() == pytest.approx(recon.mean().item() + kl, rel=1e-5)
    assert model.test_parts(x) == {}  # no per-dimension rate under a mixture prior


@torch.no_grad()
def test_vampprior_iw_bound_and_neg_elbo_use_the_mixture_prior():
    model = vamp(3)
    x = batch(4)
    k = 5
    bound = iw_log_likelihood(model, x, k, torch.Generator().manual_seed(3))
    mu, logvar = model.encoder(x).chunk(2, dim=1)
    eps = torch.randn(k, *mu.shape, generator=torch.Generator().manual_seed(3))
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    z = mu + (0.5 * logvar).exp() * eps
    log_px = torch.distributions.Bernoulli(logits=model.decoder(z.flatten(0, 1))).log_prob(
        x.repeat(k, 1, 1, 1)
    )
    log_w = log_px.sum((1, 2, 3)).view(k, -1) + mixture(model).log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(bound, torch.logsumexp(log_w, 0) - math.log(k))
    nelbo = neg_elbo_per_image(model, x, k, torch.Generator().manual_seed(3))
    torch.testing.assert_close(nelbo, -log_w.mean(0))


@torch.no_grad()
def test_vampprior_samples_come_from_the_mixture():
    model = vamp(1)  # one component: z ~ N(mu(u), sigma^2(u))
    codes = model.prior_codes(20000, torch.Generator().manual_seed(4))
    component = mixture(model).component_distribution.base_dist
    torch.testing.assert_close(codes.mean(0), component.loc[0], atol=0.03, rtol=0)
    torch.testing.assert_close(codes.std(0), component.scale[0], atol=0.03, rtol=0.03)
    # the prior sampler of the generation figures draws the same images as `sample`
    ours = PriorSampler().sample(model, 3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, model.sample(3, torch.Generator().manual_seed(5)))


def test_vampprior_refuses_no_pseudo_inputs_in_one_line():
    with pytest.raises(ConfigError) as err:
        VampPriorVAE(latent_dim=3, pseudo_inputs=0, net=MLP)
    assert str(err.value) == "pseudo_inputs=0 is invalid: allowed an integer >= 1"


def test_a_stack_refuses_the_vampprior_in_one_line(make_cfg):
    from aelab.stacked.grouping import why_not_stackable

    why = why_not_stackable(make_cfg("model=vampprior"))
    assert why is not None and "\n" not in why and why.startswith("model._target_=")
    assert VampPriorVAE.why_not_stackable and "\n" not in VampPriorVAE.why_not_stackable
