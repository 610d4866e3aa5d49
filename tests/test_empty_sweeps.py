"""A sweep that would run no job is one line, exit status 2, and leaves no folder (Optuna's
`n_trials=0` and joblib's `n_jobs=0` used to end in tracebacks, `range(5,2)` in exit 0 and an
empty sweep folder)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            ["hparams_search=vae_optuna", "hydra.sweeper.n_trials=0"],
            "hydra.sweeper.n_trials=0 is invalid: allowed an integer >= 1",
        ),
        (
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "model=ae,vae"],
            "hydra.launcher.n_jobs=0 is invalid: allowed a non-zero integer (-1: one job per core)",
        ),
        (
            ["model.latent_dim=range(5,2)"],
            "model.latent_dim='range(5,2)' is invalid: allowed sweep values that make at least "
            "one job (these make none)",
        ),
    ],
)
def test_a_sweep_of_no_job_is_one_line_and_leaves_nothing(tmp_path, overrides, line):
    cmd = [sys.executable, "-m", "aelab.train", "-m", "debug=smoke", *overrides]
    done = subprocess.run(
        [*cmd, f"paths.log_dir={tmp_path / 'logs'}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [f"aelab-train: error: {line}"]
    assert not (tmp_path / "logs").exists()
