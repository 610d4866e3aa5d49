"""SLURM helpers without Lightning: the `hpc_ckpt_<n>.ckpt` files that a preempted run writes and
Lightning's `fit` restores by itself under SLURM.

The callback that writes them and requeues the job is `aelab.callbacks.SlurmRequeue`.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

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


