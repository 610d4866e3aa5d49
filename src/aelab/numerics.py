"""The process's floating-point mode: whether the CPU flushes denormal floats to zero.

Adam's second moments (and weights the gradient no longer reaches) decay towards zero; once they
fall below float32's smallest normal number (1.2e-38) every operation on them takes a slow
microcode path on x86 CPUs, and a training step can cost up to twice as much, from a few hundred
steps on. Flushing them (FTZ/DAZ: `torch.set_flush_denormal`) changes no figure that matters: a
value below 1e-38 becomes 0 (docs/explanation/performance.md measures both). GPUs are not affected:
CUDA kernels flush denormals in float32 by default where it matters (`-ftz`), and this is a CPU
mode.

The mode belongs to a thread and is inherited by the threads it starts afterwards, so aelab sets
it first thing in every process that trains or evaluates (`aelab.train.train`, in each DDP
process too, the stacked launcher, `aelab.eval.evaluate`), before torch starts its thread pool.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from aelab.checks import ConfigError

log = logging.getLogger("aelab.numerics")

SMALLEST_NORMAL_FLOAT32 = 1.1754943508222875e-38


def denormals_flushed() -> bool:
    """True when this thread's CPU arithmetic flushes denormal floats to zero: measured (a
    denormal float32 times one gives zero), not read back from a flag."""
    tiny = torch.tensor([SMALLEST_NORMAL_FLOAT32 / 4], dtype=torch.float32)
    return bool((tiny * 1.0)[0] == 0)


def set_flush_denormal(enabled: object) -> bool:
    """Switch flushing of denormal floats on or off for this process (`flush_denormal`), and
    return whether it is in effect, measured by `denormals_flushed`.

    Raises ConfigError (`flush_denormal`) for a value that is not a bool. A CPU without the mode
    (no SSE3) keeps computing with denormals, said in one logged line.
    """
    if not isinstance(enabled, bool):
        raise ConfigError("flush_denormal", enabled, "true or false")
    supported = torch.set_flush_denormal(enabled)
    flushed = denormals_flushed()
    if enabled and not supported:
        log.info("flush_denormal=true: this CPU cannot flush denormal floats; left as it is")
    log.info("denormal floats flushed to zero: %s", "yes" if flushed else "no")
    return flushed


# --- torch's thread count ---------------------------------------------------------------------

AUTO_THREADS = "auto"
THREADS_ALLOWED = "an integer >= 1, auto (the cores no other process is using) or null (torch's)"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or `taskset`'s)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def auto_threads() -> tuple[int, str]:
    """`threads=auto`: torch threads that cannot oversubscribe the cores, and why that many.

    Under SLURM its `SLURM_CPUS_PER_TASK` (the cores the job was given); else the cores no
    other process is using, `usable_cores()` minus the 1-minute load average, rounded, at
    least 1; and never more than `OMP_NUM_THREADS` where it is set (joblib's workers get
    cores ÷ n_jobs there, so parallel sweep jobs share the cores). One thread on a loaded
    machine: torch's default (one per core) made a small net train 12–25× slower there
    (docs/explanation/performance.md, "Threads").
    """
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm), "SLURM_CPUS_PER_TASK"
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    count, why = max(1, min(cores, round(cores - load))), f"{cores} cores, load {load:.1f}"
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and 0 < int(omp) < count:
        count, why = int(omp), f"OMP_NUM_THREADS={omp}"
    return count, why


def set_threads(value: Any) -> int:
    """Set torch's intra-op thread count from the `threads` key and return it: an integer, `auto`
    (`auto_threads`) or None (torch's own default, one per core, left as it is).

    Raises ConfigError naming `threads` for any other value.
    """
    if value is None:
        count, why = torch.get_num_threads(), "torch's default"
    elif value == AUTO_THREADS:
        count, why = auto_threads()
        why = f"threads=auto: {why}"
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        count, why = value, f"threads={value}"
    else:
        raise ConfigError("threads", value, THREADS_ALLOWED)
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    log.info("torch threads: %d (%s)", count, why)
    return count
