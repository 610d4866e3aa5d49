"""Where a run's folder is (a new one, or the one to resume), one process at a time in it, a
check that it can be made, and no folder left behind by a run refused for bad input."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from aelab.checks import ConfigError, DataSourceError
from aelab.run import outcome
from aelab.run.checkpoint import LAST_CHECKPOINT
from aelab.run.outcome import FolderBusyError


def run_overrides(overrides: Iterable[Any]) -> list[str]:
    """The command-line overrides that define a run: all but `resume=...`."""
    return [str(o) for o in overrides if str(o).lstrip("+~").split("=", 1)[0] != "resume"]


def stored_overrides(run_dir: str | Path) -> list[str] | None:
    """The overrides a run folder was started with (`.hydra/overrides.yaml`); None: not a run."""
    try:
        stored = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return run_overrides(stored) if isinstance(stored, list) else None


def run_dir(resume: Any, overrides: Iterable[Any], runs_root: str, new: str) -> str:
    """`hydra.run.dir`: a new folder, or the folder of the run to continue.

    resume=true: the newest run under `runs_root` started with the same overrides that holds
    `checkpoints/last.ckpt`; resume=<run dir>: that folder, if it was started with the same
    overrides. Otherwise a new folder, and `aelab-train` says why it cannot resume.
    """
    new_dir = f"{runs_root}/{new}"
    if resume is None or resume is False:
        return new_dir
    wanted = run_overrides(overrides)
    if resume is True:
        found = sorted(Path(runs_root).glob(f"*/*/{LAST_CHECKPOINT}"), reverse=True)
        candidates = [ckpt.parents[1] for ckpt in found]
    else:
        candidates = [Path(str(resume))]
    for folder in candidates:
        if (folder / LAST_CHECKPOINT).is_file() and stored_overrides(folder) == wanted:
            return str(folder)
    return new_dir


def _busy(folder: str | Path) -> FolderBusyError:
    allowed = "a run folder no other process is training in"
    return FolderBusyError("resume", str(folder), allowed)


def folder_is_locked(folder: str | Path) -> bool:
    """True when another process holds the run lock of `folder` (`run_folder_lock`); the lock is
    taken and let go at once, and nothing is made (a missing folder or lock file: False)."""
    try:
        with open(Path(folder) / ".lock", "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


@contextlib.contextmanager
def run_folder_lock(folder: str | Path) -> Iterator[None]:
    """Train in the run folder only while no other process does (two `resume=true` of one run,
    or a resume while the run still goes). The kernel drops the lock however the process ends.

    The folder is made when missing (`paths.output_dir=<new folder>`).

    Raises FolderBusyError (a ConfigError, `resume`) when another process holds it.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise _busy(folder) from None
        yield


# what a run leaves in its folder besides Hydra's records: a folder holding one of these holds
# another run's results, and a new run never writes there (hydra#2103)
RESULTS = ("metrics.json", "run.json", "checkpoints", "tb")


def results_in(folder: Path) -> list[str]:
    """The names of `RESULTS` that `folder` holds (none: a new or empty folder)."""
    return [name for name in RESULTS if (folder / name).exists()]


def resumes_in(config: DictConfig, folder: Path) -> bool:
    """True when `config` continues the run in `folder`: `resume` is set and the folder's run
    was started with the same overrides (what `run_dir` requires as well)."""
    resume = OmegaConf.select(config, "resume", default=None)
    if resume is None or resume is False:
        return False
    task = OmegaConf.select(config, "hydra.overrides.task", default=[]) or []
    return stored_overrides(folder) == run_overrides(task)


def _joins_its_rank_zero() -> bool:
    """True in a DDP process other than rank 0: Lightning starts it with the run's command line
    and folder, which rank 0 has begun to write."""
    return any(os.environ.get(k, "0") != "0" for k in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))


class OutputFolderCheck(Callback):
    """Hydra callback: before Hydra makes the run (or sweep) folder, make sure it can, and that a
    single run's folder holds no other run's results (`hydra.run.dir` given twice: refused, as
    the run would mix its files with theirs; `resume=<folder>` continues that run instead).

    Otherwise Hydra fails deep inside with a traceback; this says it in one line (exit status 2).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # `${hydra:...}` in the paths resolves from it
        folder = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        if folder_is_locked(folder) and not _joins_its_rank_zero():
            # refused before Hydra writes its records and the job's log there: they are the
            # other run's (two runs started at once in one folder)
            raise outcome.refusal(f"aelab-{config.task_name}", _busy(folder)) from None
        held = results_in(folder)
        if held and not resumes_in(config, folder) and not _joins_its_rank_zero():
            error = ConfigError(
                "hydra.run.dir",
                str(folder),
                f"a folder that holds no other run's results (it holds {', '.join(held)}; "
                f"resume={folder} continues that run with its own overrides)",
            )
            raise outcome.refusal(f"aelab-{config.task_name}", error) from None
        if held and outcome.completed_metrics(folder) is not None:
            # a finished run resumed adds nothing: Hydra's records of how it was made stay
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = None
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        HydraConfig.instance().set_config(config)  # `${hydra:...}` in the paths resolves from it
        folder = Path(str(OmegaConf.select(config, key)))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as err:
            error = ConfigError(
                "paths.log_dir",
                OmegaConf.select(config, "paths.log_dir"),
                f"a folder runs can be written in ({folder}: {err.strerror})",
            )
            raise outcome.refusal(f"aelab-{config.task_name}", error) from None


HYDRA_RECORDS = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra puts in .hydra/
BEFORE_TRAINING = frozenset({"run.json", "tb"})  # run.json, the logger's folder


@contextlib.contextmanager
def nothing_left_if_refused() -> Iterator[None]:
    """A run refused for bad input (ConfigError, DataSourceError) leaves no folder behind.

    Hydra makes the run folder before the task starts; while it holds only Hydra's own files
    (.hydra/, the job's log, the run lock) and what a run writes before its first step
    (run.json, the TensorBoard folder) those are removed, then the folder if empty. A folder
    holding anything else (checkpoints: a resumed run), or one another process trains in
    (FolderBusyError), is never touched. A sweep's job folder
    stays, with metrics.json `"status": "failed"` and the reason, for the sweep's report.
    """
    try:
        yield
    except FolderBusyError:
        raise  # the folder's files are the other process's run
    except (ConfigError, DataSourceError) as err:
        if HydraConfig.initialized():
            error = str(err) if isinstance(err, ConfigError) else f"data.data_dir: {err}"
            _discard_refused(Path(HydraConfig.get().runtime.output_dir), error)
        raise


def _discard_refused(folder: Path, error: str) -> None:
    root = logging.getLogger()
    logs = [
        h
        for h in root.handlers
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == folder
    ]
    own = {".hydra", ".lock", *(Path(h.baseFilename).name for h in logs)}
    # what a run writes before its first step: a value refused at the start of training (one
    # Lightning checks only against the data) leaves them, and nothing of a trained run
    own |= BEFORE_TRAINING
    try:
        if not {p.name for p in folder.iterdir()} <= own:
            return
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            outcome.failed(folder, error)
            return
        for handler in logs:  # the log file is open: close it before it goes
            handler.close()
            root.removeHandler(handler)
        for name in own - {".hydra", "tb"}:
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / "tb", ignore_errors=True)
        for name in HYDRA_RECORDS:
            (folder / ".hydra" / name).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / ".hydra").rmdir()
        folder.rmdir()
    except OSError:  # whatever could not go stays (not empty, or not ours to remove)
        return
