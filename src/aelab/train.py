"""aelab-train: compose a run with Hydra, train it with Lightning, test it, write metrics.json.

aelab-train model=vae model.latent_dim=8 model.beta=4 noise=gaussian noise.std=0.3
aelab-train -m model=ae,vae model.latent_dim=2,16        # a sweep, one folder per job
aelab-train model=vae ... resume=true                     # continue the stopped run
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import logging
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.accelerators import CUDAAccelerator, MPSAccelerator
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from aelab import CONFIG_PATH
from aelab.board.logger import drop_unused_event_files, write_hparams
from aelab.board.summaries import hparams_with_flags
from aelab.callbacks.data_range import DataRangeCheck
from aelab.callbacks.faults import GracefulInterrupt, last_checkpoint_path
from aelab.callbacks.run_config import RunConfigInCheckpoints
from aelab.callbacks.validate import ValidateAtMaxSteps
from aelab.checkpoint_io import AtomicCheckpointIO
from aelab.checks import (
    ConfigError,
    accepted_keys,
    build,
    check_choice,
    check_int,
    check_precision,
    check_search_path,
    check_seeds,
    check_test_batches,
    in_group,
    locate,
    refusal,
)
from aelab.contract import check_model, check_model_target, check_optimized_metric
from aelab.numerics import set_flush_denormal, set_threads
from aelab.run import outcome
from aelab.run.atomic import write_json_atomic
from aelab.run.checkpoint import (
    LAST_CHECKPOINT,
    check_state_shapes,
    from_start_dir,
    load_checkpoint,
    stored_entry,
)
from aelab.run.folder import (
    nothing_left_if_refused,
    run_folder_lock,
    run_overrides,
    stored_overrides,
)
from aelab.run.outcome import NonFiniteLossError, RunInterrupted, TestFailedError
from aelab.run.output import quiet_lightning
from aelab.run.record import command_line, hparams_row, read_metrics, run_info
from aelab.slurm import latest_hpc_checkpoint
from aelab.trackers import MLFlowLogger

log = logging.getLogger("aelab.train")

# At exit Python's last garbage collection walks every object torch, Lightning and their imports
# made (about half a million): seconds of a job ("Per-job cost" in docs/explanation/performance.md),
# for nothing, as the run's files are written and closed by then. Objects frozen at exit are left
# out of it (the atexit handlers run before it); a sweep's jobs in one process are not concerned,
# this runs once, at its end.
atexit.register(gc.freeze)


SCHEDULE_GROUPS = ("kl_schedule", "lr_scheduler")


def schedule_groups(cfg: DictConfig) -> dict[str, Any]:
    """The `kl_schedule` and `lr_scheduler` groups for `cfg.model`, as plain dicts. A model class
    that takes neither (a user's own, not built on AutoencoderModule) gets them only when they
    are not the defaults: then it is refused, naming the group.

    Raises ConfigError naming the group a model cannot take.
    """
    keys = accepted_keys(locate(cfg.model._target_)) if cfg.model.get("_target_") else None
    out = {}
    for group in SCHEDULE_GROUPS:
        if cfg.get(group) is None:
            continue
        value = OmegaConf.to_container(cfg[group], resolve=True)
        if keys is None or group in keys:
            out[group] = value
        elif not _is_default_schedule(group, value):
            allowed = f"the default: {cfg.model._target_} takes no {group}"
            raise ConfigError(group, value.get("_target_", value), allowed, grouped=True)
    return out


def _is_default_schedule(group: str, value: dict[str, Any]) -> bool:
    if group == "lr_scheduler":
        return not value.get("scheduler")
    return value.get("_target_") == "aelab.schedules.KLSchedule" and not value.get("free_bits")


def data_image_shape(cfg: DictConfig, datamodule: Any = None) -> tuple[int, ...] | None:
    """The images' C, H, W the data serves: the built `datamodule`'s `image_shape`, else the
    class attribute of `cfg.data._target_` (known without loading any data); None when neither
    says (the model keeps its own default)."""
    shape = getattr(datamodule, "image_shape", None)
    if shape is None:
        target = cfg.get("data", {}).get("_target_")
        try:
            shape = getattr(locate(target), "image_shape", None) if target else None
        except ImportError:
            shape = None
    return tuple(shape) if isinstance(shape, (tuple, list)) else None


def build_model(cfg: DictConfig, datamodule: Any = None) -> pl.LightningModule:
    """The model from `cfg.model`, with the `net`, `noise` and `optimizer` groups handed in, and
    the data's image shape (`data_image_shape`) where `cfg.model` does not set `image_shape`.

    The model builds the net and the noise and checks `optimizer.lr`, naming their groups
    (`net.channels`, `noise.std`, `optimizer.lr`); the optimizer is built here once on a stand-in
    parameter, as torch checks its other values (weight_decay, momentum) only when training
    starts.

    Raises ConfigError naming the group's field, or `model._target_` for a target that cannot
    be imported or is not an aelab model (`aelab.contract`).
    """
    check_model_target(cfg.model.get("_target_"))
    groups = {
        g: OmegaConf.to_container(cfg[g], resolve=True) for g in ("net", "noise", "optimizer")
    }
    shape = data_image_shape(cfg, datamodule)
    if shape is not None and "image_shape" not in cfg.model:
        keys = accepted_keys(locate(cfg.model._target_))
        if keys is None or "image_shape" in keys:  # a user's model may not take one
            groups["image_shape"] = list(shape)
    groups.update(schedule_groups(cfg))
    model = build(cfg.model, "model", _recursive_=False, **groups)
    build(cfg.optimizer, "optimizer", params=[torch.nn.Parameter(torch.zeros(1))])
    return check_model(model, cfg.model.get("_target_"))


def check_image_shape(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """Refuse a model built for other images than the datamodule serves (before a shape error
    deep in the first step). Either side without `image_shape` is not checked.

    Raises ConfigError naming `model.image_shape` and the data's shape.
    """
    data_shape = getattr(datamodule, "image_shape", None)
    model_shape = getattr(model, "image_shape", None)
    if data_shape is None or model_shape is None or tuple(data_shape) == tuple(model_shape):
        return
    raise ConfigError(
        "model.image_shape",
        list(model_shape),
        f"the data's image_shape {list(data_shape)} (leave model.image_shape unset: a model "
        "takes the data's)",
        grouped=True,
    )


def _optional_int(field: str, value: Any, low: int) -> int | None:
    if value is None:
        return None
    try:
        return check_int(field, value, low)
    except ConfigError:
        raise ConfigError(field, value, f"null or an integer >= {low}") from None


def _accelerators() -> list[str]:
    """The accelerator names Lightning can use on this machine."""
    names = ["auto", "cpu"]
    if CUDAAccelerator.is_available():
        names += ["gpu", "cuda"]
    if MPSAccelerator.is_available():
        names += ["gpu", "mps"]
    return list(dict.fromkeys(names))


def check_trainer(trainer: DictConfig) -> None:
    """Lightning's own checks come late and deep (or never: `max_epochs=-1` without `max_steps`
    trains for ever); these are the values users get wrong. Raises ConfigError (`trainer.*`)."""
    check_precision(trainer.get("precision"))
    with in_group("trainer"):
        max_epochs = _optional_int("max_epochs", trainer.get("max_epochs"), -1)
        max_steps = check_int("max_steps", trainer.get("max_steps", -1), -1)
        for field in ("min_epochs", "min_steps"):
            _optional_int(field, trainer.get(field), 0)
        _optional_int("check_val_every_n_epoch", trainer.get("check_val_every_n_epoch", 1), 1)
        check_int("accumulate_grad_batches", trainer.get("accumulate_grad_batches", 1), 1)
        if max_epochs in (None, -1) and max_steps == -1 and trainer.get("max_time") is None:
            # Lightning: -1 trains for ever, null for 1000 epochs
            raise ConfigError(
                "max_epochs",
                max_epochs,
                "an integer >= 0 (-1 or null: no epoch limit, with max_steps or max_time set)",
            )
        accelerator = trainer.get("accelerator", "auto")
        if isinstance(accelerator, str):
            check_choice("accelerator", accelerator, tuple(_accelerators()))


def _callback_group(callbacks: DictConfig, key: str) -> str:
    """The group a callback's values are set in: `callbacks.evaluation: ${eval}` is `eval`."""
    raw = OmegaConf.to_container(callbacks, resolve=False)[key]
    found = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
    return found.group(1) if found else f"callbacks.{key}"


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The `logger` group's loggers; `logger.<name>=null` leaves one out."""
    chosen = cfg.get("logger") or {}
    return [build(c, f"logger.{k}") for k, c in chosen.items() if c is not None]


