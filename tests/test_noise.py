import pytest
import torch

from aelab.checks import ConfigError
from aelab.noise import GaussianNoise, MaskingNoise, Noise, SaltPepperNoise

X = torch.full((64, 1, 28, 28), 0.5)


def test_none_is_identity():
    assert Noise()(X) is X and Noise().is_identity


def test_gaussian_std_matches():
    y = GaussianNoise(std=0.1)(X)  # 0.5 +- 0.1: clipping at 0 and 1 is 5 sigma away
    assert abs((y - X).std().item() - 0.1) < 0.003
    assert abs((y - X).mean().item()) < 0.002


def test_gaussian_is_clipped():
    y = GaussianNoise(std=2.0)(X)
    assert y.min() >= 0 and y.max() <= 1 and (y == 0).any() and (y == 1).any()


@pytest.mark.parametrize("p", [0.0, 0.25, 0.7, 1.0])
def test_masking_fraction(p):
    y = MaskingNoise(p=p)(X)
    assert abs((y == 0).float().mean().item() - p) < 0.01
    assert torch.all((y == 0) | (y == X))


def test_salt_pepper_fraction_and_balance():
    y = SaltPepperNoise(p=0.4)(X)
    salt, pepper = (y == 1).float().mean().item(), (y == 0).float().mean().item()
    assert abs(salt - 0.2) < 0.01 and abs(pepper - 0.2) < 0.01


@pytest.mark.parametrize("noise", [GaussianNoise(0.3), MaskingNoise(0.3), SaltPepperNoise(0.3)])
def test_reproducible_with_generator_and_seed(noise):
    a = noise(X, torch.Generator().manual_seed(1))
    b = noise(X, torch.Generator().manual_seed(1))
    c = noise(X, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = noise(X)
    torch.manual_seed(5)
    assert torch.equal(d, noise(X))


@pytest.mark.parametrize(
    ("cls", "value", "field"),
    [
        (GaussianNoise, -0.1, "std"),
        (MaskingNoise, 1.5, "p"),
        (SaltPepperNoise, -0.01, "p"),
        (MaskingNoise, float("nan"), "p"),
    ],
)
def test_out_of_range_levels_are_refused(cls, value, field):
    with pytest.raises(ConfigError, match=rf"^{field}=.* is invalid: allowed a number in \["):
        cls(value)
