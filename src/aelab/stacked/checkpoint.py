"""A stack's checkpoint: everything `train_stacked` needs to go on exactly where it stopped.

One file per stack, `<sweep dir>/stacks/<group key>/stack.ckpt`, written atomically (temp file
and rename) at every epoch end and when the stack is stopped (Ctrl-C, SIGTERM, SLURM's SIGUSR1).
It holds plain containers and tensors only, so it loads with `torch.load(weights_only=True)`:

- `key`: the group key (the members' configs, less paths and process settings): a sweep run
  again with other values makes another key, and never continues this stack;
- `position`: the next batch (`epoch`, `index`), the global `step`, `finished` (training over);
- `leaves`: the stacked parameters; `adam`: each member's moments and step counts;
- `alive`: (M,) bool, the members the NaN guard has not frozen; `sums`/`seen`: the running
  epoch's `train/*` sums, for a stack stopped mid-epoch;
- `members`: per member its NaN-guard message and step, best-so-far weights, epoch and
  `val/loss`, per-epoch history (figures, image grids) and global step.

A member's batch order and random numbers need no state: both come from (seed, epoch, batch).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from aelab.run.atomic import write_atomic
from aelab.stacked.grouping import _plain

FORMAT = 1
CHECKPOINT_NAME = "stack.ckpt"
# keys that say where a job's files go or how its process runs, not what it learns; `resume`
# too: a stacked sweep continues its stacks whatever it says (docs/how-to/stacked-sweeps.md)
NOT_LEARNT = ("paths", "hydra", "task_name", "threads", "resume")


def member_key(cfg: DictConfig) -> str:
    """A hash of what the member learns: its composed config less `NOT_LEARNT` (16 hex)."""
    plain = _plain(cfg)
    for key in NOT_LEARNT:
        plain.pop(key, None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def group_key(cfgs: Sequence[DictConfig]) -> str:
    """A hash of the members' keys, in the stack's order (16 hex)."""
    text = ",".join(member_key(c) for c in cfgs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stack_checkpoint_path(sweep_dir: str | Path, cfgs: Sequence[DictConfig]) -> Path:
    """Where the stack of `cfgs` keeps its checkpoint in the sweep folder."""
    return Path(sweep_dir) / "stacks" / group_key(cfgs) / CHECKPOINT_NAME


def save_stack(path: str | Path, state: dict[str, Any]) -> Path:
    """`state` (plain containers and tensors, any device) to `path`, atomically, on the CPU.

    Raises OSError naming `path` when it cannot be written.
    """
    buffer = io.BytesIO()
    torch.save(_to_cpu({"format": FORMAT, **state}), buffer)
    return write_atomic(path, buffer.getbuffer())


def load_stack(path: str | Path, key: str) -> dict[str, Any] | None:
    """The state `save_stack` wrote (tensors on the CPU), or None when there is no file or it
    belongs to another stack (`key`) or format. Loads weights-only: no code runs."""
    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT or state.get("key") != key:
        return None
    return state


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_cpu(v) for v in value]
    return value
