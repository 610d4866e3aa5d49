"""The `debug` config group: each preset is the run it says it is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aelab.train import build_model, build_trainer

README_SMOKE = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=20",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "threads=1",
]


def test_debug_smoke_is_the_four_override_smoke_run(make_cfg):
    """`debug=smoke` composes to the very config the spelled-out smoke command gives."""
    spelled = OmegaConf.to_container(make_cfg(*README_SMOKE), resolve=True)
    preset = OmegaConf.to_container(make_cfg("debug=smoke"), resolve=True)
    assert preset == spelled


@pytest.mark.parametrize("option", ["smoke", "overfit", "profile"])
def test_every_debug_option_builds_a_model_and_trainer(option, make_cfg):
    cfg = make_cfg(f"debug={option}", "model=vae")  # a later group does not undo the preset
    build_model(cfg)
    trainer = build_trainer(cfg, accelerator="cpu")
    expected = {"smoke": (20, 1), "overfit": (4, 150), "profile": (200, 1)}[option]
    assert (trainer.limit_train_batches, trainer.max_epochs) == expected
    if option == "overfit":
        assert trainer.overfit_batches == 4
    if option == "profile":
        assert type(trainer.profiler).__name__ == "SimpleProfiler"


def test_the_command_line_wins_over_a_debug_preset(make_cfg):
    assert make_cfg("debug=overfit", "trainer.max_epochs=3").trainer.max_epochs == 3


def test_a_debug_preset_is_left_out_of_job_names(make_cfg):
    from hydra import compose, initialize_config_dir

    from aelab import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert "debug" in cfg.hydra.job.config.override_dirname.exclude_keys


@pytest.mark.slow
@pytest.mark.mnist
def test_debug_overfit_drives_the_training_loss_down_on_the_same_batches(tmp_path, mnist_dir):
    """Four fixed batches, 40 epochs: the AE's squared error falls to a small fraction of its
    first epoch's, and every epoch sees the same images (Lightning turns shuffling off)."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aelab.train",
            "debug=overfit",
            "trainer.max_epochs=40",
            "threads=1",
            "logger=csv",
            f"paths.data_dir={mnist_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd

    frame = pd.read_csv(Path(run_dir) / "csv" / "metrics.csv")
    train = frame.dropna(subset=["train/loss"])["train/loss"].to_numpy()
    assert len(train) == 40
    assert train[-1] < 0.35 * train[0], train
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
