"""A sweep folder as one pandas DataFrame: one row per job, its hyper-parameters (the HParams
row: swept values, seed, the rest), its status and error, and every metric of its metrics.json.

`load_sweep` is `aelab.load_sweep`; the report (`aelab.report.tables`, `.plots`) works on it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aelab.run.record import hparams_row, read_metrics

# the first columns of the DataFrame; then the hyper-parameters, then the metrics
JOB_COLUMNS = ("job", "status", "error")
UNREADABLE_CONFIG = "unreadable .hydra/config.yaml"


class NotASweepError(ValueError):
    """The folder is no sweep of `aelab-train -m`: missing, not a folder, or without job folders.
    The message names the folder and what was expected; `folder` holds it."""

    def __init__(self, folder: Path, message: str) -> None:
        super().__init__(message)
        self.folder = folder


@dataclass
class Job:
    """One job folder of the sweep: its status, hyper-parameters and final metrics."""

    name: str
    path: Path
    status: str  # completed | failed | interrupted | unfinished
    error: str = ""
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    # the job's command-line overrides, `+`/`++` dropped: `{"tag": "é"}`
    overrides: dict[str, Any] = field(default_factory=dict)


def job_dirs(sweep: Path) -> list[Path]:
    """The job folders of a sweep (those holding `.hydra/config.yaml`), in job order.

    Raises NotASweepError naming `sweep` when it is not a folder or holds no job folder (with a
    hint when it is a single run, or holds sweeps one level down).
    """
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise NotASweepError(sweep, f"{sweep} is not a folder")
    jobs = [d for d in sweep.iterdir() if (d / ".hydra" / "config.yaml").is_file()]
    if not jobs:
        hint = ""
        if (sweep / ".hydra").is_dir():
            hint = " (it is a single run; pass the folder of a sweep: outputs/multiruns/...)"
        else:
            inner = sorted({p.parents[2] for p in sweep.glob("*/*/.hydra/config.yaml")})
            if inner:
                hint = f" (sweeps inside it: {', '.join(str(p) for p in inner[:3])})"
        raise NotASweepError(
            sweep,
            f"no sweep jobs in {sweep}: expected job folders with .hydra/config.yaml, "
            f"as written by `aelab-train -m`{hint}",
        )

    def order(d: Path) -> tuple[int, str]:
        num = d.name.split("_", 1)[0]
        return (int(num) if num.isdigit() else sys.maxsize, d.name)

    return sorted(jobs, key=order)


def _config(path: Path) -> dict[str, Any]:
    """The stored config as plain data, each top-level node resolved where it can be (paths need
    Hydra's runtime and stay as written)."""
    cfg = OmegaConf.load(path)
    out: dict[str, Any] = {}
    for key in cfg:
        try:
            node = cfg[key]
            out[key] = (
                OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
            )
        except (OmegaConfBaseException, ValueError):
            out[key] = OmegaConf.to_container(cfg, resolve=False)[key]
    return out


def job_overrides(path: Path) -> dict[str, Any]:
    """A job folder's command-line overrides (`.hydra/overrides.yaml`) as `{key: value}`, the
    key without its `+`/`++` and the value as Hydra parses it (`+tag='é'` -> `{"tag": "é"}`,
    `trainer.max_epochs=2` -> 2; a list or dict as typed); deletions and `resume` left out.
    Empty when the file is missing or unreadable."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        stored = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
        parsed = OverridesParser.create().parse_overrides([str(o) for o in stored or []])
    except (OSError, yaml.YAMLError, TypeError, HydraException):
        return {}
    return {
        o.key_or_group: _plain(o.value(), o.get_value_element_as_str())
        for o in parsed
        if not o.is_delete() and o.key_or_group != "resume"
    }


def _plain(value: Any, text: str) -> Any:
    """A number or a string as parsed (`'é'` -> `é`), anything else (lists, dicts) as typed."""
    return value if isinstance(value, str | int | float) else text


def load_job(path: Path) -> Job:
    """One job folder: no metrics.json is `unfinished`, an unreadable one `failed`, and so is a
    `.hydra/config.yaml` that is no YAML (`error` starts with `UNREADABLE_CONFIG`)."""
    job = Job(path.name, path, "unfinished", "no metrics.json: still running, or stopped")
    job.overrides = job_overrides(path)
    try:
        job.hparams = hparams_row(_config(path / ".hydra" / "config.yaml"))
    except (yaml.YAMLError, OSError) as err:
        # not YAML at all (a truncated or overwritten file): the job has no row of values its
        # figures could be placed by, so it is reported as failed, as an unreadable metrics.json
        job.status = "failed"
        job.error = " ".join(f"{UNREADABLE_CONFIG}: {type(err).__name__}: {err}".split())
        return job
    except (OmegaConfBaseException, KeyError, TypeError, ValueError, ImportError) as err:
        job.error = f"unreadable config: {type(err).__name__}: {err}"
    try:
        data = read_metrics(path)
    except FileNotFoundError:
        return job
    except (OSError, ValueError) as err:  # NotMetricsError too: JSON, but no object
        job.status, job.error = "failed", f"unreadable metrics.json: {err}"
        return job
    job.status = str(data.get("status", "completed"))  # or failed, interrupted
    resume = f"to continue: {data['resume']}" if data.get("resume") else ""
    job.error = str(data.get("error") or resume)
    job.metrics = {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return job


def _ordered_keys(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row))


def jobs_frame(jobs: list[Job], sweep: Path | None = None) -> pd.DataFrame:
    """The jobs as one DataFrame (see `load_sweep`)."""
    hparams = [k for k in _ordered_keys([j.hparams for j in jobs]) if k not in JOB_COLUMNS]
    # metrics.json's figures are `stage/name` or `step`: none has an HParams field's name
    metrics = sorted(
        (k for k in _ordered_keys([j.metrics for j in jobs]) if k not in hparams),
        key=lambda k: (not k.startswith("test/"), k),
    )
    taken = {*JOB_COLUMNS, *hparams, *metrics, "path"}
    overrides = [k for k in _ordered_keys([j.overrides for j in jobs]) if k not in taken]
    head = pd.DataFrame(
        [[j.name, j.status, j.error] for j in jobs], columns=list(JOB_COLUMNS), dtype=object
    )
    # as written (an int stays an int, a missing field is None): the report prints them as is
    values = pd.DataFrame([j.hparams for j in jobs], columns=hparams, dtype=object)
    values = values.where(values.notna(), None)
    typed = pd.DataFrame([j.overrides for j in jobs], columns=overrides, dtype=object)
    typed = typed.where(typed.notna(), None)
    figures = pd.DataFrame([j.metrics for j in jobs], columns=metrics, dtype=float)
    frame = pd.concat([head, values, typed, figures], axis=1)
    frame["path"] = [j.path for j in jobs]
    frame.attrs.update(
        sweep=None if sweep is None else Path(sweep),
        hparams=hparams,
        overrides=overrides,
        metrics=metrics,
    )
    return frame


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """A sweep folder of `aelab-train -m` as a DataFrame, one row per job in job order.

    Columns: `job` (the folder's name), `status` (completed, failed, interrupted, or unfinished:
    no metrics.json), `error` (why it did not complete; "" otherwise), the HParams row's fields
    (`model`, `latent_dim`, `beta`, `noise`, `noise_level`, `seed`, ...: as the config has them,
    None where a job's model lacks one), the command-line overrides' keys that are none of those
    (`tag`, `trainer.max_epochs`: the value as parsed, None where a job lacks it), every numeric
    figure of metrics.json (`val/*`, `test/*`: float, NaN where a job has none), and `path`
    (the job folder). `attrs` names the `hparams`, `overrides` and `metrics` columns and holds
    the `sweep` folder.

    Raises NotASweepError (a ValueError) naming the folder when it is missing, not a folder, or
    holds no job folder.
    """
    sweep = Path(sweep_dir)
    return jobs_frame([load_job(d) for d in job_dirs(sweep)], sweep)


def load_sweeps(sweep_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Several sweep folders as one DataFrame (`load_sweep`'s columns), the sweeps in the order
    given, each one's jobs in job order; a folder given twice counts once. With more than one
    sweep a job is named `<sweep folder>/<job folder>`, as two sweeps' jobs share names
    (`0_beta=1`). Raises NotASweepError naming the first folder that is no sweep, and
    ValueError for no folder at all."""
    folders = list(dict.fromkeys(Path(os.path.abspath(d)) for d in sweep_dirs))
    if not folders:
        raise ValueError("no sweep folder given")
    if len(folders) == 1:
        return load_sweep(folders[0])
    jobs = []
    for sweep in folders:
        for path in job_dirs(sweep):
            job = load_job(path)
            job.name = f"{sweep.name}/{job.name}"
            jobs.append(job)
    return jobs_frame(jobs)


def comparison_dir(sweep_dirs: Sequence[str | Path]) -> Path:
    """Where `aelab-report` writes the report of several sweeps: `reports/<day>_<time>` beside
    the `multiruns` folder holding them (`outputs/reports/...`; outside it, so that a glob over
    the sweeps, `outputs/multiruns/*/*`, never takes a report for a sweep), or under the
    folder they share when no `multiruns` holds them all."""
    common = Path(os.path.commonpath([os.path.abspath(d) for d in sweep_dirs]))
    root = next((p.parent for p in [common, *common.parents] if p.name == "multiruns"), common)
    return root / "reports" / time.strftime("%Y-%m-%d_%H-%M-%S")


def objective_of(jobs: pd.DataFrame) -> str | None:
    """The metric the jobs' sweep optimised (their config's `optimized_metric`, the first job's
    that has one), or None."""
    for path in jobs["path"]:
        try:
            found = OmegaConf.load(Path(path) / ".hydra" / "config.yaml").get("optimized_metric")
        except (OSError, OmegaConfBaseException, yaml.YAMLError):
            continue
        if isinstance(found, str):
            return found
    return None
