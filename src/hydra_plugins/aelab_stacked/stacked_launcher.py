"""`hydra/launcher=stacked`: Hydra's basic launcher, with the sweep's same-shape jobs trained
together as one stacked model (`aelab.stacked`), at most `hydra.launcher.max_models` per stack.

Jobs whose composed configs differ only in stackable values (seed, beta, noise level, lr, weight
decay, clipping threshold) form a stack; the others, and a model that cannot be stacked, run one
by one as the basic launcher runs them. Every job keeps its own folder, `.hydra/`, run.json,
metrics.json, TensorBoard run and checkpoints; run.json's `stacked` entry names its group.
"""

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where a
# dataclass cannot resolve string annotations
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

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
        from aelab.checks import exit_on_config_error

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
        from aelab.stacked import train_stacked
        from aelab.stacked.job import epoch_images, member_task, say

        numbers = [first_idx + i for i in group]
        shown = [" ".join(filter_overrides(job_overrides[i])) for i in group]
        say(
            f"stacking {len(group)} jobs: "
            + "; ".join(f"#{n} {s}" for n, s in zip(numbers, shown, strict=True))
        )
        cfgs = [configs[i] for i in group]
        # `${hydra:...}` (paths.root_dir, data_dir) resolves against the running job's config
        HydraConfig.instance().set_config(cfgs[0])
        threads = cfgs[0].get("threads")
        if threads is not None:
            torch.set_num_threads(int(threads))
        device = "cuda" if cfgs[0].trainer.get("accelerator") in ("gpu", "cuda") else "cpu"
        stopping = StopOnInterrupt()
        try:
            with stopping:
                members: list[Any] = train_stacked(
                    cfgs, device=device, on_epoch=epoch_images, stop_requested=stopping.requested
                )
        except Exception as err:  # noqa: BLE001 - each job of the group records it
            members = [err] * len(group)
        out = {}
        for k, i in enumerate(group):
            stacked = {"group": numbers, "member": k, "overrides": shown[k]}
            log.info("\t#%d : %s (stacked)", numbers[k], shown[k])
            out[i] = self._run(configs[i], member_task(members[k], stacked))
        if stopping.flag:  # as a job stopped by Ctrl-C ends the basic launcher's sweep
            step = max((m.interrupted_step or 0) for m in members if not isinstance(m, Exception))
            say(
                f"stack of jobs {','.join(map(str, numbers))} interrupted at step {step}; "
                "their metrics.json say so and checkpoints/last.ckpt hold the weights "
                "(a stack cannot be resumed yet)"
            )
            raise SystemExit(130)
        return out


class StopOnInterrupt:
    """Ctrl-C (or SIGTERM: a batch system's stop) while a stack trains: the first stops it
    after the current step (as aelab's GracefulInterrupt does a single run), a second stops at
    once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.flag = False
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.flag

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        print(
            f"aelab-train: {signal.Signals(signum).name}: stopping the stack after this step "
            "(again: at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> "StopOnInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _reasons(alone: dict[int, str]) -> str:
    by_reason: dict[str, list[int]] = {}
    for i, why in alone.items():
        by_reason.setdefault(why, []).append(i)
    return "; ".join(f"job(s) {','.join(map(str, ks))}: {why}" for why, ks in by_reason.items())
