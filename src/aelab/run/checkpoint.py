"""Checkpoints written by aelab-train: the key of aelab's own entry and its reader, where
`last.ckpt` is, loading one weights-only (torch is imported only there), and the model it holds.

The model is rebuilt here, below every entry point, so that `aelab.load_run` and aelab-eval
share it without the notebook call importing the training stack."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aelab.checks import ConfigError, import_refusal, locate

# a checkpoint's own entry: {"config": the composed run config, "model_class": "module.Class"}
CHECKPOINT_KEY = "aelab"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def stored_entry(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """aelab's own entry of a checkpoint (`load_checkpoint`'s dict): `config`, the composed run
    config, and `model_class`, the model's `module.Class`."""
    return ckpt[CHECKPOINT_KEY]


def from_start_dir(path: str | Path) -> Path:
    """A path as the user typed it, relative ones against the folder the command was started in
    (Hydra's `runtime.cwd`), not the run folder `hydra.job.chdir=true` moved to (hydra#922)."""
    from hydra.utils import to_absolute_path  # the current folder outside a Hydra app

    return Path(to_absolute_path(str(path)))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by aelab-train, loaded weights-only (a pickle is code) on the CPU;
    a relative `path` is read from the folder the command was started in (`from_start_dir`).

    Raises ConfigError (`ckpt_path`) for a missing file, a file torch cannot load weights-only
    (naming the refused global), or a checkpoint without aelab's entry or a state_dict.
    """
    import torch  # here only: the rest of aelab.run stays torch-free

    given, path = str(path), from_start_dir(path)
    if not path.is_file():
        where = "" if given == str(path) else f" (none at {path})"
        raise ConfigError("ckpt_path", given, f"an existing checkpoint file{where}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
        # the line naming the refused global (a pickle calling os.system: posix.system)
        found = [ln.strip() for ln in str(err).splitlines() if "unsupported global" in ln.lower()]
        reason = found[0] if found else f"not a torch checkpoint: {type(err).__name__}"
        raise ConfigError(
            "ckpt_path",
            given,
            f"a checkpoint written by aelab-train (loading failed: {reason})",
        ) from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not meta.get("config") or "state_dict" not in ckpt:
        raise ConfigError("ckpt_path", given, "a checkpoint written by aelab-train")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any], given: str = "") -> Any:
    """The model a checkpoint holds (`load_checkpoint`'s dict), built from its stored class and
    hyper-parameters, with its weights; on the CPU, in train mode.

    The hyper-parameters are those of every constructor up the model's class tree
    (`AutoencoderModule` saves them as Lightning's `save_hyperparameters()` collects them); a
    class whose `__init__` takes no `**kwargs` is given only the ones it names, as Lightning's
    `load_from_checkpoint` does.

    Raises ConfigError (`model._target_`) when the class cannot be imported here (a user's
    model: its module must be importable, e.g. on PYTHONPATH, as when it trained), or
    (`ckpt_path`, `given`: the path as typed) when a weight's shape is not the one its
    hyper-parameters build.
    """
    import inspect

    target = stored_entry(ckpt)["model_class"]
    try:
        cls = locate(target)
    except ImportError as err:
        raise import_refusal("model", target, err) from err
    hparams = dict(ckpt["hyper_parameters"])
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        hparams = {k: v for k, v in hparams.items() if k in params}
    model = cls(**hparams)
    # its own hyper-parameters against its weights: an edited checkpoint, or a net changed since
    check_state_shapes(ckpt["state_dict"], model.state_dict(), "ckpt_path", given)
    model.load_state_dict(ckpt["state_dict"])
    return model


def check_state_shapes(
    stored: Mapping[str, Any], own: Mapping[str, Any], field: str, given: str
) -> None:
    """Every tensor of a checkpoint's `stored` state_dict has the shape of the model's `own`
    (a net of other widths: `net.hidden=[256,64]` against a run of [512,256]), checked before
    Lightning or torch fails with a size-mismatch traceback.

    Raises ConfigError naming `field` (`ckpt_path`, `resume`), the first parameter whose shape
    differs and both shapes.
    """
    for name, tensor in own.items():
        found = stored.get(name)
        if found is None or tuple(found.shape) == tuple(tensor.shape):
            continue
        raise ConfigError(
            field,
            given,
            f"a checkpoint of a net of this run's shape ({name} is {list(found.shape)} in it, "
            f"{list(tensor.shape)} here)",
        )
