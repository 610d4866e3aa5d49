"""The zoo's VAE-GAN (issue 37): its parts against a direct computation on a fixed batch, and
each of encoder, decoder and discriminator getting the gradient of its own objective (Larsen et
al. 2016, Alg. 1) from the one backward pass."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from aelab.checks import ConfigError
from aelab.models import VAEGAN

MLP = {"_target_": "aelab.nets.MLPNet", "hidden": [32, 16]}
GAMMA = 0.3


def model() -> VAEGAN:
    torch.manual_seed(0)
    return VAEGAN(latent_dim=3, gamma=GAMMA, discriminator_hidden=[16, 8], net=MLP)


def batch(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=g) * 0.6, generator=g)


def by_hand(m: VAEGAN, x: torch.Tensor, draws: dict) -> dict[str, torch.Tensor]:
    """Larsen et al.'s terms written out with the model's modules, one graph each."""
    mu, logvar = m.encoder(x).chunk(2, dim=1)
    z = mu + (0.5 * logvar).exp() * draws["eps"]
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
    x_tilde = m.decoder(z).sigmoid()
    x_prior = m.decoder(draws["z_prior"]).sigmoid()
    dis = m.discriminator
    llike = 0.5 * (dis.features(x_tilde) - dis.features(x)).square().sum(1).mean()

    def p_real(images):
        return dis.head(dis.features(images)).squeeze(1).sigmoid()

    gan_dec = -p_real(x_tilde).log().mean() - p_real(x_prior).log().mean()
    fake = p_real(x_tilde.detach()), p_real(x_prior.detach())
    gan_dis = -p_real(x).log().mean() - (1 - fake[0]).log().mean() - (1 - fake[1]).log().mean()
    return {"kl": kl, "llike": llike, "gan_dec": gan_dec, "gan_dis": gan_dis}


def grads(loss: torch.Tensor, modules) -> list[torch.Tensor]:
    params = [p for m in modules for p in m.parameters()]
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def test_vaegan_parts_and_gradients_are_larsen_et_als():
    m = model()
    x = batch()
    draws = m.draws(x, torch.Generator().manual_seed(1))
    parts, _ = m.loss(x, x, draws=draws)
    hand = by_hand(m, x, draws)
    for ours, theirs in [("kl", "kl"), ("feature_recon", "llike"), ("gan_generator", "gan_dec"),
                         ("discriminator_loss", "gan_dis")]:  # fmt: skip
        assert parts[ours].item() == pytest.approx(hand[theirs].item(), rel=1e-5), ours
    # the encoder: L_prior + L_llike
    got = grads(parts["loss"] + parts["discriminator_loss"], [m.encoder])
    want = grads(hand["kl"] + hand["llike"], [m.encoder])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    # the decoder: gamma L_llike + its GAN term
    got = grads(parts["loss"] + parts["discriminator_loss"], [m.decoder])
    want = [
        GAMMA * a + b
        for a, b in zip(grads(hand["llike"], [m.decoder]), grads(hand["gan_dec"], [m.decoder]),
                        strict=True)
    ]  # fmt: skip
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    # the discriminator: its cross-entropies only
    got = grads(parts["loss"] + parts["discriminator_loss"], [m.discriminator])
    for g, w in zip(got, grads(hand["gan_dis"], [m.discriminator]), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert m.optimizer_params()[1]["lr"] == 1e-4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": 1.5}, "gamma=1.5 is invalid: allowed a number in [0.0, 1.0]"),
        ({"discriminator_hidden": []},
         "discriminator_hidden=[] is invalid: allowed a non-empty list of widths >= 1"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        VAEGAN(latent_dim=3, net=MLP, **kwargs)
    assert str(err.value) == message


def test_a_stack_refuses_it_in_one_line(make_cfg):
    from aelab.stacked.grouping import why_not_stackable

    why = why_not_stackable(make_cfg("model=vaegan"))
    assert why is not None and "\n" not in why and why.startswith("model._target_=")
