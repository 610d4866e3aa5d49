"""A dataset's files, offline-first and checksummed: `ensure_files`.

The order: (1) each file already in its folder with the published md5 is used; (2) the missing or
corrupt ones are fetched with torchvision's `download_url` from the official mirrors, with a
bounded socket timeout so that a machine without network fails in seconds, into a temporary
folder beside the target, and moved into place only once their md5 is right; (3) otherwise one
line (a DataSourceError) names the files, where to get them and where to put them. A corrupt
file in place is never read and is replaced only by a verified one; nothing half-written is
left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from aelab.checks import DataSourceError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 5.0  # per socket operation: DNS failure or a silent host ends the try fast


def md5sum(path: str | Path) -> str:
    """The md5 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.md5()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _problem(path: Path, md5: str | None) -> str | None:
    """Why `path` cannot be used (missing, md5 mismatch), None when it can."""
    if not path.is_file():
        return "missing"
    if md5 is None:
        return None
    got = md5sum(path)
    return None if got == md5 else f"md5 {got} != {md5}"


def download(url: str, folder: Path, filename: str, md5: str | None) -> None:
    """torchvision's `download_url` of `url` into a temporary folder inside `folder`, moved to
    `folder / filename` once its md5 is right (torchvision checks it). Raises whatever the
    download raises (OSError, RuntimeError); leaves nothing behind when it does."""
    from torchvision.datasets.utils import download_url

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            download_url(url, str(tmp), filename=filename, md5=md5)
        got = tmp / filename
        if md5 is not None and md5sum(got) != md5:  # download_url re-checks; this is the guard
            raise RuntimeError(f"md5 of the download is not {md5}")
        os.replace(got, folder / filename)
    finally:
        socket.setdefaulttimeout(previous)
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_files(
    folder: str | Path,
    files: Mapping[str, str | None],
    mirrors: Sequence[str],
    *,
    what: str,
    allow_download: bool = True,
    hint: str = "",
    why: str = "data.download=false",
    page: str | None = None,
) -> Path:
    """Return `folder` holding every file of `files` (name -> published md5; None where none is
    published: then only its presence is checked here and its format by the reader).

    `mirrors`: base URLs tried in order for each missing file (url = mirror + name). `what`: the
    dataset's name for the messages; `hint`: a sentence appended to the error (e.g. another
    option); `why`: the reason given where nothing is downloaded; `page`: where to get the files
    when there is no mirror.

    Raises:
        DataSourceError: one line: `what`, the files that are missing or corrupt, the URLs to get
            them from and the folder to put them in (also when `allow_download` is false or the
            folder cannot be created).
    """
    folder = Path(folder)
    bad = {name: p for name, md5 in files.items() if (p := _problem(folder / name, md5))}
    if not bad:
        return folder
    failure = why
    if allow_download and mirrors:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataSourceError(f"{what}: cannot create {folder}: {err.strerror or err}") from err
        for name in list(bad):
            for mirror in mirrors:
                try:
                    log.info("fetching %s%s into %s", mirror, name, folder)
                    download(mirror + name, folder, name, files[name])
                except Exception as err:  # noqa: BLE001 - any failure: the next mirror, or the line
                    failure = " ".join(f"download failed: {type(err).__name__}: {err}".split())
                    continue
                del bad[name]
                break
        if not bad:
            return folder
    listed = ", ".join(f"{name} ({problem})" for name, problem in bad.items())
    where = " or ".join(mirrors) if mirrors else (page or "the dataset's publisher")
    if mirrors and len(bad) == 1:  # one file: its own address
        where = " or ".join(mirror + name for mirror in mirrors for name in bad)
    tail = f"; {hint}" if hint else ""
    raise DataSourceError(
        f"{what}: {listed} in {folder} ({failure[:200]}): get them from {where} "
        f"and put them in {folder}{tail}"
    )
