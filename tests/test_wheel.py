"""A user's install: aelab's wheel (not the checkout) in a fresh virtualenv, run from an empty
folder outside the repository."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers.venvs import REPO, installed, user_env, wheel_names

__all__ = ["installed"]  # a session fixture, shared with test_examples.py

pytestmark = pytest.mark.slow


def test_wheel_holds_every_config_and_the_entry_points(installed):
    conf = REPO / "conf"
    files = {
        f"aelab/conf/{p.relative_to(conf).as_posix()}"
        for p in conf.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert len(files) > 30 and "aelab/conf/train.yaml" in files
    names = wheel_names(installed.wheel)
    assert files - names == set()
    assert "hydra_plugins/aelab_sweeper/baseline_sweeper.py" in names
    for script in (
        "aelab-train",
        "aelab-eval",
        "aelab-report",
        "aelab-prepare-data",
        "aelab-benchmark",
    ):
        assert (installed.venv / "bin" / script).is_file(), script


@pytest.mark.mnist
def test_installed_aelab_trains_from_an_empty_folder(installed, tmp_path, mnist_dir):
    work = tmp_path / "anywhere"
    work.mkdir()
    env = user_env(AELAB_DATA_DIR=str(mnist_dir))  # MNIST as prepared here (no download)
    where = subprocess.run(
        [installed.bin("python"), "-c", "import aelab; print(aelab.__file__, aelab.CONFIG_PATH)"],
        capture_output=True, text=True, env=env, cwd=work, check=True,
    )  # fmt: skip
    module, config_path = where.stdout.split()
    assert Path(module).is_relative_to(installed.venv) and config_path == "pkg://aelab.conf"

    cmd = [
        installed.bin("aelab-train"), "trainer.max_epochs=1", "++trainer.limit_train_batches=3",
        "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1",
        "data.eval_batch_size=200", "eval.images=false", "threads=1",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # outputs under the folder it was run from
    (run,) = (work / "outputs" / "runs").glob("*/*_train")
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
    sources = {(s["provider"], s["schema"], s["path"]) for s in hydra["runtime"]["config_sources"]}
    assert ("main", "pkg", "aelab.conf") in sources
    assert hydra["runtime"]["cwd"] == str(work)
    assert {p.name for p in work.iterdir()} == {"outputs"}


@pytest.mark.mnist
def test_installed_benchmark_composes_from_the_package_configs(installed, tmp_path, mnist_dir):
    """`aelab-benchmark` from a wheel: its jobs compose from `pkg://aelab.conf` (no checkout)."""
    work = tmp_path / "anywhere"
    work.mkdir()
    env = user_env(AELAB_DATA_DIR=str(mnist_dir))
    cmd = [installed.bin("aelab-benchmark"), "--stacked", "2", "--models", "ae"]
    cmd += ["--stacked-batches", "2", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^\| AE \| 2 \| \d+ \| \d+ \| [\d.]+ x \|$", done.stdout, re.M)
    assert list(work.iterdir()) == []  # its jobs ran in a temporary folder, removed
