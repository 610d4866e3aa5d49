"""Hydra callbacks of a sweep (conf/hydra/default.yaml): refuse one its launcher cannot run,
record what it varies and how many jobs it has, print a line as each job ends."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aelab.checks import ConfigError
from aelab.resolvers import SWEEP_ENV, sweep_plan, varying_keys
from aelab.run import outcome
from aelab.run.record import NotMetricsError, read_metrics

# Lightning starts DDP's other processes by re-running the command line, unless SLURM has started
# them (srun tasks). In a sweep job that command line is the whole sweep (basic launcher: the
# second process starts a second sweep, in a folder of its own), loky's (joblib: the worker dies,
# taking the sweep with it) or submitit's (submitit_local: its argparse refuses the overrides).
DDP_SWEEP_LAUNCHERS = ("slurm",)


class SweepLauncherCheck(Callback):
    """Hydra callback: refuse a sweep whose jobs cannot run under its launcher, before any starts.

    `trainer=ddp` (composed, or among the values of a `trainer=...` sweep) runs in a sweep only
    under hydra/launcher=slurm. Exits with status 2 and one line on stderr.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        empty = _empty_sweep(config)
        if empty is not None:
            raise outcome.refusal(f"aelab-{config.task_name}", empty)
        choices = config.hydra.runtime.choices
        launcher = choices.get("hydra/launcher")
        if launcher in DDP_SWEEP_LAUNCHERS or "ddp" not in _trainer_choices(config):
            return
        allowed = [f"hydra/launcher={name}" for name in DDP_SWEEP_LAUNCHERS]
        error = ConfigError(
            "trainer",
            "ddp",
            f"in a sweep (-m) only with {' or '.join(allowed)} (here {launcher}): Lightning "
            "starts the other DDP processes by re-running the command line, here the sweep's",
        )
        raise outcome.refusal(f"aelab-{config.task_name}", error)


def _empty_sweep(config: DictConfig) -> ConfigError | None:
    """Why the sweep would run no job at all (then Hydra or its plugins fail with a traceback, or
    exit 0 leaving an empty sweep folder), or None: `hydra.sweeper.n_trials` < 1 (Optuna),
    `hydra.launcher.n_jobs=0` (joblib: -1 is one per core), or sweep values that make no job
    (`model.latent_dim=range(5,2)`)."""
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    trials = sweeper.get("n_trials")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        return ConfigError("hydra.sweeper.n_trials", trials, "an integer >= 1", grouped=True)
    n_jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs == 0):
        allowed = "a non-zero integer (-1: one job per core)"
        return ConfigError("hydra.launcher.n_jobs", n_jobs, allowed, grouped=True)
    task = list(config.hydra.overrides.task)
    if _job_count(task, sweeper) == 0:
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        for override in OverridesParser.create().parse_overrides(params + task):
            if override.is_sweep_override() and not list(override.sweep_string_iterator()):
                value = str(override.input_line).split("=", 1)[1]
                allowed = "sweep values that make at least one job (these make none)"
                return ConfigError(override.key_or_group, value, allowed, grouped=True)
        return ConfigError("the sweep", " ".join(task), "at least one job", grouped=True)
    return None


def _trainer_choices(config: DictConfig) -> set[str]:
    """Every `trainer` option a sweep's jobs can have: the composed one, and a sweep's values."""
    found = {str(config.hydra.runtime.choices.get("trainer"))}
    task = list(config.hydra.overrides.task)
    for override in OverridesParser.create().parse_overrides(task):
        if override.key_or_group != "trainer" or override.is_delete():
            continue
        value = override.value()
        if isinstance(value, Glob):
            found.update(value.filter(["ddp"]))
        elif override.is_sweep_override():
            found.update(override.sweep_string_iterator())
        else:
            found.add(str(value))
    return found


class RecordSweep(Callback):
    """Hydra callback: what a sweep varies and how many jobs it runs, for its jobs.

    Sets `AELAB_SWEEP` (`aelab.resolvers.SWEEP_ENV`) before any job starts, as RecordCommandLine
    sets the command line: job folders are named by the varying keys only
    (`aelab.resolvers.varying_overrides`), and each job's progress line says `job i of N`.
    A job's own config cannot tell: it is composed from that job's overrides alone.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # as typed: `+tag='${x}'` may only resolve inside a job
        task = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task)]
        try:
            sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
        except OmegaConfBaseException:
            sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
        assert isinstance(sweeper, dict)
        try:
            varying = varying_keys(
                task,
                sweeper.get("params"),
                sweeper.get("baseline"),
                (sweeper.get("search_space") or {}).keys(),
            )
        except Exception:  # noqa: BLE001 - names by every override (Hydra's own rule) then
            os.environ.pop(SWEEP_ENV, None)
            return
        os.environ[SWEEP_ENV] = json.dumps({"varying": varying, "jobs": _job_count(task, sweeper)})


def _job_count(task: list[str], sweeper: dict[str, Any]) -> int | None:
    """How many jobs the sweep runs: an Optuna search's `n_trials`, or the jobs Hydra's basic
    sweeper (or a subclass: the baseline sweeper) makes of its params and the command line;
    None for any other sweeper, or what needs Hydra's config loader (a glob)."""
    if isinstance(sweeper.get("n_trials"), int):
        return int(sweeper["n_trials"])
    try:
        cls = get_class(str(sweeper.get("_target_")))
        # by name: Hydra's plugin scan loads its modules again, so the class is another object
        if "BasicSweeper" not in {c.__name__ for c in cls.__mro__}:
            return None
        instance = cls(**{k: v for k, v in sweeper.items() if k != "_target_"})
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        overrides = OverridesParser.create().parse_overrides(params + task)
        return sum(len(batch) for batch in instance.split_arguments(overrides, None))
    except Exception:  # noqa: BLE001 - a count we cannot make is left out of the lines
        return None