def build_trainer(
    cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = (), **kwargs: Any
) -> pl.Trainer:
    """The Trainer of `cfg.trainer` with the `callbacks` and `logger` groups, and
    `extra_callbacks` after them (callbacks given as objects, not built from the config).

    Raises ConfigError naming the group's field, also for Lightning's own refusals.
    """
    chosen = cfg.get("callbacks") or {}
    # `callbacks.<name>=null` switches one off (Lightning would fail on a None deep in its loop)
    callbacks = [build(c, _callback_group(chosen, k)) for k, c in chosen.items() if c is not None]
    if cfg.trainer.get("max_steps", -1) >= 0:  # the test must score the weights training ended with
        callbacks.append(ValidateAtMaxSteps())
    callbacks.append(DataRangeCheck())
    callbacks.extend(extra_callbacks)
    loggers = build_loggers(cfg)
    if not loggers:  # `logger=none`: Lightning's LR monitor refuses to start without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    if "plugins" not in cfg.trainer and "plugins" not in kwargs:
        kwargs["plugins"] = [AtomicCheckpointIO()]  # every checkpoint: temp file and rename
    return build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, **kwargs)


def checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """`resume`: the run folder's last.ckpt (Hydra already chose that folder), or `ckpt_path`."""
    resume = cfg.get("resume")
    if resume is None or resume is False:
        return Path(cfg.ckpt_path) if cfg.ckpt_path else None
    if cfg.ckpt_path:
        raise ConfigError(
            "ckpt_path", cfg.ckpt_path, f"null with resume (it uses {LAST_CHECKPOINT})"
        )
    last = Path(cfg.paths.output_dir) / LAST_CHECKPOINT
    if last.is_file():
        return last
    runs = Path(cfg.paths.log_dir) / "runs"
    if resume is True:
        raise ConfigError(
            "resume",
            True,
            f"a run under {runs} started with these overrides, holding {LAST_CHECKPOINT} (none)",
        )
    stored = stored_overrides(str(resume))
    if stored is None:
        why = "not a run folder"
    elif not (Path(str(resume)) / LAST_CHECKPOINT).is_file():
        why = f"it holds no {LAST_CHECKPOINT}"
    else:
        why = f"it was started with: {' '.join(stored) or 'no overrides'}"
    raise ConfigError(
        "resume", str(resume), f"true or a run folder started with these overrides ({why})"
    )


