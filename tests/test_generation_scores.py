"""FID, KID, precision/recall against closed forms, torchmetrics and direct computations; the
feature-network cache; the samplers."""

import logging
import math
import re

import pytest
import torch

from aelab.checks import ConfigError
from aelab.metrics.features import DigitFeatures, FeatureExtractor, FeatureNetCache
from aelab.metrics.fid import (
    frechet_distance,
    frechet_distance_gaussians,
    kernel_inception_distance,
    polynomial_mmd2_unbiased,
    precision_recall,
)
from aelab.samplers import EmpiricalCodeSampler, GMMSampler, PriorSampler

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [16]}


def test_frechet_closed_form_for_commuting_gaussians():
    # diagonal covariances commute: FD = |mu1-mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([0.5, -1.0, 0.0])
    v1, v2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = float((mu1 - mu2).square().sum() + (v1.sqrt() - v2.sqrt()).square().sum())
    got = frechet_distance_gaussians(mu1, torch.diag(v1), mu2, torch.diag(v2))
    assert got == pytest.approx(expected, rel=1e-6)  # 4.25 + 4 + 1 + 0


def test_frechet_closed_form_rotated_full_covariance():
    # a shared rotation leaves the distance of the diagonal case unchanged
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    q = q.double()
    v1, v2 = torch.tensor([1.0, 4.0, 2.0]).double(), torch.tensor([3.0, 0.5, 2.0]).double()
    expected = float((v1.sqrt() - v2.sqrt()).square().sum())
    got = frechet_distance_gaussians(
        torch.zeros(3), q @ torch.diag(v1) @ q.T, torch.zeros(3), q @ torch.diag(v2) @ q.T
    )
    assert got == pytest.approx(expected, rel=1e-6)


def test_fid_equals_torchmetrics_with_the_same_feature_network():
    fid_cls = pytest.importorskip("torchmetrics.image.fid").FrechetInceptionDistance
    torch.manual_seed(0)
    extractor = FeatureExtractor(DigitFeatures())
    g = torch.Generator().manual_seed(1)
    real = torch.rand(200, 1, 28, 28, generator=g)
    fake = torch.rand(200, 1, 28, 28, generator=g).square()
    metric = fid_cls(feature=extractor, normalize=True).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = float(metric.compute())
    got = frechet_distance(extractor(real), extractor(fake))
    assert got == pytest.approx(expected, rel=1e-4)


def test_kid_equals_direct_unbiased_polynomial_mmd():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(7, 4, generator=g).double(), (torch.randn(6, 4, generator=g) + 0.5).double()

    def k(x, y):
        return (float(x @ y) / 4 + 1) ** 3

    n, m = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    bb = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    ab = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    expected = aa + bb - 2 * ab
    assert polynomial_mmd2_unbiased(a, b) == pytest.approx(expected, rel=1e-10)
    # one subset of the whole (smaller) set: KID's mean is that MMD^2 on a 6-row subset of a
    mean, std = kernel_inception_distance(a[:6], b, subsets=1, subset_size=6)
    assert mean == pytest.approx(polynomial_mmd2_unbiased(a[:6], b), rel=1e-10) and std == 0.0


def test_kid_rejects_a_subset_larger_than_the_set():
    with pytest.raises(ConfigError, match="subset_size=50"):
        kernel_inception_distance(torch.randn(10, 2), torch.randn(10, 2), subset_size=50)


def test_precision_recall_self_far_and_half_the_modes():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 2, generator=g)
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    # a mixture of 4 well-separated modes; the samples cover 2 of them
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    real = centres.repeat_interleave(150, 0) + 0.5 * torch.randn(600, 2, generator=g)
    fake = centres[:2].repeat_interleave(300, 0) + 0.5 * torch.randn(600, 2, generator=g)
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.95
    assert recall == pytest.approx(0.5, abs=0.05)


