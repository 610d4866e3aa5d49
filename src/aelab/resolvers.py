"""OmegaConf resolvers the configs use; registered on `import aelab`, before Hydra composes."""

import os
import secrets
from typing import Any

from omegaconf import OmegaConf


def _unique_suffix() -> str:
    """A short random tag so two runs started in the same second never share a folder."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def _run_dir(*args: Any) -> str:
    """A new run folder, or with `resume` the one to continue (see `aelab.runs.run_dir`)."""
    from aelab.runs import run_dir  # not at import: aelab.runs needs torch

    return run_dir(*args)


def register_resolvers() -> None:
    # use_cache: Hydra reads hydra.run.dir several times; every read must give the same folder.
    if not OmegaConf.has_resolver("aelab_uid"):
        OmegaConf.register_new_resolver("aelab_uid", _unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver("aelab_run_dir"):
        OmegaConf.register_new_resolver("aelab_run_dir", _run_dir, use_cache=True)
