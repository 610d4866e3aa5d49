"""The test-time suite: what it logs, where its images go, its configs, and aelab-eval
reproducing what training wrote (a subprocess run on a slice of real MNIST)."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from aelab import CONFIG_DIR
from aelab.callbacks.eval_suite import EvaluationSuite
from aelab.checks import ConfigError, build
from aelab.data.mnist import InMemoryImages, InMemorySplits, whole_batch
from aelab.models import VAE, Autoencoder
from aelab.models.base import EVAL_NOISE_SEED
from aelab.train import build_trainer

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [32]}
FAST = dict(iw_samples=20, iw_images=None, mi_images=None, probe_train_size=None, batch_size=64)
PROBE_KEYS = {"linear_probe_acc", "linear_probe_acc_pca", "knn_acc", "knn_acc_pca"}
VAE_KEYS = {"iw_nll", "iw_nll_bits_per_dim", "active_units", "mutual_info"}
IMAGES = {"interpolations", "traversals", "prior_samples", "manifold", "latent_scatter"}


class TinyData(InMemorySplits, pl.LightningDataModule):
    """Synthetic digits-like blobs behind the MNIST datamodule's seam (`splits`, `classes`)."""

    def __init__(self, classes: list[int] | None = None, binary: bool = False) -> None:
        super().__init__()
        (x, y), (tx, ty) = synthetic_images(300, seed=0), synthetic_images(200, seed=1)
        if binary:
            x, tx = (torch.where(v > 127, 255, 0).to(torch.uint8) for v in (x, tx))
        if classes is not None:
            keep = torch.isin(y, torch.tensor(classes))
            x, y = x[keep], y[keep]
        self.classes = classes
        self.splits = {"train": InMemoryImages(x, y), "test": InMemoryImages(tx, ty)}

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=64, collate_fn=whole_batch)


def run_test(model: pl.LightningModule, data: TinyData, root: Path, **suite) -> dict[str, float]:
    trainer = pl.Trainer(
        accelerator="cpu",
        default_root_dir=str(root),
        logger=TensorBoardLogger(str(root), name="tb", version=""),
        callbacks=[EvaluationSuite(**{**FAST, **suite})],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer.test(model, datamodule=data, verbose=False)[0]


def test_vae_figures_reach_the_test_results_images_and_tensorboard(tmp_path):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, net=SMALL)
    out = run_test(model, TinyData(), tmp_path)
    keys = {k.removeprefix("test/") for k in out}
    assert VAE_KEYS | PROBE_KEYS | {"kl_dim_0", "kl_dim_1", "ssim", "psnr"} <= keys
    assert "auroc" not in keys and "kl_dim_2" not in keys
    # the per-dimension KL is the rate split up (same test images, analytic in both)
    assert out["test/kl_dim_0"] + out["test/kl_dim_1"] == pytest.approx(out["test/kl"], rel=1e-4)
    # the IW bound on all test images lies under the (one-sample) negative ELBO
    assert out["test/iw_nll"] < out["test/neg_elbo"]
    assert out["test/iw_nll_bits_per_dim"] == pytest.approx(
        out["test/iw_nll"] / (784 * math.log(2)), rel=1e-5
    )
    assert -0.05 < out["test/mutual_info"] <= math.log(200) + 1e-6  # unclipped estimate
    assert out["test/active_units"] in (0.0, 1.0, 2.0)
    assert 0 < out["test/ssim"] < 1
    for name in IMAGES:
        assert (tmp_path / "images" / f"gen_{name}.png").stat().st_size > 0, name
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {f"generation/{name}" for name in IMAGES} <= set(events.Tags()["images"])
    assert "test/iw_nll" in events.Tags()["scalars"]


