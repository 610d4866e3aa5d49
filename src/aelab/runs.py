"""A run's folder and files: where it is (a new one, or the one to resume), one process at a time
in it, metrics.json, how to reproduce it, the HParams row, and checkpoint loading."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pytorch_lightning.plugins.io import TorchCheckpointIO

from aelab.checks import ConfigError
from aelab.data.source import DataSourceError
from aelab.models.base import CHECKPOINT_KEY
from aelab.resolvers import SWEEP_ENV, sweep_plan, varying_keys
from aelab.slurm import slurm_job_id

PACKAGES = ("aelab", "torch", "torchvision", "pytorch-lightning", "hydra-core", "torchmetrics")


def _new_file_mode() -> int:
    """The mode open() gives a new file (0o666 less the umask); mkstemp's own is 0o600, which
    would hide a run's files, or a data folder's shared cache, from the user's group."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(
    path: str | Path, data: str | bytes | memoryview, suffix: str = "", prefix: str | None = None
) -> Path:
    """Write `data` (text or bytes) to a temp file beside `path` (`prefix`, default `.<name>.`),
    sync it, rename it over `path`: a reader, a full disk or a kill never leaves half a file.

    Raises OSError naming `path` (its `filename`), not the temp file, when it cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}." if prefix is None else prefix
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    try:
        with os.fdopen(fd, "w" if isinstance(data, str) else "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _new_file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """JSON (sorted keys, indented) through `write_atomic`."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (`last.ckpt`, the best one, SLURM's `hpc_ckpt_<n>.ckpt`, Ctrl-C's) written
    through `write_atomic`: a full disk or a kill during the write never replaces a good
    checkpoint with part of one.

    Lightning's own writer stages the file in the system temp folder and copies it over the
    checkpoint, so a full disk truncated the checkpoint and its error named the temp file.

    Raises OSError naming the checkpoint (`filename`: its path) when it cannot be written.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first: an error here leaves no file at all
        # a dot name, `.tmp`: never taken for a checkpoint (Lightning resumes from `hpc_ckpt_*`)
        write_atomic(path, buffer.getbuffer(), suffix=".tmp")


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


