"""The zoo's adversarial autoencoder (issue 37): its losses against a direct computation on a
fixed batch, the two gradients disjoint (one backward pass trains both), bad values in one line."""

from __future__ import annotations

import pytest
import torch

from aelab.checks import ConfigError
from aelab.models import AAE

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32, 16]}


def model(**kwargs) -> AAE:
    torch.manual_seed(0)
    return AAE(latent_dim=3, adversarial_weight=0.5, discriminator_hidden=[8], net=MLP, **kwargs)


def batch(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


@torch.no_grad()
def test_aae_losses_are_recon_and_the_two_cross_entropies():
    m = model().eval()
    x = batch()
    draws = m.draws(x, torch.Generator().manual_seed(1))
    parts, _ = m.loss(x, x, draws=draws)
    z = m.encoder(x)
    recon = -torch.distributions.Bernoulli(logits=m.decoder(z)).log_prob(x).sum((1, 2, 3)).mean()
    p_fake = m.discriminator(z).sigmoid()  # D's probability that the code is a prior draw
    p_real = m.discriminator(draws["z_prior"]).sigmoid()
    adversarial = -p_fake.log().mean()
    d_loss = 0.5 * (-p_real.log().mean() - (1 - p_fake).log().mean())
    assert parts["adversarial"].item() == pytest.approx(adversarial.item(), rel=1e-5)
    assert parts["discriminator_loss"].item() == pytest.approx(d_loss.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(recon.item() + 0.5 * adversarial.item(), 1e-5)


def test_the_autoencoder_and_the_discriminator_each_get_only_their_own_gradient():
    m = model()
    x = batch()
    parts, _ = m.loss(x, x, torch.Generator().manual_seed(2))
    parts["loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in m.discriminator.parameters())
    assert all(p.grad is not None for p in m.encoder.parameters())
    m.zero_grad(set_to_none=True)
    parts["discriminator_loss"].backward()
    assert all(p.grad is None for p in (*m.encoder.parameters(), *m.decoder.parameters()))
    assert all(p.grad is not None for p in m.discriminator.parameters())
    groups = m.optimizer_params()
    assert groups[1]["lr"] == 1e-4 and len(groups[1]["params"]) == 4  # D: two linear layers
    n_ae = sum(1 for _ in m.encoder.parameters()) + sum(1 for _ in m.decoder.parameters())
    assert len(groups[0]["params"]) == n_ae
    assert m.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adversarial_weight": -1.0},
         "adversarial_weight=-1.0 is invalid: allowed a number in [0.0, inf)"),
        ({"discriminator_hidden": []},
         "discriminator_hidden=[] is invalid: allowed a non-empty list of widths >= 1"),
        ({"discriminator_optimizer": {"lr": 0.0}},
         "discriminator_optimizer.lr=0.0 is invalid: allowed a number in (0.0, inf)"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        AAE(latent_dim=3, net=MLP, **kwargs)
    assert str(err.value) == message


def test_a_stack_refuses_it_in_one_line(make_cfg):
    from aelab.stacked.grouping import why_not_stackable

    why = why_not_stackable(make_cfg("model=aae"))
    assert why is not None and "\n" not in why and why.startswith("model._target_=")
