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
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from aelab import CONFIG_DIR
from aelab.checks import ConfigError, build
from aelab.data.mnist import InMemoryImages, whole_batch
from aelab.metrics.suite import EvaluationSuite
from aelab.models import VAE, Autoencoder
from aelab.train import build_trainer

SMALL = {"_target_": "aelab.nets.MLPNet", "hidden": [32]}
FAST = dict(iw_samples=20, iw_images=None, mi_images=None, probe_train_size=None, batch_size=64)
PROBE_KEYS = {"linear_probe_acc", "linear_probe_acc_pca", "knn_acc", "knn_acc_pca"}
VAE_KEYS = {"iw_nll", "iw_nll_bits_per_dim", "active_units", "mutual_info"}
IMAGES = {"interpolations", "traversals", "prior_samples", "manifold", "latent_scatter"}


class TinyData(pl.LightningDataModule):
    """Synthetic digits-like blobs in the MNIST datamodule's shape (`splits`, `classes`)."""

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
    # the per-dimension KL is the rate split up (same clean test images, analytic in both)
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
        with caplog.at_level(logging.WARNING, logger="aelab.metrics.suite"):
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
    with caplog.at_level(logging.WARNING, logger="aelab.metrics.suite"):
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
    ],
)
def test_bad_eval_values_are_named(override, field, make_cfg):
    with pytest.raises(ConfigError, match=rf"^eval\.{field}=.* is invalid"):
        build(make_cfg("ckpt_path=x.ckpt", override, name="eval").eval, "eval")


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
        "ssim_denoised", "ssim_noisy_input", "psnr_denoised", "psnr_noisy_input", "psnr_gain_db",
        "iw_nll", "iw_nll_bits_per_dim", "active_units", "mutual_info", "kl_dim_0", "kl_dim_1",
        "linear_probe_acc", "linear_probe_acc_pca", "knn_acc", "knn_acc_pca",
        "likelihood_on_binarized",
    }  # fmt: skip
    missing = {k for k in expected if not isinstance(metrics.get(f"test/{k}"), float)}
    assert not missing, missing
    assert metrics["test/likelihood_on_binarized"] == 1.0
    assert metrics["test/psnr_gain_db"] == pytest.approx(
        metrics["test/psnr_denoised"] - metrics["test/psnr_noisy_input"], abs=1e-4
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
