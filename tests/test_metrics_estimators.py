"""Each estimator on a case whose answer is known in closed form or by quadrature."""

import math

import pytest
import torch

from aelab.losses import bernoulli_nll
from aelab.metrics import (
    DCAE_BASELINE_AUROC,
    active_units,
    anomaly_scores,
    bits_per_dim,
    iw_log_likelihood,
    kl_per_dim,
    mutual_information,
    neg_elbo_per_image,
    one_class_auroc,
)
from aelab.models import VAE, Autoencoder

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [16]}


def binary_images(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=g)


@pytest.fixture
def vae_1d() -> VAE:
    torch.manual_seed(0)
    return VAE(latent_dim=1, net=SMALL).eval()


def exact_log_px(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log int p(x | z) N(z; 0, 1) dz by the rectangle rule on a fine 1-d grid."""
    grid = torch.linspace(-8, 8, 2001)  # 4e-4 nats from a [-12, 12] x 24001 grid
    log_joint = []
    for z in grid.split(2000):
        logits = model.decode(z.view(-1, 1)).repeat_interleave(len(x), 0)
        target = x.repeat(len(z), 1, 1, 1)
        log_joint.append(-bernoulli_nll(logits, target).view(len(z), len(x)))
    log_prior = -0.5 * (grid.square() + math.log(2 * math.pi))
    joint = torch.cat(log_joint) + log_prior[:, None]
    return torch.logsumexp(joint, 0) + math.log(grid[1] - grid[0])


@torch.no_grad()
def test_iw_bound_converges_to_the_exact_likelihood(vae_1d):
    x = binary_images(8)
    exact = exact_log_px(vae_1d, x)
    g = torch.Generator().manual_seed(0)
    estimate = iw_log_likelihood(vae_1d, x, 5000, g)
    assert (estimate - exact).abs().max() < 0.1, estimate - exact


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 7, 5000])
def test_iw_bound_is_exact_when_the_posterior_is_the_prior_and_z_is_ignored(k):
    """A decoder that ignores z and q(z | x) = p(z): every weight equals p(x), for any K."""
    torch.manual_seed(0)
    model = VAE(latent_dim=3, net=SMALL).eval()
    model.encoder[-1][-1].weight.data.zero_()  # mu = 0, log sigma^2 = 0
    model.encoder[-1][-1].bias.data.zero_()
    model.decoder[0][0].weight.data.zero_()  # the first decoder layer no longer reads z
    x = binary_images(4)
    exact = -bernoulli_nll(model.decode(torch.zeros(4, 3)), x)
    estimate = iw_log_likelihood(model, x, k, torch.Generator().manual_seed(0))
    assert torch.allclose(estimate, exact, atol=1e-3, rtol=0), estimate - exact
    assert torch.allclose(-neg_elbo_per_image(model, x), exact, atol=1e-3, rtol=0)


@torch.no_grad()
def test_iw_bound_is_above_the_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    model = VAE(latent_dim=8, net=SMALL).eval()
    x = binary_images(64)
    g = torch.Generator().manual_seed(0)
    elbo = -neg_elbo_per_image(model, x, samples=200, generator=g).mean()
    bounds = [iw_log_likelihood(model, x, k, g).mean() for k in (1, 10, 100)]
    assert abs(bounds[0] - elbo) < 0.05 * abs(elbo)  # K=1 is the ELBO (one noisy draw)
    assert elbo < bounds[1] < bounds[2], (elbo, bounds)


@torch.no_grad()
def test_neg_elbo_matches_the_models_own(vae_1d):
    x = binary_images(64)
    g = torch.Generator().manual_seed(0)
    ours = neg_elbo_per_image(vae_1d, x, samples=50, generator=g).mean()
    theirs = torch.stack([vae_1d.loss(x, x, g)[0]["neg_elbo"] for _ in range(50)]).mean()
    assert ours == pytest.approx(theirs.item(), rel=2e-3)


def test_kl_of_the_prior_is_zero_and_kl_dims_sum_to_the_rate():
    zeros = torch.zeros(10, 3)
    assert torch.equal(kl_per_dim(zeros, zeros), torch.zeros(3))
    mu, logvar = torch.randn(50, 4), torch.randn(50, 4)
    per_dim = kl_per_dim(mu, logvar)
    assert (per_dim > 0).all()
    # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2, dimension by dimension
    expected = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean(0)
    assert torch.allclose(per_dim, expected, atol=1e-5)


def test_active_units_counts_planted_collapsed_dimensions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2000, 5, generator=g)
    mu[:, 1] = 0.05 * mu[:, 1]  # variance 0.0025: below Burda et al.'s 0.01
    mu[:, 3] = 0.7  # constant
    assert active_units(mu) == 3
    assert active_units(mu, threshold=0.001) == 4


@torch.no_grad()
def test_active_units_of_a_vae_with_a_dead_encoder_output():
    torch.manual_seed(0)
    model = VAE(latent_dim=4, net=SMALL).eval()
    head = model.encoder[-1][-1]  # the last Linear: rows 0-3 give mu, rows 4-7 log sigma^2
    head.weight.data[:4] *= 20  # make the live dimensions clearly vary with x
    head.weight.data[2].zero_()
    head.bias.data[2] = 0.3
    x = torch.rand(500, 1, 28, 28)
    mu, _ = model.posterior(x)
    assert active_units(mu) == 3


def test_mutual_information_of_a_collapsed_posterior_is_zero():
    mu, logvar = torch.full((500, 3), 0.2), torch.full((500, 3), -0.5)
    g = torch.Generator().manual_seed(0)
    assert mutual_information(mu, logvar, g) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("use_outer", [False, True])
def test_mutual_information_of_separated_clusters_is_log_clusters(use_outer):
    """Four groups of images, each group sharing one narrow posterior far from the others:
    z tells the group and nothing else, so I(x; z) = H(group) = log 4."""
    centres = torch.tensor([[-20.0, 0.0], [20.0, 0.0], [0.0, 20.0], [0.0, -20.0]])
    mu = centres.repeat_interleave(250, 0)
    logvar = torch.full_like(mu, 2 * math.log(0.1))
    g = torch.Generator().manual_seed(0)
    outer = torch.randperm(1000, generator=g)[:100] if use_outer else None
    assert mutual_information(mu, logvar, g, outer) == pytest.approx(math.log(4), abs=1e-6)


def test_mutual_information_is_capped_by_log_n():
    """Every image its own far-apart posterior: I = log N, the most N images can show."""
    mu = torch.arange(300.0).view(-1, 1) * 10
    logvar = torch.full_like(mu, -4.0)
    assert mutual_information(mu, logvar) == pytest.approx(math.log(300), abs=1e-6)


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_auroc_of_a_perfect_scorer_is_one_and_of_its_reverse_zero():
    labels = torch.tensor([3, 3, 3, 1, 7, 3, 0, 9])
    anomalous = (labels != 3).float()
    # scores in nats: far outside [0, 1], where torchmetrics would squash them with a sigmoid
    scores = 300.0 + 50.0 * anomalous + torch.arange(8.0)
    assert one_class_auroc(scores, labels, [3]) == 1.0
    assert one_class_auroc(-scores, labels, [3]) == 0.0
    assert one_class_auroc(torch.zeros(8), labels, [3]) == 0.5


def test_auroc_with_several_normal_classes_and_a_chance_scorer():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (4000,), generator=g)
    assert one_class_auroc(torch.rand(4000, generator=g), labels, [0, 1]) == pytest.approx(
        0.5, abs=0.03
    )
    assert one_class_auroc(labels.float(), labels, [0, 1]) == 1.0


def test_auroc_needs_both_kinds():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        one_class_auroc(torch.rand(4), torch.tensor([2, 2, 2, 2]), [2])


@torch.no_grad()
def test_anomaly_scores_are_reconstruction_error_or_neg_elbo():
    x = torch.rand(6, 1, 28, 28)
    ae = Autoencoder(latent_dim=3, net=SMALL).eval()
    expected = (ae.reconstruct(x) - x).square().flatten(1).sum(1)
    assert torch.allclose(anomaly_scores(ae, x), expected)
    torch.manual_seed(0)
    vae = VAE(latent_dim=3, net=SMALL).eval()
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    assert torch.equal(anomaly_scores(vae, x, 4, g1), neg_elbo_per_image(vae, x, 4, g2))


def test_dcae_baseline_is_ruff_et_al_table_1():
    assert DCAE_BASELINE_AUROC == {
        0: 97.6, 1: 98.3, 2: 85.4, 3: 86.7, 4: 86.5, 5: 78.2, 6: 94.6, 7: 92.3, 8: 86.5, 9: 90.4
    }  # fmt: skip
