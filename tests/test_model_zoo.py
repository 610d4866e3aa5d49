"""The information-theoretic model family (issue 16): each model's maths against an independent
computation on tiny synthetic data, and one short training run per model on real MNIST."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributions import Normal

from aelab.checks import ConfigError
from aelab.losses import reparameterize
from aelab.metrics.disentanglement import kl_decomposition, minibatch_decomposition
from aelab.models import IWAE, VAE, VQVAE, BetaTCVAE, ContractiveAutoencoder, SparseAutoencoder
from aelab.models.contractive import jacobian_frobenius_sq
from aelab.models.vqvae import codebook_figures, perplexity, quantize

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
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(7))
    q, prior = Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    kl_on_sample = (q.log_prob(z) - prior.log_prob(z)).sum(1).mean()
    torch.testing.assert_close(parts_iw["loss"], parts_vae["recon"] + kl_on_sample)
    # and on average over the noise the VAE's loss (its KL analytic) is the same number
    losses = [iwae.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(200)]
    losses = torch.stack(losses)
    stderr = losses.std() / math.sqrt(len(losses))
    vae_mean = torch.stack(
        [vae.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(200)]
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
    from aelab.metrics.iw_bound import iw_log_likelihood

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


# --- VQ-VAE -------------------------------------------------------------------------------------
def test_perplexity_is_k_for_uniform_use_and_1_for_a_collapsed_codebook():
    k = 8
    uniform = torch.arange(k).repeat(5).view(10, 4)  # every code 5 times
    assert perplexity(uniform, k) == pytest.approx(k)
    assert perplexity(torch.full((10, 4), 3), k) == pytest.approx(1.0)
    # two codes, used 3:1 -> exp(H) with H = -(3/4 log 3/4 + 1/4 log 1/4)
    skewed = torch.tensor([[0, 0, 0, 5]])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert perplexity(skewed, k) == pytest.approx(math.exp(h))
    figures = codebook_figures(uniform, k)
    assert figures == pytest.approx(
        {"rate_bits": 4 * 3.0, "codebook_perplexity": 8.0, "codebook_usage": 1.0}
    )
    assert codebook_figures(skewed, k)["codebook_usage"] == pytest.approx(2 / 8)


def test_quantize_picks_the_nearest_codebook_vector():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[[0.1, -0.1], [0.9, 0.4]], [[0.2, 1.2], [-5.0, 0.0]]])
    idx, z_q = quantize(z, codebook)
    assert idx.tolist() == [[0, 1], [2, 0]]
    torch.testing.assert_close(z_q, codebook[idx])


def vq_model(**kwargs) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(latent_dim=4, code_dim=2, codebook_size=4, net=MLP, **kwargs)


def test_gradient_reaches_the_encoder_through_the_straight_through_estimator():
    model = vq_model(commitment=0.0)
    x = binary_batch(8)
    parts, _ = model.loss(x, x)
    parts["recon"].backward()
    first = model.encoder[1][0].weight.grad
    assert first is not None and first.abs().sum() > 0
    # straight-through: d recon / d z_e is d recon / d z_q, the decoder's input gradient
    z_e = model._code(x).detach().requires_grad_(True)
    _, z_q = quantize(z_e, model.codebook.detach())
    z_q = z_q.detach().requires_grad_(True)
    recon_nll_st = model.decode((z_e + (z_q - z_e).detach()).flatten(1))
    recon_q = model.decode(z_q.flatten(1))
    g_e = torch.autograd.grad(recon_nll_st.sum(), z_e)[0]
    g_q = torch.autograd.grad(recon_q.sum(), z_q)[0]
    torch.testing.assert_close(g_e, g_q)
    # the codebook learns from its own term only, the encoder from recon and commitment
    assert model.codebook.grad is None


def test_vq_loss_parts_and_ema_moves_each_code_to_its_vectors_mean():
    model = vq_model(ema=True, ema_decay=0.0, commitment=0.5)
    x = binary_batch(8)
    with torch.no_grad():
        z_e = model._code(x)
        idx, z_q = quantize(z_e, model.codebook)
        parts, _ = model.eval().loss(x, x)
    sq = (z_e - z_q).square().sum((1, 2)).mean()
    torch.testing.assert_close(parts["commitment"], sq)
    torch.testing.assert_close(parts["loss"], parts["recon"] + 0.5 * sq)  # ema: no codebook term
    model.train()
    model.loss(x, x)  # one EMA update with decay 0: each used code becomes its vectors' mean
    flat, flat_idx = z_e.reshape(-1, 2), idx.flatten()
    for code in flat_idx.unique():
        torch.testing.assert_close(
            model.codebook[code], flat[flat_idx == code].mean(0), rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(code_dim=3), "code_dim=3 is invalid: allowed a divisor of model.latent_dim=4"),
        (dict(codebook_size=1), "codebook_size=1 is invalid: allowed an integer >= 2"),
        (dict(ema_decay=1.0), "ema_decay=1.0 is invalid: allowed a number in [0.0, 1.0)"),
        (dict(commitment=-1), "commitment=-1 is invalid"),
    ],
)
def test_bad_vq_values(kwargs, field):
    with pytest.raises(ConfigError) as info:
        VQVAE(latent_dim=4, net=MLP, **{"code_dim": 2, **kwargs})
    assert str(info.value).startswith(field)


def test_suite_scores_the_codebook_and_says_prior_samples_mean_nothing(caplog):
    import logging

    from aelab.callbacks.eval_suite import EvaluationSuite
    from aelab.data.mnist import InMemoryImages

    model = vq_model().eval()
    x = binary_batch(50)
    test = InMemoryImages((x * 255).to(torch.uint8), torch.arange(50) % 10)
    suite = EvaluationSuite(iw_samples=2, mi_images=20, iw_images=20, probe_train_size=None)
    with caplog.at_level(logging.INFO, logger="aelab.callbacks.eval_suite"):
        metrics, images = suite.evaluate(model, test)
    with torch.no_grad():
        expected = codebook_figures(model.code_indices(x), 4)
    assert expected["rate_bits"] == 2 * 2.0  # two code vectors of log2(4) bits
    assert {k: metrics[k] for k in expected} == pytest.approx(expected)
    assert "prior_samples" not in images and "interpolations" in images
    lines = [r.getMessage() for r in caplog.records if "prior_samples" in r.getMessage()]
    assert lines == ["prior_samples skipped: not meaningful for a uniform code prior (VQ-VAE)"]


# --- beta-TCVAE and the KL's three parts ----------------------------------------------------
def correlated_posteriors(n: int, corr: float, d: int = 3, var: float = 0.3, seed: int = 0):
    """Posteriors N(mu_n, var I) with mu_n ~ N(0, S), S unit variances and correlation corr:
    the aggregate is close to N(0, S + var I), whose total correlation is -1/2 log det of its
    correlation matrix."""
    g = torch.Generator().manual_seed(seed)
    s = torch.full((d, d), corr, dtype=torch.float64) + (1 - corr) * torch.eye(d)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s).T
    logvar = torch.full((n, d), math.log(var), dtype=torch.float64)
    cov = s + var * torch.eye(d)
    sd = cov.diagonal().sqrt()
    tc = -0.5 * torch.logdet(cov / sd[:, None] / sd[None]).item()
    # dim-wise KL: each marginal N(0, 1 + var) against N(0, 1)
    v = 1 + var
    dim_kl = d * 0.5 * (v - 1 - math.log(v))
    return mu, logvar, tc, dim_kl


def test_total_correlation_of_a_correlated_gaussian_aggregate_is_its_analytic_value():
    mu, logvar, tc, dim_kl = correlated_posteriors(3000, corr=0.7)
    assert tc > 0.3  # a case with something to find
    outer = torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:1000]
    parts = kl_decomposition(mu, logvar, torch.Generator().manual_seed(0), outer)
    assert parts["total_correlation"] == pytest.approx(tc, abs=0.05)
    assert parts["dimwise_kl"] == pytest.approx(dim_kl, abs=0.05)
    # the three add up to the mean KL of the posteriors (up to the one-sample noise)
    mean_kl = (0.5 * (mu.square() + logvar.exp() - 1 - logvar)).sum(1).mean().item()
    assert sum(parts.values()) == pytest.approx(mean_kl, abs=0.1)
    # independent dimensions: no total correlation
    independent = kl_decomposition(*correlated_posteriors(3000, corr=0.0)[:2], outer=outer)
    assert independent["total_correlation"] == pytest.approx(0.0, abs=0.03)


def test_minibatch_estimators_on_the_constructed_case():
    n, m, d = 4000, 500, 3
    mu, logvar, tc, _ = correlated_posteriors(n, corr=0.7, d=d)
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(n, generator=g)[:m]
    z = mu[idx] + torch.randn(m, d, generator=g, dtype=torch.float64) * (0.5 * logvar[idx]).exp()
    mss = minibatch_decomposition(z, mu[idx], logvar[idx], n, "mss")
    assert mss["tc"].mean().item() == pytest.approx(tc, abs=0.1)
    # Chen et al.'s minibatch-weighted formula reads high by (d - 1) log N, as documented
    mws = minibatch_decomposition(z, mu[idx], logvar[idx], n, "mws")
    assert mws["tc"].mean().item() == pytest.approx(tc + (d - 1) * math.log(n), abs=0.15)
    # whichever the estimator, the three add up to log q(z|x) - log p(z) per image
    q = Normal(mu[idx], (0.5 * logvar[idx]).exp())
    expected = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1)
    for terms in (mss, mws):
        torch.testing.assert_close(terms["mi"] + terms["tc"] + terms["dim_kl"], expected)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
@torch.no_grad()
def test_tcvae_with_unit_weights_is_the_vae_loss(estimator):
    torch.manual_seed(0)
    vae = VAE(latent_dim=4, net=MLP).eval()
    tc = BetaTCVAE(
        latent_dim=4, alpha=1.0, beta=1.0, gamma=1.0, estimator=estimator, dataset_size=1000,
        net=MLP,
    ).eval()  # fmt: skip
    tc.load_state_dict(vae.state_dict())
    x = binary_batch(32)
    # on the same noise: the VAE's recon plus the KL estimated on its own sample, exactly
    mu, logvar = vae.posterior(x)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    q = Normal(mu, (0.5 * logvar).exp())
    kl_on_sample = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    parts_tc, _ = tc.loss(x, x, torch.Generator().manual_seed(5))
    parts_vae, _ = vae.loss(x, x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(parts_tc["loss"], parts_vae["recon"] + kl_on_sample)
    # over the noise: the beta=1 VAE's loss, up to the estimator's (Monte Carlo) error
    draws = [tc.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(100)]
    draws = torch.stack(draws)
    vae_loss = torch.stack(
        [vae.loss(x, x, torch.Generator().manual_seed(s))[0]["loss"] for s in range(100)]
    ).mean()
    assert abs(draws.mean() - vae_loss) < 4 * draws.std() / math.sqrt(len(draws)) + 1e-3


def test_tcvae_weights_each_term_and_takes_n_from_the_data():
    torch.manual_seed(0)
    model = BetaTCVAE(latent_dim=3, alpha=0.5, beta=4.0, gamma=2.0, net=MLP)
    x = binary_batch(16)
    with pytest.raises(RuntimeError, match="model.dataset_size"):
        model.loss(x, x)

    class Data:  # the datamodule seam: split_size
        def split_size(self, split):
            return 777 if split == "train" else 0

    model.trainer = type("T", (), {"datamodule": Data()})()  # what Lightning hands setup
    model.setup("fit")
    assert model.dataset_size == 777 and model.hparams["dataset_size"] == 777

    blind = BetaTCVAE(latent_dim=3, net=MLP)  # a datamodule that cannot say N: one line
    blind.trainer = type("T", (), {"datamodule": object()})()
    with pytest.raises(ConfigError, match=r"^model\.dataset_size=None is invalid: allowed the "):
        blind.setup("fit")
    parts, _ = model.loss(x, x, torch.Generator().manual_seed(0))
    expected = parts["recon"] + 0.5 * parts["mi"] + 4.0 * parts["tc"] + 2.0 * parts["dim_kl"]
    torch.testing.assert_close(parts["loss"], expected)


@pytest.mark.parametrize("cls", [VAE, IWAE])
def test_every_vae_type_gets_the_three_parts_of_its_kl_as_test_figures(cls):
    from aelab.callbacks.eval_suite import EvaluationSuite, Stream
    from aelab.data.mnist import InMemoryImages
    from aelab.data.resumable import derive_seed

    torch.manual_seed(0)
    model = cls(latent_dim=3, net=MLP).eval()
    x = binary_batch(300)
    test = InMemoryImages((x * 255).to(torch.uint8), torch.arange(300) % 10)
    suite = EvaluationSuite(iw_samples=2, iw_images=10, tc_images=None, images=False)
    metrics, _ = suite.evaluate(model, test)
    with torch.no_grad():
        mu, logvar = model.posterior(x)
    # the suite's TC stream of its default eval seed 0
    generator = torch.Generator().manual_seed(derive_seed(0, Stream.TC))
    expected = kl_decomposition(mu, logvar, generator)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, rel=1e-4)
    kl = (0.5 * (mu.square() + logvar.exp() - 1 - logvar)).sum(1).mean().item()
    assert sum(expected.values()) == pytest.approx(kl, abs=0.1 + 0.1 * kl)


# --- the model_zoo experiment and its report section ------------------------------------------
ZOO_FIGURES = {  # what each model's metrics.json must hold beside the shared figures
    "AE": {"recon_mse", "psnr", "linear_probe_acc"},
    "VAE": {"iw_nll", "active_units", "index_code_mi", "total_correlation", "dimwise_kl"},
    "IWAE": {"iw_nll", "active_units", "index_code_mi", "total_correlation", "dimwise_kl"},
    "BetaTCVAE": {"iw_nll", "mi", "tc", "dim_kl", "total_correlation", "dimwise_kl"},
    "VQVAE": {"rate_bits", "codebook_perplexity", "codebook_usage", "commitment"},
    "SparseAutoencoder": {"mean_activation", "sparsity"},
    "ContractiveAutoencoder": {"contraction"},
    "WAE": {"recon_mse", "mmd", "linear_probe_acc"},
    "InfoVAE": {"iw_nll", "mmd", "active_units", "index_code_mi"},
    "RAE": {"recon_mse", "code_norm", "decoder_reg"},
    "SWAE": {"recon_mse", "sw"},
    "VampPriorVAE": {"iw_nll", "kl", "active_units", "mutual_info"},
    "GumbelSoftmaxVAE": {"recon_mse", "kl", "temperature", "linear_probe_acc"},
    "AAE": {"recon_mse", "adversarial", "discriminator_loss"},
    "VAEGAN": {"iw_nll", "feature_recon", "gan_generator", "discriminator_loss"},
}


@pytest.mark.slow
@pytest.mark.mnist
def test_model_zoo_trains_every_model_and_reports_them(tmp_path, mnist_dir):
    import json

    from helpers.sweeps import TINY, run_sweep

    sweep, _ = run_sweep(
        tmp_path,
        mnist_dir,
        "experiment=model_zoo",
        *TINY,
        "threads=1",
        "eval.iw_samples=5",
        "eval.iw_images=100",
        "eval.mi_images=200",
        "eval.tc_images=100",
        "eval.probe_train_size=1000",
        "eval.images=false",
        "eval.generation.enabled=false",  # tests/test_generation_wiring.py scores generation
    )
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 16
    seen = {}
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed", job.name
        seen[job.name] = metrics
    kinds = {}
    for name, metrics in seen.items():
        cfg = (sweep / name / ".hydra" / "config.yaml").read_text()
        target = cfg.split("_target_: aelab.models.", 1)[1].split()[0]
        kind = {"Autoencoder": "AE"}.get(target, target)
        kinds[kind] = kinds.get(kind, 0) + 1
        missing = {f for f in ZOO_FIGURES[kind] if not isinstance(metrics.get(f"test/{f}"), float)}
        assert not missing, (name, missing)
        composed = OmegaConf.load(sweep / name / ".hydra" / "config.yaml")
        assert composed.model.latent_dim == 16, name  # the preset's size over every model
        if kind == "VQVAE":
            assert metrics["test/rate_bits"] == pytest.approx(4 * math.log2(64))
    assert kinds == {"AE": 2, "VAE": 1, "IWAE": 1, "BetaTCVAE": 1, "VQVAE": 1,
                     "SparseAutoencoder": 1, "ContractiveAutoencoder": 1, "WAE": 1, "InfoVAE": 1,
                     "RAE": 1, "SWAE": 1, "VampPriorVAE": 1,
                     "GumbelSoftmaxVAE": 1, "AAE": 1, "VAEGAN": 1}  # fmt: skip
    summary = (sweep / "summary.md").read_text()
    section = summary.split("## Model zoo", 1)[1].split("\n## ", 1)[0]
    for label in ("| AE |", "| AE (gaussian noise) |", "| IWAE |", "| VQVAE |", "| BetaTCVAE |",
                  "| WAE |", "| RAE |"):  # fmt: skip
        assert label in section, label


def test_model_zoo_section_holds_each_models_figures():
    from pathlib import Path

    from aelab.report.load import Job, jobs_frame
    from aelab.report.zoo import model_zoo_section

    def job(model, seed, **metrics):
        hp = {"model": model, "noise": "none", "seed": seed}
        return Job(f"{model}{seed}", Path("."), "completed", hparams=hp, metrics=metrics)

    jobs = [
        job("VAE", 0, **{"test/iw_nll": 100.0}),
        job("VAE", 1, **{"test/iw_nll": 102.0}),
        job("VQVAE", 0, **{"test/rate_bits": 24.0}),
        Job("IWAE", Path("."), "failed", hparams={"model": "IWAE"}),
    ]
    lines = model_zoo_section(jobs_frame(jobs))
    assert lines[0] == "## Model zoo"
    assert "| model | n | iw_nll | rate_bits |" in lines
    assert "| VAE | 2 | 101 ± 1.4 | – |" in lines
    assert "| VQVAE | 1 | – | 24 |" in lines
    assert model_zoo_section(jobs_frame(jobs[:2])) == []  # one model: nothing to compare
    # the main table's case
    assert model_zoo_section(jobs_frame([job("AE", 0), job("VAE", 0)])) == []


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (VQVAE, dict(latent_dim=4, code_dim=2, codebook_size=8, ema=True)),
        (BetaTCVAE, dict(latent_dim=3, dataset_size=256)),
        (IWAE, dict(latent_dim=3, k=2)),
        (SparseAutoencoder, dict(latent_dim=3)),
        (ContractiveAutoencoder, dict(latent_dim=3)),
    ],
)
def test_checkpoints_load_weights_only_into_the_same_model(cls, kwargs, tiny_batches, tmp_path):
    import pytorch_lightning as pl

    pl.seed_everything(0)
    model = cls(net=MLP, **kwargs)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=tiny_batches)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)
    again = cls(**stored["hyper_parameters"])
    again.load_state_dict(stored["state_dict"])
    for key, value in model.state_dict().items():  # EMA buffers included
        torch.testing.assert_close(again.state_dict()[key], value, msg=key)
    x = next(iter(tiny_batches))[0].float() / 255
    torch.testing.assert_close(again.eval().encode(x), model.eval().encode(x))


def test_a_model_for_other_images_than_the_data_is_refused_in_one_line():
    from aelab.models import Autoencoder
    from aelab.train import check_image_shape

    model = Autoencoder(latent_dim=2, net=MLP)
    data = type("D", (), {"image_shape": (1, 32, 32)})()
    with pytest.raises(ConfigError) as info:
        check_image_shape(model, data)
    assert str(info.value) == (
        "model.image_shape=[1, 28, 28] is invalid: allowed the data's image_shape [1, 32, 32] "
        "(leave model.image_shape unset: a model takes the data's)"
    )
    check_image_shape(model, type("D", (), {"image_shape": (1, 28, 28)})())  # the same: fine
    check_image_shape(model, object())  # a datamodule without image_shape: not checked