@contextlib.contextmanager
def run_folder_lock(folder: str | Path) -> Iterator[None]:
    """Train in the run folder only while no other process does (two `resume=true` of one run,
    or a resume while the run still goes). The kernel drops the lock however the process ends."""
    with open(Path(folder) / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            allowed = "a run folder no other process is training in"
            raise ConfigError("resume", str(folder), allowed) from None
        yield


class OutputFolderCheck(Callback):
    """Hydra callback: before Hydra makes the run (or sweep) folder, make sure it can.

    Otherwise Hydra fails deep inside with a traceback; this says it in one line (exit status 2).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
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
            print(f"aelab-{config.task_name}: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None


HYDRA_RECORDS = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra puts in .hydra/


@contextlib.contextmanager
def nothing_left_if_refused() -> Iterator[None]:
    """A run refused for bad input (ConfigError, DataSourceError) leaves no folder behind.

    Hydra makes the run folder before the task starts; while it holds only Hydra's own files
    (.hydra/, the job's log, the run lock) those are removed, then the folder if empty. A folder
    holding anything else (checkpoints: a resumed run) is never touched. A sweep's job folder
    stays, with metrics.json `"status": "failed"` and the reason, for the sweep's report.
    """
    try:
        yield
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
    try:
        if not {p.name for p in folder.iterdir()} <= own:
            return
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            write_json_atomic(folder / "metrics.json", {"status": "failed", "error": error})
            return
        for handler in logs:  # the log file is open: close it before it goes
            handler.close()
            root.removeHandler(handler)
        for name in own - {".hydra"}:
            (folder / name).unlink(missing_ok=True)
        for name in HYDRA_RECORDS:
            (folder / ".hydra" / name).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / ".hydra").rmdir()
        folder.rmdir()
    except OSError:  # whatever could not go stays (not empty, or not ours to remove)
        return


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
        print(f"aelab-{config.task_name}: error: {error}", file=sys.stderr)
        raise SystemExit(2)


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


def _git_state(root: str | Path | None = None) -> dict[str, Any]:
    """The commit of `root` (default: this checkout) and whether files differ from it; files git
    ignores (.gitignore: build outputs, wheels) do not count. None for both outside a git tree."""
    root = Path(__file__).resolve().parents[2] if root is None else Path(root)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


ARGV_ENV = "AELAB_ARGV"


class RecordCommandLine(Callback):
    """Hydra callback: a sweep's command line, for its jobs' `run.json`.

    Jobs that another process runs (submitit's under SLURM or `submitit_local`, joblib's workers)
    see that process's own `sys.argv`. They inherit the sweep's environment (sbatch passes it
    on), so the user's line travels in `AELAB_ARGV` (JSON), set here before any job starts.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[ARGV_ENV] = json.dumps(sys.argv)


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

    def __getstate__(self) -> dict[str, Any]:
        # launchers pickle the callbacks into each job: the watcher stays in this process
        return {"_started": self._started, "_shown": set(self._shown)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.__dict__.update(state)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
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
        for metrics in sorted(sweep.glob("*/metrics.json")):
            folder = metrics.parent
            num = folder.name.split("_", 1)[0]
            if folder.name in self._shown or not num.isdigit():
                continue
            try:
                status = json.loads(metrics.read_text()).get("status", "completed")
                seconds = metrics.stat().st_mtime - (folder / ".hydra").stat().st_mtime
            except (OSError, ValueError, AttributeError):
                continue  # being written, or not ours: looked at again next time
            if status in ("completed", "failed"):  # not a job SLURM stopped and will restart
                self._shown.add(folder.name)
                print(progress_line(int(num), jobs, folder, max(seconds, 0.0)), flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        seconds = time.monotonic() - self._started if self._started is not None else None
        folder = Path(str(config.hydra.runtime.output_dir))
        plan = sweep_plan() or {}
        print(progress_line(int(config.hydra.job.num), plan.get("jobs"), folder, seconds))
        sys.stdout.flush()


PROGRESS_METRICS = ("val/loss", "test/loss")  # val/loss: the objective aelab-train returns


def progress_line(num: int, jobs: int | None, folder: Path, seconds: float | None) -> str:
    """`job <num+1> of <jobs>: <folder name>  val/loss x  test/loss y  (t s)`; a job that did not
    complete shows its status and error instead of figures."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {"status": "failed", "error": "no metrics.json"}
    if not isinstance(metrics, dict):
        metrics = {"status": "failed", "error": "unreadable metrics.json"}
    status = metrics.get("status", "completed")
    if status == "completed":
        shown = [f"{k} {metrics[k]:.4g}" for k in PROGRESS_METRICS if k in metrics]
        shown = shown or ["completed"]  # no validation, no test (trainer.max_epochs=0 test=false)
    else:
        shown = [f"{status}: {metrics.get('error') or metrics.get('resume') or ''}".strip()]
    of = f" of {jobs}" if jobs else ""
    took = f"  ({seconds:.1f} s)" if seconds is not None else ""
    return f"job {num + 1}{of}: {folder.name}  " + "  ".join(shown) + took


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


def run_info() -> dict[str, Any]:
    """What a rerun needs beyond the config: the command line, versions, the code's commit, and
    under SLURM the job and how often SLURM restarted it (`SLURM_RESTART_COUNT`)."""
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
    if SLURMEnvironment.detect():
        info["slurm"] = {
            "job": slurm_job_id() if "SLURM_JOB_ID" in os.environ else None,
            "restarts": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
        }
    return info


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


def hparams_row(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters that tell runs apart, flat and readable: TensorBoard's HParams columns
    and the variables of `aelab-report`.

    Model fields by their own names (`latent_dim`, `beta`), the corruption as `noise` (kind) and
    `noise_level` (std or p) for every noise, other groups' fields as `group.field`; no paths.
    Values are numbers or strings (lists as text); a field a model lacks (an AE's beta) is absent.
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by aelab-train, loaded weights-only (a pickle is code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("ckpt_path", str(path), "an existing checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        # the line naming the refused global (a pickle calling os.system: posix.system)
        found = [ln.strip() for ln in str(err).splitlines() if "unsupported global" in ln.lower()]
        reason = found[0] if found else f"not a torch checkpoint: {type(err).__name__}"
        raise ConfigError(
            "ckpt_path",
            str(path),
            f"a checkpoint written by aelab-train (loading failed: {reason})",
        ) from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not meta.get("config") or "state_dict" not in ckpt:
        raise ConfigError("ckpt_path", str(path), "a checkpoint written by aelab-train")
    return ckpt
