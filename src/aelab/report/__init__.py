"""aelab-report <sweep dir>: one table and a few plots over every job of a sweep.

Reads each job's `.hydra/config.yaml` and `metrics.json` into one DataFrame (`load`:
`load_sweep`) and writes into the sweep folder (also done by `WriteReport` at the end of every
`aelab-train -m`): `summary.csv` (one row per job: status, error, hyper-parameters, every
metric), `summary.md` (the swept variables and the headline test metrics, mean ± std over seeds,
sorted by the variables; failed and unfinished jobs listed with their error; the Optuna study and
the one-class AUROC and model-zoo tables when the sweep has them; `tables`, over `groups`), PNG
plots for the variables the sweep has (`plots`): reconstruction error vs. latent size, the
rate-distortion plane of a beta sweep, PSNR vs. noise level, and a mosaic of every job's test
reconstructions; and the sweep's TensorBoard event file (`aelab.board.summaries`). `cli` is the
command line.

The variables are the columns of `aelab.run.record.hparams_row` (the same as TensorBoard's
HParams table) that differ between jobs, seed aside; columns that only follow the model (its
preset's net and loss) are left out.

Neither torch nor Lightning is imported; the names below load their module when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "Job": "load",
    "NotASweepError": "load",
    "job_dirs": "load",
    "load_job": "load",
    "load_sweep": "load",
    "HEADLINE": "tables",
    "group_jobs": "groups",
    "headline_table": "tables",
    "summary_csv": "tables",
    "summary_markdown": "tables",
    "sweep_variables": "groups",
    "PLOTS": "plots",
    "plot_latent": "plots",
    "plot_mosaic": "plots",
    "plot_noise": "plots",
    "plot_rate_distortion": "plots",
    "WriteReport": "cli",
    "main": "cli",
    "report": "cli",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
