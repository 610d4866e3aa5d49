"""The zoo's categorical VAE (Gumbel-softmax; issue 37): its relaxed sample, loss and
temperature schedule against direct computations on a fixed batch, bad values in one line."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, kl_divergence

from aelab.checks import ConfigError
from aelab.models import GumbelSoftmaxVAE
from aelab.models.gumbel import gumbel_softmax_given
from aelab.samplers import PriorSampler

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32, 16]}


def model(**kwargs) -> GumbelSoftmaxVAE:
    torch.manual_seed(0)
    return GumbelSoftmaxVAE(latent_dim=3, categories=4, net=MLP, **kwargs).eval()


def batch(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


def test_the_relaxed_samples_argmax_is_a_draw_of_the_categorical():
    """The Gumbel-max trick (Jang et al. 2017, eq. 1): argmax_k (logits_k + g_k) ~ softmax."""
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    u = torch.rand(40000, 4, generator=torch.Generator().manual_seed(1))
    y = gumbel_softmax_given(logits.expand(40000, 4), u, 0.3)
    torch.testing.assert_close(y.sum(-1), torch.ones(40000))
    freq = torch.bincount(y.argmax(-1), minlength=4).float() / 40000
    torch.testing.assert_close(freq, logits.softmax(0), atol=0.01, rtol=0)


@torch.no_grad()
def test_gumbel_vae_loss_is_recon_on_the_relaxed_sample_plus_the_categorical_kl():
    m = model(temperature=1.0, temperature_min=0.5, anneal_rate=1e-4)
    m.schedule_step = 2000  # tau = max(0.5, exp(-0.2))
    tau = math.exp(-0.2)
    x = batch()
    draws = m.draws(x, torch.Generator().manual_seed(2))
    parts, _ = m.loss(x, x, draws=draws)
    logits = m.encoder(x).view(6, 3, 4)
    gumbel = -torch.log(-torch.log(draws["uniform"]))
    y = torch.softmax((logits + gumbel) / tau, -1)
    recon = -Bernoulli(logits=m.decoder(y.flatten(1))).log_prob(x).sum((1, 2, 3)).mean()
    uniform = Categorical(logits=torch.zeros(6, 3, 4))
    kl = kl_divergence(Categorical(logits=logits), uniform).sum(1).mean()
    assert parts["temperature"].item() == pytest.approx(tau)
    assert parts["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
    assert parts["kl"].item() == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)
    assert parts["loss"].item() == pytest.approx(recon.item() + kl.item(), rel=1e-5)
    m.schedule_step = 10**6  # annealed down to the floor
    assert m.loss(x, x, draws=draws)[0]["temperature"].item() == 0.5


@torch.no_grad()
def test_prior_codes_are_uniform_one_hot_codes():
    m = model()
    codes = m.prior_codes(8000, torch.Generator().manual_seed(3)).view(8000, 3, 4)
    assert set(codes.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(codes.sum(-1), torch.ones(8000, 3))
    torch.testing.assert_close(codes.mean(0), torch.full((3, 4), 0.25), atol=0.02, rtol=0)
    assert m.encode(batch()).shape == (6, 12)
    ours = PriorSampler().sample(m, 3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, m.sample(3, torch.Generator().manual_seed(5)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature=0.0 is invalid: allowed a number in (0.0, inf)"),
        ({"temperature_min": 2.0}, "temperature_min=2.0 is invalid: allowed a number in (0.0, 1.0]"),  # noqa: E501
        ({"categories": 1}, "categories=1 is invalid: allowed an integer >= 2"),
        ({"anneal_rate": -1.0}, "anneal_rate=-1.0 is invalid: allowed a number in [0.0, inf)"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        GumbelSoftmaxVAE(latent_dim=3, net=MLP, **kwargs)
    assert str(err.value) == message


def test_a_stack_refuses_it_in_one_line(make_cfg):
    from aelab.stacked.grouping import why_not_stackable

    why = why_not_stackable(make_cfg("model=gumbel_vae"))
    assert why is not None and "\n" not in why and why.startswith("model._target_=")
