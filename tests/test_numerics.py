"""flush_denormal: denormal floats flushed to zero in every process that trains or evaluates,
and the figures of a run unchanged by it."""

import json
import math
import subprocess
import sys

import pytest
import torch

from aelab.checks import ConfigError
from aelab.numerics import SMALLEST_NORMAL_FLOAT32, denormals_flushed, set_flush_denormal


@pytest.fixture
def restore_mode():
    before = denormals_flushed()
    yield
    torch.set_flush_denormal(before)


def test_the_mode_is_measured_by_what_a_denormal_becomes(restore_mode):
    def denormal():  # made under the mode in force: flushing also zeroes a conversion
        return torch.tensor([SMALLEST_NORMAL_FLOAT32 / 8])

    assert set_flush_denormal(True) is True
    assert float(denormal() * 3.0) == 0.0  # flushed: the arithmetic sees zero
    assert denormals_flushed()
    assert set_flush_denormal(False) is False
    # kept: 3 x (2^-126 / 8) = 3 x 2^-129 is a denormal float32, exactly representable
    assert float(denormal() * 3.0) == 3 * 2.0**-129
    assert not denormals_flushed()


@pytest.mark.parametrize("value", [1, "yes", None])
def test_a_value_that_is_not_a_bool_is_one_line(value):
    with pytest.raises(ConfigError) as err:
        set_flush_denormal(value)
    assert str(err.value) == f"flush_denormal={value!r} is invalid: allowed true or false"


def _train(tmp_path, mnist_dir, name, *overrides):
    run_dir = tmp_path / name
    cmd = [sys.executable, "-m", "aelab.train", f"paths.data_dir={mnist_dir}"]
    cmd += [f"hydra.run.dir={run_dir}", "threads=1", *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.mnist
def test_a_run_records_the_mode_and_its_figures_do_not_move(tmp_path, mnist_dir):
    """600 Adam steps of the VAE (its state turns denormal after a few hundred), with and
    without flushing: run.json says which, and every figure of metrics.json agrees to 1e-4
    relative (flushing changes only values below 1.2e-38)."""
    short = ["model=vae", "trainer.max_epochs=1", "++trainer.limit_train_batches=600"]
    short += ["++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2"]
    short += ["eval.images=false"]
    runs = {
        flag: _train(tmp_path, mnist_dir, f"flush_{flag}", *short, f"flush_denormal={flag}")
        for flag in ("true", "false")
    }
    info = {flag: json.loads((d / "run.json").read_text()) for flag, d in runs.items()}
    assert info["true"]["flush_denormal"] is True
    assert info["false"]["flush_denormal"] is False
    with_, without = (json.loads((runs[f] / "metrics.json").read_text()) for f in ("true", "false"))
    assert with_["status"] == without["status"] == "completed"
    figures = [k for k, v in with_.items() if isinstance(v, float) and math.isfinite(v)]
    assert "test/neg_elbo" in figures and "val/loss" in figures
    for key in figures:
        assert with_[key] == pytest.approx(without[key], rel=1e-4, abs=1e-6), key