def _tiny_digits(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    images[labels == 1, :, 10:18, 10:18] = 1.0  # class 1: a bright square
    return images, labels


def test_feature_net_cache_reuses_and_rebuilds_a_corrupt_file(tmp_path, caplog):
    images, labels = _tiny_digits()
    cache = FeatureNetCache(tmp_path, seed=0, epochs=1)
    with caplog.at_level(logging.INFO, logger="aelab.metrics.features"):
        net, acc = cache.get(images, labels, test=(images, labels))
    path = cache.path(images, labels)
    trained = [r.getMessage() for r in caplog.records if "trained once" in r.getMessage()]
    assert len(trained) == 1  # its first training, in one line with its cost
    assert re.fullmatch(
        rf"digit-feature network trained once for this data: 64 images, 1 epochs, "
        rf"\d+\.\d s, test accuracy {acc:.4f}; cached as {re.escape(str(path))}",
        trained[0],
    )
    caplog.clear()
    before = path.read_bytes()
    again = FeatureNetCache(tmp_path, seed=0, epochs=1)
    net2, acc2 = again.get(images, labels, test=(images, labels))
    assert (again.trained, again.hits) == (0, 1)
    assert "trained once" not in caplog.text  # a cached network: no line
    assert path.read_bytes() == before and acc2 == acc is not None
    assert torch.equal(net2.features(images), net.features(images))
    path.write_bytes(b"not a checkpoint")
    third = FeatureNetCache(tmp_path, seed=0, epochs=1)
    third.get(images, labels)
    assert third.trained == 1 and "unreadable" in caplog.text
    assert path.read_bytes() != b"not a checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_feature_net_training_is_deterministic_from_its_seed(tmp_path):
    images, labels = _tiny_digits()
    a, _ = FeatureNetCache(tmp_path / "a", epochs=1).get(images, labels)
    b, _ = FeatureNetCache(tmp_path / "b", epochs=1).get(images, labels)
    assert torch.equal(a.features(images), b.features(images))


def test_samplers_give_images_of_the_data_shape():
    from aelab.models import VQVAE, Autoencoder

    torch.manual_seed(0)
    images, _ = _tiny_digits(40)
    ae = Autoencoder(latent_dim=3, net=SMALL).eval()
    for sampler in (PriorSampler(), GMMSampler(n_components=2, covariance_type="diag")):
        x = sampler.fit(ae, images).sample(ae, 5, torch.Generator().manual_seed(0))
        assert x.shape == (5, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    vq = VQVAE(latent_dim=4, codebook_size=8, code_dim=2, net=SMALL).eval()
    sampler = EmpiricalCodeSampler().fit(vq, images)
    assert sampler.probs.shape == (2, 8)
    assert torch.allclose(sampler.probs.sum(1), torch.ones(2, dtype=torch.float64))
    assert sampler.sample(vq, 5, torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)
    with pytest.raises(ConfigError, match="sampler='gmm'"):
        GMMSampler().fit(vq, images)
    with pytest.raises(ConfigError, match="sampler.covariance_type"):
        GMMSampler(covariance_type="round")


def test_gmm_sampler_draws_are_reproducible_from_the_generator():
    from aelab.models import Autoencoder

    torch.manual_seed(0)
    images, _ = _tiny_digits(40)
    ae = Autoencoder(latent_dim=3, net=SMALL).eval()
    s = GMMSampler(n_components=2).fit(ae, images)
    first = s.sample(ae, 4, torch.Generator().manual_seed(5))
    assert torch.equal(first, s.sample(ae, 4, torch.Generator().manual_seed(5)))
    assert not math.isnan(float(first.sum()))


def test_parallel_jobs_racing_for_the_feature_net_leave_one_whole_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    images, labels = _tiny_digits()
    caches = [FeatureNetCache(tmp_path, epochs=1) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        nets = list(pool.map(lambda c: c.get(images, labels)[0], caches))
    assert [p.name for p in tmp_path.iterdir()] == [caches[0].path(images, labels).name]
    loaded = FeatureNetCache(tmp_path, epochs=1)
    net, _ = loaded.get(images, labels)
    assert loaded.hits == 1
    # threads share torch's global generator, so the racers may train different nets: the file
    # holds one of them, whole (a torn or mixed file would match none)
    assert any(torch.equal(net.features(images), n.features(images)) for n in nets)


def test_model_generation_scores_name_each_set_and_the_floor_is_zero_on_itself():
    from aelab.metrics.fid import model_generation_scores
    from aelab.models import Autoencoder

    torch.manual_seed(0)
    images, _ = _tiny_digits(60)
    ae = Autoencoder(latent_dim=3, net=SMALL).eval()
    feats = FeatureExtractor(DigitFeatures())
    samplers = {"gmm": GMMSampler(n_components=2, covariance_type="diag").fit(ae, images)}
    out = model_generation_scores(
        ae, samplers, feats, images, images, n_samples=20, kid_subsets=2, kid_subset_size=10
    )
    names = {key.rsplit("/", 1)[0] for key in out}
    assert names == {"gen/floor", "gen/recon", "gen/gmm"}
    # held-out = test here: the same features, so precision = recall = 1 and FID = 0
    assert out["gen/floor/fid"] == pytest.approx(0.0, abs=1e-6)
    assert (out["gen/floor/precision"], out["gen/floor/recall"]) == (1.0, 1.0)
    assert out["gen/gmm/fid"] > 1e-3
    with pytest.raises(ConfigError, match="n_samples=100"):
        model_generation_scores(ae, samplers, feats, images, images, n_samples=100)
