"""eval.generation: its checks, which sampler each model gets, and the suite's gen/* figures on
tiny synthetic data (the feature network trained on two constructed classes)."""

import logging
import math

import pytest
import torch

from aelab.callbacks import EvaluationSuite
from aelab.callbacks.generation_figures import GenerationFigures
from aelab.checks import ConfigError
from aelab.models import VAE, VQVAE, Autoencoder
from aelab.samplers import GMMSampler

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [16]}
SCORES = {"fid", "kid_mean", "kid_std", "precision", "recall"}


class _Split:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def tensors(self, indices=None, seed=None):
        return (self.x, self.y) if indices is None else (self.x[indices], self.y[indices])


def _two_classes(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    x[y == 1, :, 10:18, 10:18] = 1.0
    return x, y


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("n_samples", 2, "n_samples=2"), ("k", 50, "k=50"), ("features", "clip", "clip")],
)
def test_bad_generation_settings_are_one_line_errors(key, value, allowed):
    with pytest.raises(ConfigError, match=allowed):
        GenerationFigures(**{"n_samples": 40, "kid_subset_size": 20, key: value})


def test_unknown_sampler_name_is_refused():
    with pytest.raises(ConfigError, match="one of"):
        GenerationFigures(samplers=["flow"])


def test_each_model_gets_the_samplers_it_can_use_and_the_rest_is_one_line(caplog):
    gen = GenerationFigures(samplers=["prior", "gmm", "empirical_codes"])
    caplog.set_level(logging.INFO)
    ae = Autoencoder(latent_dim=3, net=SMALL)
    vae = VAE(latent_dim=3, net=SMALL)
    vq = VQVAE(net={"_target_": "aelab.nets.ConvNet"})
    assert set(gen.usable(ae)) == {"gmm"}
    assert set(gen.usable(vae)) == {"prior", "gmm"}
    assert set(gen.usable(vq)) == {"empirical_codes"}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 5  # AE: prior, empirical; VAE: empirical; VQ-VAE: prior, gmm
    assert (
        "gen/prior skipped for VQVAE: it has no sample(n, generator) (use empirical_codes)"
        in skipped
    )


def test_sampler_configs_and_instances_are_accepted():
    gen = GenerationFigures(
        samplers=[{"_target_": "aelab.samplers.GMMSampler", "n_components": 2}, GMMSampler(3)]
    )
    assert [s.n_components for s in gen.samplers] == [2, 3]


def test_inception_without_torch_fidelity_says_how_to_get_it(caplog, monkeypatch):
    import aelab.callbacks.generation_figures as module

    monkeypatch.setattr(module, "inception_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        gen = GenerationFigures(features="inception")
    assert gen.features == "digits"
    assert "pip install torch-fidelity" in caplog.text


@pytest.mark.slow
def test_suite_names_every_set_and_the_floor_is_closest(tmp_path):
    torch.manual_seed(0)
    train, test = _Split(*_two_classes(200, 0)), _Split(*_two_classes(120, 1))
    gen = {"samplers": ["prior", "gmm"], "n_samples": 40, "kid_subsets": 2,
           "kid_subset_size": 20, "feature_epochs": 1}  # fmt: skip
    suite = EvaluationSuite(generation=gen, probe_train_size=100)
    vae = VAE(latent_dim=3, net=SMALL).eval()  # untrained: its samples are noise
    metrics, draws = suite.generation_figures(vae, test, train, tmp_path)
    expected = {f"gen/{s}/{k}" for s in ("prior", "gmm", "recon", "floor") for k in SCORES}
    assert set(metrics) == expected | {"gen/feature_net_acc"}
    assert metrics["gen/feature_net_acc"] == 1.0  # two trivially separable classes
    # held-out real images of the same two classes sit closer than an untrained model's output
    for s in ("prior", "gmm", "recon"):
        assert metrics["gen/floor/fid"] < metrics[f"gen/{s}/fid"]
    assert set(draws) == {"prior", "gmm"} and draws["gmm"].shape == (64, 1, 28, 28)
    assert len(list((tmp_path / "cache" / "featurenet").glob("*.pt"))) == 1


def test_unlabelled_training_split_skips_the_figures_in_one_line(tmp_path, caplog):
    x, _ = _two_classes(60, 0)
    unlabelled = _Split(x, torch.full((60,), -1))
    suite = EvaluationSuite(generation={"n_samples": 10, "kid_subset_size": 5})
    with caplog.at_level(logging.INFO):
        out = suite.generation_figures(Autoencoder(latent_dim=3, net=SMALL), unlabelled,
                                       unlabelled, tmp_path)  # fmt: skip
    assert out == ({}, {})
    assert "no digit labels" in caplog.text


def test_model_zoo_table_has_fid_per_sampler_and_the_floor_as_its_own_row():
    from pathlib import Path

    from aelab.report.load import Job, jobs_frame
    from aelab.report.zoo import model_zoo_section

    def job(model, seed, **m):
        hp = {"model": model, "noise": "none", "seed": seed}
        return Job(f"{model}{seed}", Path("."), "completed", hparams=hp, metrics=m)

    floor = {"test/gen/floor/fid": 2.0, "test/gen/floor/precision": 0.9}
    jobs = [
        job("VAE", 0, **{"test/gen/prior/fid": 30.0, "test/gen/gmm/fid": 20.0}, **floor),
        job("VQVAE", 0, **{"test/gen/empirical_codes/fid": 90.0}, **floor),
        job("AE", 0, **{"test/gen/gmm/fid": 25.0, "test/gen/gmm/precision": 0.7},
            **{**floor, "test/gen/floor/fid": 4.0}),
    ]  # fmt: skip
    lines = model_zoo_section(jobs_frame(jobs))
    header = (
        "| model | n | gen/prior/fid | gen/gmm/fid | gen/empirical_codes/fid | gen/gmm/precision |"
    )
    assert header in lines
    assert "| AE | 1 | – | 25 | – | 0.7 |" in lines
    # the floor's FID (mean ± std of 2, 2, 4) in every FID column, its precision in precision's
    assert "| real data (floor) | 3 | 2.667 ± 1.2 | 2.667 ± 1.2 | 2.667 ± 1.2 | 0.9 ± 0 |" in lines


@pytest.mark.slow
@pytest.mark.mnist
def test_a_default_run_has_the_generation_figures(tmp_path, mnist_dir):
    """`aelab-train debug=smoke`, nothing else: its metrics.json holds FID, KID and
    precision/recall of each sampler the AE can use, of its reconstructions and the real-data
    floor (the feature network comes from the data folder's cache, trained there at most once)."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "aelab.train", "debug=smoke", f"paths.log_dir={tmp_path}"]
    cmd.append(f"paths.data_dir={mnist_dir}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("*/*_train")
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("gmm", "recon", "floor"):
        for figure in ("fid", "kid_mean", "kid_std", "precision", "recall"):
            assert math.isfinite(metrics[f"test/gen/{name}/{figure}"]), (name, figure)
    assert metrics["test/gen/floor/fid"] < metrics["test/gen/gmm/fid"]
