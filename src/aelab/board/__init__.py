"""What TensorBoard shows of aelab's runs and sweeps.

- `logger`: Lightning's TensorBoard logger as a run uses it (`logger=tensorboard`), and the run's
  HParams row written at its end (Lightning, matplotlib).
- `summaries`: the event files aelab writes from tensorboard's protos: a run's HParams session,
  the sweep's experiment summary and plots (`write_sweep_board`; no torch, no Lightning).

The names below load their module when first used, so that `aelab-report`, which imports
`aelab.board.summaries`, imports no Lightning. `TensorBoardLogger` is importable from here, not
only from `aelab.board.logger`, because every run's stored config names it
`aelab.board.TensorBoardLogger` (`_target_` in `.hydra/config.yaml` and in the checkpoint):
aelab-eval and a resumed run instantiate the logger from those configs as they are.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "TensorBoardLogger": "logger",
    "drop_unused_event_files": "logger",
    "write_hparams": "logger",
    "experiment_summary": "summaries",
    "headline_metrics": "summaries",
    "hparams_with_flags": "summaries",
    "session_summaries": "summaries",
    "write_sweep_board": "summaries",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