def resume_path(cfg: DictConfig, model: pl.LightningModule) -> tuple[str | None, int]:
    """The checkpoint to continue from, after checking it belongs to this kind of model, and its
    global step (0 without one)."""
    path = checkpoint_to_resume(cfg)
    if path is None:
        return None, 0
    stored = load_checkpoint(path)
    wanted = f"{type(model).__module__}.{type(model).__qualname__}"
    found = stored_entry(stored)["model_class"]
    stored_latent = stored["hyper_parameters"].get("latent_dim")
    if found != wanted or stored_latent != model.latent_dim:
        raise ConfigError(
            "resume" if cfg.get("resume") else "ckpt_path",
            str(path),
            f"a checkpoint of {wanted} with latent_dim="
            f"{model.latent_dim} (it holds {found} with latent_dim={stored_latent})",
        )
    field = "resume" if cfg.get("resume") else "ckpt_path"
    check_state_shapes(stored["state_dict"], model.state_dict(), field, str(path))
    # Lightning reads it from the current folder: the run folder under hydra.job.chdir=true
    return str(from_start_dir(path)), int(stored.get("global_step", 0))


def record_run(output_dir: Path, resumed: bool, flushed: bool | None = None) -> None:
    """`run.json`: how to reproduce the run; a resumed run adds its own entry under `resumed`.

    `resumed`: started with `resume=...`. A job SLURM restarted (requeued, preempted) resumes
    too: Lightning's `fit` continues it from the newest `hpc_ckpt_*` in its folder. `flushed`:
    whether denormal floats were flushed to zero in this process (`aelab.numerics`).
    """
    path, info = output_dir / "run.json", run_info(flush_denormal=flushed)
    requeued = SLURMEnvironment.detect() and latest_hpc_checkpoint(output_dir) is not None
    if (resumed or requeued) and path.is_file():
        first = json.loads(path.read_text())
        first.setdefault("resumed", []).append(info)
        info = first
    write_json_atomic(path, info)


