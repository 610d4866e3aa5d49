"""Faults lose nothing: a NaN loss, a killed run, Ctrl-C, two runs started in the same second."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import synthetic_images
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DistributedSampler

from aelab.callbacks.faults import NonFiniteLossError, NonFiniteLossGuard
from aelab.checks import ConfigError
from aelab.data.mnist import InMemoryImages, whole_batch
from aelab.data.resumable import ResumableLoader
from aelab.models import Autoencoder
from aelab.run import outcome
from aelab.run.checkpoint import LAST_CHECKPOINT
from aelab.run.folder import run_dir, run_folder_lock
from aelab.run.outcome import FolderBusyError

# --- the NaN guard, on tiny synthetic data ---------------------------------------------------


class Diverging(Autoencoder):
    """An autoencoder whose training loss is NaN from step `bad_step` on."""

    def __init__(self, bad_step: int) -> None:
        super().__init__(latent_dim=4, net={"_target_": "aelab.nets.MLPNet", "hidden": [16]})
        self.bad_step = bad_step

    def loss(self, x_in, target, generator=None):
        parts, logits = super().loss(x_in, target, generator)
        if self.training and self.trainer.global_step >= self.bad_step:
            parts = {**parts, "loss": parts["loss"] * float("nan")}
        return parts, logits


def fit_until_nan(
    tmp_path: Path, tiny_batches, bad_step: int, check_every: int | None
) -> Diverging:
    model = Diverging(bad_step)
    every_step = ModelCheckpoint(
        dirpath=tmp_path, every_n_train_steps=1, save_top_k=0, save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[NonFiniteLossGuard(check_every), every_step],
    )
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(model, train_dataloaders=tiny_batches)
    model.error = str(info.value)
    return model


def test_nan_stops_the_run_before_the_bad_update(tmp_path, tiny_batches):
    model = fit_until_nan(tmp_path, tiny_batches, bad_step=3, check_every=1)
    assert model.error.startswith("training stopped: non-finite loss at step 3 (epoch 0, batch 3)")
    assert "loss=nan, recon=" in model.error  # the parts, recomputed on the batch
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3  # saved after the last good step; nothing after it
    for name, value in model.state_dict().items():  # the NaN never reached the weights
        assert torch.equal(last["state_dict"][name], value), name


def test_default_checks_every_step_on_cpu_and_less_often_on_a_gpu(tmp_path, tiny_batches):
    model = fit_until_nan(tmp_path, tiny_batches, bad_step=2, check_every=None)
    assert model.error.startswith("training stopped: non-finite loss at step 2 (epoch 0, batch 2)")

    def guard_on(device: str, check_every: int | None = None) -> int:
        guard = NonFiniteLossGuard(check_every)
        trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        guard.setup(trainer, None, "fit")  # type: ignore[arg-type]
        return guard.every

    assert guard_on("cpu") == 1
    assert guard_on("cuda") == NonFiniteLossGuard.ACCELERATOR_EVERY  # each check is a host sync
    assert guard_on("cuda", 1) == 1  # a value given is kept


def test_no_checkpoint_holds_a_diverged_model_when_checking_less_often(tmp_path, tiny_batches):
    model = fit_until_nan(tmp_path, tiny_batches, bad_step=1, check_every=4)
    assert model.error == "training stopped: non-finite loss at step 1 (found at step 2)"
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


# --- resumable batches -------------------------------------------------------------------------


def draws(loader, epoch: int, limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each batch (dynamically binarized) with what a training step would draw after it."""
    loader.sampler.set_epoch(epoch)  # as Lightning does before every epoch
    return [(x, torch.rand(3)) for x, _ in itertools.islice(loader, limit)]


def loader(seed: int = 7, **kwargs) -> ResumableLoader:
    images, labels = synthetic_images(100)
    dataset = InMemoryImages(images, labels, dynamic_binarize=True)
    return ResumableLoader(dataset, batch_size=16, seed=seed, collate_fn=whole_batch, **kwargs)


def same(a, b) -> bool:
    if len(a) != len(b):
        return False
    pairs = [(x, y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True)]
    return all(torch.equal(x, y) for x, y in pairs)


