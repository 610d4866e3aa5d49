"""flush_denormal: denormal floats flushed to zero in every process that trains or evaluates,
and the figures of a run unchanged by it."""

import json
import math
import subprocess
import sys

import pytest
import torch

from aelab import numerics
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


# --- threads ------------------------------------------------------------------------------------


@pytest.fixture
def machine(monkeypatch):
    """A machine of `cores` cores at a load average; no SLURM, no OMP_NUM_THREADS."""
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)

    def set_machine(cores: int, load: float) -> None:
        monkeypatch.setattr(numerics, "usable_cores", lambda: cores)
        monkeypatch.setattr(numerics.os, "getloadavg", lambda: (load, load, load))

    return set_machine


@pytest.mark.parametrize(
    "cores, load, expected",
    [
        (2, 0.0, 2),  # idle: every core
        (2, 0.6, 1),  # 1.4 cores free
        (2, 2.5, 1),  # the loaded case: one thread, never none
        (16, 5.2, 11),
        (4, 0.0, 4),
    ],
)
def test_auto_threads_are_the_free_cores(machine, cores, load, expected):
    machine(cores, load)
    assert numerics.auto_threads()[0] == expected


def test_auto_threads_follow_slurm_and_a_parallel_sweeps_share(machine, monkeypatch):
    machine(16, 0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # joblib's worker of a 4-job sweep on 16 cores
    assert numerics.auto_threads() == (4, "OMP_NUM_THREADS=4")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")  # what the job was given, whatever the load
    assert numerics.auto_threads() == (6, "SLURM_CPUS_PER_TASK")


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "two", "Auto"])
def test_a_bad_thread_count_is_one_line(value):
    with pytest.raises(ConfigError) as err:
        numerics.set_threads(value)
    assert str(err.value).startswith("threads=") and "an integer >= 1, auto" in str(err.value)
    assert "\n" not in str(err.value)


def test_set_threads_sets_torchs_count(machine):
    before = torch.get_num_threads()
    machine(3, 1.0)
    try:
        assert numerics.set_threads("auto") == 2 == torch.get_num_threads()
        assert numerics.set_threads(1) == 1 == torch.get_num_threads()
        assert numerics.set_threads(None) == 1  # torch's count, left as it is
    finally:
        torch.set_num_threads(before)