def analytic_kl(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension, mean over the images, written out."""
    with torch.no_grad():
        mu, logvar = model.encoder(x).chunk(2, dim=1)
    return (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean(0)


@pytest.mark.parametrize("noise", [None, {"_target_": "aelab.noise.GaussianNoise", "std": 0.3}])
def test_kl_parts_cover_the_images_the_rate_covers_under_a_test_limit(noise, tmp_path):
    torch.manual_seed(0)
    model = VAE(latent_dim=3, net=SMALL, noise=noise)
    data = TinyData()
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, limit_test_batches=2, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=[EvaluationSuite(**FAST, images=False)],
    )  # fmt: skip
    out = trainer.test(model, datamodule=data, verbose=False)[0]
    parts = [out[f"test/kl_dim_{j}"] for j in range(3)]
    assert sum(parts) == pytest.approx(out["test/kl"], rel=1e-5)
    if noise is None:  # clean inputs: the first two batches of 64, by hand
        x = data.splits["test"].images[:128].float() / 255
        expected = analytic_kl(model, x)
        assert parts == pytest.approx(expected.tolist(), rel=1e-5)
        assert out["test/kl"] == pytest.approx(float(expected.sum()), rel=1e-5)
        every = float(analytic_kl(model, data.splits["test"].images.float() / 255).sum())
        # all 200 images give another rate (by 0.2% here), far outside the tolerance above
        assert every != pytest.approx(out["test/kl"], rel=1e-3)


def psnr_by_hand(output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    mse = (output - clean).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def test_psnr_and_ssim_have_one_name_in_every_run(tmp_path):
    """`psnr`/`ssim` are the output against the clean image with or without noise; a noise
    run adds its input's figures beside them (so a noise sweep's jobs share their columns)."""
    data = TinyData()
    x = data.splits["test"].images.float() / 255
    keys = {}
    for noise in (None, {"_target_": "aelab.noise.GaussianNoise", "std": 0.3}):
        torch.manual_seed(0)
        model = Autoencoder(latent_dim=3, net=SMALL, noise=noise)
        trainer = pl.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(tmp_path),
        )  # fmt: skip
        out = trainer.test(model, datamodule=data, verbose=False)[0]
        keys[noise is None] = set(out)
        # the test loop's inputs: batches of 64, each corrupted with its own seeded generator
        inputs = [
            model.noise(b, torch.Generator().manual_seed(EVAL_NOISE_SEED + i))
            for i, b in enumerate(x.split(64))
        ]
        with torch.no_grad():
            output = torch.cat([model.reconstruct(b) for b in inputs])
        assert out["test/psnr"] == pytest.approx(float(psnr_by_hand(output, x).mean()), rel=1e-5)
        if noise is not None:
            noisy = psnr_by_hand(torch.cat(inputs), x).mean()
            assert out["test/psnr_noisy_input"] == pytest.approx(float(noisy), rel=1e-5)
    assert keys[False] - keys[True] == {
        "test/psnr_noisy_input", "test/ssim_noisy_input", "test/psnr_gain_db"}  # fmt: skip
    assert keys[True] < keys[False] and not any("denoised" in k for k in keys[False])


def test_figures_that_cannot_be_computed_are_skipped_with_one_line_each(caplog):
    torch.manual_seed(0)
    data = TinyData()
    test, train = data.splits["test"], data.splits["train"]
    few = InMemoryImages(train.images[:40], train.labels[:40])

    def run(model, train_split, **settings):
        caplog.clear()
        suite = EvaluationSuite(**{**FAST, **settings}, images=False)
        with caplog.at_level(logging.INFO, logger="aelab.metrics"):
            metrics = suite.evaluate(model, test, train_split)[0]
        # the probes' own lines (the suite's, on what an AE has no use for, are tested below)
        lines = [r.getMessage() for r in caplog.records if r.name == "aelab.metrics.probes"]
        return metrics, [line for line in lines if "skipped" in line]

    # a code wider than the 784 pixels: PCA cannot give as many components
    wide = Autoencoder(latent_dim=800, net=SMALL)
    metrics, lines = run(wide, train)
    assert {"linear_probe_acc", "knn_acc"} <= set(metrics) and not {
        "linear_probe_acc_pca", "knn_acc_pca"} & set(metrics)  # fmt: skip
    assert len(lines) == 1 and "model.latent_dim=800" in lines[0] and "784 pixels" in lines[0]
    # wider than the probes' 40 training images; k-NN over more neighbours than images
    model = Autoencoder(latent_dim=50, net=SMALL)
    metrics, lines = run(model, few, knn_k=41)
    assert set(metrics) & PROBE_KEYS == {"linear_probe_acc"}
    assert len(lines) == 2 and "eval.knn_k=41 exceeds the 40 training images" in lines[0]
    # what is left is what a run without the impossible setting measures
    possible, lines = run(model, few, knn_k=40)
    assert possible.keys() & PROBE_KEYS == {"linear_probe_acc", "knn_acc"} and len(lines) == 1
    assert metrics["linear_probe_acc"] == possible["linear_probe_acc"]
    assert run(model, train)[0].keys() >= PROBE_KEYS  # 300 images: every probe figure


def test_one_line_says_which_figures_a_run_of_this_kind_does_not_get(caplog):
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=3, net=SMALL)
    suite = EvaluationSuite(**FAST)
    one = TinyData(classes=[3])
    every = list(range(10))
    with caplog.at_level(logging.INFO, logger="aelab.callbacks.eval_suite"):
        metrics, images = suite.evaluate(model, one.splits["test"], one.splits["train"], every)
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "auroc" not in metrics and not set(metrics) & PROBE_KEYS
    assert "manifold" not in images and "prior_samples" not in images
    assert not set(metrics) & VAE_KEYS
    assert len(lines) == 5
    assert lines[0] == (
        "likelihood figures (iw_nll, active_units, mutual_info) skipped: Autoencoder has no "
        "posterior(x)"
    )
    assert lines[1].startswith("probes skipped: the training split holds one class")
    assert lines[2].startswith("auroc skipped: data.classes=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")
    assert lines[3] == "prior_samples figure skipped: Autoencoder has no sample(n, generator)"
    assert lines[4].startswith("manifold and latent_scatter figures skipped")
    assert "model.latent_dim=2 (it is 3)" in lines[4]


def test_a_budget_over_the_split_uses_all_of_it_and_says_so(caplog):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, net=SMALL)
    test = TinyData().splits["test"]
    every = EvaluationSuite(**FAST, images=False).evaluate(model, test)[0]
    suite = EvaluationSuite(**{**FAST, "iw_images": 10**6}, images=False)
    with caplog.at_level(logging.INFO, logger="aelab.callbacks.eval_suite"):
        clipped = suite.evaluate(model, test)[0]
    assert clipped["iw_nll"] == every["iw_nll"]
    messages = [r.getMessage() for r in caplog.records]
    assert "eval.iw_images=1000000 exceeds the 200 images there are: all are used" in messages


def test_one_class_run_scores_auroc_and_skips_probes(tmp_path):
    torch.manual_seed(0)
    out = run_test(Autoencoder(latent_dim=3, net=SMALL), TinyData(classes=[3]), tmp_path)
    keys = {k.removeprefix("test/") for k in out}
    assert "auroc" in keys and 0.0 <= out["test/auroc"] <= 1.0
    assert not keys & (PROBE_KEYS | VAE_KEYS)
    images = {p.name for p in (tmp_path / "images").glob("gen_*.png")}
    assert images == {"gen_interpolations.png", "gen_traversals.png"}  # no prior, 3-d code


def test_probes_see_the_labels_of_the_images_they_encode():
    """Even random features separate the blobs; with the training labels shuffled the same
    probes must fall to chance (so codes and labels are paired correctly)."""
    torch.manual_seed(0)
    model = Autoencoder(latent_dim=4, net=SMALL)
    data = TinyData()
    suite = EvaluationSuite(**FAST, images=False)
    metrics = suite.evaluate(model, data.splits["test"], data.splits["train"])[0]
    assert metrics["linear_probe_acc"] > 0.9 and metrics["knn_acc"] > 0.9
    train = data.splits["train"]
    shuffled = InMemoryImages(train.images, train.labels[torch.randperm(len(train))])
    metrics = suite.evaluate(model, data.splits["test"], shuffled)[0]
    assert metrics["linear_probe_acc"] < 0.35 and metrics["knn_acc"] < 0.35


def test_autoencoder_trained_on_one_blob_detects_the_others():
    data = TinyData(classes=[0])
    pl.seed_everything(0)
    model = Autoencoder(
        latent_dim=4, net=SMALL, optimizer={"_target_": "torch.optim.Adam", "lr": 3e-3}
    )
    loader = DataLoader(data.splits["train"], batch_size=32, shuffle=True, collate_fn=whole_batch)
    suite = EvaluationSuite(**FAST, images=False)
    before = suite.evaluate(model, data.splits["test"], data.splits["train"], [0])[0]["auroc"]
    pl.Trainer(
        max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    ).fit(model, loader)  # fmt: skip
    after = suite.evaluate(model, data.splits["test"], data.splits["train"], [0])[0]["auroc"]
    assert before < 0.8 and after > 0.95, (before, after)


def test_grey_levels_are_flagged_and_binary_data_is_not(caplog):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, net=SMALL)
    suite = EvaluationSuite(**FAST, images=False)
    for binary, flag in ((False, 0.0), (True, 1.0)):
        data = TinyData(binary=binary)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aelab.callbacks.eval_suite"):
            metrics, _ = suite.evaluate(model, data.splits["test"], data.splits["train"])
        assert metrics["likelihood_on_binarized"] == flag
        warned = any("grey levels" in r.getMessage() for r in caplog.records)
        assert warned == (not binary)


def test_figures_are_reproducible_and_depend_on_the_seed():
    torch.manual_seed(0)
    model = VAE(latent_dim=3, net=SMALL)
    data = TinyData()
    split = data.splits["train"]
    split.dynamic_binarize = True  # the probes' training images get one fixed draw

    def metrics(seed: int) -> dict[str, float]:
        suite = EvaluationSuite(**{**FAST, "iw_images": 50, "probe_train_size": 100}, seed=seed)
        return suite.evaluate(model, data.splits["test"], split)[0]

    first, again, other = metrics(0), metrics(0), metrics(1)
    assert first == again
    assert first["iw_nll"] != other["iw_nll"] and first["mutual_info"] != other["mutual_info"]


def test_mse_vae_is_warned_about(caplog):
    model = VAE(latent_dim=2, net=SMALL, recon_loss="mse")
    data = TinyData(binary=True)
    with caplog.at_level(logging.WARNING, logger="aelab.callbacks.eval_suite"):
        EvaluationSuite(**FAST, images=False).evaluate(model, data.splits["test"])
    assert any("recon_loss=mse" in r.getMessage() for r in caplog.records)


# --- configs --------------------------------------------------------------------------------


def test_anomaly_experiment_sweeps_the_ten_digits():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=anomaly"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"  # `aelab-train experiment=anomaly`, no -m needed
    sweep = cfg.hydra.sweeper.params["data.classes"]
    [override] = OverridesParser.create().parse_overrides([f"data.classes={sweep}"])
    assert list(override.sweep_iterator()) == [[c] for c in range(10)]


def test_eval_group_in_both_entry_points(make_cfg):
    train = make_cfg("model=vae", "eval.iw_samples=7")
    trainer = build_trainer(train, accelerator="cpu")
    [suite] = [c for c in trainer.callbacks if isinstance(c, EvaluationSuite)]
    assert suite.iw_samples == 7 and suite.knn_k == 5
    evaluation = make_cfg(
        "ckpt_path=x.ckpt", "eval.iw_samples=5000", "eval.iw_images=null", name="eval"
    )
    suite = build(evaluation.eval, "eval")
    assert suite.iw_samples == 5000 and suite.iw_images is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("eval.iw_samples=0", "iw_samples"),
        ("eval.knn_k=-1", "knn_k"),
        ("eval.mi_images=0", "mi_images"),
        ("eval.iw_images=0", "iw_images"),
        ("eval.elbo_samples=0", "elbo_samples"),
        ("eval.probe_train_size=1", "probe_train_size"),
        ("eval.batch_size=0", "batch_size"),
        ("eval.active_threshold=-1", "active_threshold"),
    ],
)
def test_bad_eval_values_are_named(override, field, make_cfg):
    with pytest.raises(ConfigError, match=rf"^eval\.{field}=.* is invalid"):
        build(make_cfg("ckpt_path=x.ckpt", override, name="eval").eval, "eval")


def test_knn_over_more_images_than_the_probes_get_is_refused_before_training(make_cfg):
    cfg = make_cfg("ckpt_path=x.ckpt", "eval.probe_train_size=10", "eval.knn_k=11", name="eval")
    with pytest.raises(ConfigError, match=r"^eval\.knn_k=11 is invalid: allowed an integer in"):
        build(cfg.eval, "eval")
    assert build(make_cfg("eval.probe_train_size=10", "eval.knn_k=10").eval, "eval").knn_k == 10


# --- the entry points on real MNIST ---------------------------------------------------------

EVAL_ARGS = [
    "eval.iw_samples=10",
    "eval.iw_images=200",
    "eval.mi_images=500",
    "eval.probe_train_size=2000",
]


def cli(module: str, *overrides: str, log_dir: Path, data_dir: Path) -> str:
    cmd = [sys.executable, "-m", module, f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}"]
    done = subprocess.run([*cmd, *overrides], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def run_dir(log_dir: Path, task: str) -> Path:
    [found] = list((log_dir / "runs").glob(f"*/*_{task}"))
    return found


@pytest.mark.slow
@pytest.mark.mnist
def test_noisy_binarized_vae_writes_every_figure_and_eval_reproduces_them(tmp_path, mnist_dir):
    cli(
        "aelab.train",
        "model=vae",
        "model.latent_dim=2",
        "noise=gaussian",
        "data.binarize=dynamic",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=40",
        "trainer.limit_val_batches=1",
        *EVAL_ARGS,
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    trained = run_dir(tmp_path, "train")
    metrics = json.loads((trained / "metrics.json").read_text())
    expected = {
        "ssim", "ssim_noisy_input", "psnr", "psnr_noisy_input", "psnr_gain_db",
        "iw_nll", "iw_nll_bits_per_dim", "active_units", "mutual_info", "kl_dim_0", "kl_dim_1",
        "linear_probe_acc", "linear_probe_acc_pca", "knn_acc", "knn_acc_pca",
        "likelihood_on_binarized",
    }  # fmt: skip
    missing = {k for k in expected if not isinstance(metrics.get(f"test/{k}"), float)}
    assert not missing, missing
    assert metrics["test/likelihood_on_binarized"] == 1.0
    assert metrics["test/psnr_gain_db"] == pytest.approx(
        metrics["test/psnr"] - metrics["test/psnr_noisy_input"], abs=1e-4
    )
    assert metrics["test/knn_acc_pca"] > 0.3  # 2 PCA dimensions: ~0.43, well above chance
    for name in IMAGES:
        assert (trained / "images" / f"gen_{name}.png").is_file(), name

    cli(
        "aelab.eval",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        *EVAL_ARGS,
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    evaluated = run_dir(tmp_path, "eval")
    again = json.loads((evaluated / "metrics.json").read_text())
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert set(tested) <= set(again)
    for key, value in tested.items():
        assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name in IMAGES:
        assert (evaluated / "images" / f"gen_{name}.png").is_file(), name


@pytest.mark.slow
@pytest.mark.mnist
def test_one_digit_autoencoder_detects_the_others(tmp_path, mnist_dir):
    out = cli(
        "aelab.train",
        "data.classes=[1]",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=1",
        "eval.images=false",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    metrics = json.loads((run_dir(tmp_path, "train") / "metrics.json").read_text())
    # ones are the easiest digit to reconstruct: others score higher error almost always
    assert metrics["test/auroc"] > 0.9, out[-2000:]
    assert isinstance(metrics["test/ssim"], float) and "test/linear_probe_acc" not in metrics
    assert metrics["test/likelihood_on_binarized"] == 0.0


# --- a test that fails after training -------------------------------------------------------

QUICK = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.accelerator=cpu",
    "logger=none",
    "eval.images=false",
]
BREAK_THE_SUITE = (
    "import sys\n"
    "from aelab.callbacks.eval_suite import EvaluationSuite\n"
    "def broken(*args): raise ValueError('no figure today')\n"
    "EvaluationSuite.evaluate = broken\n"
    "from aelab.train import main\n"
    "sys.argv = ['aelab-train', *sys.argv[1:]]\n"
    "main()\n"
)


@pytest.mark.mnist
def test_an_error_while_testing_still_writes_metrics_the_report_reads_as_failed(
    make_cfg, tmp_path, monkeypatch
):
    from aelab.report import load_job
    from aelab.train import TestFailedError, train

    def broken(*args):
        raise ValueError("no figure today")

    monkeypatch.setattr(EvaluationSuite, "evaluate", broken)
    with pytest.raises(TestFailedError) as info:
        train(make_cfg(*QUICK))
    written = json.loads((tmp_path / "metrics.json").read_text())
    error = "testing failed after training: ValueError: no figure today"
    assert str(info.value) == error
    assert written["status"] == "failed" and written["error"] == error
    assert isinstance(written["val/loss"], float) and not any(
        k.startswith("test/") for k in written
    )
    (tmp_path / ".hydra").mkdir()  # a job folder as a sweep leaves it, for the report
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(make_cfg(*QUICK)))
    job = load_job(tmp_path)
    assert (job.status, job.error) == ("failed", error)
    assert job.metrics["val/loss"] == written["val/loss"]


@pytest.mark.slow
@pytest.mark.mnist
def test_an_error_while_testing_is_one_line_status_1_and_a_sweep_goes_on(tmp_path, mnist_dir):
    def run(*overrides: str) -> subprocess.CompletedProcess:
        args = [*overrides, f"paths.log_dir={tmp_path}", f"paths.data_dir={mnist_dir}", *QUICK]
        return subprocess.run(
            [sys.executable, "-c", BREAK_THE_SUITE, *args],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    done = run()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "aelab-train: error: testing failed after training: ValueError: no figure today "
        "(metrics.json records it)"
    )
    assert json.loads((run_dir(tmp_path, "train") / "metrics.json").read_text())["status"] == (
        "failed"
    )
    done = run("-m", "model.latent_dim=2,3", "threads=1")
    # both jobs run (the first failing does not stop the second), then the sweep exits 1
    assert done.returncode == 1, done.stderr[-2000:]
    assert "aelab-train: error: 2 of 2 jobs did not complete" in done.stderr.splitlines()[-1]
    jobs = sorted((tmp_path / "multiruns").glob("*/*/*/metrics.json"))
    assert [json.loads(j.read_text())["status"] for j in jobs] == ["failed", "failed"]


@pytest.mark.mnist
def test_eval_takes_the_run_time_keys_of_train(make_cfg, tmp_path):
    """A training command's tail (threads, seed, trainer.*, data.*, logger) carries over."""
    from conftest import compose_cfg

    from aelab.eval import evaluate
    from aelab.train import train

    tail = [
        *QUICK, "threads=1", "seed=3", "trainer.devices=1", "trainer.deterministic=true",
        "data.num_workers=0", "data.batch_size=64", "logger=csv", "eval.probe_train_size=200",
        "eval.iw_images=10",
    ]  # fmt: skip
    train(make_cfg(*tail, "test=false"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = compose_cfg([f"ckpt_path={ckpt}", *tail], tmp_path / "eval", "eval")
        metrics = evaluate(cfg)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["status"] == "completed" and written["test/loss"] == metrics["test/loss"]
    assert (tmp_path / "eval" / "csv" / "metrics.csv").is_file()
    assert not (tmp_path / "eval" / "tb").exists()


def test_each_random_stream_is_seeded_by_name_from_eval_seed():
    """The suite's subsets are `randperm` under `derive_seed(eval.seed, stream)`, a stream per
    use; and its binarized draw at the default `eval.seed=0` is the one a datamodule takes
    when given no seed (`FIXED_DRAW_SEED`)."""
    from aelab.callbacks.eval_suite import Stream
    from aelab.data.mnist import FIXED_DRAW_SEED
    from aelab.data.resumable import derive_seed

    suite = EvaluationSuite(seed=3)
    for stream in (Stream.IW, Stream.MI, Stream.TC, Stream.IMAGES, Stream.TEST_SUBSET):
        g = torch.Generator().manual_seed(derive_seed(3, int(stream)))
        expected = torch.randperm(500, generator=g)[:40]
        assert torch.equal(suite._subset(500, 40, stream), expected), stream.name
    subsets = {tuple(suite._subset(500, 40, s).tolist()) for s in Stream}
    assert len(subsets) == len(Stream)  # no two streams draw alike
    assert EvaluationSuite(seed=0)._seed(Stream.BINARIZED_DRAW) == FIXED_DRAW_SEED
