"""OmegaConf resolvers the configs use; registered on `import aelab`, before Hydra composes."""

import hashlib
import json
import os
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def _unique_suffix() -> str:
    """A short random tag so two runs started in the same second never share a folder."""
    return f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"


def _run_dir(*args: Any) -> str:
    """A new run folder, or with `resume` the one to continue (see `aelab.run.folder.run_dir`)."""
    from aelab.run.folder import run_dir  # not at import: `import aelab` registers these

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
    """A sweep job's folder name, `<num>_<overrides>` (`hydra.sweep.subdir`), made safe; `<num>`
    alone when `overrides` is empty.

    `overrides` is the job's override string (`varying_overrides`, e.g. `latent_dim=16,model=vae`,
    or Hydra's `job.override_dirname`). Characters outside `[A-Za-z0-9._-+=,@[]^]` become `%XX`
    (`+tag=exp/a` -> `+tag=exp%2Fa`), so the name is one ASCII path component without `/` or
    NUL. A name over `max_bytes` (default 120; at least 32) is cut and ends in `~` and a hash of
    the whole string (`~` is always escaped, so a cut name never equals an uncut one). Names are
    unique for distinct (num, overrides) (cut ones: but for a 40-bit hash collision) and keep the
    job number first, which the report sorts by. Raises ValueError for a `max_bytes` below 32.
    """
    if max_bytes < 32:
        raise ValueError(f"max_bytes={max_bytes}: a job name needs at least 32 bytes")
    num, text = str(num), "" if overrides is None else str(overrides)
    if not text:  # a sweep that varies nothing: `0`, not `0_`
        return _escape_all(num)
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


# A sweep's plan, for its jobs: `aelab.run.sweep.RecordSweep` sets it (JSON: `varying`, the keys the
# sweep varies; `jobs`, how many jobs it runs or null) before any job starts. A job's config is
# composed from that job's overrides alone and has lost the sweep's `a=1,2`; launchers that run
# jobs elsewhere (joblib's loky workers, submitit under SLURM) pass the environment on.
SWEEP_ENV = "AELAB_SWEEP"
_UNSET = "\x00unset"  # the value of a key a job leaves as composed


def value_text(value: Any) -> str:
    """A config value as a command-line override writes it (`true`, `null`, `0.1`): the
    baseline sweeper's values (`hydra.sweeper.baseline`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def varying_keys(
    overrides: Iterable[str],
    params: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    search_space: Iterable[str] = (),
) -> list[str]:
    """The config keys a sweep gives different values in different jobs, sorted.

    `overrides`: the sweep's command-line overrides as typed (`model=ae,vae`, `lr=interval(..)`);
    `params`: `hydra.sweeper.params` (a preset's, or Optuna's search space), which the command
    line overrides key by key; `baseline`: `hydra.sweeper.baseline` (one more run with these
    values); `search_space`: keys an Optuna `search_space` varies. A key with one value in every
    job (`trainer.max_epochs=2`, `model.latent_dim=2,2`, a deletion) is constant; one swept over
    a range Hydra cannot list here (interval, glob) varies. Keys lose a `+`/`++` prefix.
    Raises hydra's OverrideParseException for a malformed override.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    items = [f"{k}={v}" for k, v in (params or {}).items()] + list(overrides)
    values: dict[str, set[str] | None] = {}  # None: too many to list
    for override in OverridesParser.create().parse_overrides(items):
        key, value = override.key_or_group, override.value()
        if override.is_delete():
            values[key] = {"~"}
        elif isinstance(value, Glob) or (
            override.is_sweep_override() and not override.is_discrete_sweep()
        ):
            values[key] = None
        elif override.is_sweep_override():
            values[key] = set(override.sweep_string_iterator())
        else:
            values[key] = {override.get_value_element_as_str()}
    for key, value in (baseline or {}).items():
        known = values.setdefault(str(key), {_UNSET})
        if known is not None:
            known.add(value_text(value))
    varying = {k for k, v in values.items() if v is None or len(v) > 1}
    return sorted(varying | {str(k) for k in search_space})


def _short_names(keys: Iterable[str]) -> dict[str, str]:
    """Each key as its last dotted part where no other key ends the same, else whole."""
    keys = list(dict.fromkeys(keys))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


_LONG_FLOAT = re.compile(r"-?(\d+\.\d*|\.\d+)(e[-+]?\d+)?", re.IGNORECASE)
_SIGNIFICANT = 7  # more digits than this: a float a program wrote (Optuna's trials), not a person


def _value_text(text: str) -> str:
    """A value as typed, but a long float (`0.0012345678901234`) with 4 significant digits, as
    summary.md shows it (`0.001235`)."""
    if _LONG_FLOAT.fullmatch(text):
        mantissa = re.split(r"[eE]", text)[0]
        digits = mantissa.replace("-", "").replace(".", "").lstrip("0")
        if len(digits) > _SIGNIFICANT:
            return f"{float(text):.4g}"
    return text


