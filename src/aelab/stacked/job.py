"""A stacked member's run folder, written as its single job writes it.

After the stack has trained, each member's job runs through Hydra's `run_job` like any job of
the sweep (its folder, `.hydra/`, the sweep's callbacks) with `member_task` as its task: it
records run.json (plus `stacked`: the group), logs the member's per-epoch figures to the run's
loggers, tests the member's best weights as an ordinary single model with the run's own
Trainer (so the test loop, the test-time suite and the image grids are the single run's code),
saves the best and last checkpoints through that Trainer's checkpoint path, and closes the run
as `aelab.train` does (metrics.json, HParams row, closing lines).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from aelab.callbacks.faults import last_checkpoint_path
from aelab.callbacks.run_config import RunConfigInCheckpoints
from aelab.checks import build
from aelab.run import outcome
from aelab.run.atomic import write_json_atomic
from aelab.run.checkpoint import CHECKPOINT_KEY, LAST_CHECKPOINT
from aelab.run.folder import nothing_left_if_refused, run_folder_lock
from aelab.run.outcome import NonFiniteLossError, TestFailedError
from aelab.stacked.core import StackedMember

log = logging.getLogger("aelab.stacked")


def _run_json(output_dir: Path) -> dict[str, Any]:
    path = output_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_stacked(output_dir: Path, stacked: dict[str, Any]) -> None:
    info = _run_json(output_dir)
    info["stacked"] = stacked
    write_json_atomic(output_dir / "run.json", info)


def _logged_before(output_dir: Path, member: StackedMember, stacked: dict[str, Any]) -> int:
    """How many of the member's epochs an earlier, stopped run of its stack logged already
    (run.json's `stacked.logged`, same config): a continued stack logs only the rest."""
    if not member.resumed:
        return 0
    before = _run_json(output_dir).get("stacked") or {}
    return int(before.get("logged", 0)) if before.get("config") == stacked.get("config") else 0


def finish_member(
    cfg: DictConfig, member: StackedMember, stacked: dict[str, Any], command: str = ""
) -> dict[str, float]:
    """Write member's run folder (`cfg.paths.output_dir`) and return its metrics.

    `stacked`: what run.json records about the group (its jobs, this member's place in it).
    `command`: what continues a stopped stack (metrics.json's `resume` when it was stopped).
    Raises NonFiniteLossError for a member the NaN guard stopped (metrics.json says failed).
    """
    from aelab.numerics import denormals_flushed
    from aelab.train import best_checkpoint, build_trainer, complete_run, record_run

    output_dir = Path(cfg.paths.output_dir)
    with run_folder_lock(output_dir):
        logged = _logged_before(output_dir, member, stacked)
        # a continued member whose folder a stopped run wrote: its run.json keeps that entry
        record_run(output_dir, resumed=member.resumed, flushed=denormals_flushed())
        stacked = {**stacked, "logged": len(member.history)}
        _record_stacked(output_dir, stacked)
        if member.failed is not None:
            message = f"{member.failed}; no checkpoint was written"
            outcome.failed(output_dir, message, {"step": member.failed_step})
            raise NonFiniteLossError(message)
        model = member.model
        run_config = OmegaConf.to_container(cfg, resolve=True)
        trainer = build_trainer(cfg, extra_callbacks=[RunConfigInCheckpoints(run_config)])
        if member.interrupted_step is not None:
            return _interrupted(cfg, trainer, member, command, logged)
        _log_history(cfg, trainer, member, logged)
        metrics = dict(member.last_validation)
        model.last_validation = dict(metrics)
        best_state = member.best_state or member.last_state
        model.load_state_dict(best_state)
        datamodule = build(cfg.data, "data")
        if cfg.test:
            try:
                results = trainer.test(model, datamodule=datamodule, weights_only=True)
            except Exception as err:  # noqa: BLE001 - as train(): the run's figures are kept
                outcome.failed(output_dir, f"testing failed: {err}", metrics)
                raise TestFailedError(err, metrics) from err
            metrics.update({k: float(v) for k, v in results[0].items()})
        else:  # what trainer.test does first: the model in the Trainer, to checkpoint it
            trainer.strategy.connect(model)
            model.trainer = trainer
        _save_checkpoints(trainer, model, member)
        best, best_path = best_checkpoint(trainer), _best_path(trainer, member)
        if best is not None and best_path is not None:
            best.best_model_path = str(best_path)  # the closing lines name it
        complete_run(output_dir, trainer, run_config, metrics)
    return metrics


def _interrupted(
    cfg: DictConfig, trainer: Any, member: StackedMember, command: str, logged: int
) -> dict[str, float]:
    """An interrupted member: its weights as last.ckpt (weights only: aelab-eval scores them)
    and metrics.json saying so, with the command that continues its stack. Returns no
    figures."""
    output_dir = Path(cfg.paths.output_dir)
    _log_history(cfg, trainer, member, logged)
    trainer.strategy.connect(member.model)
    member.model.trainer = trainer
    _save_checkpoints(trainer, member.model, member, best=False)
    outcome.interrupted(output_dir, member.interrupted_step, command)
    for logger in trainer.loggers:
        logger.finalize("interrupted")
    return {}


def _log_history(cfg: DictConfig, trainer: Any, member: StackedMember, logged: int = 0) -> None:
    """The member's per-epoch figures (train/*, val/*, the learning rate where the run has a
    LearningRateMonitor) and image grids, at the steps its single run logs them; the first
    `logged` epochs are left out (a stopped run of the stack logged them)."""
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import TensorBoardLogger

    lr_name = None
    if any(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks):
        lr_name = f"lr-{str(cfg.optimizer._target_).rsplit('.', 1)[-1]}"
    tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    for entry in member.history[logged:]:
        figures = {k: v for k, v in entry["figures"].items() if math.isfinite(v)}
        for logger in trainer.loggers:
            if lr_name is not None and "lr" in entry:  # at the epoch's start, as the monitor
                # logs it (a validation within the epoch, `val_check_interval`, has none)
                lr = {lr_name: float(entry.get("lr", cfg.optimizer.lr))}
                logger.log_metrics(lr, step=entry.get("start_step", entry["step"] - 1))
            logger.log_metrics({**figures, "epoch": entry["epoch"]}, step=entry["step"] - 1)
        if tb is not None:
            for name, grid in entry.get("images", {}).items():
                tb.experiment.add_image(f"images/{name}", grid, global_step=entry["step"])


def epoch_images(members: list[StackedMember], epoch: int, datamodule: Any) -> None:
    """`train_stacked`'s per-epoch hook: each validated member's image grids of this epoch (the
    run's `callbacks.images`, on its first validation images), kept in its history."""
    from aelab.callbacks import ImageGrids

    for member in members:
        chosen = member.cfg.get("callbacks") or {}
        if chosen.get("images") is None or not member.history:
            continue
        entry = member.history[-1]
        if entry["epoch"] != epoch or "val/loss" not in entry["figures"]:
            continue
        grids = build(chosen.images, "callbacks.images")
        if not isinstance(grids, ImageGrids):
            continue
        x = datamodule.fixed_batch("val", 16)[0]
        entry["images"] = {k: v.cpu() for k, v in grids.grids(member.model, x).items()}


def _best_path(trainer: Any, member: StackedMember) -> Path | None:
    """Where the run's ModelCheckpoint (by val/loss) puts the best epoch; None without one."""
    best = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)
    if best is None or member.best_epoch is None:
        return None
    name = best.format_checkpoint_name({"epoch": member.best_epoch, "step": member.global_step})
    return Path(name)