# launchers whose jobs print into files of their own (submitit: <sweep>/.submitit/<job>/*.out)
FILE_OUTPUT_LAUNCHERS = ("slurm", "submitit_slurm", "submitit_local")
WATCH_INTERVAL_S = 1.0


class SweepProgress(Callback):
    """Hydra callback: one line per finished sweep job on the launching terminal's stdout, e.g.
    `job 3 of 8: 2_latent_dim=2,model=vae  val/loss 45.12  test/loss 44.98  (12.3 s)`.

    The process that ran the job prints it (`on_job_end`): the launching one for the basic
    launcher, joblib's workers (which share its stdout). submitit's jobs (hydra/launcher=slurm)
    print into their own log files, so there the launching process watches the sweep folder for
    each job's final metrics.json instead; the time is then from the job's config to its
    metrics.json (queueing excluded). `i` is the job's number + 1 (parallel jobs finish out of
    order); N comes from RecordSweep.
    """

    def __init__(self) -> None:
        self._started: float | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._shown: set[str] = set()
        self._objective = outcome.OBJECTIVE

    def __getstate__(self) -> dict[str, Any]:
        # launchers pickle the callbacks into each job: the watcher stays in this process
        return {
            "_started": self._started,
            "_shown": set(self._shown),
            "_objective": self._objective,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.__dict__.update(state)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._objective = outcome.objective(config)
        if config.hydra.runtime.choices.get("hydra/launcher") not in FILE_OUTPUT_LAUNCHERS:
            return
        sweep = Path(str(config.hydra.sweep.dir))
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, args=(sweep,), daemon=True)
        self._watcher.start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._watcher is None:
            return
        self._stop.set()
        self._watcher.join()
        self._watcher = None
        self._scan(Path(str(config.hydra.sweep.dir)))  # what ended since the last look

    def _watch(self, sweep: Path) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            self._scan(sweep)

    def _scan(self, sweep: Path) -> None:
        jobs = (sweep_plan() or {}).get("jobs")
        def number(path: Path) -> tuple[int, str]:  # job 2 before job 10
            num = path.parent.name.split("_", 1)[0]
            return (int(num) if num.isdigit() else -1, path.parent.name)

        for metrics in sorted(sweep.glob("*/metrics.json"), key=number):
            folder = metrics.parent
            num = folder.name.split("_", 1)[0]
            if folder.name in self._shown or not num.isdigit():
                continue
            try:
                status = read_metrics(folder).get("status", "completed")
                seconds = metrics.stat().st_mtime - (folder / ".hydra").stat().st_mtime
            except (OSError, ValueError):
                continue  # being written, or not ours: looked at again next time
            if status in ("completed", "failed"):  # not a job SLURM stopped and will restart
                self._shown.add(folder.name)
                line = progress_line(int(num), jobs, folder, max(seconds, 0.0), self._objective)
                print(line, flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        seconds = time.monotonic() - self._started if self._started is not None else None
        folder = Path(str(config.hydra.runtime.output_dir))
        plan = sweep_plan() or {}
        num = int(config.hydra.job.num)
        print(progress_line(num, plan.get("jobs"), folder, seconds, outcome.objective(config)))
        sys.stdout.flush()


def progress_line(
    num: int,
    jobs: int | None,
    folder: Path,
    seconds: float | None,
    objective: str = outcome.OBJECTIVE,
) -> str:
    """`job <num+1> of <jobs>: <folder name>  val/loss x  test/loss y  (t s)`: the `objective`
    (`optimized_metric`) and test/loss; a job that did not complete shows its status and error
    instead of figures."""
    try:
        metrics = read_metrics(folder)
    except NotMetricsError:
        metrics = {"status": "failed", "error": "unreadable metrics.json"}
    except (OSError, ValueError):
        metrics = {"status": "failed", "error": "no metrics.json"}
    status = metrics.get("status", "completed")
    if status == "completed":
        shown = [
            f"{k} {metrics[k]:.4g}" for k in dict.fromkeys((objective, "test/loss")) if k in metrics
        ]
        shown = shown or ["completed"]  # no validation, no test (trainer.max_epochs=0 test=false)
    else:
        shown = [f"{status}: {metrics.get('error') or metrics.get('resume') or ''}".strip()]
    of = f" of {jobs}" if jobs else ""
    took = f"  ({seconds:.1f} s)" if seconds is not None else ""
    return f"job {num + 1}{of}: {folder.name}  " + "  ".join(shown) + took
