"""The documentation cannot rot: the site builds with warnings as errors, the generated config
reference lists every key of conf/, and the tutorials' tested shell blocks run on a tiny budget."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sweeps import tiny_sweep  # noqa: F401 (a fixture)
from omegaconf import DictConfig, ListConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
MARK = "<!-- tested: tests/test_docs.py runs this block on a tiny budget -->"
# every aelab-train of a tested block gets these appended (later overrides win in Hydra)
TINY = (
    "threads=1 trainer.max_epochs=1 ++trainer.limit_train_batches=2 ++trainer.limit_val_batches=1"
    " ++trainer.limit_test_batches=1 data.eval_batch_size=200"
)


def _config_reference():
    spec = importlib.util.spec_from_file_location(
        "config_reference", REPO / "scripts" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _leaves(node, prefix=""):
    """Dotted keys of an OmegaConf node, unresolved (an independent walk from the generator's)."""
    if isinstance(node, DictConfig):
        keys = list(node.keys())
        if not keys and prefix:
            return [prefix]
        out = []
        for key in keys:
            child = node._get_node(key)
            name = f"{prefix}.{key}" if prefix else str(key)
            out += _leaves(child, name) if isinstance(child, DictConfig) else [name]
        return out
    return [prefix]


def test_config_reference_lists_every_key_of_conf():
    page = _config_reference().render()
    sections = re.split(r"^### ", page, flags=re.M)[1:]
    by_file = {}
    for section in sections:
        m = re.search(r"File `conf/([^`]+)`", section)
        by_file[m.group(1)] = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    files = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert sorted(by_file) == files
    for rel in files:
        cfg = OmegaConf.load(REPO / "conf" / rel)
        expected = set(_leaves(cfg)) if not isinstance(cfg, ListConfig) else set()
        assert by_file[rel] == expected, rel


def test_config_reference_ranges_come_from_the_checks():
    page = _config_reference().render()
    vae = page.split("### `model=vae`")[1].split("### ")[0]
    # VAE.__init__: check_float("beta", beta, 0.0); base: check_int("latent_dim", latent_dim, 1)
    assert re.search(r"^\| `model\.beta` \| `1\.0` \| number in \[0\.0, inf\) \|$", vae, flags=re.M)
    latent = r"^\| `model\.latent_dim` \| `\d+` \| integer in \[1, inf\) \|$"
    assert re.search(latent, vae, flags=re.M)


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(tmp_path):
    """~10 s: mkdocs build --strict (broken links, anchors, API references all fail it)."""
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()


def tested_blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted((DOCS / "tutorials").glob("*.md")):
        text = page.read_text()
        for n, m in enumerate(re.finditer(re.escape(MARK) + r"\n```bash\n(.*?)```", text, re.S)):
            out.append((f"{page.stem}-{n}", m.group(1)))
    return out


def test_every_tutorial_has_a_tested_block():
    pages = {name.rsplit("-", 1)[0] for name, _ in tested_blocks()}
    assert pages == {p.stem for p in (DOCS / "tutorials").glob("*.md")}


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("block", tested_blocks(), ids=lambda b: b[0])
def test_tutorial_block_runs(block, tmp_path, mnist_dir):
    """A tutorial's tested block, verbatim in bash from a fresh folder holding the venv, with
    every aelab-train on a tiny budget (first-run ~15 s, each 4-job sweep ~60 s)."""
    _, script = block
    (tmp_path / ".venv").symlink_to(BIN.parent)
    prelude = f'aelab-train() {{ command aelab-train "$@" {TINY}; }}\n'
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AELAB_DATA_DIR": str(mnist_dir),
        "PYTHONPATH": str(REPO / "tests"),
    }
    env.pop("AELAB_ROOT", None)
    assert shutil.which("bash")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", prelude + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    metrics = list((tmp_path / "outputs").rglob("metrics.json"))
    assert metrics and all('"completed"' in m.read_text() for m in metrics), metrics
    if "aelab-report" in script:
        assert list((tmp_path / "outputs" / "multiruns").glob("*/*/summary.md"))


@pytest.mark.slow
@pytest.mark.mnist
def test_notebook_loads_a_sweep_and_plots(tiny_sweep, tmp_path, monkeypatch):  # noqa: F811
    """notebooks/compare_sweep.ipynb executed (nbclient) on the shared tiny sweep: its table has
    a row per job and its plot is written (the docs show the same plot). ~15 s past the sweep."""
    import nbclient
    import nbformat

    nb = nbformat.read(REPO / "notebooks" / "compare_sweep.ipynb", as_version=4)
    figure = tmp_path / "sweep.png"
    monkeypatch.setenv("AELAB_SWEEP", str(tiny_sweep))  # the kernel inherits the environment
    monkeypatch.setenv("AELAB_NOTEBOOK_FIGURE", str(figure))
    client = nbclient.NotebookClient(nb, timeout=300, resources={"metadata": {"path": tmp_path}})
    client.execute()
    table = nb.cells[1].outputs[0]["data"]["text/plain"]
    jobs = sorted(p.name for p in tiny_sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 4 and all(job in table for job in jobs), table
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
