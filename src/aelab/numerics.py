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
