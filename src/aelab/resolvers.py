"""OmegaConf resolvers the configs use; registered on `import aelab`, before Hydra composes."""

import os
import secrets

from omegaconf import OmegaConf


def _unique_suffix() -> str:
    """A short random tag so two runs started in the same second never share a folder."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def register_resolvers() -> None:
    # use_cache: Hydra reads hydra.run.dir several times; every read must give the same folder.
    if not OmegaConf.has_resolver("aelab_uid"):
        OmegaConf.register_new_resolver("aelab_uid", _unique_suffix, use_cache=True)
