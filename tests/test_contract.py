"""The optional model interface as Protocols, and its misspellings caught when a model is built."""

import sys
import textwrap

import pytest
import torch

from aelab.checks import ConfigError
from aelab.contract import CanSample, HasCodeIndices, HasPosterior, interface_faults
from aelab.models import IWAE, VAE, VQVAE, Autoencoder, BetaTCVAE
from aelab.train import build_model


@pytest.fixture
def near_misses(tmp_path, monkeypatch):
    (tmp_path / "my_near.py").write_text(
        textwrap.dedent(
            """
            import torch
            from aelab.models.vae import VAE
            from aelab.models.ae import Autoencoder

            class Posterier(Autoencoder):
                def posterier(self, x):
                    return self.encode(x), torch.zeros(len(x), self.latent_dim)

            class TwoArgPosterior(Autoencoder):
                def posterior(self, x, y):
                    return x, y

            class SampleNoCount(VAE):
                def sample(self):
                    return None

            class TestPart(Autoencoder):
                def test_part(self, x_in):
                    return {}

            class Fine(VAE):  # a helper whose name is far from the interface
                def posterior_mean(self, x):
                    return self.posterior(x)[0]

                def sample(self, n, generator=None, temperature=1.0):
                    return super().sample(n, generator)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_near", None)


def test_the_zoo_models_satisfy_the_protocols_they_claim(make_cfg):
    vae, ae = build_model(make_cfg("model=vae")), build_model(make_cfg("model=ae"))
    assert isinstance(vae, HasPosterior) and isinstance(vae, CanSample)
    assert not isinstance(ae, HasPosterior) and not isinstance(ae, CanSample)
    assert isinstance(build_model(make_cfg("model=vqvae")), HasCodeIndices)
    for cls in (Autoencoder, VAE, IWAE, BetaTCVAE, VQVAE):
        assert interface_faults(cls) == [], cls


@pytest.mark.parametrize(
    "cls, fault",
    [
        ("Posterier", "Posterier.posterier looks like a misspelt posterior()"),
        (
            "TwoArgPosterior",
            "TwoArgPosterior.posterior(self, x, y) cannot be called as posterior(x)",
        ),
        ("SampleNoCount", "SampleNoCount.sample(self) cannot be called as sample(n, generator)"),
        ("TestPart", "TestPart.test_part looks like a misspelt test_parts()"),
    ],
)
def test_a_misspelt_or_mis_signed_optional_method_is_one_line_at_build_time(
    make_cfg, near_misses, cls, fault
):
    with pytest.raises(ConfigError) as err:
        build_model(make_cfg(f"model._target_=my_near.{cls}"))
    assert str(err.value) == (
        f"model._target_='my_near.{cls}' is invalid: allowed a model whose optional methods are "
        f"spelt and called as aelab calls them ({fault})"
    )


def test_names_far_from_the_interface_and_extra_keyword_arguments_pass(make_cfg, near_misses):
    model = build_model(make_cfg("model=vae", "model._target_=my_near.Fine"))
    assert isinstance(model, HasPosterior) and isinstance(model, CanSample)
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)