def best_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best model by a monitored value (val/loss)."""
    return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)


def fit_and_test(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | None,
    start_step: int = 0,
    finished: dict[str, Any] | None = None,
) -> dict[str, float] | None:
    """Fit, then test the best checkpoint: the last `val/*` figures and the `test/*` ones.

    None when a finished run (`finished`: its completed metrics.json) was resumed and nothing
    trained: its figures stand, and testing again would log `test/*` twice at the same step.
    """
    try:
        # checkpoints are plain containers: every load (resume, SLURM's hpc_ckpt_*, the best for
        # testing) is weights-only, whatever torch's default or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD say
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ConfigError:
        raise
    except (MisconfigurationException, ValueError) as err:
        # settings Lightning checks only against the data (`val_check_interval` > the batches)
        named = refusal(err, cfg.trainer, "trainer", "what Lightning accepts", quoted_only=True)
        if named is None:
            raise
        raise named from err
    if finished is not None and trainer.global_step == start_step:
        return None
    # the last validation figures; testing replaces callback_metrics. A fit resumed after its
    # last validation validates no more: the checkpoint kept that validation's figures
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    metrics = metrics or dict(model.last_validation)
    if cfg.test:
        best = best_checkpoint(trainer)
        best_path = best.best_model_path if best is not None else ""
        try:
            results = trainer.test(
                model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True
            )
        except Exception as err:  # noqa: BLE001 - any of them loses the run's figures otherwise
            raise TestFailedError(err, metrics) from err
        metrics.update({k: float(v) for k, v in results[0].items()})
    return metrics


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Fit, test the best checkpoint, and write `metrics.json` and the HParams row.

    `metrics.json` also records a run that failed (NaN loss, an error while testing) or was
    stopped (Ctrl-C). `extra_callbacks` join the `callbacks` group's (e.g. a benchmark's timer).
    """
    quiet_lightning(bool(cfg.get("verbose", False)))
    check_seeds(cfg)
    check_trainer(cfg.trainer)
    if cfg.test:
        check_test_batches(cfg.trainer.get("limit_test_batches"))
    flushed = set_flush_denormal(cfg.get("flush_denormal", True))
    set_threads(cfg.get("threads"))  # jobs of a parallel sweep share the cores
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = build(cfg.data, "data")
    model = build_model(cfg, datamodule)
    check_image_shape(model, datamodule)
    check_optimized_metric(outcome.objective(cfg), model)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    trainer = build_trainer(
        cfg, extra_callbacks=[RunConfigInCheckpoints(run_config), *extra_callbacks]
    )
    ckpt_path, start_step = resume_path(cfg, model)
    finished = outcome.completed_metrics(output_dir) if cfg.get("resume") else None
    # DDP's other processes share the folder and write nothing in it
    writer = trainer.is_global_zero
    with run_folder_lock(output_dir) if writer else contextlib.nullcontext():
        if writer:
            record_run(output_dir, resumed=bool(cfg.get("resume")), flushed=flushed)
        try:
            metrics = fit_and_test(cfg, trainer, model, datamodule, ckpt_path, start_step, finished)
        except NonFiniteLossError as err:
            raise _failed(output_dir, trainer, err) from None
        except TestFailedError as err:
            if writer:
                outcome.failed(output_dir, str(err), err.val_metrics)
            raise
        except (outcome.Terminated, SIGTERMException):  # SIGTERM outside a training step
            raise _interrupted(output_dir, trainer, signal.SIGTERM) from None
        except (KeyboardInterrupt, SystemExit) as err:
            # Lightning ends a Ctrl-C with a plain sys.exit(1) after its graceful shutdown; its
            # subclasses (SIGTERM, SLURM's requeue) are not ours
            if isinstance(err, SystemExit) and (
                type(err) is not SystemExit or not trainer.interrupted
            ):
                raise
            raise _interrupted(output_dir, trainer) from None
    if metrics is None:  # a finished run, resumed: nothing to add
        metrics = {k: v for k, v in (finished or {}).items() if k != "status"}
        if writer:
            for logger in trainer.loggers:
                drop_unused_event_files(logger)
            log.info("the run had already completed: metrics.json and TensorBoard unchanged")
            _say_where(output_dir, trainer, metrics)
        return metrics
    if not writer:
        return metrics
    complete_run(output_dir, trainer, run_config, metrics)
    return metrics


