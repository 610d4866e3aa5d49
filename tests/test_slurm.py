"""Sweeps on a real SLURM (a one-node cluster on this machine): an array job per sweep,
preemption with requeue and exact resume, and DDP over SLURM tasks.

The cluster comes from scripts/slurm/start.sh (Debian's SLURM, installed if missing); the tests
skip only where it cannot be installed (not root, no apt).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.sweeps import assert_headline_table, assert_progress_line
from pytorch_lightning.trainer.connectors.checkpoint_connector import _CheckpointConnector
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aelab.callbacks.slurm import SlurmRequeue
from aelab.slurm import hpc_checkpoint_path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "slurm"
# tiny, deterministic runs; the test-time suite is not what these tests are about
TINY = [
    "trainer.deterministic=true",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "~callbacks.evaluation",
]


def test_hpc_checkpoints_are_numbered_as_lightning_resumes_them(tmp_path):
    assert hpc_checkpoint_path(tmp_path).name == "hpc_ckpt_1.ckpt"
    for n in (1, 3):
        (tmp_path / f"hpc_ckpt_{n}.ckpt").touch()
    assert hpc_checkpoint_path(tmp_path) == Path(_CheckpointConnector.hpc_save_path(tmp_path))
    assert hpc_checkpoint_path(tmp_path).name == "hpc_ckpt_4.ckpt"


def test_sigusr1_is_noted_not_fatal_under_slurm_only(monkeypatch):
    before = signal.getsignal(signal.SIGUSR1)
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert not SlurmRequeue().active
    assert signal.getsignal(signal.SIGUSR1) is before
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    try:
        callback = SlurmRequeue()
        assert callback.active
        os.kill(os.getpid(), signal.SIGUSR1)  # SIGUSR1's default action would end pytest
        assert callback._received == signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, before)


REFUSING_SBATCH = """#!/bin/sh
echo "sbatch: error: invalid partition specified: nosuch" >&2
echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
exit 1
"""


@pytest.mark.slow
def test_sbatchs_refusal_is_one_line_and_exit_2(tmp_path):
    """`hydra.launcher.partition=nosuch`: what sbatch says, in one line (a stand-in sbatch that
    refuses as SLURM's does, first on PATH), not submitit's traceback; no SLURM at all, too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(REFUSING_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for it first
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    cmd = [sys.executable, "-m", "aelab.train", "-m", "hydra/launcher=slurm", "debug=smoke"]
    cmd += ["seed=0", f"paths.log_dir={tmp_path / 'logs'}"]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [*cmd, "hydra.launcher.partition=nosuch"], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "aelab-train: error: sbatch refused the sweep's array job: sbatch: error: invalid "
        "partition specified: nosuch; sbatch: error: Batch job submission failed: Invalid "
        "partition name specified"
    )
    no_slurm = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "srun").exists()
    )
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PATH": no_slurm}, timeout=300
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("aelab-train: error: no SLURM on this machine")
    )


@pytest.fixture(scope="module")
def slurm() -> str:
    """SLURM_CONF of a running cluster; stopped afterwards if this fixture started it."""
    done = subprocess.run(
        ["bash", str(SCRIPTS / "start.sh")], capture_output=True, text=True, timeout=900
    )
    if done.returncode == 3:
        pytest.skip(f"no SLURM here and it cannot be installed: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    conf = re.search(r"export SLURM_CONF=(\S+)", done.stdout).group(1)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = previous
    if "already running" not in done.stderr:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], capture_output=True, timeout=60)


def multirun(log_dir: Path, data_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "aelab.train", "-m", "hydra/launcher=slurm"]
    cmd += [f"paths.log_dir={log_dir}", f"paths.data_dir={data_dir}", *TINY, *overrides]
    with (log_dir / "multirun.log").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < end, f"no {what} after {timeout} s"
        time.sleep(0.2)


def finish(proc: subprocess.Popen, log_dir: Path, timeout: float = 600) -> None:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (log_dir / "multirun.log").read_text()[-4000:]


