"""What a run records about itself: run.json (how to reproduce it), the HParams row (what tells
it apart from other runs), and reading metrics.json back (`read_metrics`, its one reader)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig

from aelab.slurm import slurm_job_id, under_slurm

PACKAGES = ("aelab", "torch", "torchvision", "pytorch-lightning", "hydra-core", "torchmetrics")
METRICS_FILE = "metrics.json"


# --- metrics.json -----------------------------------------------------------------------------


class NotMetricsError(ValueError):
    """metrics.json holds JSON, but not an object of figures."""


def read_metrics(folder: str | Path) -> dict[str, Any]:
    """A run folder's metrics.json: `status` (completed when absent: written before it had one),
    `error`, `resume`, `step` and the figures (`val/*`, `test/*`, floats).

    Raises FileNotFoundError when there is none (a run still going, or stopped hard), ValueError
    when it is not JSON (NotMetricsError: JSON, not an object), OSError when it cannot be read.
    """
    data = json.loads((Path(folder) / METRICS_FILE).read_text())
    if not isinstance(data, dict):
        raise NotMetricsError(f"not a JSON object but {type(data).__name__}")
    return data


# --- run.json -----------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


UNTRACKED_SHOWN = 20  # untracked paths listed in run.json; more are counted


def _git_state(root: str | Path | None = None) -> dict[str, Any]:
    """The commit of `root` (default: this checkout); `dirty`: whether tracked files differ
    from it (the code that ran is not the commit's); `untracked`: files git neither tracks nor
    ignores, listed apart (a study's database, notes: they change no code that was committed),
    the first `UNTRACKED_SHOWN` paths and `... and N more`. Files git ignores (.gitignore: build
    outputs, wheels) are in neither. None for `commit` and `dirty` outside a git tree."""
    root = Path(__file__).resolve().parents[3] if root is None else Path(root)
    try:
        state: dict[str, Any] = {
            "commit": _git(root, "rev-parse", "HEAD"),
            "dirty": _git(root, "status", "--porcelain", "--untracked-files=no") != "",
        }
        untracked = _git(
            root,
            "ls-files",
            "--others",
            "--exclude-standard",
            "--directory",
            "--no-empty-directory",
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    paths = untracked.splitlines()
    if paths:
        more = len(paths) - UNTRACKED_SHOWN
        state["untracked"] = paths[:UNTRACKED_SHOWN] + (
            [f"... and {more} more"] if more > 0 else []
        )
    return state


ARGV_ENV = "AELAB_ARGV"


class RecordCommandLine(Callback):
    """Hydra callback: a sweep's command line, for its jobs' `run.json`.

    Jobs that another process runs (submitit's under SLURM or `submitit_local`, joblib's workers)
    see that process's own `sys.argv`. They inherit the sweep's environment (sbatch passes it
    on), so the user's line travels in `AELAB_ARGV` (JSON), set here before any job starts.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[ARGV_ENV] = json.dumps(sys.argv)


def command_line() -> list[str]:
    """The user's command line: `sys.argv`, or in a sweep's job the sweep's (`AELAB_ARGV`)."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun and ARGV_ENV in os.environ:
        try:
            argv = json.loads(os.environ[ARGV_ENV])
        except ValueError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return argv
    return list(sys.argv)


def run_info(flush_denormal: bool | None = None) -> dict[str, Any]:
    """What a rerun needs beyond the config: the command line, versions, the code's commit,
    under SLURM the job and how often SLURM restarted it (`SLURM_RESTART_COUNT`), and whether the
    process that wrote it flushed denormal floats (`flush_denormal`, measured; None: not told)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {
        "argv": command_line(),
        "python": sys.version.split()[0],
        "packages": versions,
        "git": _git_state(),
    }
    if flush_denormal is not None:
        info["flush_denormal"] = flush_denormal
    if under_slurm():
        info["slurm"] = {
            "job": slurm_job_id() if "SLURM_JOB_ID" in os.environ else None,
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
        }
    return info


# --- the HParams row --------------------------------------------------------------------------


def _short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


MODEL_NAMES = {"Autoencoder": "AE"}  # the class name shown, where it is not the usual one


def _fields(group: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in group.items() if not k.startswith("_")}


def _training_length(trainer: Mapping[str, Any]) -> dict[str, int]:
    """`max_epochs` as a number (-1: no epoch limit, as Lightning writes it; null is the same once
    `max_steps` is set), and `max_steps` where it ends the run."""
    max_epochs = trainer.get("max_epochs")
    max_steps = trainer.get("max_steps")
    length = {"max_epochs": -1 if max_epochs is None else int(max_epochs)}
    if max_steps is not None and max_steps >= 0:
        length["max_steps"] = int(max_steps)
    return length


def _schedule_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`kl_schedule` (constant, warmup, cyclical, capacity, free_bits: read from the class name,
    without importing torch) and `lr_scheduler` (none or the scheduler's class), with their
    fields as `kl_schedule.<field>` / `lr_scheduler.<field>` where they are not the default."""
    row: dict[str, Any] = {}
    kl = cfg.get("kl_schedule") or {}
    kind = _short(kl.get("_target_", "KLSchedule")).lower()
    kind = "constant" if kind == "klschedule" else kind
    if kind == "constant" and kl.get("free_bits"):
        kind = "free_bits"
    row["kl_schedule"] = kind
    if kind != "constant":
        row.update(_fields(kl, "kl_schedule."))
    lr = cfg.get("lr_scheduler") or {}
    scheduler = lr.get("scheduler") or {}
    row["lr_scheduler"] = _short(scheduler["_target_"]) if scheduler else "none"
    if scheduler:
        row.update(_fields(scheduler, "lr_scheduler."))
        row.update({f"lr_scheduler.{k}": lr.get(k) for k in ("interval", "frequency", "monitor")})
    return row


def hparams_row(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters that tell runs apart, flat and readable: TensorBoard's HParams columns
    and the variables of `aelab-report`.

    Model fields by their own names (`latent_dim`, `beta`), the corruption as `noise` (kind) and
    `noise_level` (std or p) for every noise, other groups' fields as `group.field`; no paths.
    Values are numbers or strings (lists as text); a field a model lacks (an AE's beta) is absent.
    Raises KeyError for a config without one of the groups, ImportError for a noise class that
    cannot be imported.
    """
    model, net, noise, optimizer = cfg["model"], cfg["net"], cfg["noise"], cfg["optimizer"]
    name = _short(model["_target_"])
    row: dict[str, Any] = {"model": MODEL_NAMES.get(name, name), **_fields(model)}
    row["noise"] = getattr(get_class(noise["_target_"]), "kind", _short(noise["_target_"]))
    row["noise_level"] = float(noise.get("std", noise.get("p", 0.0)))
    row["net"] = _short(net["_target_"])
    row.update(_fields(net, "net."))
    row["optimizer"] = _short(optimizer["_target_"])
    row["lr"] = optimizer.get("lr")
    row.update(_fields({k: v for k, v in optimizer.items() if k != "lr"}, "optimizer."))
    row.update(_schedule_fields(cfg))
    data = cfg["data"]  # a user's datamodule may lack MNIST's fields: those are left out
    row.update(
        batch_size=data.get("batch_size"),
        binarize=data.get("binarize"),
        classes=str(data["classes"]) if "classes" in data else None,
        seed=cfg["seed"],
        **_training_length(cfg["trainer"]),
    )
    # numbers and text only; a list prints the same from an OmegaConf ListConfig
    return {
        k: v if isinstance(v, str | int | float) else str(v)
        for k, v in row.items()
        if v is not None
    }
