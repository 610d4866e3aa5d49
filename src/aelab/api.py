"""aelab from Python (a notebook): a finished run's model, config, figures and files.

run = aelab.load_run("outputs/runs/2026-01-01/12-00-00_1234abcd_train")
x_hat = run.model.reconstruct(x)      # x: B x C x H x W in [0, 1]
run.metrics["test/loss"], run.config.model.latent_dim, run.paths.checkpoint
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aelab.checks import ConfigError
from aelab.models.base import AutoencoderModule
from aelab.run.checkpoint import (
    LAST_CHECKPOINT,
    load_checkpoint,
    model_from_checkpoint,
    stored_entry,
)
from aelab.run.record import read_metrics

CHECKPOINTS = ("best", "last")


class RunFolderError(ValueError):
    """A folder that `load_run` cannot read a run from; the message names the folder and why."""


@dataclass(frozen=True)
class RunPaths:
    """A run folder's files (each may be absent: `images` of a run with eval.images=false)."""

    run_dir: Path
    checkpoint: Path  # the one the model was loaded from
    last_checkpoint: Path
    best_checkpoint: Path | None  # by val/loss; None when the run recorded none
    metrics: Path  # metrics.json
    hydra: Path  # .hydra/: config.yaml (as composed), overrides.yaml
    images: Path
    tensorboard: Path


@dataclass(frozen=True)
class Run:
    """A trained run: `model` (CPU, eval mode), `config` (the composed config, resolved, as
    the checkpoint stores it), `metrics` (metrics.json; {} if it has none) and `paths`."""

    model: AutoencoderModule
    config: DictConfig
    metrics: dict[str, Any]
    paths: RunPaths


def _best_checkpoint(last: dict[str, Any], folder: Path) -> Path | None:
    """The best checkpoint the run's val/loss ModelCheckpoint recorded, looked up by name in
    `folder` (the recorded path is absolute: the run folder may have moved since)."""
    for state in (last.get("callbacks") or {}).values():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            best = folder / Path(state["best_model_path"]).name
            if best.is_file():
                return best
    return None


def load_run(run_dir: str | Path, checkpoint: str = "best") -> Run:
    """Load the run in `run_dir` (a folder aelab-train made: a single run, or a sweep's job).

    `checkpoint`: "best" (lowest val/loss; the last one when the run recorded no best) or
    "last" (checkpoints/last.ckpt). Checkpoints are loaded weights-only, as aelab-eval does.
    Raises RunFolderError naming the folder when it is not a run or holds no checkpoint, and
    ValueError for an unknown `checkpoint`.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}: allowed one of {', '.join(CHECKPOINTS)}")
    folder = Path(run_dir).expanduser().resolve()
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: not a run folder (no such folder)")
    if not (folder / ".hydra" / "config.yaml").is_file():
        raise RunFolderError(f"{folder}: not a run folder (no .hydra/config.yaml)")
    last = folder / LAST_CHECKPOINT
    if not last.is_file():
        raise RunFolderError(f"{folder}: the run holds no checkpoint ({LAST_CHECKPOINT} missing)")
    try:
        stored = load_checkpoint(last)
        best = _best_checkpoint(stored, last.parent)
        path = best if checkpoint == "best" and best is not None else last
        if path != last:
            stored = load_checkpoint(path)
    except ConfigError as err:
        raise RunFolderError(f"{folder}: {err.allowed}") from None
    model = model_from_checkpoint(stored, str(path))
    model.eval()
    try:
        metrics = read_metrics(folder)
    except (OSError, ValueError):
        metrics = {}
    paths = RunPaths(
        run_dir=folder,
        checkpoint=path,
        last_checkpoint=last,
        best_checkpoint=best,
        metrics=folder / "metrics.json",
        hydra=folder / ".hydra",
        images=folder / "images",
        tensorboard=folder / "tb",
    )
    config = OmegaConf.create(stored_entry(stored)["config"])
    return Run(model=model, config=config, metrics=metrics, paths=paths)


__all__ = ["Run", "RunFolderError", "RunPaths", "load_run"]
