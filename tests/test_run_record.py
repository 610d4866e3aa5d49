"""run.json: the code's git state, the command line and the resumes of a run (unit tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aelab.runs import _git_state

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def clean_clone(tmp_path):
    """A committed tree holding the project's .gitignore and one source file."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "clone"
    (root / "src").mkdir(parents=True)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    (root / "src" / "mod.py").write_text("x = 1\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


def test_git_state_of_a_clean_clone_after_pip_wheel_is_clean(clean_clone):
    # what `pip wheel .` leaves in the tree (checked with setuptools): build/ and the wheel;
    # `python -m build` writes dist/
    (clean_clone / "build" / "lib" / "aelab").mkdir(parents=True)
    (clean_clone / "build" / "lib" / "aelab" / "__init__.py").write_text("")
    (clean_clone / "aelab-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    (clean_clone / "dist").mkdir()
    (clean_clone / "dist" / "aelab-0.1.0.tar.gz").write_bytes(b"")
    state = _git_state(clean_clone)
    assert state == {"commit": git(clean_clone, "rev-parse", "HEAD"), "dirty": False}


def test_git_state_counts_an_edited_or_new_source_file_as_dirty(clean_clone):
    (clean_clone / "src" / "new.py").write_text("y = 2\n")
    assert _git_state(clean_clone)["dirty"] is True
    (clean_clone / "src" / "new.py").unlink()
    (clean_clone / "src" / "mod.py").write_text("x = 2\n")
    assert _git_state(clean_clone)["dirty"] is True


def test_git_state_outside_a_git_tree_is_unknown(tmp_path):
    assert _git_state(tmp_path) == {"commit": None, "dirty": None}
