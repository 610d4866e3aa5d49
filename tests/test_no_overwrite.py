"""A run never writes into a folder that holds another run's results (hydra#2103, hydra#1817):
a run folder given twice is refused, a sweep run again in its folder leaves its completed jobs
as they are, and a job of another config gets a folder of its own. md5 sums of every file of
the first run before and after."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.mnist]

TINY = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=10",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
    "threads=1",
    "eval.probe_train_size=500",
]


def run(module: str, *overrides: str, data_dir: Path) -> subprocess.CompletedProcess:
    flags = [o for o in overrides if o == "-m"]  # Hydra's multirun flag goes first
    rest = [o for o in overrides if o != "-m"]
    cmd = [sys.executable, "-m", module, *flags, f"paths.data_dir={data_dir}", *rest]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def md5s(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under `folder` (but those whose path starts with one of `skip`) -> its md5."""
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not str(p.relative_to(folder)).startswith(skip)
    }


def test_a_run_folder_given_twice_is_refused_and_left_as_it_was(tmp_path, mnist_dir):
    folder = tmp_path / "runs" / "x"
    first = run("aelab.train", *TINY, f"hydra.run.dir={folder}", data_dir=mnist_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    before = md5s(folder)
    assert {"metrics.json", "run.json", "checkpoints/last.ckpt"} <= set(before)

    again = run("aelab.train", *TINY, "model=vae", f"hydra.run.dir={folder}", data_dir=mnist_dir)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: hydra.run.dir='{folder}' is invalid: allowed a folder that holds "
        "no other run's results (it holds metrics.json, run.json, checkpoints, tb; "
        f"resume={folder} continues that run with its own overrides)"
    )
    assert md5s(folder) == before  # not one file written, Hydra's records and log included

    # its sibling: aelab-eval writes a run folder too
    ckpt = folder / "checkpoints" / "last.ckpt"
    scored = run("aelab.eval", f"ckpt_path={ckpt}", f"hydra.run.dir={folder}", data_dir=mnist_dir)
    assert scored.returncode == 2
    assert "aelab-eval: error: hydra.run.dir=" in scored.stderr.strip().splitlines()[-1]
    assert md5s(folder) == before

    # what the user may have meant: continuing that run (finished: nothing to add)
    resumed = run(
        "aelab.train", *TINY, f"hydra.run.dir={folder}", f"resume={folder}", data_dir=mnist_dir
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # a resume's own records; Hydra's .hydra/ and TensorBoard's files stay as they were, and
    # no event file is added (Lightning opens a writer even when nothing follows)
    kept = ("train.log", "run.json")
    assert md5s(folder, skip=kept) == {k: v for k, v in before.items() if not k.startswith(kept)}


def test_a_sweep_run_again_in_its_folder_never_overwrites_a_job(tmp_path, mnist_dir):
    sweep = tmp_path / "sweep"
    args = [*TINY, "model=ae,vae", f"hydra.sweep.dir={sweep}"]
    first = run("aelab.train", "-m", *args, data_dir=mnist_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0_model=ae", "1_model=vae"]
    results = {j: md5s(sweep / j, skip=(".hydra", "train.log")) for j in jobs}

    # the same sweep again: both jobs completed with these overrides, so they are left as they are
    same = run("aelab.train", "-m", *args, data_dir=mnist_dir)
    assert same.returncode == 0, same.stderr[-3000:]
    for job in jobs:
        assert f"aelab-train: {job}: completed earlier, left as it is" in same.stdout
        assert md5s(sweep / job, skip=(".hydra", "train.log")) == results[job]
    assert sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()) == jobs

    # a value shared by every job changed: the job names leave it out, the folders do not
    other = run("aelab.train", "-m", *args, "optimizer.lr=0.01", data_dir=mnist_dir)
    assert other.returncode == 0, other.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()) == [
        "0_model=ae",
        "0_model=ae~r2",
        "1_model=vae",
        "1_model=vae~r2",
    ]
    for job in jobs:
        assert md5s(sweep / job, skip=(".hydra", "train.log")) == results[job]
        assert "optimizer.lr=0.01" not in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        new = yaml.safe_load((sweep / f"{job}~r2" / ".hydra" / "overrides.yaml").read_text())
        assert "optimizer.lr=0.01" in new
        assert (sweep / f"{job}~r2" / "metrics.json").is_file()