def _save_checkpoints(trainer: Any, model: Any, member: StackedMember, best: bool = True) -> None:
    """The best (by val/loss) and last weights, through the Trainer's own checkpoint path (the
    model's `on_save_checkpoint`, aelab's atomic writer): loadable as any single run's."""
    best_path = _best_path(trainer, member) if best else None
    if best_path is not None:
        _save_weights(trainer, best_path)
    last = last_checkpoint_path(trainer)
    if last.name == LAST_CHECKPOINT.name:
        model.load_state_dict(member.last_state)
        _save_weights(trainer, last)


def _save_weights(trainer: Any, path: Path) -> None:
    """`trainer.save_checkpoint(path, weights_only=True)` with the run config in it: Lightning
    calls no callback for a weights-only checkpoint, so RunConfigInCheckpoints' entry (which
    aelab-eval and load_run rebuild the run from) is put in here."""
    checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=True)
    config = next(
        (cb.config for cb in trainer.callbacks if isinstance(cb, RunConfigInCheckpoints)), None
    )
    checkpoint.setdefault(CHECKPOINT_KEY, {})["config"] = config
    trainer.strategy.save_checkpoint(checkpoint, path)


def done_task(folder: Path) -> Any:
    """The task function for a job that completed in an earlier run of its sweep: its folder
    is left as it is; returns its `optimized_metric`."""

    def task(cfg: DictConfig) -> float | None:
        log.info("%s: completed before, left as it is", folder)
        return json.loads((folder / "metrics.json").read_text()).get(outcome.objective(cfg))

    return task


def member_task(
    member: StackedMember | BaseException, stacked: dict[str, Any], command: str = ""
) -> Any:
    """The task function Hydra's `run_job` runs for one member: its error ends it as any sweep
    job's does (`aelab.run.outcome.job_failed`: metrics.json records it; the sweep goes on)."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    def task(cfg: DictConfig) -> float | None:
        with outcome.exit_on_config_error("aelab-train"), nothing_left_if_refused():
            try:
                if isinstance(member, BaseException):
                    raise member
                metrics = finish_member(cfg, member, stacked, command)
            except Exception as err:
                in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
                output_dir = Path(cfg.paths.output_dir)
                return outcome.job_failed(err, output_dir, in_sweep, rank_zero_only.rank == 0)
        return metrics.get(outcome.objective(cfg))

    return task


def say(line: str) -> None:
    print(f"aelab-train: {line}", file=sys.stderr, flush=True)
