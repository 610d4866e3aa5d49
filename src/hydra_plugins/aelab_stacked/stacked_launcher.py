"""`hydra/launcher=stacked`: Hydra's basic launcher, with the sweep's same-shape jobs trained
together as one stacked model (`aelab.stacked`), at most `hydra.launcher.max_models` per stack.

Jobs whose composed configs differ only in stackable values (seed, beta, noise level, lr, weight
decay, clipping threshold) form a stack; the others, and a model that cannot be stacked, run one
by one as the basic launcher runs them. Every job keeps its own folder, `.hydra/`, run.json,
metrics.json, TensorBoard run and checkpoints; run.json's `stacked` entry names its group.

A stack keeps its checkpoint in `<sweep dir>/stacks/<group key>/stack.ckpt` while it trains
(`aelab.stacked.checkpoint`): the same sweep run again in the same folder (`hydra.sweep.dir`)
continues it, and leaves the jobs that completed as they are. Under SLURM, SIGUSR1 saves it after
the current step and requeues the job (`scontrol requeue`), which then continues from it.
"""

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where a
# dataclass cannot resolve string annotations
import json
import logging
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from aelab.slurm import REQUEUE_SIGNAL, STOP_SIGNAL

log = logging.getLogger("aelab.stacked")


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.aelab_stacked.stacked_launcher.StackedLauncher"
    max_models: Any = 8  # checked by the launcher: its own one-line error, not OmegaConf's


ConfigStore.instance().store(
    group="hydra/launcher", name="stacked_base", node=StackedLauncherConf, provider="aelab"
)


def check_max_models(value: Any) -> int:
    """Raises aelab's ConfigError (`hydra.launcher.max_models`) unless an integer >= 1."""
    from aelab.checks import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("hydra.launcher.max_models", value, "an integer >= 1", grouped=True)
    return value


class StackedLauncher(BasicLauncher):
    def __init__(self, max_models: Any = 8) -> None:
        super().__init__()
        from aelab.run.outcome import exit_on_config_error

        with exit_on_config_error("aelab-train"):  # one line, exit 2, before any job starts
            self.max_models = check_max_models(max_models)

    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        return cfg

    def _run(self, cfg: DictConfig, task: Any) -> JobReturn:
        assert self.config is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task,
            config=cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from aelab.stacked import group_configs
        from aelab.stacked.job import say

        setup_globals()
        assert self.hydra_context is not None and self.config is not None
        assert self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        from pathlib import Path

        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self._job_config(overrides, initial_job_idx + i)
            for i, overrides in enumerate(job_overrides)
        ]
        groups, alone = group_configs(configs, self.max_models)
        if not groups:
            say(
                f"hydra/launcher=stacked: no two of the {len(configs)} jobs can be stacked "
                f"({_reasons(alone)}); running them one by one"
            )
        elif alone:
            say(f"hydra/launcher=stacked: {len(alone)} job(s) run alone: {_reasons(alone)}")
        results: dict[int, JobReturn] = {}
        for group in groups:
            results.update(self._launch_group(group, configs, job_overrides, initial_job_idx))
        for i in sorted(alone):
            lst = " ".join(filter_overrides(job_overrides[i]))
            log.info("\t#%d : %s", initial_job_idx + i, lst)
            results[i] = self._run(configs[i], self.task_function)
        return [results[i] for i in range(len(configs))]

    def _launch_group(
        self,
        group: list[int],
        configs: list[DictConfig],
        job_overrides: Sequence[Sequence[str]],
        first_idx: int,
    ) -> dict[int, JobReturn]:
        from aelab.run.folder import run_folder_lock
        from aelab.run.outcome import stopped_by
        from aelab.stacked import train_stacked
        from aelab.stacked.checkpoint import member_key, stack_checkpoint_path
        from aelab.stacked.job import done_task, epoch_images, member_task, say

        assert self.config is not None
        numbers = [first_idx + i for i in group]
        shown = [" ".join(filter_overrides(job_overrides[i])) for i in group]
        cfgs = [configs[i] for i in group]
        folders = [_job_folder(c) for c in cfgs]
        # `${hydra:...}` (paths.root_dir, data_dir) resolves against the running job's config
        HydraConfig.instance().set_config(cfgs[0])
        keys = [member_key(c) for c in cfgs]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        checkpoint = stack_checkpoint_path(sweep_dir, cfgs)
        # without the whole stack's checkpoint, the jobs that completed (in an earlier run of
        # this sweep, with these configs) are left out: the others train as a stack of their own
        done = [_completed(f, key) for f, key in zip(folders, keys, strict=True)]
        train = [k for k in range(len(group)) if checkpoint.is_file() or not done[k]]
        if len(train) < len(group):
            checkpoint = stack_checkpoint_path(sweep_dir, [cfgs[k] for k in train])
        if train:
            say(
                f"{'continuing' if checkpoint.is_file() else 'stacking'} {len(train)} jobs: "
                + "; ".join(f"#{numbers[k]} {shown[k]}" for k in train)
            )
        import torch  # here: Hydra loads every plugin module for every app, stacked or not

        from aelab.numerics import set_threads

        set_threads(cfgs[0].get("threads"))  # `auto`: the cores no other process is using
        # as Lightning reads `trainer.accelerator` (the default `auto`: the GPU when there is one)
        accelerator = cfgs[0].trainer.get("accelerator")
        on_gpu = accelerator in ("gpu", "cuda") or (
            accelerator in (None, "auto") and torch.cuda.is_available()
        )
        device = "cuda" if on_gpu else "cpu"
        stopping = StopOnInterrupt()
        members: list[Any] = [None] * len(group)
        if train:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            try:
                with stopping, run_folder_lock(checkpoint.parent):
                    trained: list[Any] = train_stacked(
                        [cfgs[k] for k in train],
                        device=device,
                        on_epoch=epoch_images,
                        stop_requested=stopping.requested,
                        checkpoint=checkpoint,
                    )
            except Exception as err:  # noqa: BLE001 - each job of the group records it
                trained = [err] * len(train)
            for k, member in zip(train, trained, strict=True):
                members[k] = member
        if stopping.signal == REQUEUE_SIGNAL:
            _requeue(checkpoint)  # ends the process when SLURM requeued the job
        command = _continue_command(sweep_dir)
        out = {}
        for k, i in enumerate(group):
            stacked = {"group": numbers, "member": k, "overrides": shown[k], "config": keys[k]}
            log.info("\t#%d : %s (stacked)", numbers[k], shown[k])
            if members[k] is None or (done[k] and not stopping.flag):
                task = done_task(folders[k])  # completed before: left as it is
            else:
                task = member_task(members[k], stacked, command)
            out[i] = self._run(configs[i], task)
        if stopping.flag:  # as a job stopped by Ctrl-C ends the basic launcher's sweep
            ran = [m for m in members if m is not None and not isinstance(m, Exception)]
            step = max((m.interrupted_step or 0) for m in ran) if ran else 0
            say(
                f"stack of jobs {','.join(map(str, numbers))} interrupted at step {step}; "
                f"its checkpoint is {checkpoint}; to continue: {command}"
            )
            raise SystemExit(stopped_by(signal.SIGINT))
        if all(_finished(f, m) for f, m in zip(folders, members, strict=True)):
            # every job is written: the stack is not needed again (its folder: the checkpoint
            # and the lock)
            shutil.rmtree(checkpoint.parent, ignore_errors=True)
            stacks = checkpoint.parent.parent
            if stacks.is_dir() and not any(stacks.iterdir()):
                stacks.rmdir()
        return out


