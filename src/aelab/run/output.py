"""What a run prints: Lightning's lines a user can act on, without those they cannot.

`quiet_lightning` (the default, `verbose: false`) drops, where Lightning logs them, its
advertising tips (`💡 Tip: ... litlogger`, `litmodels`), the seed notice (the seed is in run.json),
the accelerator lines of a machine that has none (`GPU available: False, used: False`), and the
checkpoint notices of the test (`Restoring states from ...`: the closing lines name the best
checkpoint); and ignores deprecation warnings raised inside Lightning about torch's API, which
only a new Lightning release fixes. Warnings still shown are written above the progress bar
(`tqdm.write`), not into its line. `verbose: true` leaves Lightning's output as it comes.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from typing import Any

# Lightning's loggers of its `rank_zero_info` lines and of `seed_everything`
LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning_fabric.utilities.seed",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)
DROPPED = re.compile(
    r"^(💡 Tip:"
    r"|Seed set to "
    r"|(GPU|TPU|HPU) available: False"
    # a resume from SLURM's requeue checkpoint (hpc_ckpt_N.ckpt) stays: it says where a
    # preempted job continued from
    r"|Restoring states from the checkpoint path at (?!\S*hpc_ckpt_\d+\.ckpt)"
    r"|Loaded model weights from the checkpoint at )"
)
# (message, category, module): warnings a user cannot act on, raised inside Lightning
UNACTIONABLE_WARNINGS = (
    # torch 2.10's pytree API change, used by Lightning's own _pytree copy
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\."),
)


class _DropUnactionable(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return DROPPED.match(record.getMessage()) is None


_FILTER = _DropUnactionable()


def _show_above_the_bar(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning`, written with `tqdm.write`: a progress bar that is being drawn is
    cleared first and drawn again below, so the warning keeps a line of its own."""
    from tqdm import tqdm

    text = warnings.formatwarning(message, category, filename, lineno, line)
    tqdm.write(text.rstrip("\n"), file=file if file is not None else sys.stderr)


def quiet_lightning(verbose: bool = False) -> None:
    """With `verbose` False, drop Lightning's lines a user cannot act on and write warnings above
    the progress bar (see the module's docstring); with True, show its lines and warnings as
    Lightning writes them (a warning ignored earlier in the process stays ignored). Idempotent:
    a sweep's jobs in one process call it once each."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.removeFilter(_FILTER)
        if not verbose:
            logger.addFilter(_FILTER)
    if verbose:
        if warnings.showwarning is _show_above_the_bar:
            warnings.showwarning = _ORIGINAL_SHOWWARNING
        return
    for message, category, module in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    warnings.showwarning = _show_above_the_bar


_ORIGINAL_SHOWWARNING = warnings.showwarning