def test_a_resumed_epoch_sees_the_same_batches_and_random_numbers():
    whole = draws(loader(), epoch=1)
    stopped = loader()
    assert same(draws(stopped, epoch=1, limit=3), whole[:3])
    state = stopped.state_dict()
    assert state == {"epoch": 1, "batches": 3}
    resumed = loader()
    resumed.load_state_dict(state)
    assert same(draws(resumed, epoch=1), whole[3:])
    assert not same(draws(loader(), epoch=2), whole)  # a new epoch, a new order
    assert not same(draws(loader(seed=8), epoch=1), whole)


def test_workers_serve_the_batches_and_random_numbers_of_the_training_process():
    """DataLoader workers have RNGs of their own: a binarization drawn there would differ."""
    whole = draws(loader(), epoch=1)
    pixels = torch.cat([x for x, _ in whole]).unique()
    assert pixels.tolist() == [0.0, 1.0]  # binarized
    assert same(draws(loader(num_workers=2), epoch=1), whole)
    resumed = loader(num_workers=2, persistent_workers=True)
    resumed.load_state_dict({"epoch": 1, "batches": 3})
    assert same(draws(resumed, epoch=1), whole[3:])
    assert same(draws(resumed, epoch=1), whole)  # the persistent workers' next epoch


def test_workers_change_nothing_under_a_distributed_sampler():
    """Under DDP Lightning gives the loader a DistributedSampler: no re-seeding per batch, but
    the binarization must still come from the training process's RNG."""
    images, labels = synthetic_images(100)
    dataset = InMemoryImages(images, labels, dynamic_binarize=True)

    def run(num_workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = DistributedSampler(dataset, num_replicas=2, rank=1, seed=3)
        batches = ResumableLoader(
            dataset,
            batch_size=16,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=whole_batch,
        )
        torch.manual_seed(5)
        return [(x, torch.rand(3)) for x, _ in batches]

    reference = run(0)
    assert len(reference) == 4  # 50 of the 100 images, in batches of 16
    assert torch.cat([x for x, _ in reference]).unique().tolist() == [0.0, 1.0]
    assert same(run(2), reference)


# --- finding the run to resume -----------------------------------------------------------------


def make_run(root: Path, name: str, overrides: list[str], checkpoint: bool = True) -> Path:
    folder = root / "2030-01-01" / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    return folder


def test_resume_picks_the_newest_run_of_the_same_overrides(tmp_path):
    older = make_run(tmp_path, "10-00-00_a_train", ["model=vae"])
    make_run(tmp_path, "11-00-00_b_train", ["model=vae"], checkpoint=False)
    make_run(tmp_path, "12-00-00_c_train", ["model=ae"])
    new = "2030-01-02/09-00-00_d_train"
    asked = ["model=vae", "resume=true"]
    assert run_dir(True, asked, str(tmp_path), new) == str(older)
    assert run_dir(str(older), asked, str(tmp_path), new) == str(older)
    assert run_dir(str(older), ["model=ae"], str(tmp_path), new) == f"{tmp_path}/{new}"
    assert run_dir(True, ["model=dae"], str(tmp_path), new) == f"{tmp_path}/{new}"
    assert run_dir(None, asked, str(tmp_path), new) == f"{tmp_path}/{new}"


def test_one_process_at_a_time_trains_in_a_run_folder(tmp_path):
    with (
        run_folder_lock(tmp_path),
        pytest.raises(ConfigError, match="no other process is training in"),
        run_folder_lock(tmp_path),
    ):
        pass
    with run_folder_lock(tmp_path):  # free again
        pass
    new = tmp_path / "not" / "yet"  # `paths.output_dir=<new folder>`: made, not a traceback
    with run_folder_lock(new):
        assert (new / ".lock").is_file()


def _md5s(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_run_refused_for_the_folder_lock_touches_none_of_the_winners_files(tmp_path):
    """Two runs started at once in one folder: the one that loses the lock is refused, and the
    winner's files (Hydra's records, its log, TensorBoard's folder: all it has before its first
    checkpoint) stay byte for byte."""
    folder = tmp_path / "run"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "tb").mkdir()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text(f"the winner's {name}\n")
    (folder / "train.log").write_text("the winner's log\n")
    (folder / "tb" / "events.out.tfevents.1").write_bytes(b"the winner's events")
    with run_folder_lock(folder):  # the winner, training
        before = _md5s(folder)
        done = subprocess.run(
            [sys.executable, "-m", "aelab.train", f"hydra.run.dir={folder}", "threads=1"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.strip().splitlines()[-1] == (
            f"aelab-train: error: resume='{folder}' is invalid: allowed a run folder no other "
            "process is training in"
        )
        assert _md5s(folder) == before


def test_a_sweep_job_refused_for_the_folder_lock_writes_no_metrics(tmp_path):
    """The race's narrow window (both runs past the check, the lock taken by the other first): a
    sweep's job returns the worst objective without writing the other run's metrics.json."""
    (tmp_path / "metrics.json").write_text('{"status": "completed"}')
    busy = FolderBusyError("resume", str(tmp_path), "a run folder no other process is training in")
    assert outcome.job_failed(busy, tmp_path, in_sweep=True) == math.inf
    assert (tmp_path / "metrics.json").read_text() == '{"status": "completed"}'


# --- the entry point on a slice of real MNIST ----------------------------------------------

STEPS = 100  # per epoch; the kill lands a few steps after step 7, far from an epoch's end
SHORT = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
    f"trainer.limit_train_batches={STEPS}",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.eval_batch_size=250",
    "~callbacks.evaluation",
    "callbacks.step_checkpoint.every_n_train_steps=7",
    # every source of randomness a step has: batch order, binarization, input noise
    "model=dae",
    "data.binarize=dynamic",
]


def command(log_dir: Path, data_dir: Path, *args: str) -> list[str]:
    """`aelab-train` with its flags (`-m`) first, then the paths, then the overrides."""
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    paths = [f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}"]
    return [sys.executable, "-m", "aelab.train", *flags, *paths, *overrides]


def train(log_dir: Path, data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = command(log_dir, data_dir, *overrides)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def the_run(log_dir: Path) -> Path:
    runs = list((log_dir / "runs").glob("*/*_train"))
    assert len(runs) == 1, runs
    return runs[0]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of the run folder as (step, value), over all its event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def start_and_wait_for_a_checkpoint(
    cmd: list[str], run_root: Path, folders: str = "runs/*/*"
) -> subprocess.Popen:
    """Start a run and return once its first step checkpoint is on disk (mid-epoch 0);
    `folders`: where its run folder is under `run_root` (a sweep's job: `multiruns/*/*/*`)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list(run_root.glob(f"{folders}/checkpoints/last.ckpt")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return proc


def checkpoint_step(run: Path) -> tuple[int, dict]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["global_step"], ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist_dir) -> Path:
    log_dir = tmp_path_factory.mktemp("uninterrupted")
    done = train(log_dir, mnist_dir, *SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    return the_run(log_dir)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_killed_run_resumes_to_the_same_result(tmp_path, mnist_dir, uninterrupted):
    proc = start_and_wait_for_a_checkpoint(command(tmp_path, mnist_dir, *SHORT), tmp_path)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    run = the_run(tmp_path)
    step, position = checkpoint_step(run)
    assert 0 < position["batches"] < STEPS  # the run resumes from the middle of an epoch
    assert position["epoch"] * STEPS + position["batches"] == step
    assert not (run / "metrics.json").exists()

    done = train(tmp_path, mnist_dir, *SHORT, "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert the_run(tmp_path) == run  # the same folder, not a new one
    assert metrics(run) == metrics(uninterrupted)
    # one TensorBoard run whose step counter went on: every curve as if never stopped
    assert scalars(run) == scalars(uninterrupted)
    info = json.loads((run / "run.json").read_text())
    assert info["resumed"][0]["argv"][-1] == "resume=true"


@pytest.mark.slow
@pytest.mark.mnist
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, mnist_dir, uninterrupted):
    proc = start_and_wait_for_a_checkpoint(command(tmp_path, mnist_dir, *SHORT), tmp_path)
    first_step, _ = checkpoint_step(the_run(tmp_path))
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-3000:]
    assert "`weights_only` was not set" not in stderr  # the Ctrl-C checkpoint says it is full
    run = the_run(tmp_path)
    step, position = checkpoint_step(run)
    assert step > first_step  # saved where it stopped, a step boundary
    assert position["epoch"] * STEPS + position["batches"] == step
    stopped = metrics(run)
    assert stopped["status"] == "interrupted" and stopped["step"] == step
    hint = stderr.strip().splitlines()[-1]
    assert hint.startswith("to continue: aelab-train ") and hint.endswith(f"resume={run}")
    assert hint.removeprefix("to continue: ") == stopped["resume"]

    resume = [sys.executable, "-m", "aelab.train", *shlex.split(stopped["resume"])[1:]]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "weights_only" not in done.stdout + done.stderr
    assert metrics(run) == metrics(uninterrupted)


@pytest.mark.slow
@pytest.mark.mnist
def test_sigterm_is_treated_as_ctrl_c(tmp_path, mnist_dir, uninterrupted):
    """`kill` (SIGTERM) outside SLURM: state saved after the step, status `interrupted` with its
    resume command, the exit status of a terminated process (128 + 15), and the resumed run ends
    where the uninterrupted one does (Lightning alone exits 0 and saves nothing)."""
    proc = start_and_wait_for_a_checkpoint(command(tmp_path, mnist_dir, *SHORT), tmp_path)
    first_step, _ = checkpoint_step(the_run(tmp_path))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM == 143, stderr[-3000:]
    assert "SIGTERM: saving a checkpoint after this step" in stderr
    run = the_run(tmp_path)
    step, position = checkpoint_step(run)
    assert step > first_step and position["epoch"] * STEPS + position["batches"] == step
    stopped = metrics(run)
    assert stopped["status"] == "interrupted" and stopped["step"] == step
    assert stderr.strip().splitlines()[-1] == f"to continue: {stopped['resume']}"

    resume = [sys.executable, "-m", "aelab.train", *shlex.split(stopped["resume"])[1:]]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert metrics(run) == metrics(uninterrupted)


@pytest.mark.slow
@pytest.mark.mnist
def test_a_sweep_job_stopped_by_sigterm_continues_when_its_line_is_pasted(
    tmp_path, mnist_dir, uninterrupted
):
    cmd = command(tmp_path, mnist_dir, "-m", *SHORT)
    proc = start_and_wait_for_a_checkpoint(cmd, tmp_path, folders="multiruns/*/*/*")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 143, stderr[-3000:]
    (job,) = tmp_path.glob("multiruns/*/*/*/metrics.json")
    job = job.parent
    stopped = metrics(job)
    assert stopped["status"] == "interrupted"
    # the sweep's own command, into its folder: no `resume=<job folder>` (a name with `=`)
    sweep = job.parent
    assert stopped["resume"].endswith(f"hydra.sweep.dir={sweep}")
    assert "resume=" not in stopped["resume"]
    assert stderr.strip().splitlines()[-1] == f"to continue: {stopped['resume']}"

    pasted = shlex.split(stopped["resume"])
    assert pasted[0] == "aelab-train"
    done = subprocess.run(
        [sys.executable, "-m", "aelab.train", *pasted[1:]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{job.name}: stopped earlier, continues from its last.ckpt" in done.stdout
    assert [p.parent for p in sweep.glob("*/metrics.json")] == [job]  # no second folder
    assert metrics(job) == metrics(uninterrupted)
    # the step counter went on: no step logged twice, every curve as if never stopped
    assert scalars(job) == scalars(uninterrupted)
    assert len(json.loads((job / "run.json").read_text())["resumed"]) == 1


NAN = [
    "trainer.accelerator=cpu",
    "model=vae",
    "optimizer.lr=10",  # the loss is NaN at the second step (step 1)
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=250",
    "~callbacks.evaluation",
    "callbacks.step_checkpoint.every_n_train_steps=1",
]


@pytest.mark.slow
@pytest.mark.mnist
def test_a_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path, mnist_dir):
    done = train(tmp_path, mnist_dir, *NAN)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    run = the_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert line.startswith(
        "aelab-train: error: training stopped: "
        "non-finite loss at step 1 (epoch 0, batch 1): loss=nan"
    )
    assert "kl=" in line and "recon=" in line and line.endswith(f"last good checkpoint: {last}")
    failed = metrics(run)
    assert failed["status"] == "failed" and failed["error"] == line.split(": error: ")[1]
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


@pytest.mark.slow
@pytest.mark.mnist
def test_a_sweep_carries_on_past_a_failed_job(tmp_path, mnist_dir):
    done = train(tmp_path, mnist_dir, "-m", *NAN[:2], "optimizer.lr=10,0.001", *NAN[3:])
    jobs = sorted((tmp_path / "multiruns").glob("*/*/*/metrics.json"))
    assert [metrics(job.parent)["status"] for job in jobs] == ["failed", "completed"]
    # every job ran and the report was written; then status 1 and the failed job named
    assert done.returncode == 1, done.stderr[-3000:]
    sweep, failed = jobs[0].parents[1], jobs[0].parent.name
    assert failed == "0_lr=10"  # named by what the sweep varies
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-train: error: 1 of 2 jobs did not complete, see {sweep / 'summary.md'}: "
        f"{failed} (failed)"
    )
    assert (sweep / "summary.md").is_file()


def launch_at_a_frozen_second(log_dir: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    """`aelab-train` with Hydra's clock stopped at one second: only the run tag tells them apart."""
    freeze = (
        "import datetime, sys, hydra.core.utils as h\n"
        "class Frozen(datetime.datetime):\n"
        "    @classmethod\n"
        "    def now(cls, tz=None): return cls(2030, 1, 1, 12, 0, 0)\n"
        "h.datetime = Frozen\n"
        "from aelab.train import main\n"
        "sys.argv = ['aelab-train', *sys.argv[1:]]\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", freeze, *command(log_dir, data_dir, *overrides)[3:]]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.mnist
def test_runs_and_sweeps_started_in_the_same_second_get_their_own_folders(tmp_path, mnist_dir):
    quick = ["trainer.max_epochs=0", "test=false", "trainer.accelerator=cpu"]
    procs = [launch_at_a_frozen_second(tmp_path, mnist_dir, *quick) for _ in range(2)]
    procs += [launch_at_a_frozen_second(tmp_path, mnist_dir, "-m", *quick) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    runs = sorted((tmp_path / "runs" / "2030-01-01").iterdir())
    sweeps = sorted((tmp_path / "multiruns" / "2030-01-01").iterdir())
    assert len(runs) == len(sweeps) == 2
    for folder in runs + sweeps:
        assert folder.name.startswith("12-00-00_") and folder.name.endswith("_train")
    for sweep in sweeps:  # each with its own job
        assert len(list(sweep.glob("*/run.json"))) == 1


# --- resuming a run whose training had finished ---------------------------------------------

FINISHED = [
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "model=vae",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.eval_batch_size=250",
    "~callbacks.evaluation",
]


def killed_when_testing(log_dir: Path, data_dir: Path, *overrides: str) -> int:
    """`aelab-train` killed the moment it starts testing, as `kill -9` would (no clean-up)."""
    kill = (
        "import os, sys, pytorch_lightning as pl\n"
        "pl.Trainer.test = lambda *a, **k: os._exit(9)\n"
        "from aelab.train import main\n"
        "sys.argv = ['aelab-train', *sys.argv[1:]]\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", kill, *command(log_dir, data_dir, *overrides)[3:]]
    return subprocess.run(cmd, capture_output=True, timeout=600).returncode


def event_steps(run: Path, tag: str) -> list[int]:
    return [step for step, _ in scalars(run).get(tag, [])]


@pytest.mark.slow
@pytest.mark.mnist
def test_resuming_a_finished_run_keeps_its_figures_and_logs_nothing_twice(tmp_path, mnist_dir):
    done = train(tmp_path / "a", mnist_dir, *FINISHED)
    assert done.returncode == 0, done.stderr[-3000:]
    run = the_run(tmp_path / "a")
    before, ckpt_before = metrics(run), (run / LAST_CHECKPOINT).read_bytes()
    val = {k for k in before if k.startswith("val/")}
    assert {"val/loss", "val/kl", "test/loss"} <= set(before)
    assert event_steps(run, "test/loss") == [20] and event_steps(run, "val/loss") == [19]

    again = train(tmp_path / "a", mnist_dir, *FINISHED, f"resume={run}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics(run) == before  # every val/* and test/* key, the same values
    assert (run / LAST_CHECKPOINT).read_bytes() == ckpt_before  # nothing trained
    assert event_steps(run, "test/loss") == [20] and event_steps(run, "val/loss") == [19]

    # killed while testing: the resumed run trains no more, and tests once
    assert killed_when_testing(tmp_path / "b", mnist_dir, *FINISHED) == 9
    killed = the_run(tmp_path / "b")
    assert not (killed / "metrics.json").exists()
    assert event_steps(killed, "test/loss") == []
    resumed = train(tmp_path / "b", mnist_dir, *FINISHED, f"resume={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(killed) == before and val <= set(metrics(killed))
    assert event_steps(killed, "test/loss") == [20] and event_steps(killed, "val/loss") == [19]


# --- SIGTERM at every phase: 143, `interrupted`, and a resume line where resuming makes sense ---

SMOKE = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=250",
    "eval.generation.enabled=false",
    "threads=1",
]


def signalled(log_dir: Path, data_dir: Path, hook: str, *args: str, program: str = "aelab.train"):
    """A run that sends SIGTERM to itself at `hook` (tests/helpers/signals.py)."""
    cmd = command(log_dir, data_dir, *args, "+callbacks.kill._target_=helpers.signals.SignalAt")
    cmd[2] = program
    tests = os.pathsep.join([str(Path(__file__).parent), *sys.path])
    env = {**os.environ, "PYTHONPATH": tests, "SIGNAL_AT": hook}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize(
    "hook", ["on_sanity_check_start", "on_test_batch_start", "on_test_epoch_end"]
)
def test_sigterm_outside_a_training_step_is_an_interrupted_run(tmp_path, mnist_dir, hook):
    """Lightning alone ends these with a SIGTERMException (a SystemExit without a code: exit 0,
    no metrics.json) or only notes the signal and goes on."""
    done = signalled(tmp_path, mnist_dir, hook, *SMOKE)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    run = the_run(tmp_path)
    stopped = metrics(run)
    assert stopped["status"] == "interrupted"
    last = done.stderr.strip().splitlines()[-1]
    if hook == "on_sanity_check_start":  # before any checkpoint: nothing to continue
        assert last == "aelab-train: interrupted at step 0, before any checkpoint"
        return
    assert stopped["step"] == 5  # trained; stopped while testing
    assert last == f"to continue: {stopped['resume']}"
    assert stopped["resume"].endswith(f"resume={run}")
    # the resume tests the trained model and completes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    resume = [sys.executable, "-m", "aelab.train", *shlex.split(stopped["resume"])[1:]]
    resumed = subprocess.run(resume, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(run)["status"] == "completed" and "test/loss" in metrics(run)


@pytest.mark.slow
@pytest.mark.mnist
def test_sigterm_while_a_sweep_job_tests_stops_the_sweep(tmp_path, mnist_dir):
    done = signalled(tmp_path, mnist_dir, "on_test_batch_start", "-m", *SMOKE, "seed=1,2")
    assert done.returncode == 143, done.stderr[-3000:]
    jobs = sorted(tmp_path.glob("multiruns/*/*/*/.hydra"))
    assert len(jobs) == 1  # the sweep stopped: the second job never ran
    stopped = metrics(jobs[0].parent)
    assert stopped["status"] == "interrupted" and stopped["step"] == 5


@pytest.mark.slow
@pytest.mark.mnist
def test_sigterm_while_aelab_eval_tests_is_an_interrupted_run(tmp_path, mnist_dir):
    first = train(tmp_path / "trained", mnist_dir, *SMOKE, "~callbacks.evaluation")
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = the_run(tmp_path / "trained") / "checkpoints" / "last.ckpt"
    done = signalled(
        tmp_path / "eval", mnist_dir, "on_test_batch_start", f"ckpt_path={ckpt}",
        "trainer.limit_test_batches=1", "threads=1", program="aelab.eval",
    )  # fmt: skip
    assert done.returncode == 143, done.stderr[-3000:]
    (scored,) = (tmp_path / "eval" / "runs").glob("*/*_eval")
    stopped = metrics(scored)
    assert stopped["status"] == "interrupted"
    assert done.stderr.strip().splitlines()[-1] == (
        f"aelab-eval: interrupted while testing; to score it again: {stopped['resume']}"
    )
