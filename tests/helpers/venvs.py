"""A fresh virtualenv holding aelab as a user installs it (the wheel, not the checkout), over
the dependencies already installed here: no download. `from helpers.venvs import installed`."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "aelab_examples"


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))


def build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of a copy of the repository's package files
    (a build in place would leave build/ and *.egg-info in the checkout)."""
    tree = out / "tree"
    tree.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    for name in ("src", "conf"):
        _copy_tree(REPO / name, tree / name)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", str(out), str(tree)], check=True, capture_output=True)
    (wheel,) = out.glob("aelab-*.whl")
    return wheel


def make_venv(root: Path) -> Path:
    """A new virtualenv whose site-packages reach this interpreter's (torch, Lightning, Hydra...)
    through a .pth line, which adds the folder without running its .pth files: the checkout's
    editable aelab stays out of it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", query], text=True).strip())
    (site / "_aelab_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def pip_install(venv: Path, *args: str) -> None:
    """This interpreter's pip, installing into `venv` (which has none of its own). The checkout's
    aelab, which `venv` sees through its .pth, is neither taken as installed nor uninstalled."""
    cmd = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    cmd += ["-q", "--no-deps", "--ignore-installed", *args]
    subprocess.run(cmd, check=True, capture_output=True, env=user_env())


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user of the installed package: no PYTHONPATH into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AELAB_ROOT")}
    return {**env, **extra}


class Installed:
    def __init__(self, root: Path, wheel: Path, venv: Path) -> None:
        self.root, self.wheel, self.venv = root, wheel, venv

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


_INSTALLED: dict[str, Installed] = {}  # module-level: every test module gets the same venv


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    """aelab's wheel and the example package (built from a copy, not editable) in a new venv."""
    if "venv" not in _INSTALLED:
        root = tmp_path_factory.mktemp("installed")
        wheel = build_wheel(root / "wheel")
        venv = make_venv(root / "venv")
        pip_install(venv, str(wheel))
        examples = root / "aelab_examples"
        _copy_tree(EXAMPLES, examples)
        pip_install(venv, "--no-build-isolation", str(examples))
        _INSTALLED["venv"] = Installed(root, wheel, venv)
    return _INSTALLED["venv"]


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def write_idx(path: Path, array: torch.Tensor) -> None:
    """A uint8 IDX file (gzipped for a `.gz` name): magic 0 0 8 ndim, big-endian sizes, data."""
    data = array.to(torch.uint8).contiguous().numpy()
    header = bytes([0, 0, 0x08, data.ndim]) + b"".join(n.to_bytes(4, "big") for n in data.shape)
    raw = header + data.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def blobs(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 images (n x size x size) of a bright square placed by the label, and labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = (torch.rand(n, size, size, generator=g) * 40).to(torch.uint8)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 4)
        images[i, 2 + 6 * r : 8 + 6 * r, 2 + 6 * c : 8 + 6 * c] = 255
    return images, labels


def idx_folder(folder: Path, n_train: int = 120, n_test: int = 60, gz: bool = True) -> Path:
    """A Fashion-MNIST-like folder: the four files, the training images gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    (x, y), (tx, ty) = blobs(n_train, 0), blobs(n_test, 1)
    write_idx(folder / ("train-images-idx3-ubyte" + (".gz" if gz else "")), x)
    write_idx(folder / "train-labels-idx1-ubyte", y)
    write_idx(folder / "t10k-images-idx3-ubyte", tx)
    write_idx(folder / "t10k-labels-idx1-ubyte", ty)
    return folder
