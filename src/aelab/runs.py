"""A run's folder and files: where it is (a new one, or the one to resume), one process at a time
in it, metrics.json, how to reproduce it, the HParams row, and checkpoint loading."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.io import TorchCheckpointIO

from aelab.checks import ConfigError
from aelab.models.base import CHECKPOINT_KEY

PACKAGES = ("aelab", "torch", "torchvision", "pytorch-lightning", "hydra-core", "torchmetrics")


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON through a temp file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every checkpoint (`last.ckpt`, the best one, SLURM's `hpc_ckpt_<n>.ckpt`, Ctrl-C's) written
    to a temp file beside it, synced and renamed: a full disk or a kill during the write never
    replaces a good checkpoint with part of one.

    Lightning's own writer stages the file in the system temp folder and copies it over the
    checkpoint, so a full disk truncated the checkpoint and its error named the temp file.

    Raises OSError naming the checkpoint (`filename`: its path) when it cannot be written.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first: an error here leaves no file at all
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a dot name: not taken for a checkpoint (Lightning resumes from `hpc_ckpt_*`)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from err
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(err, OSError):  # name the checkpoint, not the temp file
                raise OSError(err.errno, err.strerror, str(path)) from err
            raise


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


def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
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


def run_info() -> dict[str, Any]:
    """What a rerun needs beyond the config: the command line, versions, the code's commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "packages": versions,
        "git": _git_state(),
    }


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
    data = cfg["data"]
    row.update(
        batch_size=data["batch_size"],
        binarize=data["binarize"],
        classes=str(data["classes"]),
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