def complete_run(
    output_dir: Path, trainer: pl.Trainer, run_config: dict[str, Any], metrics: dict[str, float]
) -> None:
    """A completed run's closing writes: metrics.json, the HParams row (from `run_config`, the
    composed config), the loggers flushed and closed, the closing lines (also for a member of a
    stacked sweep, `aelab.stacked`)."""
    outcome.completed(output_dir, metrics)
    row = hparams_with_flags(hparams_row(run_config), metrics)
    # a sweep's job writes no HParams columns: the sweep writes them over all its jobs at its
    # end (one job's would stand for every job of the sweep until then)
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    for logger in trainer.loggers:
        logger.log_hyperparams(row)
        if isinstance(logger, TensorBoardLogger):
            write_hparams(logger, row, metrics, experiment=not in_sweep)
        if isinstance(logger, MLFlowLogger):
            logger.log_run_figures(output_dir)
        logger.finalize("success")  # flush and close the event file
    _say_where(output_dir, trainer, metrics)


def _failed(output_dir: Path, trainer: pl.Trainer, err: NonFiniteLossError) -> NonFiniteLossError:
    last = last_checkpoint_path(trainer)
    kept = f"last good checkpoint: {last}" if last.is_file() else "no checkpoint was written"
    message = f"{err}; {kept}"
    if trainer.is_global_zero:
        outcome.failed(output_dir, message, {"step": trainer.global_step})
    return NonFiniteLossError(message)


def _interrupted(
    output_dir: Path, trainer: pl.Trainer, signum: int | None = None
) -> RunInterrupted:
    asked = [cb.signal for cb in trainer.callbacks if isinstance(cb, GracefulInterrupt)]
    signum = signum or (asked[0] if asked else signal.SIGINT)
    last = last_checkpoint_path(trainer)
    command = continue_command(output_dir)
    if trainer.is_global_zero:
        outcome.interrupted(output_dir, trainer.global_step, command)
    if not last.is_file():
        where = f"interrupted at step {trainer.global_step}, before any checkpoint"
        return RunInterrupted(where, signum)
    return RunInterrupted(
        f"interrupted at step {trainer.global_step}; checkpoint: {last}\nto continue: {command}",
        signum,
    )


def continue_command(output_dir: Path) -> str:
    """The command that continues a stopped run, as a shell takes it pasted.

    A single run: its overrides and `resume=<run folder>`. A sweep's job: the sweep's own
    command line into the same sweep folder (`hydra.sweep.dir=`), which leaves its completed
    jobs as they are and continues this one from its `last.ckpt` (`hydra_main`). A job folder's
    name holds `=` (`0_seed=0`), so `resume=<job folder>` would not parse, and as an override
    of the sweep's command it would apply to every job.
    """
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return shlex.join(["aelab-train", *run_overrides(sys.argv[1:]), f"resume={output_dir}"])
    sweep_dir = Path(output_dir).parent  # a job's folder is one name in its sweep's
    kept = [
        a
        for a in run_overrides(command_line()[1:])
        if a.lstrip("+").split("=", 1)[0] != "hydra.sweep.dir"
    ]
    return shlex.join(["aelab-train", *kept, f"hydra.sweep.dir={sweep_dir}"])


