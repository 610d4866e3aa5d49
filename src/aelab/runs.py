"""A run's files: metrics.json, how to reproduce it, the HParams row, and checkpoint loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

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


def hparams_row(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters that tell runs apart, flat and readable, for TensorBoard's HParams."""
    model, net, noise = cfg["model"], cfg["net"], cfg["noise"]
    row: dict[str, Any] = {"model": _short(model["_target_"]), "net": _short(net["_target_"])}
    row.update({k: v for k, v in model.items() if not k.startswith("_")})
    row["noise"] = _short(noise["_target_"]).removesuffix("Noise").lower() or "none"
    row["noise_level"] = float(noise.get("std", noise.get("p", 0.0)))
    row["optimizer"] = _short(cfg["optimizer"]["_target_"])
    row["lr"] = cfg["optimizer"].get("lr")
    data = cfg["data"]
    row.update(
        batch_size=data["batch_size"],
        binarize=data["binarize"],
        classes=str(data["classes"]),
        seed=cfg["seed"],
        max_epochs=cfg["trainer"]["max_epochs"],
    )
    return {k: (str(v) if isinstance(v, list | tuple | dict) else v) for k, v in row.items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by aelab-train, loaded weights-only (a pickle is code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("ckpt_path", str(path), "an existing checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        found = [ln.strip() for ln in str(err).splitlines() if "Unsupported global" in ln]
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
