"""The entry points as a user runs them: subprocesses on a small slice of real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.mnist]


def run(module: str, *overrides: str, log_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        module,
        f"paths.log_dir={log_dir}",
        f"paths.data_dir={data_dir}",
        *overrides,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def only_run_dir(log_dir: Path, task: str) -> Path:
    dirs = list((log_dir / "runs").glob(f"*/*_{task}"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_train_then_eval_a_noisy_vae(tmp_path, mnist_dir):
    done = run(
        "aelab.train",
        "model=vae",
        "model.latent_dim=4",
        "model.beta=2",
        "noise=gaussian",
        "noise.std=0.3",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=30",
        "trainer.limit_val_batches=2",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    run_dir = only_run_dir(tmp_path, "train")
    assert f"run directory:  {run_dir}" in done.stdout
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.ckpt",
        "checkpoints/epoch000.ckpt",
        "run.json",
        "images/test_reconstructions.png",
        "images/test_samples.png",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    for key in (
        "test/loss",
        "test/recon_mse",
        "test/recon_bce",
        "test/kl",
        "test/neg_elbo",
        "test/psnr_noisy_input",
        "test/psnr",
        "test/ssim",
        "val/loss",
    ):
        assert isinstance(metrics[key], float), key
    assert abs(metrics["test/loss"] - (metrics["test/recon"] + 2 * metrics["test/kl"])) < 1e-3

    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["aelab"]["config"]["model"]["latent_dim"] == 4

    run(
        "aelab.eval",
        f"ckpt_path={run_dir / 'checkpoints/last.ckpt'}",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    again = json.loads((only_run_dir(tmp_path, "eval") / "metrics.json").read_text())
    # both processes flushed denormal floats (flush_denormal, on by default), measured
    assert json.loads((run_dir / "run.json").read_text())["flush_denormal"] is True
    assert json.loads((only_run_dir(tmp_path, "eval") / "run.json").read_text())["flush_denormal"]
    for key, value in metrics.items():
        if key.startswith("test/"):
            assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_dae_learns_to_denoise_on_a_slice(tmp_path, mnist_dir):
    run(
        "aelab.train",
        "model=dae",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=400",
        "trainer.limit_val_batches=1",
        "logger=csv",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    run_dir = only_run_dir(tmp_path, "train")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # pixels average ~0.1 with ~0.1 variance; a code that learnt nothing scores MSE ~ 0.1
    assert metrics["test/recon_mse"] < 0.06
    assert metrics["test/psnr"] > metrics["test/psnr_noisy_input"] + 1.0
    assert (run_dir / "csv" / "metrics.csv").is_file()


def test_a_run_ended_by_max_steps_validates_and_tests_its_final_weights(tmp_path, mnist_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(
        "aelab.train",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=-1",  # no epoch limit: 30 steps end the run, half-way into epoch 1
        "trainer.max_steps=30",
        "trainer.limit_train_batches=20",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "~callbacks.evaluation",
        log_dir=tmp_path,
        data_dir=mnist_dir,
    )
    run_dir = only_run_dir(tmp_path, "train")
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    val = {e.step + 1: e.value for e in events.Scalars("val/loss")}  # logged at step - 1
    assert sorted(val) == [20, 30]  # the end of epoch 0, and the last step
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/loss"] == pytest.approx(val[30], rel=1e-6)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 30
    best_step = min(val, key=val.__getitem__)  # the test scores the better of the two
    (best,) = [p for p in (run_dir / "checkpoints").glob("epoch*.ckpt")]
    assert torch.load(best, weights_only=True)["global_step"] == best_step
    assert best.name == f"epoch00{(best_step - 1) // 20}.ckpt"


def test_an_error_in_a_users_model_leaves_a_failed_metrics_json(tmp_path, mnist_dir):
    """A single run whose own model code raises: the traceback (the user's to read), exit 1, and
    metrics.json `failed` with the error, as a sweep's job gets."""
    (tmp_path / "my_broken_loss.py").write_text(
        "from aelab.models import Autoencoder\n\n"
        "class Broken(Autoencoder):\n"
        "    def loss(self, x_in, target, generator=None):\n"
        "        raise RuntimeError('my loss is not written yet')\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "aelab.train",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.data_dir={mnist_dir}",
        "model._target_=my_broken_loss.Broken",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=1",
        "threads=1",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1 and "my loss is not written yet" in done.stderr
    run_dir = only_run_dir(tmp_path / "logs", "train")
    assert json.loads((run_dir / "metrics.json").read_text()) == {
        "status": "failed",
        "error": "RuntimeError: my loss is not written yet",
    }