def continues_in(folder: Path) -> bool:
    """True when a sweep's job folder holds a run that stopped before completing (interrupted,
    or killed before it could say so: no metrics.json) and its `last.ckpt`: the sweep run again
    continues it there, as `resume=` continues a single run."""
    if not (folder / LAST_CHECKPOINT).is_file():
        return False
    try:
        status = read_metrics(folder).get("status")
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return status == "interrupted"


def _say_where(output_dir: Path, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """The closing lines: where the run's files are, naming only those that were written (a
    `fast_dev_run` or a run without validation has no best checkpoint, and only a TensorBoard
    logger writes what `tensorboard` reads)."""
    lines = [f"run directory:  {output_dir}"]
    ckpt = best_checkpoint(trainer)
    if ckpt is not None and ckpt.dirpath:
        folder = Path(ckpt.dirpath)
        names = [LAST_CHECKPOINT.name] if (folder / LAST_CHECKPOINT.name).is_file() else []
        best = Path(ckpt.best_model_path) if ckpt.best_model_path else None
        if best is not None and best.is_file() and best.name != LAST_CHECKPOINT.name:
            names.append(f"best {best.name}")
        if names:
            lines.append(f"checkpoints:    {folder} ({', '.join(names)})")
    if any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers):
        # quoted as a shell needs it: a folder with spaces or quotes is one argument
        lines.append(f"tensorboard:    tensorboard --logdir {shlex.quote(str(output_dir))}")
    shown = {k: round(v, 5) for k, v in metrics.items() if k.startswith("test/")}
    lines.append(f"test metrics:   {shown}")
    print("\n".join(lines), flush=True)


def main() -> None:
    """aelab-train: the command line's config folders checked first (Hydra would report a
    missing `--config-dir` with a traceback hint and skip a missing `hydra.searchpath`)."""
    with outcome.exit_on_config_error("aelab-train"):
        check_search_path(sys.argv[1:])
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """The run (or the sweep's job) of `cfg`; returns its `optimized_metric`, the objective a
    sweeper minimises. How an error ends it (exit status, or the worst objective for a sweep's
    job) is `aelab.run.outcome.job_failed`'s to say."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if in_sweep:
        done = outcome.completed_metrics(Path(cfg.paths.output_dir))
        if done is not None:
            # a sweep run again in its folder: this job's config completed there before (its
            # folder name holds only its own config's results: `aelab.resolvers.free_job_dirname`)
            log.info("completed earlier with these overrides: left as it is")
            name = Path(cfg.paths.output_dir).name
            print(f"aelab-train: {name}: completed earlier, left as it is", flush=True)
            return done.get(outcome.objective(cfg))
        # (one fine-tuned from `ckpt_path` starts over: `resume` and `ckpt_path` exclude each other)
        # (a requeued SLURM job resumes from its hpc_ckpt_<n>.ckpt, Lightning's own way)
        requeued = latest_hpc_checkpoint(cfg.paths.output_dir) is not None
        stopped = continues_in(Path(cfg.paths.output_dir)) and not requeued
        if stopped and not cfg.get("resume") and not cfg.ckpt_path:
            name = Path(cfg.paths.output_dir).name
            print(f"aelab-train: {name}: stopped earlier, continues from its last.ckpt", flush=True)
            cfg.resume = str(cfg.paths.output_dir)
    with outcome.exit_on_config_error("aelab-train"), nothing_left_if_refused():
        try:
            with outcome.sigterm_stops_the_run():
                metrics = train(cfg)
        except (Exception, outcome.Terminated) as err:
            output_dir = Path(cfg.paths.output_dir)
            return outcome.job_failed(err, output_dir, in_sweep, rank_zero_only.rank == 0)
    return metrics.get(outcome.objective(cfg))


if __name__ == "__main__":
    main()
