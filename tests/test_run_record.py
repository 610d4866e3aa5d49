"""run.json: the code's git state, the command line and the resumes of a run (unit tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from aelab import CONFIG_DIR
from aelab.run.record import ARGV_ENV, RecordCommandLine, _git_state, run_info
from aelab.train import record_run

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def clean_clone(tmp_path):
    """A committed tree holding the project's .gitignore and one source file."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "clone"
    (root / "src").mkdir(parents=True)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    (root / "src" / "mod.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


def test_git_state_of_a_clean_clone_after_pip_wheel_is_clean(clean_clone):
    # what `pip wheel .` leaves in the tree (checked with setuptools): build/ and the wheel;
    # `python -m build` writes dist/
    (clean_clone / "build" / "lib" / "aelab").mkdir(parents=True)
    (clean_clone / "build" / "lib" / "aelab" / "__init__.py").write_text("")
    (clean_clone / "aelab-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    (clean_clone / "dist").mkdir()
    (clean_clone / "dist" / "aelab-0.1.0.tar.gz").write_bytes(b"")
    state = _git_state(clean_clone)
    assert state == {"commit": git(clean_clone, "rev-parse", "HEAD"), "dirty": False}


def test_an_untracked_file_is_listed_apart_and_a_changed_tracked_file_is_dirty(clean_clone):
    commit = git(clean_clone, "rev-parse", "HEAD")
    (clean_clone / "src" / "new.py").write_text("y = 2\n")
    (clean_clone / "notes").mkdir()
    (clean_clone / "notes" / "a.txt").write_text("")
    state = _git_state(clean_clone)
    assert state == {"commit": commit, "dirty": False, "untracked": ["notes/", "src/new.py"]}
    (clean_clone / "src" / "mod.py").write_text("x = 2\n")
    assert _git_state(clean_clone)["dirty"] is True
    git(clean_clone, "checkout", "--", "src/mod.py")
    (clean_clone / "src" / "mod.py").unlink()  # a deleted tracked file: dirty too
    assert _git_state(clean_clone)["dirty"] is True


def test_what_the_docs_commands_leave_keeps_the_tree_clean(clean_clone):
    """docs/how-to/own-model.md's `pip install ./examples/aelab_examples` (setuptools' build/ and
    egg-info), and an Optuna study's database, in the current folder or under outputs/."""
    example = clean_clone / "examples" / "aelab_examples"
    (example / "build" / "lib").mkdir(parents=True)
    (example / "aelab_examples.egg-info").mkdir()
    (clean_clone / "optuna.db").write_bytes(b"")
    (clean_clone / "outputs").mkdir()
    (clean_clone / "outputs" / "optuna.db").write_bytes(b"")
    assert _git_state(clean_clone) == {
        "commit": git(clean_clone, "rev-parse", "HEAD"),
        "dirty": False,
    }


def test_git_state_outside_a_git_tree_is_unknown(tmp_path):
    assert _git_state(tmp_path) == {"commit": None, "dirty": None}


# --- the command line, and the resumes of a run restarted by SLURM ---------------------------

SWEEP = ["/venv/bin/aelab-train", "-m", "hydra/launcher=slurm", "model.latent_dim=2,8"]
SUBMITIT = ["/venv/bin/python", "-u", "-m", "submitit.core._submit", "/sweep/.submitit/%j"]


@pytest.fixture
def hydra_mode():
    """Sets HydraConfig as Hydra does for a job of a single run or of a sweep."""

    def set_mode(mode: RunMode) -> None:
        cfg = compose_cfg_with_hydra(mode)
        HydraConfig.instance().set_config(cfg)

    yield set_mode
    HydraConfig.instance().cfg = None


def compose_cfg_with_hydra(mode: RunMode):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = mode
    return cfg


@pytest.fixture
def no_slurm(monkeypatch):
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", ARGV_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def slurm_job(monkeypatch, no_slurm):
    """The environment of task 1 of SLURM array job 41, as submitit starts it."""
    env = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "submitit", "SLURM_JOB_ID": "42"}
    env |= {"SLURM_ARRAY_JOB_ID": "41", "SLURM_ARRAY_TASK_ID": "1"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "argv", SUBMITIT)


def test_a_sweep_job_records_the_users_command_not_its_launchers(monkeypatch, no_slurm, hydra_mode):
    monkeypatch.setattr(sys, "argv", SWEEP)
    RecordCommandLine().on_multirun_start(config=None)  # in the process the user started
    assert json.loads(os.environ[ARGV_ENV]) == SWEEP
    monkeypatch.setattr(sys, "argv", SUBMITIT)  # the job, in submitit's process
    hydra_mode(RunMode.MULTIRUN)
    assert run_info()["argv"] == SWEEP


def test_a_single_run_records_its_own_command_line(monkeypatch, no_slurm, hydra_mode):
    # AELAB_ARGV left over from an enclosing sweep does not replace a single run's own line
    monkeypatch.setenv(ARGV_ENV, json.dumps(SWEEP))
    monkeypatch.setattr(sys, "argv", ["aelab-train", "model=vae"])
    hydra_mode(RunMode.RUN)
    assert run_info()["argv"] == ["aelab-train", "model=vae"]
    assert "slurm" not in run_info()


def test_a_requeued_slurm_job_adds_a_resumed_entry(tmp_path, monkeypatch, slurm_job, hydra_mode):
    monkeypatch.setenv(ARGV_ENV, json.dumps(SWEEP))
    hydra_mode(RunMode.MULTIRUN)
    record_run(tmp_path, resumed=False)  # the first start
    first = json.loads((tmp_path / "run.json").read_text())
    assert first["argv"] == SWEEP and "resumed" not in first
    assert first["slurm"] == {"job": "41_1", "restarts": 0}

    # SLURM requeued it after it saved hpc_ckpt_1.ckpt; Lightning will restore from that
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    record_run(tmp_path, resumed=False)
    info = json.loads((tmp_path / "run.json").read_text())
    assert {k: v for k, v in info.items() if k != "resumed"} == first
    (entry,) = info["resumed"]
    assert entry["argv"] == SWEEP and entry["slurm"] == {"job": "41_1", "restarts": 1}


def test_a_slurm_restart_without_a_checkpoint_starts_over(tmp_path, monkeypatch, slurm_job):
    # stopped before its first hpc checkpoint: Lightning starts from scratch, so does run.json
    record_run(tmp_path, resumed=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    record_run(tmp_path, resumed=False)
    info = json.loads((tmp_path / "run.json").read_text())
    assert "resumed" not in info and info["slurm"]["restarts"] == 1


def test_hpc_checkpoints_outside_slurm_are_not_a_resume(tmp_path, no_slurm):
    # Lightning restores hpc_ckpt_* only under SLURM; a copied run folder elsewhere starts anew
    record_run(tmp_path, resumed=False)
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"")
    record_run(tmp_path, resumed=False)
    assert "resumed" not in json.loads((tmp_path / "run.json").read_text())
    record_run(tmp_path, resumed=True)  # resume=...: always a resume
    assert len(json.loads((tmp_path / "run.json").read_text())["resumed"]) == 1