def slurm_job(sweep_dir: Path) -> str:
    """The sweep's SLURM job id (an array job's, when it has several runs): submitit's folder
    for the submission script is named after it."""
    (job,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    return job


def job_log(sweep_dir: Path, job: str, task: int = 0) -> str:
    folder = sweep_dir / ".submitit" / job
    return "".join(
        (folder / f"{job}_{task}_log.{ext}").read_text(errors="replace") for ext in ("out", "err")
    )


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


EPOCHS, BATCHES = 6, 30
# job 0: SLURM's warning signal (it saves and requeues itself); job 2: requeued by SLURM
# (`scontrol requeue`: SIGTERM, it saves, SLURM restarts it); job 1: never stopped
PREEMPT = {0: ["scancel", "--signal=USR1"], 2: ["scontrol", "requeue"]}


@pytest.fixture(scope="module")
def preempted_sweep(slurm, tmp_path_factory, mnist_dir) -> dict:
    """A sweep of three identical runs as one array job; two are preempted once they have a
    checkpoint, and the third is the uninterrupted reference."""
    log_dir = tmp_path_factory.mktemp("slurm_sweep")
    proc = multirun(
        log_dir,
        mnist_dir,
        "model.latent_dim=4,4,4",
        f"trainer.max_epochs={EPOCHS}",
        f"trainer.limit_train_batches={BATCHES}",
    )
    job = None
    try:
        for task, command in PREEMPT.items():

            def checkpoint(task: int = task) -> list[Path]:
                # the job folder: `<task>`, since no override differs between the jobs
                # (`<task>_<overrides>` where one does)
                found = log_dir.glob(f"multiruns/*/*/{task}/checkpoints/last.ckpt")
                return [*found, *log_dir.glob(f"multiruns/*/*/{task}_*/checkpoints/last.ckpt")]

            wait_for(checkpoint, f"a checkpoint of job {task}", proc)
            sweep_dir = checkpoint()[0].parents[2]
            job = slurm_job(sweep_dir)
            subprocess.run([*command, f"{job}_{task}"], check=True, timeout=30)
        finish(proc, log_dir)
        # the sweep has every job's result once a job's function returns, while the job may
        # still be exiting: the scancel below must not cancel it then
        left_the_queue(job)
    finally:
        if proc.poll() is None:
            proc.kill()
        if job is not None:  # nothing of this sweep stays queued, whatever happened
            subprocess.run(["scancel", job], capture_output=True, timeout=30)
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())
    return {"sweep": sweep_dir, "job": job, "runs": runs}


@pytest.mark.slow
@pytest.mark.mnist
def test_a_sweep_is_one_array_job_with_a_run_folder_per_job(preempted_sweep):
    sweep, runs = preempted_sweep["sweep"], preempted_sweep["runs"]
    script = (sweep / ".submitit" / preempted_sweep["job"]).glob("*_submission.sh")
    script = next(script).read_text()
    assert re.search(r"#SBATCH --array=0-2%\d+", script)
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --requeue" in script
    assert [r.name.split("_")[0] for r in runs] == ["0", "1", "2"]
    # each job's line and the report's table on the launching terminal, not only in job logs
    out = (sweep.parents[2] / "multirun.log").read_text()
    for num, run in enumerate(runs):
        assert_progress_line(out, num, 3, run)
    assert_headline_table(out, sweep)
    for run in runs:
        assert (run / ".hydra" / "config.yaml").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed", run
        assert isinstance(metrics["test/loss"], float)
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert list((run / "tb").glob("events.out.tfevents.*")), run
        assert len(scalars(run, "val/loss")) == EPOCHS


def left_the_queue(job: str, wait_s: float = 60.0) -> None:
    """Wait (bounded) until no task of the array job is queued, running or completing."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        queued = subprocess.run(
            ["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=30
        ).stdout
        if not queued.strip():
            return
        time.sleep(1.0)


def final_job_state(task: str, wait_s: float = 60.0) -> str:
    """`scontrol show job` once the task has left COMPLETING: the sweep can see a job's results
    while slurmd still runs its epilogue, and the state says COMPLETING for a few seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        shown = subprocess.run(
            ["scontrol", "show", "job", task], capture_output=True, text=True, timeout=30
        ).stdout
        if "JobState=COMPLETING" not in shown or time.monotonic() > deadline:
            return shown
        time.sleep(1.0)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("task", [0, 2], ids=["sigusr1-requeues-itself", "scontrol-requeue"])