def varying_overrides(
    overrides: Sequence[str],
    varying: Iterable[str],
    exclude_keys: Iterable[str] = (),
    kv_sep: str = "=",
    item_sep: str = ",",
) -> str:
    """A job's overrides that the sweep varies, for its name: `latent_dim=2,model=ae`.

    `overrides`: the job's own (`hydra.overrides.task`: `model.latent_dim=2`, `model=ae`,
    `trainer.max_epochs=2`); `varying`: the sweep's varying keys (`varying_keys`). Keys in
    `exclude_keys` are left out unless nothing else varies (`seed=0,1,2` alone: `seed=0`).
    A dotted key is shortened to its last part unless another shown key ends the same way
    (`model.beta` and `optimizer.beta` stay whole); a `+` prefix goes; long floats are rounded
    (`_value_text`). Items are sorted, as Hydra's `override_dirname` sorts them.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    varying, excluded = set(varying), set(exclude_keys)
    parsed = [
        o
        for o in OverridesParser.create().parse_overrides(list(overrides))
        if not o.is_delete() and o.key_or_group in varying
    ]
    shown = [o for o in parsed if o.key_or_group not in excluded] or parsed
    names = _short_names(o.key_or_group for o in shown)
    items = []
    for o in shown:
        key = names[o.key_or_group] + (f"@{o.package}" if o.package else "")
        value = _value_text(str(o.input_line).split("=", 1)[1])
        items.append(f"{key}{kv_sep}{value}")
    return item_sep.join(sorted(items))


def sweep_plan() -> dict[str, Any] | None:
    """The running sweep's plan from `AELAB_SWEEP` (`varying`, `jobs`); None if unset or bad."""
    try:
        plan = json.loads(os.environ[SWEEP_ENV])
    except (KeyError, ValueError):
        return None
    if not isinstance(plan, dict) or not isinstance(plan.get("varying"), list):
        return None
    return plan


def _sweep_job_dirname(*, _root_: Any) -> str:
    """`hydra.sweep.subdir`: `job_dirname` of this job's number and the overrides that vary
    across the sweep (`varying_overrides`), or all its overrides (`override_dirname`) when no
    sweep plan was recorded (a Hydra config without `aelab.run.sweep.RecordSweep`).

    The overrides are read as written, not resolved: an override whose value is an
    interpolation (`+tag='${oc.env:USER}'`) names the folder by what was typed, and one that
    only resolves inside the job does not stop the sweep.
    """
    job = OmegaConf.to_container(_root_.hydra.job, resolve=False)
    task = OmegaConf.to_container(_root_.hydra.overrides.task, resolve=False)
    plan = sweep_plan()
    if plan is None:
        name = job_dirname(job["num"], job["override_dirname"])
    else:
        dirname = job["config"]["override_dirname"]
        text = varying_overrides(
            task, plan["varying"], dirname["exclude_keys"], dirname["kv_sep"], dirname["item_sep"]
        )
        name = job_dirname(job["num"], text)
    return free_job_dirname(str(_root_.hydra.sweep.dir), name, task)


def free_job_dirname(sweep_dir: str, name: str, task: Sequence[Any]) -> str:
    """`name`, unless that folder of `sweep_dir` holds the results of a job started with other
    overrides (a sweep run again into its folder with a value shared by all its jobs changed,
    which the job names leave out: hydra#1817); then the first of `name~r2`, `name~r3`, ...
    that holds no other job's results. So a job never writes into another config's folder, and
    the same config finds its own folder again (where a completed job is left as it is).
    """
    from aelab.run.folder import results_in, run_overrides, stored_overrides

    wanted = sorted(run_overrides(task))
    candidate, k = name, 1
    while True:
        folder = Path(sweep_dir) / candidate
        if not results_in(folder):
            return candidate
        stored = stored_overrides(folder)
        if stored is not None and sorted(stored) == wanted:
            return candidate
        k += 1
        candidate = f"{name}~r{k}"  # `~` is escaped in names: no job's own name looks like this


def register_resolvers() -> None:
    # use_cache: Hydra reads hydra.run.dir several times; every read must give the same folder.
    if not OmegaConf.has_resolver("aelab_uid"):
        OmegaConf.register_new_resolver("aelab_uid", _unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver("aelab_run_dir"):
        OmegaConf.register_new_resolver("aelab_run_dir", _run_dir, use_cache=True)
    if not OmegaConf.has_resolver("aelab_job_dirname"):
        OmegaConf.register_new_resolver("aelab_job_dirname", _sweep_job_dirname)
