"""SLURM without Lightning, in one place: whether this process is a SLURM job and which, the
signals that warn and stop it, `scontrol requeue` of this job, and the `hpc_ckpt_<n>.ckpt` files
that a preempted run writes and Lightning's `fit` restores by itself under SLURM.

The callback that writes them and requeues a run is `aelab.callbacks.SlurmRequeue`; a stacked
sweep requeues itself from its launcher (`hydra/launcher=stacked`); run.json records the job
(`aelab.run.record`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = signal.SIGUSR1  # what Lightning's SLURM plugin listens to as well
STOP_SIGNAL = signal.SIGTERM  # preemption / `scontrol requeue` / the end of the time limit


def hpc_checkpoint_path(folder: str | Path) -> Path:
    """The next `hpc_ckpt_<n>.ckpt`: Lightning resumes from the highest n."""
    latest = latest_hpc_checkpoint(folder)
    n = 0 if latest is None else int(latest.stem.removeprefix("hpc_ckpt_"))
    return Path(folder) / f"hpc_ckpt_{n + 1}.ckpt"


def latest_hpc_checkpoint(folder: str | Path) -> Path | None:
    """The `hpc_ckpt_<n>.ckpt` with the highest n in `folder` (what Lightning's `fit` restores
    by itself under SLURM when given no checkpoint), or None."""
    found = {
        int(m.group(1)): p
        for p in Path(folder).glob("hpc_ckpt_*.ckpt")
        if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))
    }
    return found[max(found)] if found else None




def under_slurm() -> bool:
    """Started by SLURM (srun or sbatch), as Lightning's `SLURMEnvironment.detect()` tells it: a
    job name of `bash` or `interactive` marks an interactive allocation, which does not count."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in (
        "bash",
        "interactive",
    )


def slurm_job_id() -> str:
    """This job as `scontrol` names it: `<array job>_<task>` for a task of an array.

    Raises KeyError outside a SLURM job (no `SLURM_JOB_ID`)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def requeue_slurm_job() -> bool:
    """`scontrol requeue <this job>` (a run's `SlurmRequeue`, a stacked sweep's launcher); False,
    with scontrol's reason logged, when it fails."""
    job = slurm_job_id()
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode != 0:
        log.error("scontrol requeue %s failed: %s", job, done.stderr.strip())
        return False
    log.info("requeued SLURM job %s", job)
    return True