def test_a_preempted_job_resumes_and_ends_as_if_never_stopped(preempted_sweep, task):
    sweep, job, runs = preempted_sweep["sweep"], preempted_sweep["job"], preempted_sweep["runs"]
    preempted, reference = runs[task], runs[1]
    log = job_log(sweep, f"{job}_{task}")
    # SLURM ran it twice: the first run saved a checkpoint and stopped, the second resumed
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]
    assert job_log(sweep, f"{job}_1").count("Starting with JobEnvironment") == 1
    assert (f"requeued SLURM job {job}_{task}" in log) == (task == 0)
    shown = final_job_state(f"{job}_{task}")
    assert "Restarts=1" in shown and "JobState=COMPLETED" in shown, shown

    hpc = preempted / "hpc_ckpt_1.ckpt"
    assert hpc.is_file() and not list(reference.glob("hpc_ckpt_*"))
    assert f"Restoring states from the checkpoint path at {hpc}" in log
    saved_at = torch.load(hpc, map_location="cpu", weights_only=False)["global_step"]
    assert BATCHES < saved_at < EPOCHS * BATCHES  # after epoch 0's checkpoint, before the end
    assert saved_at % BATCHES  # in the middle of an epoch: the case where resuming is hard

    # same folder, same TensorBoard run: the resumed process wrote into tb/ beside the first
    pids = {p.name.split(".")[-2] for p in (preempted / "tb").glob("events.out.tfevents.*")}
    assert len(pids) == 2, pids
    # the step counter went on: one point per epoch, at the reference's steps, same values
    steps = [BATCHES * (e + 1) - 1 for e in range(EPOCHS)]
    for tag in ("val/loss", "val/recon_mse"):
        got, want = scalars(preempted, tag), scalars(reference, tag)
        assert [s for s, _ in got] == [s for s, _ in want] == steps, tag
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag
    for run in (preempted, reference):
        last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        assert last["global_step"] == EPOCHS * BATCHES

    # run.json: the user's command line (not submitit's), and SLURM's restart as a resume
    infos = [json.loads((r / "run.json").read_text()) for r in (preempted, reference)]
    for info in infos:
        assert info["argv"][1:3] == ["-m", "hydra/launcher=slurm"], info["argv"]
        assert "model.latent_dim=4,4,4" in info["argv"], info["argv"]
    (restart,) = infos[0]["resumed"]
    assert restart["argv"] == infos[0]["argv"]
    assert infos[0]["slurm"] == {"job": f"{job}_{task}", "restarts": 0}
    assert restart["slurm"] == {"job": f"{job}_{task}", "restarts": 1}
    assert "resumed" not in infos[1]

    got, want = (json.loads((r / "metrics.json").read_text()) for r in (preempted, reference))
    final = sorted(k for k in want if k.startswith(("val/", "test/")))
    assert final and sorted(k for k in got if k.startswith(("val/", "test/"))) == final
    for key in final:
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


@pytest.mark.slow
@pytest.mark.mnist
def test_ddp_over_slurm_tasks(slurm, tmp_path, mnist_dir):
    """trainer=ddp under the slurm launcher: one job, two SLURM tasks, one run folder."""
    proc = multirun(
        tmp_path,
        mnist_dir,
        "trainer=ddp",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "model.latent_dim=4",
    )
    finish(proc, tmp_path)
    (sweep,) = tmp_path.glob("multiruns/*/*")
    job = slurm_job(sweep)
    script = next((sweep / ".submitit" / job).glob("*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script
    (run,) = [p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]
    rank0, rank1 = (job_log(sweep, job, task) for task in (0, 1))
    assert "MEMBER: 1/2" in rank0 and "MEMBER: 2/2" in rank1
    assert "distributed_backend=gloo" in rank0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and isinstance(metrics["test/loss"], float)
    assert list((run / "tb").glob("events.out.tfevents.*"))
