"""OmegaConf resolvers the configs use; registered on `import aelab`, before Hydra composes."""

import hashlib
import os
import re
import secrets
import string
from typing import Any

from omegaconf import OmegaConf


def _unique_suffix() -> str:
    """A short random tag so two runs started in the same second never share a folder."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def _run_dir(*args: Any) -> str:
    """A new run folder, or with `resume` the one to continue (see `aelab.runs.run_dir`)."""
    from aelab.runs import run_dir  # not at import: aelab.runs needs torch

    return run_dir(*args)


# Kept as they are in a job folder's name: readable, and one path component on any filesystem.
# Everything else (`/`, spaces, quotes, `:`, `%`, `~`, `{}`, `$`, control characters, non-ASCII)
# is written as `%XX` per UTF-8 byte, so two different override strings never give the same
# name. `[ ]` stay for list values (`data.classes=[0]`); a shell needs such a name quoted.
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "._-+=,@[]^")
# bytes; Linux allows 255 per name, and TensorBoard, archives and `<name>/checkpoints/...` paths
# need room to spare
JOB_NAME_MAX_BYTES = 120
_DIGEST_CHARS = 10  # hex digits of the hash that ends a shortened name


def _escape(char: str) -> str:
    if char in _NAME_CHARS:
        return char
    # surrogatepass: a command line with undecodable bytes still gives distinct escapes
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def job_dirname(num: Any, overrides: Any, max_bytes: int = JOB_NAME_MAX_BYTES) -> str:
    """A sweep job's folder name, `<num>_<overrides>` (`hydra.sweep.subdir`), made safe.

    `overrides` is the job's override string (Hydra's `job.override_dirname`, e.g.
    `model.latent_dim=16,model=vae`). Characters outside `[A-Za-z0-9._-+=,@[]^]` become `%XX`
    (`+tag=exp/a` -> `+tag=exp%2Fa`), so the name is one ASCII path component without `/` or
    NUL. A name over `max_bytes` (default 120; at least 32) is cut and ends in `~` and a hash of
    the whole string (`~` is always escaped, so a cut name never equals an uncut one). Names are
    unique for distinct (num, overrides) (cut ones: but for a 40-bit hash collision) and keep the
    job number first, which the report sorts by. Raises ValueError for a `max_bytes` below 32.
    """
    if max_bytes < 32:
        raise ValueError(f"max_bytes={max_bytes}: a job name needs at least 32 bytes")
    num, text = str(num), "" if overrides is None else str(overrides)
    name = f"{_escape_all(num)}_{_escape_all(text)}"
    if len(name) <= max_bytes:  # ASCII: one byte a character
        return name
    whole = f"{num}_{text}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(whole).hexdigest()[:_DIGEST_CHARS]
    head = name[: max_bytes - _DIGEST_CHARS - 1]
    head = re.sub(r"%[0-9A-F]?$", "", head)  # never half an escape
    return f"{head}~{digest}"


def _escape_all(text: str) -> str:
    return "".join(_escape(c) for c in text)


def _sweep_job_dirname(*, _root_: Any) -> str:
    """`hydra.sweep.subdir`: `job_dirname` of this job's number and override string.

    The string is read as written, not resolved: an override whose value is an interpolation
    (`+tag='${oc.env:USER}'`) names the folder by what was typed, and one that only resolves
    inside the job does not stop the sweep.
    """
    job = OmegaConf.to_container(_root_.hydra.job, resolve=False)
    return job_dirname(job["num"], job["override_dirname"])


def register_resolvers() -> None:
    # use_cache: Hydra reads hydra.run.dir several times; every read must give the same folder.
    if not OmegaConf.has_resolver("aelab_uid"):
        OmegaConf.register_new_resolver("aelab_uid", _unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver("aelab_run_dir"):
        OmegaConf.register_new_resolver("aelab_run_dir", _run_dir, use_cache=True)
    if not OmegaConf.has_resolver("aelab_job_dirname"):
        OmegaConf.register_new_resolver("aelab_job_dirname", _sweep_job_dirname)