def _job_folder(cfg: DictConfig) -> Path:
    """The job's folder, as Hydra's `run_job` makes it (sweep dir / subdir)."""
    HydraConfig.instance().set_config(cfg)
    return Path(str(OmegaConf.select(cfg, "hydra.sweep.dir"))) / str(
        OmegaConf.select(cfg, "hydra.sweep.subdir")
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _completed(folder: Path, key: str) -> bool:
    """The job completed in an earlier run of the sweep, as a member of a stack with this
    config (run.json's `stacked.config`)."""
    stacked = _read(folder / "run.json").get("stacked") or {}
    return (
        _read(folder / "metrics.json").get("status") == "completed" and stacked.get("config") == key
    )


def _finished(folder: Path, member: Any) -> bool:
    """Nothing of the job is left to do: completed, or failed by its NaN guard."""
    if getattr(member, "failed", None) is not None:
        return True
    return _read(folder / "metrics.json").get("status") == "completed"


def _continue_command(sweep_dir: Path) -> str:
    """This sweep's command line, in this sweep's folder: it continues the sweep's stacks."""
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    return shlex.join(["aelab-train", *args, f"hydra.sweep.dir={sweep_dir}"])


def _requeue(checkpoint: Path) -> None:
    """SIGUSR1 under SLURM: the stack is saved; requeue the job (`scontrol requeue`) and end
    the process, as `aelab.callbacks.SlurmRequeue` does a single run. Not requeued (the sweep
    folder is not given, so the restarted job would not find it; or scontrol failed): the
    stack stops as on Ctrl-C."""
    from aelab.callbacks.slurm import StoppedBySlurm
    from aelab.slurm import requeue_slurm_job

    overrides = HydraConfig.get().overrides.hydra
    if not any(str(o).startswith("hydra.sweep.dir=") for o in overrides):
        log.error(
            "SIGUSR1: not requeued: the restarted job would make a new sweep folder "
            "(give hydra.sweep.dir=... to continue a stack after a requeue)"
        )
        return
    if requeue_slurm_job():
        raise StoppedBySlurm(f"requeued after saving {checkpoint}")


class StopOnInterrupt:
    """Ctrl-C (or SIGTERM: a batch system's stop; or SIGUSR1 under SLURM: its warning before
    the time limit) while a stack trains: the first stops it after the current step (as aelab's
    GracefulInterrupt does a single run), a second stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        from lightning_fabric.plugins.environments import SLURMEnvironment

        self.flag = False
        self.signal: signal.Signals | None = None
        self._previous: dict[int, Any] = {}
        self.signals = [signal.SIGINT, STOP_SIGNAL]
        if SLURMEnvironment.detect():
            self.signals.append(REQUEUE_SIGNAL)

    def requested(self) -> bool:
        return self.flag

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        self.signal = signal.Signals(signum)
        print(
            f"aelab-train: {signal.Signals(signum).name}: stopping the stack after this step "
            "(again: at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _reasons(alone: dict[int, str]) -> str:
    by_reason: dict[str, list[int]] = {}
    for i, why in alone.items():
        by_reason.setdefault(why, []).append(i)
    return "; ".join(f"job(s) {','.join(map(str, ks))}: {why}" for why, ks in by_reason.items())
