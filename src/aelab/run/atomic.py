"""The one atomic writer: temp file beside the target, fsync, rename. Used for metrics.json,
run.json, checkpoints, the data folder's files, the report and the sweep's event file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
